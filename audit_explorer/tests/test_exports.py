"""Background exports: a real RQ worker writes the file and its manifest to S3 (moto); the
download is a presigned link; large searches are offered as one instead of a stream."""

import csv
import hashlib
import io
import json
import time
import urllib.request

import pytest
from django.urls import reverse

from audit_explorer import exports
from audit_explorer.models import Export
from centralllm import aws
from core.models import Action

pytestmark = pytest.mark.django_db(transaction=True)


def wait_until_finished(export_id: int, seconds: float = 60) -> Export:
    deadline = time.monotonic() + seconds
    while (export := Export.objects.get(pk=export_id)).is_active:
        assert time.monotonic() < deadline, f"export still {export.status}"
        time.sleep(0.2)
    return export


def test_a_background_export_writes_the_file_and_its_manifest_and_links_to_it(
    client, viewer, seeded, audited, audit_bucket, rq_worker
):
    client.force_login(viewer)
    streamed = b"".join(
        client.get(reverse("audit_explorer:export"), {"project": "alpha"}).streaming_content
    )
    response = client.post(
        reverse("audit_explorer:export-create"), {"query": "project=alpha", "format": "csv"}
    )
    assert response.status_code == 302 and response["Location"] == reverse("audit_explorer:exports")

    export = wait_until_finished(Export.objects.get().pk)
    assert (export.status, export.rows, export.expected_rows) == ("done", 6, 6)
    assert export.environment == audited  # its bucket is the environment's
    s3 = aws.client("s3")
    body = s3.get_object(Bucket=audit_bucket, Key=export.key)["Body"].read()
    assert body == streamed  # the same rows as the stream, byte for byte
    manifest = json.loads(
        s3.get_object(Bucket=audit_bucket, Key=export.manifest_key())["Body"].read()
    )
    assert manifest["rows"] == 6 and manifest["search"] == {"project": "alpha"}
    assert manifest["environment"] == audited.name
    assert manifest["sha256"] == hashlib.sha256(body).hexdigest() == export.sha256
    assert manifest["createdBy"] == "vera" and export.key.startswith("exports/")

    page = client.get(reverse("audit_explorer:exports")).content.decode()
    assert 'data-status="done"' in page and "hx-trigger" not in page  # nothing left to poll
    link = client.get(reverse("audit_explorer:export-download", args=[export.pk]))
    assert link.status_code == 302 and "X-Amz-Signature" in link["Location"]
    with urllib.request.urlopen(link["Location"]) as download:
        assert download.read() == body
        assert f"audit-export-{export.pk}.csv" in download.headers["Content-Disposition"]
    verbs = set(Action.objects.values_list("verb", flat=True))
    assert {"audit.export", "audit.export_download"} <= verbs


def test_a_search_beyond_the_stream_limit_is_offered_as_a_background_export(
    client, viewer, seeded, audited, monkeypatch
):
    monkeypatch.setattr(exports, "STREAM_MAX_ROWS", 5)
    client.force_login(viewer)
    response = client.get(reverse("audit_explorer:export"), {"project": "alpha", "format": "jsonl"})
    page = response.content.decode()
    assert not response.streaming
    assert "holds up to <strong>6</strong> records" in page
    query = f"project=alpha&amp;environment={audited.name}"
    assert f'name="query" value="{query}"' in page and 'value="jsonl"' in page


def test_a_large_file_goes_up_in_parts_and_a_failed_one_leaves_nothing(audit_bucket):
    s3 = aws.client("s3")
    upload = exports.MultipartUpload(s3, audit_bucket, "exports/big.csv", "text/csv")
    chunk = b"x" * (1024 * 1024 - 1) + b"\n"
    for _ in range(int(exports.PART_BYTES / len(chunk) * 2.5)):
        upload.write(chunk)
    upload.finish()
    assert len(upload.parts) == 3
    head = s3.head_object(Bucket=audit_bucket, Key="exports/big.csv")
    assert head["ContentLength"] == upload.size and head["ETag"].endswith('-3"')

    failed = exports.MultipartUpload(s3, audit_bucket, "exports/failed.csv", "text/csv")
    for _ in range(int(exports.PART_BYTES / len(chunk)) + 1):
        failed.write(chunk)
    failed.abort()
    assert s3.list_multipart_uploads(Bucket=audit_bucket).get("Uploads", []) == []
    assert s3.list_objects_v2(Bucket=audit_bucket, Prefix="exports/failed")["KeyCount"] == 0


def test_a_cancelled_export_stops_and_others_cannot_touch_it(
    client, viewer, operator, seeded, audit_bucket
):
    client.force_login(viewer)
    client.post(reverse("audit_explorer:export-create"), {"query": "user=ann", "format": "csv"})
    export = Export.objects.get()  # queued: no worker in this test
    client.force_login(operator)
    assert client.post(reverse("audit_explorer:export-cancel", args=[export.pk])).status_code == 404
    client.force_login(viewer)
    client.post(reverse("audit_explorer:export-cancel", args=[export.pk]))
    exports.write(export.pk)  # the job, when a worker reaches it, does nothing
    export.refresh_from_db()
    assert export.status == "cancelled" and not export.key
    assert aws.client("s3").list_objects_v2(Bucket=audit_bucket, Prefix="exports/")["KeyCount"] == 0
    assert (
        client.get(reverse("audit_explorer:export-download", args=[export.pk])).status_code == 404
    )


def test_an_export_of_a_bad_search_is_refused_with_a_message(client, viewer, audited):
    client.force_login(viewer)
    response = client.post(
        reverse("audit_explorer:export-create"),
        {"query": "status=999", "format": "csv"},
        follow=True,
    )
    assert "Not exported: status 999 is not an HTTP status" in response.content.decode()
    assert not Export.objects.exists()


def test_a_csv_cell_a_spreadsheet_would_run_as_a_formula_stays_text():
    """Issue 21, item 8: a user or prompt typed as =HYPERLINK(...) reached the CSV as is."""
    hostile = {
        "user": '=HYPERLINK("https://evil.example","open")',
        "project": "+cmd",
        "promptPreview": "@SUM(A1)",
        "requestType": "-2+3",
        "model": "plain text",
        "latencyMs": -1,  # a number is no formula
    }
    rows = list(csv.DictReader(io.StringIO("".join(exports.lines([hostile], "csv")))))
    assert rows[0]["user"] == "'" + hostile["user"]
    assert (rows[0]["project"], rows[0]["promptPreview"]) == ("'+cmd", "'@SUM(A1)")
    assert (rows[0]["requestType"], rows[0]["model"]) == ("'-2+3", "plain text")
    assert rows[0]["latencyMs"] == "-1"
