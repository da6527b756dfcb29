"""Retention from the environment's settings: S3 lifecycle expiry and the DynamoDB TTL
applied to the local resources, items that carry their expiry, previews dropped after N days
while the rest of the item stays, and the environment page saying what is kept how long."""

import uuid
from datetime import UTC, datetime, time, timedelta

import pytest
from django.urls import reverse

from audit_explorer import audit_runs, retention
from centralllm.audit.contract import parse_timestamp
from centralllm.audit.ingest import ingest_record
from centralllm.audit.items import GUARD_SORT_KEY, deserialize, get_guard, get_item
from centralllm.audit.tests.conftest import make_record
from provisioning import engine
from provisioning.models import Environment
from provisioning.resources.base import Context


@pytest.fixture
def kept(db) -> Environment:
    tag = uuid.uuid4().hex[:8]
    return Environment.objects.create(
        name=f"kept-{tag}",
        suffix=f"-k{tag}",
        is_local=True,
        audit_retention_days=30,
        raw_retention_days=14,
        preview_retention_days=7,
    )


def test_apply_puts_the_lifecycle_rules_and_the_ttl_in_place(kept):
    for key in ("s3.audit_bucket", "s3.raw_bucket", "dynamodb.audit_table"):
        engine.apply_one(kept, key)
    ctx = Context(kept.spec())
    s3 = ctx.client("s3")
    audit = s3.get_bucket_lifecycle_configuration(Bucket=ctx.name("AuditBucket"))
    records = next(rule for rule in audit["Rules"] if rule["ID"] == "audit-records")
    assert records["Expiration"] == {"Days": 30}
    assert "Transitions" not in records  # STANDARD_IA ignores objects under 128 KB
    raw = s3.get_bucket_lifecycle_configuration(Bucket=ctx.name("RawBucket"))
    assert raw["Rules"][0]["Expiration"] == {"Days": 14}
    ttl = ctx.client("dynamodb").describe_time_to_live(TableName=ctx.name("AuditTable"))
    ttl = ttl["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiresAt"}

    # Kept for ever: the expiry goes, nothing else changes.
    kept.audit_retention_days = 0
    kept.preview_retention_days = 0
    kept.save()
    engine.apply_one(kept, "s3.audit_bucket")
    audit = s3.get_bucket_lifecycle_configuration(Bucket=ctx.name("AuditBucket"))
    records = next(rule for rule in audit["Rules"] if rule["ID"] == "audit-records")
    assert "Expiration" not in records
    ctx.close()


def test_items_and_guards_carry_their_expiry(audit_table, monkeypatch):
    monkeypatch.setenv("AUDIT_RETENTION_DAYS", "30")
    record = make_record()
    ingest_record(record)
    expected = int(parse_timestamp(record["createdAt"]).timestamp()) + 30 * 86400
    assert get_item(record["requestId"])["expiresAt"] == expected
    assert get_guard(record["requestId"])["expiresAt"] == expected

    monkeypatch.setenv("AUDIT_RETENTION_DAYS", "0")
    forever = make_record()
    ingest_record(forever)
    assert "expiresAt" not in get_item(forever["requestId"])


def test_previews_past_their_days_are_dropped_and_the_rest_kept(trail):
    environment = trail.environment
    environment.preview_retention_days = 7
    environment.save()
    today = audit_runs.today()
    old_day = today - timedelta(days=8)
    old = make_record(created_at=datetime.combine(old_day, time(10), tzinfo=UTC))
    recent = make_record(created_at=datetime.now(UTC) - timedelta(days=2))
    for record in (old, recent):
        ingest_record(record)

    assert retention.drop_due_previews() == {environment.name: 1}
    dropped, untouched = get_item(old["requestId"]), get_item(recent["requestId"])
    assert "promptPreview" not in dropped and "completionPreview" not in dropped
    assert dropped["previewsDropped"] is True
    assert dropped["promptChars"] == 4 and dropped["status"] == 200  # the metadata stays
    assert untouched["promptPreview"] == "ping"
    guard = trail.client("dynamodb").get_item(
        TableName=trail.name("AuditTable"),
        Key={"id": {"S": old["requestId"]}, "createdAt": {"S": GUARD_SORT_KEY}},
    )
    assert deserialize(guard["Item"])["recordCreatedAt"] == old["createdAt"]
    assert retention.drop_due_previews() == {environment.name: 0}  # nothing written again


def test_the_environment_page_says_what_is_kept_and_the_form_checks_it(client, admin_user, kept):
    client.force_login(admin_user)
    page = client.get(reverse("provisioning:environment", args=[kept.name])).content.decode()
    assert "What is kept, for how long" in page
    for shown in ("30 days", "14 days", "7 days", "DynamoDB TTL on expiresAt"):
        assert shown in page

    url = reverse("provisioning:environment-edit", args=[kept.name])
    form = client.get(url).context["form"]
    data = {name: value for name, value in form.initial.items() if value is not None}
    refused = client.post(url, {**data, "preview_retention_days": 30})
    assert refused.status_code == 200
    assert "Previews go with the records after 30 days" in refused.content.decode()
