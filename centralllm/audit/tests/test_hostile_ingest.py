"""Hostile objects in one S3 event through the ingest's Lambda handler, as property tests
(issue 20): any bytes, any JSON, JSON nested 100,000 deep, records with a field missing,
retyped or out of range, records DynamoDB refuses for their numbers, objects that are gone,
the same object twice and another record under a taken request id, beside valid records with
any Unicode in every field they allow (lone surrogates included, as JSON escapes).

Each object ends as an item in DynamoDB or rejected alone: its key in the ``IngestError``
that ends the event (Lambda's retries, then the dead-letter queue, as the local consumer does
them) and one log line saying why; never another exception, and every valid object of the
same event is stored, its rollups counted once however often the event is delivered.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from centralllm import aws
from centralllm.audit import contract
from centralllm.audit.contract import InvalidRecord, encodable, validate_record
from centralllm.audit.ingest import IngestError
from centralllm.audit.items import content_hash, get_item
from centralllm.audit.rollups import read_rollups, summarize
from centralllm.audit.tests.conftest import make_record, put_body, s3_event
from llm_audit_ingest import local
from llm_audit_ingest.handler import lambda_handler

SETTINGS = settings(
    deadline=None,
    derandomize=True,  # the same examples on every run, as in CI
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        # One bucket and table for all examples: every object and request id is new.
        HealthCheck.function_scoped_fixture,
    ],
)
HOUR = datetime(2026, 11, 27, 5, tzinfo=UTC)  # make_record's hour

SURROGATE = st.integers(0xD800, 0xDFFF).map(chr)
CHAR = st.one_of(st.characters(), SURROGATE)
TEXT = st.text(CHAR, max_size=30)
JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        TEXT,
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


def header_text(limit: int) -> st.SearchStrategy[str]:
    """A header value as records hold it: any text within the limit's UTF-8 bytes."""
    return st.one_of(
        st.text(max_size=limit // 4),
        st.text(st.characters(max_codepoint=0x7F), min_size=limit, max_size=limit),
    )


# The characters a request id may hold (no '/', no control characters), lone surrogates too.
ID_CHAR = CHAR.filter(lambda char: char != "/" and not ("\x00" <= char <= "\x1f" or char == "\x7f"))


@st.composite
def valid_records(draw, key_id: str) -> dict:
    """A record the contract accepts, with hostile text wherever it allows any."""
    prefix = draw(st.text(ID_CHAR, max_size=draw(st.sampled_from([8, 40, 180]))))
    if prefix.startswith("rollup#"):
        prefix = "x" + prefix
    error = draw(st.one_of(st.none(), st.fixed_dictionaries({"type": TEXT, "message": TEXT})))
    return make_record(
        request_id=f"{prefix}~{uuid.uuid4().hex[:12]}",
        project=draw(header_text(128)),
        user=draw(header_text(256)),
        request_type=draw(header_text(64)),
        api_key_id=key_id,
        model=draw(st.one_of(st.none(), TEXT)),
        stream=draw(st.booleans()),
        status=draw(st.integers(100, 599)),
        cancelled=draw(st.booleans()),
        latency_ms=draw(st.floats(0, 1e7)),
        error=error,
        prompt=draw(st.one_of(st.none(), TEXT, st.text(CHAR, min_size=2_000, max_size=3_000))),
        completion=draw(st.one_of(st.none(), TEXT)),
    )


def _without(record: dict, name: str) -> dict:
    return {field: value for field, value in record.items() if field != name}


# Ways to spoil a valid record; some spoil nothing (the contract then decides).
MUTATIONS = st.one_of(
    st.sampled_from(list(contract.FIELDS)).map(lambda name: lambda record: _without(record, name)),
    # Any field but the request id retyped (a valid id could be another example's).
    st.tuples(st.sampled_from([name for name in contract.FIELDS if name != "requestId"]), JSON).map(
        lambda change: lambda record: {**record, change[0]: change[1]}
    ),
    st.sampled_from(
        [
            {"schemaVersion": 2},
            {"schemaVersion": "1"},
            {"rawKey": "raw/2026/11/27/someone-else.json"},
            {"user": "u" * 257},
            {"project": "\u00e9" * 65},
            {"requestId": "a/b"},
            {"requestId": ""},
            {"requestId": "rollup#project#x"},
            {"requestId": "tab\there"},
            {"createdAt": "2026-02-30T00:00:00.000Z"},
            {"createdAt": "yesterday"},
            {"status": 99},
            {"status": 600},
            {"status": True},
            {"outcome": "maybe"},
            {"flags": ["hacked"]},
            {"flags": "untrusted_source"},
            {"latencyMs": -1},
            {"usage": {"promptTokens": "many"}},
            {"error": {"type": "x"}},
            {"deployment": None},
        ]
    ).map(lambda change: lambda record: {**record, **change}),
)
# Valid by the contract, but numbers DynamoDB cannot hold (38 digits, 1E-130 to 1E+126): an
# item it refuses, rejected alone.
OUT_OF_RANGE = st.sampled_from(
    [
        {"usage": {"promptTokens": 10**40, "completionTokens": 1, "totalTokens": 10**40}},
        {"latencyMs": 1e-200},
        {"latencyMs": 1e200},
    ]
)


@dataclass
class Entry:
    """One notification of the event: the object's key and what should become of it."""

    key: str
    fate: str  # stored, duplicate, rejected, ignored, or either (stored, or rejected alone)
    record: dict | None = None  # the record as the ingest reads it (surrogates replaced)


def _read_as_ingest(data: bytes) -> dict | None:
    """The record the ingest reads from ``data`` (lone surrogates replaced), or None."""
    try:
        return encodable(validate_record(data))
    except InvalidRecord:
        return None


KINDS = [
    "valid",
    "valid",
    "mutated",
    "mutated",
    "out_of_range",
    "bytes",
    "json",
    "deep",
    "surrogate",
    "gone",
    "again",
    "conflict",
    "removed",
]


@st.composite
def events(draw, bucket: str) -> tuple[dict, list[Entry], str]:
    """An S3 event naming hostile objects put to ``bucket``, what should become of each, and
    the API key id of its records (whose rollups count them)."""
    key_id = f"key-{uuid.uuid4().hex[:12]}"
    entries: list[Entry] = []
    notifications = []
    for kind in draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=6)):
        name = f"logs/2026/11/27/{kind}-{uuid.uuid4().hex}.json"
        body = None  # no object: gone
        either = False  # DynamoDB may refuse it: stored, or rejected alone
        earlier = [entry for entry in entries if entry.record is not None]
        if kind == "valid":
            body = contract.dumps(draw(valid_records(key_id)))
            name = contract.record_key(json.loads(body))
        elif kind == "mutated":
            body = contract.dumps(draw(MUTATIONS)(draw(valid_records(key_id))))
        elif kind == "out_of_range":
            body = contract.dumps({**draw(valid_records(key_id)), **draw(OUT_OF_RANGE)})
            either = True
        elif kind == "bytes":
            body = draw(st.binary(max_size=300))
        elif kind == "json":
            body = json.dumps(draw(JSON)).encode()
        elif kind == "deep":
            opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
            depth = draw(st.sampled_from([1_000, 100_000]))
            body = (opener * depth + "1" + closer * depth).encode()
        elif kind == "surrogate":  # lone surrogates as JSON escapes, from a writer not ours
            field = draw(st.sampled_from(["user", "project", "apiKeyId", "prompt", "model"]))
            body = json.dumps({**draw(valid_records(key_id)), field: "a\ud800"}).encode()
        elif kind == "again" and earlier:  # the same object again: S3 delivers at least once
            name = earlier[-1].key
        elif kind == "conflict" and earlier:  # a taken request id, other content
            first = earlier[0].record
            body = contract.dumps({**first, "status": 598 if first["status"] == 599 else 599})
        if body is not None:
            put_body(bucket, name, body)
        notification = s3_event(bucket, name)["Records"][0]
        if kind == "removed":
            notification["eventName"] = "ObjectRemoved:Delete"
            entries.append(Entry(name, "ignored"))
        elif kind == "again" and earlier:
            repeated = earlier[-1]
            fate = "duplicate" if repeated.fate == "stored" else repeated.fate
            entries.append(Entry(name, fate, repeated.record))
        else:
            entries.append(_fate(name, body, entries, either=either))
        notifications.append(notification)
    return {"Records": notifications}, entries, key_id


