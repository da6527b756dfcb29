"""Audit records seeded through the real ingest, for the explorer's tests."""

from datetime import UTC, datetime, timedelta

import pytest

from centralllm import aws
from centralllm.audit.ingest import ingest_record
from centralllm.audit.tests.conftest import make_record
from devtools.testing import create_bucket, unique
from provisioning.models import Environment
from provisioning.resources.base import Context

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def audit_bucket(audited, monkeypatch) -> str:
    """The audited environment's audit bucket, where the uploader (and the demo) write."""
    name = create_bucket(audited.resource_name("AuditBucket"))
    monkeypatch.setenv("AUDIT_BUCKET", name)
    return name


@pytest.fixture
def seeded(audited) -> dict[str, dict]:
    """Seven requests of project alpha over the last hours, in the audited environment's
    table: users, statuses, latencies."""
    rows = [
        ("r1", "ann", 200, 120.0, "chat", 1),
        ("r2", "bob", 200, 950.0, "chat", 2),
        ("r3", "ann", 500, 40.0, "chat", 3),
        ("r4", "ann", 200, 3000.0, "embedding", 4),
        ("r5", "cid", 429, 5.0, "chat", 5),
        ("r6", "ann", 200, 610.0, "chat", 6),
        ("r7", "bob", 200, 77.0, "chat", 30),  # 30 hours ago: outside the default range
    ]
    records = {}
    for request_id, user, status, latency, kind, hours in rows:
        record = make_record(
            request_id=request_id,
            project="alpha",
            user=user,
            status=status,
            latency_ms=latency,
            request_type=kind,
            created_at=NOW - timedelta(hours=hours),
        )
        ingest_record(record)
        records[request_id] = record
    return records


def dynamodb_calls():
    """(operation, index) of every DynamoDB call made while the block runs."""
    calls = []
    dynamodb = aws.client("dynamodb")

    def note(model, params, **_):
        calls.append((model.name, params.get("IndexName")))

    dynamodb.meta.events.register("before-parameter-build", note, unique_id="count-calls")
    return calls, lambda: dynamodb.meta.events.unregister(
        "before-parameter-build", unique_id="count-calls"
    )


@pytest.fixture
def trail(audited_environment, monkeypatch) -> Context:
    """An environment of its own with the audit bucket, table and DLQ (nothing else), and the
    ingest's settings pointing at them, as its Lambda's would."""
    environment: Environment = audited_environment("trail")
    ctx = Context(environment.spec())
    ctx.environment = environment
    ctx.client("s3").create_bucket(
        Bucket=ctx.name("AuditBucket"),
        CreateBucketConfiguration={"LocationConstraint": aws.region()},
    )
    ctx.client("sqs").create_queue(QueueName=ctx.name("DlqName"))
    monkeypatch.setenv("TABLE_NAME", ctx.name("AuditTable"))
    monkeypatch.setenv("INGEST_LOG_GROUP", f"/aws/lambda/{unique('llm-audit-ingest')}")
    yield ctx
    ctx.close()
