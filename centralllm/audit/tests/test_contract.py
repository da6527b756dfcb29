import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from centralllm.audit.contract import (
    SCHEMA_VERSION,
    InvalidRecord,
    build_record,
    deployment_from_env,
    dumps,
    outcome_for,
    raw_key,
    record_key,
    validate_record,
)
from centralllm.audit.items import query_project_latency, query_status, query_user
from centralllm.audit.rollups import read_rollups, summarize
from centralllm.audit.tests.conftest import make_record, put_record, s3_event
from llm_audit_ingest.handler import lambda_handler

HOUR = datetime(2026, 11, 27, 5, tzinfo=UTC)


def test_a_built_record_is_ingested_found_by_every_index_and_rolled_up(audit_bucket, audit_table):
    record = make_record(
        project="contract-project",
        user="contract-user",
        api_key_id="contract-key",
        status=503,
        error={"type": "upstream_error", "message": "engine dead"},
        latency_ms=2500,
    )
    key = put_record(audit_bucket, record)

    lambda_handler(s3_event(audit_bucket, key), None)

    by_user = query_user("contract-user").items
    by_status = query_status(503).items
    by_latency = query_project_latency("contract-project", min_latency_ms=2000).items
    for found in (by_user, by_status, by_latency):
        assert [item["id"] for item in found] == [record["requestId"]]
    assert by_user[0]["errorMessage"] == "engine dead"
    assert by_user[0]["outcome"] == "server_error"

    for dimension, value in [
        ("project", "contract-project"),
        ("user", "contract-user"),
        ("apiKey", "contract-key"),
    ]:
        total = summarize(read_rollups(dimension, value, HOUR, HOUR))
        assert total["requests"] == 1, dimension
        assert total["errors"] == 1
        assert total["totalTokens"] == 21
        assert 2500 <= total["p50LatencyMs"] <= 2500 * 1.1


def test_the_record_shape():
    created = datetime(2026, 11, 27, 6, 9, 9, 123456, tzinfo=timezone(timedelta(hours=1)))
    record = make_record(request_id="abc", created_at=created, stream=True, ttft_ms=12.34567)

    assert record["schemaVersion"] == SCHEMA_VERSION
    assert record["createdAt"] == "2026-11-27T05:09:09.123Z"  # UTC, milliseconds
    assert record["usage"] == {"promptTokens": 5, "completionTokens": 16, "totalTokens": 21}
    assert record["ttftMs"] == 12.346
    assert record["rawKey"] == "raw/2026/11/27/abc.json" == raw_key(record)
    assert record_key(record) == "logs/2026/11/27/abc.json"
    assert validate_record(dumps(record)) == record
    assert json.loads(dumps(record)) == record


def test_a_rejection_without_headers_is_a_valid_record():
    record = make_record(
        project=None,
        user=None,
        request_type=None,
        status=400,
        usage=None,
        error={"type": "invalid_request_error", "message": "x-llm-user missing"},
    )
    assert record["outcome"] == "client_error"
    assert validate_record(record)["user"] is None


@pytest.mark.parametrize(
    ("status", "cancelled", "outcome"),
    [
        (200, False, "ok"),
        (404, False, "client_error"),
        (502, False, "server_error"),
        (200, True, "cancelled"),
    ],
)
def test_outcome(status, cancelled, outcome):
    assert outcome_for(status, cancelled=cancelled) == outcome


def test_deployment_from_env():
    environ = {
        "IMAGE_TAG": "3f2c1aa",
        "TASK_DEFINITION_REVISION": "central-llm-service:42",
        "VLLM_VERSION": "0.11.0",
        "SERVED_MODEL_NAME": "ministral-8b-instruct",
        "HOSTNAME": "ip-10-0-0-1",
    }
    assert deployment_from_env(environ) == {
        "imageTag": "3f2c1aa",
        "taskDefinitionRevision": "central-llm-service:42",
        "vllmVersion": "0.11.0",
        "model": "ministral-8b-instruct",
        "host": "ip-10-0-0-1",
    }


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda r: r.pop("createdAt"), "missing field createdAt"),
        (lambda r: r["usage"].pop("totalTokens"), "missing field usage.totalTokens"),
        (lambda r: r["deployment"].pop("host"), "missing field deployment.host"),
        (lambda r: r.update(stream="yes"), 'field stream must be true or false, got "yes"'),
        (lambda r: r.update(latencyMs="9"), "field latencyMs must be an integer or a number"),
        (lambda r: r.update(status=700), "status 700 is not an HTTP status"),
        (lambda r: r.update(outcome="fine"), "outcome 'fine' must be one of ok, client_error"),
        (lambda r: r.update(createdAt="2026-11-27 05:09:09"), "must be UTC ISO-8601 with milli"),
        (lambda r: r.update(createdAt="2026-02-30T05:09:09.123Z"), "is not a real date"),
        (lambda r: r.update(requestId="a/b"), "without '/'"),
        (lambda r: r.update(schemaVersion="1"), 'unknown schema version "1"'),
        (lambda r: r.update(latencyMs=-1), "latencyMs must be a finite number of at least 0"),
        (lambda r: r.update(requestId="rollup#project#x"), "not starting with 'rollup#'"),
    ],
)
def test_validation_reasons(change, reason):
    record = make_record()
    change(record)
    with pytest.raises(InvalidRecord) as raised:
        validate_record(record)
    assert reason in str(raised.value)


def test_an_unusable_ttft_costs_the_record_its_ttft_not_its_audit():
    for ttft in (float("nan"), -1, 101):
        record = {**make_record(stream=True, latency_ms=100), "ttftMs": ttft}
        assert validate_record(record)["ttftMs"] is None
        assert validate_record(record)["flags"] == ["ttft_unusable"]


def test_not_an_object():
    with pytest.raises(InvalidRecord, match="must be a JSON object, got list"):
        validate_record(b"[1, 2]")


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        make_record(created_at=datetime(2026, 11, 27))


def test_build_record_keeps_only_known_deployment_fields():
    fields = {
        name: None
        for name in (
            "project",
            "user",
            "request_type",
            "api_key_id",
            "model",
            "ttft_ms",
            "usage",
            "error",
            "prompt",
            "completion",
        )
    }
    record = build_record(
        request_id="r",
        created_at=HOUR,
        method="GET",
        path="/v1/x",
        stream=False,
        status=200,
        cancelled=False,
        latency_ms=1,
        deployment={"host": "h", "secret": "no"},
        **fields,
    )
    assert record["deployment"] == {
        "imageTag": None,
        "taskDefinitionRevision": None,
        "vllmVersion": None,
        "model": None,
        "host": "h",
    }