def _fate(name: str, body: bytes | None, earlier: list[Entry], *, either: bool) -> Entry:
    record = None if body is None else _read_as_ingest(body)
    if record is None:
        return Entry(name, "rejected")
    for other in earlier:
        if other.record is not None and other.record["requestId"] == record["requestId"]:
            same = content_hash(other.record) == content_hash(record)
            fate = "duplicate" if other.fate == "stored" else other.fate
            return Entry(name, fate if same else "rejected", record)
    return Entry(name, "either" if either else "stored", record)


def check_items(
    entries: list[Entry], error: str | None, key_id: str, bucket: str, *, all_named: bool = True
) -> None:
    """Every object stored or rejected as ``entries`` say; ``error`` names the rejected ones
    (all of them, or with ``all_named`` false only the first: a dead letter holds 1 KB)."""
    stored, refused = [], []
    for entry in entries:
        if entry.fate not in ("stored", "either"):
            continue
        item = get_item(entry.record["requestId"])
        if item is None and entry.fate == "either":
            refused.append(entry)
            continue
        assert item is not None, entry.key
        assert item["recordKey"] == entry.key
        for name in ("project", "user", "requestType", "apiKeyId", "status", "outcome", "model"):
            assert item.get(name) == entry.record[name], name
        assert item["promptChars"] == len(entry.record["prompt"] or "")
        stored.append(entry)
    rejected = [entry for entry in entries if entry.fate == "rejected"] + refused
    assert (error is not None) == bool(rejected)
    for entry in rejected if all_named else rejected[:1]:
        assert f"s3://{bucket}/{entry.key}" in error
    hours = read_rollups("apiKey", key_id, HOUR, HOUR)
    counted = summarize(hours)["requests"] if hours else 0
    mine = {entry.record["requestId"] for entry in stored if entry.record["apiKeyId"] == key_id}
    assert counted == len(mine), "each stored record counted once, none other"


