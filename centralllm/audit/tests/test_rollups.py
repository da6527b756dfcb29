import json
import random
import re
import uuid
from datetime import UTC, datetime, timedelta

from botocore.stub import Stubber

from centralllm import aws
from centralllm.audit import rollups
from centralllm.audit.ingest import ingest_record
from centralllm.audit.items import get_item, guard_item, serialize
from centralllm.audit.rollups import (
    bucket_upper_ms,
    latency_bucket,
    percentile,
    period_of,
    period_start,
    read_key_periods,
    read_rollups,
    summarize,
)
from centralllm.audit.table import ROLLUP_SHARDS, shard_of
from centralllm.audit.tests.conftest import make_record, put_body, s3_event
from llm_audit_ingest.handler import lambda_handler

HOUR = datetime(2026, 11, 27, 5, tzinfo=UTC)


def histogram_of(latencies) -> dict[int, int]:
    histogram: dict[int, int] = {}
    for ms in latencies:
        histogram[latency_bucket(ms)] = histogram.get(latency_bucket(ms), 0) + 1
    return histogram


def test_percentiles_are_within_one_bucket():
    rng = random.Random(7)  # noqa: S311 - repeatable test data
    latencies = sorted(rng.lognormvariate(5, 1) for _ in range(5000))
    histogram = histogram_of(latencies)

    for q in (50, 95, 99):
        exact = latencies[round(q / 100 * len(latencies)) - 1]
        estimate = percentile(histogram, q)
        assert exact <= estimate <= exact * 2 ** (1 / 8) * 1.01, q


def test_bucket_edges():
    assert latency_bucket(0) == latency_bucket(1) == 0
    assert bucket_upper_ms(latency_bucket(100)) >= 100 > bucket_upper_ms(latency_bucket(100) - 1)
    assert latency_bucket(10**9) == latency_bucket(10**12)  # the last bucket takes the rest
    assert percentile({}, 50) is None


def test_rollups_add_up_over_shards_and_hours(audit_table):
    records = [
        make_record(
            project="rollup-project",
            status=status,
            cancelled=cancelled,
            latency_ms=latency,
            created_at=HOUR + timedelta(minutes=70 * (n % 2)),  # two different hours
        )
        for n, (status, cancelled, latency) in enumerate(
            [(200, False, 100)] * 14 + [(500, False, 900)] * 3 + [(404, False, 5)] * 2
            + [(200, True, 40)]
        )
    ]  # fmt: skip
    assert len({shard_of(r["requestId"], ROLLUP_SHARDS) for r in records}) > 1
    for record in records:
        ingest_record(record)

    hours = read_rollups("project", "rollup-project", HOUR, HOUR + timedelta(hours=5))
    total = summarize(hours)

    assert [h["hour"] for h in hours] == ["2026-11-27T05", "2026-11-27T06"]
    assert total["requests"] == 20
    assert total["errors"] == 5
    assert total["cancelled"] == 1
    assert total["totalTokens"] == 20 * 21
    assert total["latencyMsSum"] == 14 * 100 + 3 * 900 + 2 * 5 + 40
    assert 100 <= total["p50LatencyMs"] <= 110
    assert 900 <= total["p99LatencyMs"] <= 990
    server_errors = summarize(read_rollups("statusClass", "5xx", HOUR, HOUR + timedelta(hours=1)))
    assert server_errors["requests"] == 3
    assert read_rollups("project", "rollup-project", HOUR, HOUR) == hours[:1]


def test_a_projects_hours_count_its_users_and_request_types(audit_table):
    rows = [("ann", "chat")] * 3 + [("bob", "chat"), ("bob", "embedding"), (None, None)]
    for n, (user, kind) in enumerate(rows):
        ingest_record(
            make_record(
                project="top-project",
                user=user,
                request_type=kind,
                created_at=HOUR + timedelta(minutes=70 * (n % 2)),
            )
        )
    window = (HOUR, HOUR + timedelta(hours=2))

    project = summarize(read_rollups("project", "top-project", *window))["breakdowns"]
    user = summarize(read_rollups("user", "bob", *window))["breakdowns"]

    assert project == {
        "user": {"ann": 3, "bob": 2, "-": 1},
        "requestType": {"chat": 4, "embedding": 1, "-": 1},
    }
    assert user == {"project": {"top-project": 2}, "requestType": {"chat": 1, "embedding": 1}}
    # A status class counts its statuses, so a day's check reads only those status keys; and
    # its projects and keys, which the Audit overview names.
    assert summarize(read_rollups("statusClass", "2xx", *window))["breakdowns"] == {
        "status": {"200": 6},
        "project": {"top-project": 6},
        "apiKeyId": {"key-1": 6},
    }


