import importlib
import json
import uuid
from datetime import UTC, datetime

import pytest

from centralllm import aws
from centralllm.audit import ingest, rollups
from centralllm.audit.contract import InvalidRecord, dumps, validate_record
from centralllm.audit.ingest import IngestError
from centralllm.audit.items import get_item
from centralllm.audit.redaction import RedactionRulesError
from centralllm.audit.rollups import read_rollups, rollup_id, summarize
from centralllm.audit.table import ROLLUP_SHARDS, shard_of
from centralllm.audit.tests.conftest import make_record, put_body, put_record, s3_event
from llm_audit_ingest import handler
from llm_audit_ingest.handler import lambda_handler


def project_total(project: str) -> dict:
    hour = datetime(2026, 11, 27, 5, tzinfo=UTC)  # make_record's hour
    return summarize(read_rollups("project", project, hour, hour))


def log_lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]


def test_good_record_is_written_and_logged(audit_bucket, audit_table, capsys):
    record = make_record(project="handler-good")
    key = put_record(audit_bucket, record)

    result = lambda_handler(s3_event(audit_bucket, key), None)

    assert result == {"ingested": 1, "duplicates": 0, "ignored": 0}
    item = get_item(record["requestId"])
    assert item["project"] == "handler-good"
    assert item["recordKey"] == key
    assert item["totalTokens"] == 21
    (line,) = log_lines(capsys)
    assert line["event"] == "audit_ingested"
    assert line["requestId"] == record["requestId"]
    assert line["key"] == key


def test_the_same_event_twice_counts_once(audit_bucket, audit_table, capsys):
    record = make_record(project="handler-twice")
    event = s3_event(audit_bucket, put_record(audit_bucket, record))

    first = lambda_handler(event, None)
    second = lambda_handler(event, None)

    assert first["ingested"] == 1
    assert second == {"ingested": 0, "duplicates": 1, "ignored": 0}
    assert project_total("handler-twice")["requests"] == 1
    assert [line["event"] for line in log_lines(capsys)] == ["audit_ingested", "audit_duplicate"]


def test_malformed_json_raises_with_the_key(audit_bucket, audit_table):
    key = "logs/2026/11/27/broken.json"
    put_body(audit_bucket, key, b'{"schemaVersion": 1, "requestId": ')

    with pytest.raises(IngestError, match=r"logs/2026/11/27/broken\.json: .*not valid JSON"):
        lambda_handler(s3_event(audit_bucket, key), None)


def test_missing_fields_are_named(audit_bucket, audit_table):
    record = make_record()
    del record["user"], record["latencyMs"]
    key = f"logs/2026/11/27/{record['requestId']}.json"
    put_body(audit_bucket, key, json.dumps(record).encode())

    with pytest.raises(IngestError, match="missing fields user, latencyMs"):
        lambda_handler(s3_event(audit_bucket, key), None)
    assert get_item(record["requestId"]) is None


def test_unknown_schema_version_is_refused(audit_bucket, audit_table):
    record = {**make_record(), "schemaVersion": 7}
    key = f"logs/2026/11/27/{record['requestId']}.json"
    put_body(audit_bucket, key, dumps(record))

    with pytest.raises(
        IngestError, match=r"unknown schema version 7 \(this ingest understands 1\)"
    ):
        lambda_handler(s3_event(audit_bucket, key), None)


def test_a_missing_object_is_reported(audit_bucket, audit_table):
    with pytest.raises(
        IngestError, match=r"logs/gone\.json: cannot read the audit record: NoSuchKey"
    ):
        lambda_handler(s3_event(audit_bucket, "logs/gone.json"), None)


def test_a_long_prompt_is_cut_to_the_preview_limit(audit_bucket, audit_table, monkeypatch):
    monkeypatch.setenv("MAX_PREVIEW_CHARS", "100")
    record = make_record(prompt="p" * 250, completion="short")
    lambda_handler(s3_event(audit_bucket, put_record(audit_bucket, record)), None)

    item = get_item(record["requestId"])
    assert item["promptPreview"] == "p" * 100
    assert item["promptTruncated"] is True
    assert item["promptChars"] == 250
    assert item["completionPreview"] == "short"
    assert item["completionTruncated"] is False