def log_lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]


LOGGED = {
    "stored": {"audit_ingested"},
    "duplicate": {"audit_duplicate"},
    "rejected": {"audit_rejected", "audit_failed", "audit_conflict"},
    "either": {"audit_ingested", "audit_duplicate", "audit_rejected"},
}


@settings(SETTINGS, max_examples=40)
@given(data=st.data())
def test_every_object_of_an_event_is_stored_or_rejected_alone(
    audit_bucket, audit_table, capsys, monkeypatch, data
):
    monkeypatch.setenv("REDACTION_RULES", '["email", "api_key", "card"]')
    event, entries, key_id = data.draw(events(audit_bucket), label="event")
    capsys.readouterr()

    try:
        summary, error = lambda_handler(event, None), None
    except IngestError as exc:  # anything else fails the test
        summary, error = None, str(exc)

    check_items(entries, error, key_id, audit_bucket)
    lines = log_lines(capsys)
    created = [entry for entry in entries if entry.fate != "ignored"]
    assert [line["key"] for line in lines] == [entry.key for entry in created]
    for entry, line in zip(created, lines, strict=True):
        assert line["event"] in LOGGED[entry.fate], (entry, line)
    if summary is not None:
        assert summary == {
            "ingested": sum(line["event"] == "audit_ingested" for line in lines),
            "duplicates": sum(line["event"] == "audit_duplicate" for line in lines),
            "ignored": len(entries) - len(created),
        }


@pytest.fixture
def dead_letters(monkeypatch) -> str:
    monkeypatch.setenv("INGEST_LOG_GROUP", f"/aws/lambda/llm-audit-ingest-{uuid.uuid4().hex[:8]}")
    return local.ensure_queue(f"llm-audit-dlq-{uuid.uuid4().hex[:12]}")


@settings(SETTINGS, max_examples=12)
@given(data=st.data())
def test_an_event_with_bad_objects_is_retried_then_dead_lettered_and_counts_once(
    audit_bucket, audit_table, dead_letters, data
):
    """As the local consumer hands an event to the handler with Lambda's semantics: a try and
    two retries, then the dead-letter queue with the error; the valid objects are stored on
    the first try and the retries add nothing."""
    event, entries, key_id = data.draw(events(audit_bucket), label="event")
    message = {"Body": json.dumps(event), "MessageId": str(uuid.uuid4())}

    delivered = local.deliver(
        message, handler=lambda_handler, dlq_url=dead_letters, retry_delays=(0, 0)
    )

    sqs = aws.client("sqs")
    letters = sqs.receive_message(
        QueueUrl=dead_letters, MessageAttributeNames=["All"], MaxNumberOfMessages=10
    ).get("Messages", [])
    for letter in letters:
        sqs.delete_message(QueueUrl=dead_letters, ReceiptHandle=letter["ReceiptHandle"])
    assert len(letters) == (0 if delivered else 1)
    error = None
    if letters:
        assert json.loads(letters[0]["Body"]) == event
        error = letters[0]["MessageAttributes"]["ErrorMessage"]["StringValue"]
        assert len(error) <= local.MAX_DLQ_ERROR_CHARS
    # On the retries a stored record is a duplicate: nothing counted twice.
    check_items(entries, error, key_id, audit_bucket, all_named=False)