def test_quota_periods_are_counted_as_api_gateway_counts_them():
    friday = datetime(2026, 11, 27, 23, 59, tzinfo=UTC)
    assert period_of(friday, "DAY") == "2026-11-27"
    assert period_of(friday, "WEEK") == "2026-W11-22"  # from the Sunday before
    assert period_of(datetime(2026, 11, 22, tzinfo=UTC), "WEEK") == "2026-W11-22"
    assert period_of(friday, "MONTH") == "2026-11"
    assert period_start(friday, "WEEK") == datetime(2026, 11, 22, tzinfo=UTC)
    assert period_start(friday, "MONTH") == datetime(2026, 11, 1, tzinfo=UTC)


def test_a_keys_quota_period_is_read_in_one_batch(audit_table, monkeypatch):
    monkeypatch.setenv("QUOTA_PERIOD", "DAY")
    rows = [("key-a", HOUR, "ann"), ("key-a", HOUR + timedelta(hours=3), "bob")]
    rows += [("key-a", HOUR - timedelta(days=1), "ann"), ("key-b", HOUR, "cid")]
    for key, created, user in rows:
        ingest_record(make_record(api_key_id=key, user=user, created_at=created))
    calls = []
    client = aws.client("dynamodb")
    note = lambda model, **_: calls.append(model.name)  # noqa: E731
    client.meta.events.register("before-call", note, unique_id="count")
    try:
        usage = read_key_periods(["key-a", "key-b", "key-c"], "2026-11-27")
    finally:
        client.meta.events.unregister("before-call", unique_id="count")
    assert calls == ["BatchGetItem"]  # 3 keys x 8 shards: 24 items, one call
    assert usage["key-a"]["requests"] == 2 and usage["key-b"]["requests"] == 1
    assert usage["key-a"]["breakdowns"]["user"] == {"ann": 1, "bob": 1}
    assert usage["key-a"]["lastAt"] == "2026-11-27T08:00:00.000Z"  # HOUR + 3 hours
    assert usage["key-c"]["requests"] == 0 and usage["key-c"]["lastAt"] is None


def test_a_duplicate_adds_nothing(audit_table):
    record = make_record(user="once")
    assert ingest_record(record) is True
    assert ingest_record(record) is False
    assert summarize(read_rollups("user", "once", HOUR, HOUR))["requests"] == 1


def cancelled_transaction(*codes: str) -> dict:
    """TransactionCanceledException as AWS documents it, with CancellationReasons."""
    return {
        "service_error_code": "TransactionCanceledException",
        "service_message": f"Transaction cancelled, please refer cancellation reasons [{codes}]",
        "http_status_code": 400,
        "service_error_meta": {"Code": "TransactionCanceledException"},
        "response_meta": {},
        "modeled_fields": {"CancellationReasons": [{"Code": code} for code in codes]},
    }


def test_conflicts_are_retried_and_a_failed_condition_is_a_duplicate():
    # moto never reports TransactionConflict, and AWS's CancellationReasons differ from
    # moto's message; both are taken from AWS's documented response here.
    client = aws.client("dynamodb")
    with Stubber(client) as stubber:
        conflict = cancelled_transaction("None", "None", "TransactionConflict", *["None"] * 4)
        stubber.add_client_error("transact_write_items", **conflict)
        stubber.add_response("transact_write_items", {})
        assert ingest_record(make_record(), table="any") is True

        # The guard's condition failed: the id was taken, by this same record (GetItem).
        record = make_record()
        duplicate = cancelled_transaction(*["ConditionalCheckFailed"] + ["None"] * 6)
        stubber.add_client_error("transact_write_items", **duplicate)
        stubber.add_response("get_item", {"Item": serialize(guard_item(record))})
        assert ingest_record(record, table="any") is False

        # Ingested before guards existed: the item's own condition failed.
        legacy = cancelled_transaction("None", "ConditionalCheckFailed", *["None"] * 5)
        stubber.add_client_error("transact_write_items", **legacy)
        assert ingest_record(record, table="any") is False
        stubber.assert_no_pending_responses()