def test_only_the_preview_is_redacted_and_a_secret_across_its_end_goes_whole(
    audit_bucket, audit_table, monkeypatch
):
    monkeypatch.setenv("MAX_PREVIEW_CHARS", "100")
    monkeypatch.setenv("REDACTION_RULES", '["email"]')
    # A megabyte crafted for the rules costs a preview: only its window is looked at.
    prompt = "x" * 90 + " ann.smith@example.com " + "a" * 1_000_000 + " bob@example.com"
    record = make_record(prompt=prompt)
    lambda_handler(s3_event(audit_bucket, put_record(audit_bucket, record)), None)

    item = get_item(record["requestId"])
    assert item["promptPreview"] == "x" * 90 + " [redacted"
    assert item["promptTruncated"] is True
    assert item["redactions"] == {"email": 1}


def test_the_default_preview_limit_is_2048(audit_bucket, audit_table):
    record = make_record(prompt="x" * 5000)
    lambda_handler(s3_event(audit_bucket, put_record(audit_bucket, record)), None)

    item = get_item(record["requestId"])
    assert len(item["promptPreview"]) == 2048
    assert item["promptTruncated"] is True


def test_previews_are_redacted_and_the_rules_that_fired_recorded(
    audit_bucket, audit_table, monkeypatch
):
    monkeypatch.setenv(
        "REDACTION_RULES", '["email", "card", {"name": "ticket", "pattern": "TCK-\\\\d+"}]'
    )
    monkeypatch.setenv("MAX_PREVIEW_CHARS", "60")
    prompt = "mail ann@example.com or bob@example.org about TCK-42, card 4111 1111 1111 1111"
    record = make_record(prompt=prompt, completion="x" * 50 + " cid@example.com")
    key = put_record(audit_bucket, record)
    lambda_handler(s3_event(audit_bucket, key), None)

    item = get_item(record["requestId"])
    assert item["promptPreview"] == "mail [redacted:email] or [redacted:email] about [redacted:ti"
    # Redacted before the cut: the address across it leaves nothing behind.
    assert item["completionPreview"] == "x" * 50 + " [redacted"
    assert item["redactions"] == {"email": 3, "ticket": 1, "card": 1}
    assert item["promptChars"] == len(prompt)  # the record's lengths, as before
    stored = aws.client("s3").get_object(Bucket=audit_bucket, Key=key)["Body"].read()
    assert validate_record(stored)["prompt"] == prompt  # the S3 object is left as it was

    plain = make_record(prompt="no secrets here")
    lambda_handler(s3_event(audit_bucket, put_record(audit_bucket, plain)), None)
    assert "redactions" not in get_item(plain["requestId"])


def test_a_bad_rule_set_stops_the_lambda_at_start(monkeypatch):
    monkeypatch.setenv("REDACTION_RULES", '[{"name": "ticket", "pattern": "TCK-("}]')
    with pytest.raises(
        RedactionRulesError, match=r"REDACTION_RULES: rule 'ticket': RE2 cannot take"
    ):
        importlib.reload(handler)
    monkeypatch.delenv("REDACTION_RULES")
    importlib.reload(handler)


@pytest.mark.parametrize("request_id", ["req with space", "req+plus", "req%percent&amp"])
def test_url_encoded_keys_are_decoded(audit_bucket, audit_table, request_id):
    record = make_record(request_id=request_id)
    key = put_record(audit_bucket, record)
    event = s3_event(audit_bucket, key)
    assert event["Records"][0]["s3"]["object"]["key"] != key  # it really is encoded

    assert lambda_handler(event, None)["ingested"] == 1
    assert get_item(request_id)["recordKey"] == key


def test_the_s3_test_event_is_ignored(audit_table):
    event = {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2026-11-27T05:09:09.000Z",
        "Bucket": "central-llm-audit",
    }
    assert lambda_handler(event, None) == {"ingested": 0, "duplicates": 0, "ignored": 1}


def test_one_bad_object_does_not_stop_the_others(audit_bucket, audit_table):
    good = make_record()
    event = s3_event(audit_bucket, put_record(audit_bucket, good))
    event["Records"] += s3_event(audit_bucket, "logs/missing.json")["Records"]

    with pytest.raises(IngestError, match=r"logs/missing\.json"):
        lambda_handler(event, None)
    assert get_item(good["requestId"]) is not None


