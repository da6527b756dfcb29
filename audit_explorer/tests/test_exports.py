"""Background exports: a real RQ worker writes the file and its manifest to S3 (moto); the
download is a presigned link; large searches are offered as one instead of a stream; an
export whose worker died or whose job was lost is failed by the reaper, saying why."""

import csv
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import suppress
from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone
from django_rq.cron import DjangoCronScheduler

from audit_explorer import exports
from audit_explorer.models import Export
from centralllm import aws
from core.models import Action
from devtools.testing import test_database_url
from provisioning import cron

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


@pytest.mark.parametrize(
    ("killed", "why"),
    [
        # The out-of-memory killer takes the work horse; the worker says so to RQ.
        ("horse", "Work-horse terminated unexpectedly"),
        # The machine goes: the worker and its horse at once.
        ("worker", "it was killed or ran out of memory"),
    ],
)
def test_a_killed_worker_fails_its_export_and_the_page_stops_polling(
    client, viewer, seeded, audit_bucket, redis_conn, settings, killed, why
):
    """A worker killed mid-export left it "running" for ever and its page polling every 2 s."""
    settings.RUN_HEARTBEAT_TIMEOUT_SECONDS = 2
    # DynamoDB as the worker sees it: takes the connection, never answers; so the export is
    # surely under way when the kill comes.
    silent = socket.create_server(("127.0.0.1", 0))
    endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", exports.QUEUE],
        env={
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        client.force_login(viewer)
        client.post(reverse("audit_explorer:export-create"), {"query": "user=ann", "format": "csv"})
        export = Export.objects.get()
        deadline = time.monotonic() + 60
        while export.status != "running":
            assert time.monotonic() < deadline, "the worker never started the export"
            time.sleep(0.05)
            export.refresh_from_db()
        [horse] = children(worker.pid)  # RQ forks it into a session of its own
        os.kill(horse, signal.SIGKILL)
        if killed == "worker":
            os.killpg(worker.pid, signal.SIGKILL)

        deadline = time.monotonic() + 60
        while export.status == "running":
            assert time.monotonic() < deadline, "the reaper did not fail the export in a minute"
            client.get(reverse("audit_explorer:exports"), HTTP_HX_REQUEST="true")  # its poll
            time.sleep(0.5)
            export.refresh_from_db()
    finally:
        os.killpg(worker.pid, signal.SIGKILL)  # also when the test failed: leave no worker
        worker.wait(10)
        silent.close()

    assert export.status == "failed"
    assert "stopped at" in export.error and why in export.error
    assert export.worker_name and export.worker_name in export.error
    fragment = client.get(reverse("audit_explorer:exports"), HTTP_HX_REQUEST="true")
    text = fragment.content.decode()
    assert 'data-status="failed"' in text and why in text  # the reason, on the page
    assert "hx-trigger" not in text  # which stops polling


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def test_an_export_whose_job_is_lost_is_failed_by_the_scheduled_reaper(viewer, audited, redis_conn):
    silent = timezone.now() - timedelta(minutes=5)
    export = Export.objects.create(  # its job gone with a flushed Redis
        user=viewer,
        environment=audited,
        query="user=ann",
        format="csv",
        expected_rows=4000,
        status="running",
        started_at=silent,
        heartbeat_at=silent,
        rows=2000,
    )
    scheduler = DjangoCronScheduler()
    scheduler.load_config_from_file("console.cron")
    [job] = [job for job in scheduler.get_jobs() if job.func == exports.reap_all]
    assert job.interval == cron.REAP_SECONDS  # as often as the runs' reaper

    assert job.func() == 1
    export.refresh_from_db()
    assert export.status == "failed" and "lost from the queue" in export.error
    assert job.func() == 0  # once