def test_a_breakdown_at_its_cap_folds_alone(audit_table, monkeypatch):
    """A status class's hour counts its projects as well as its statuses and keys: a caller
    naming project after project filled that set, and the next record's status and key went
    to "(other)" with its project, hiding the status from the day's completeness check and
    the key from the Audit overview. Request ids in one write shard, as a flood fills each."""
    monkeypatch.setattr(rollups, "BREAKDOWN_CAP", 3)
    ids = (f"req-{uuid.uuid4().hex}" for _ in iter(int, 1))
    one_shard = (request_id for request_id in ids if shard_of(request_id, ROLLUP_SHARDS) == 0)
    for project in ("flood-1", "flood-2", "flood-3"):
        assert ingest_record(make_record(request_id=next(one_shard), project=project))
    late = make_record(request_id=next(one_shard), project="late", status=201, api_key_id="k2")
    assert ingest_record(late)

    counted = summarize(read_rollups("statusClass", "2xx", HOUR, HOUR))["breakdowns"]
    assert counted == {
        "status": {"200": 3, "201": 1},
        "project": {"flood-1": 1, "flood-2": 1, "flood-3": 1, "(other)": 1},
        "apiKeyId": {"key-1": 3, "k2": 1},
    }
    # The project's own hour knows it, as before.
    assert summarize(read_rollups("project", "late", HOUR, HOUR))["breakdowns"]["user"] == {"qa": 1}


def speed_record(project: str, **fields) -> dict:
    return make_record(project=project, user=f"{project}-user", **fields)


def tokens(completion: int) -> dict:
    return {"prompt_tokens": 10, "completion_tokens": completion, "total_tokens": 10 + completion}


def test_speed_counts_streams_and_answers_each_as_they_are(audit_table, monkeypatch):
    streams = [
        # 100 ms to the first byte, then 50 tokens in 1,000 ms.
        speed_record("speedy", stream=True, ttft_ms=100, latency_ms=1100, usage=tokens(50))
        for _ in range(4)
    ]
    others = [
        # A non-streaming answer: no TTFT (counted as such, not as 0); 100 tokens in 2 s.
        speed_record("speedy", latency_ms=2000, usage=tokens(100)),
        # A streamed error: its first byte is the error, no TTFT and no generation.
        speed_record("speedy", stream=True, status=500, ttft_ms=3, latency_ms=5, usage=None),
    ]
    for record in streams + others:
        ingest_record(record)

    for dimension, value in (("project", "speedy"), ("user", "speedy-user")):
        total = summarize(read_rollups(dimension, value, HOUR, HOUR))
        assert (total["ttftCount"], total["ttftNone"], total["ttftUnusable"]) == (4, 2, 0)
        assert total["speedMissing"] == 0
        assert 100 <= total["p50TtftMs"] <= total["p95TtftMs"] <= 100 * 2 ** (1 / 8)
        assert (total["genRequests"], total["genMs"], total["genTokens"]) == (5, 6000, 300)
        assert total["msPerOutputToken"] == 20  # 6,000 ms for 300 tokens
        assert total["outputTokensPerSecond"] == 50

    # An hour ingested before speed was counted has none of it: said, not guessed.
    monkeypatch.setattr(rollups, "speed_increments", lambda record: {})
    ingest_record(speed_record("speedy", stream=True, ttft_ms=900, latency_ms=1000))
    total = summarize(read_rollups("project", "speedy", HOUR, HOUR))
    assert (total["requests"], total["speedMissing"], total["ttftCount"]) == (7, 1, 4)


def test_hostile_timings_and_usage_end_as_counted_records(audit_bucket, audit_table):
    """Numbers no serving host writes (a writer not ours) cost the record its TTFT, never
    its audit: each is stored and counted, none fails the ingest."""
    plain = speed_record("hostile", stream=True, ttft_ms=50, latency_ms=500, usage=None)
    bodies = [
        *(
            json.dumps({**speed_record("hostile", stream=True, latency_ms=500), "ttftMs": ttft})
            for ttft in ("1e100", "-5", "NaN", "Infinity", "1e999")
        ),
        json.dumps(speed_record("hostile", latency_ms=500, usage=tokens(10**30))),
        json.dumps(plain),  # a stream without usage: its TTFT counts, no generation
    ]
    keys = []
    for n, body in enumerate(bodies):
        # json.dumps quotes the numbers above: unquoted, they are what a hostile writer sends.
        body = re.sub(r'"ttftMs": "([^"]+)"', r'"ttftMs": \1', body)
        keys.append(f"logs/2026/11/27/hostile-{n}.json")
        put_body(audit_bucket, keys[-1], body.encode())

    event = {"Records": [s3_event(audit_bucket, key)["Records"][0] for key in keys]}
    assert lambda_handler(event, None) == {"ingested": 7, "duplicates": 0, "ignored": 0}

    total = summarize(read_rollups("project", "hostile", HOUR, HOUR))
    assert (total["requests"], total["ttftUnusable"], total["ttftCount"]) == (7, 5, 1)
    assert (total["ttftNone"], total["speedMissing"], total["genRequests"]) == (1, 0, 0)
    assert total["msPerOutputToken"] is None and total["outputTokensPerSecond"] is None
    assert get_item(plain["requestId"])["ttftMs"] == 50