def test_deep_nesting_is_rejected_alone(audit_bucket, audit_table):
    """JSON nested deeper than Python's recursion limit once raised RecursionError, which
    stopped the rest of the event (issue 20, item 7)."""
    deep = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    put_body(audit_bucket, "logs/2026/11/27/deep.json", deep)
    good = make_record()
    event = s3_event(audit_bucket, "logs/2026/11/27/deep.json")
    event["Records"] += s3_event(audit_bucket, put_record(audit_bucket, good))["Records"]

    with pytest.raises(IngestError, match=r"deep\.json: invalid audit record: nested too deeply"):
        lambda_handler(event, None)
    assert get_item(good["requestId"]) is not None


def test_an_unexpected_error_rejects_its_record_alone(audit_bucket, audit_table, monkeypatch):
    good, bad = make_record(), make_record()
    ingest_record = ingest.ingest_record

    def bug_for_one(record: dict, **kwargs) -> bool:
        if record["requestId"] == bad["requestId"]:
            raise ZeroDivisionError("a bug")
        return ingest_record(record, **kwargs)

    monkeypatch.setattr(ingest, "ingest_record", bug_for_one)
    event = s3_event(audit_bucket, put_record(audit_bucket, bad))
    event["Records"] += s3_event(audit_bucket, put_record(audit_bucket, good))["Records"]
    with pytest.raises(IngestError, match="ZeroDivisionError: a bug"):
        lambda_handler(event, None)
    assert get_item(good["requestId"]) is not None


def fill_nearly_full(table: str, item_id: str, hour: str, room: int) -> None:
    """The rollup item ``item_id`` at ``hour`` as a caller with thousands of distinct users
    would leave it: ``room`` bytes under DynamoDB's 400 KB item limit (as DynamoDB counts)."""
    client = aws.client("dynamodb")
    size = 400 * 1024
    while True:  # the largest item DynamoDB takes, to within 64 bytes
        item = {"id": {"S": item_id}, "createdAt": {"S": hour}, "pad": {"S": "u" * size}}
        try:
            client.put_item(TableName=table, Item=item)
            break
        except client.exceptions.ClientError:
            size -= 64
    item["pad"] = {"S": "u" * (size - room)}
    client.put_item(TableName=table, Item=item)


def test_a_rollup_item_too_large_to_grow_never_refuses_the_record(audit_bucket, audit_table):
    """Every distinct user became an attribute of the project's hourly rollup, in the record's
    own transaction: once the item neared 400 KB, the project's records were refused there
    (issue 20, item 4). Now the breakdown is folded into "(other)" and the record goes."""
    project = f"crowded-{uuid.uuid4().hex[:8]}"
    record = make_record(project=project, user="u" * 256)
    shard = shard_of(record["requestId"], ROLLUP_SHARDS)
    fill_nearly_full(audit_table, rollup_id("project", project, shard), "2026-11-27T05", 300)

    lambda_handler(s3_event(audit_bucket, put_record(audit_bucket, record)), None)

    assert get_item(record["requestId"]) is not None
    totals = project_total(project)
    assert totals["requests"] == 1
    assert totals["breakdowns"]["user"] == {"(other)": 1}


def test_a_raw_key_that_is_not_the_records_own_is_refused():
    record = make_record()
    other = {**record, "rawKey": "raw/2026/11/27/someone-else.json"}
    with pytest.raises(InvalidRecord, match=r"rawKey 'raw/2026/11/27/someone-else\.json' is not"):
        validate_record(other)


def test_invalid_record_messages_read_well():
    with pytest.raises(InvalidRecord, match="field status must be an integer, got true"):
        validate_record({**make_record(), "status": True})


def test_one_item_per_request_id_whatever_its_created_at(audit_bucket, audit_table, capsys):
    first = make_record(project="handler-once")
    again = make_record(  # the same request, written again a second later
        request_id=first["requestId"],
        project="handler-once",
        created_at=datetime(2026, 11, 27, 5, 9, 10, 123000, tzinfo=UTC),
    )
    again_key = f"logs/2026/11/27/{first['requestId']}-again.json"
    put_body(audit_bucket, again_key, dumps(again))
    event = s3_event(audit_bucket, put_record(audit_bucket, first))
    event["Records"] += s3_event(audit_bucket, again_key)["Records"]

    assert lambda_handler(event, None) == {"ingested": 1, "duplicates": 1, "ignored": 0}
    assert project_total("handler-once")["requests"] == 1
    items = aws.client("dynamodb").query(
        TableName=audit_table,
        KeyConditionExpression="id = :id",
        ExpressionAttributeValues={":id": {"S": first["requestId"]}},
    )["Items"]
    assert len([item for item in items if item["createdAt"]["S"][:1].isdigit()]) == 1
    assert get_item(first["requestId"])["createdAt"] == first["createdAt"]


def test_the_same_id_with_other_content_is_refused_and_the_first_kept(
    audit_bucket, audit_table, capsys
):
    first = make_record(project="handler-conflict", status=200)
    other = make_record(request_id=first["requestId"], project="handler-conflict", status=500)
    lambda_handler(s3_event(audit_bucket, put_record(audit_bucket, first)), None)
    other_key = f"logs/2026/11/27/{first['requestId']}-other.json"
    put_body(audit_bucket, other_key, dumps(other))

    with pytest.raises(IngestError, match="was ingested before with other content"):
        lambda_handler(s3_event(audit_bucket, other_key), None)
    assert get_item(first["requestId"])["status"] == 200
    assert project_total("handler-conflict")["requests"] == 1
    assert log_lines(capsys)[-1]["event"] == "audit_conflict"


def test_a_record_dynamodb_refuses_is_rejected_alone(audit_bucket, audit_table, capsys):
    good = [make_record(project="handler-shape") for _ in range(2)]
    # Valid by the contract, but an item over DynamoDB's 400 KB: DynamoDB refuses its shape.
    huge = make_record(project="handler-shape")
    huge["deployment"]["host"] = "h" * 450_000
    event = {"Records": []}
    for record in (good[0], huge, good[1]):
        event["Records"] += s3_event(audit_bucket, put_record(audit_bucket, record))["Records"]

    with pytest.raises(IngestError, match="DynamoDB refused the record"):
        lambda_handler(event, None)
    assert all(get_item(record["requestId"]) for record in good)
    assert get_item(huge["requestId"]) is None
    assert project_total("handler-shape")["requests"] == 2
    rejected = [line for line in log_lines(capsys) if line["event"] == "audit_rejected"]
    assert len(rejected) == 1 and huge["requestId"] in rejected[0]["error"]


def test_an_overlong_header_value_is_refused_by_the_contract(audit_bucket, audit_table):
    record = {**make_record(), "user": "u" * 257}  # as a writer that skipped the check would
    with pytest.raises(IngestError, match=r"user \(x-llm-user\) is 257 bytes: at most 256"):
        lambda_handler(s3_event(audit_bucket, put_record(audit_bucket, record)), None)


def test_a_rollup_counts_at_most_its_cap_of_values_the_rest_as_other(audit_table, monkeypatch):
    """Issue 20, item 4: each distinct user grew the project's rollup item, which every later
    record of that hour rewrites (a write unit per KB). Request ids land in one write shard,
    as a caller choosing them can make them."""
    monkeypatch.setattr(rollups, "BREAKDOWN_CAP", 3)
    project = f"capped-{uuid.uuid4().hex[:8]}"
    ids = (f"req-{uuid.uuid4().hex}" for _ in iter(int, 1))
    one_shard = (request_id for request_id in ids if shard_of(request_id, ROLLUP_SHARDS) == 0)
    users = ["u0", "u1", "u2", "u3", "u4", "u0", "u2"]
    for user in users:
        record = make_record(request_id=next(one_shard), project=project, user=user)
        assert ingest.ingest_record(record)
        assert get_item(record["requestId"]) is not None

    totals = project_total(project)
    assert totals["requests"] == len(users)
    assert totals["breakdowns"]["user"] == {"u0": 2, "u1": 1, "u2": 2, "(other)": 2}
    # The user's own rollups are not the project's: u4's counts its project as usual.
    hour = datetime(2026, 11, 27, 5, tzinfo=UTC)
    u4 = summarize(read_rollups("user", "u4", hour, hour))
    assert u4["breakdowns"]["project"][project] == 1
