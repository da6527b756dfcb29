"""The audit trail's completeness, dead letters and redrive, against the local AWS: failures
injected into the real ingest reach the dead-letter queue, the day's check finds exactly the
missing records, and a redrive after the fix makes the day complete without counting any
record twice."""

import json
import os
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from botocore.awsrequest import AWSResponse
from django.core.management import CommandError, call_command
from django.urls import reverse
from rq import Queue

from audit_explorer import audit_runs, completeness, dead_letters
from audit_explorer.models import AuditDay, DeadLetter
from centralllm import aws
from centralllm.audit import ingest, rollups
from centralllm.audit.contract import dumps, record_key
from centralllm.audit.items import item_from_record, serialize
from centralllm.audit.table import ROLLUP_SHARDS, shard_of
from centralllm.audit.tests.conftest import make_record
from devtools.testing import unique
from llm_audit_ingest import local as local_ingest
from llm_audit_ingest.handler import lambda_handler
from provisioning import jobs, runs
from provisioning.models import Environment, Run
from provisioning.resources.base import Context

DAY = date(2026, 11, 20)


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(DAY.year, DAY.month, DAY.day, hour, minute, 7, 250000, tzinfo=UTC)


def upload(ctx: Context, record: dict | None = None, *, key: str = "", body: bytes = b"") -> str:
    key = key or record_key(record)
    ctx.client("s3").put_object(Bucket=ctx.name("AuditBucket"), Key=key, Body=body or dumps(record))
    return key


def deliver(ctx: Context, key: str) -> bool:
    """The object's S3 event through the local Lambda stand-in: three attempts, then the DLQ."""
    event = dead_letters.s3_event(ctx.name("AuditBucket"), [key])
    message = {"Body": json.dumps(event), "MessageId": str(uuid.uuid4())}
    dlq_url = dead_letters.queue_url(ctx)
    return local_ingest.deliver(
        message, handler=lambda_handler, dlq_url=dlq_url, retry_delays=(0, 0)
    )


def throttle(request_id: str):
    """DynamoDB throttles every transaction that writes ``request_id``, as AWS answers one
    (TransactionCanceledException with a ThrottlingError reason); returns the undo."""
    client = aws.client("dynamodb")

    def refuse(params, **_):
        if request_id.encode() not in params["body"]:
            return None
        reasons = [
            {"Code": "None"},
            {
                "Code": "ThrottlingError",
                "Message": "Throughput exceeds the current capacity of your table or index.",
            },
        ]
        parsed = {
            "Error": {
                "Code": "TransactionCanceledException",
                "Message": "Transaction cancelled, please refer cancellation reasons for"
                " specific reasons [None, ThrottlingError]",
            },
            "CancellationReasons": reasons,
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }
        return AWSResponse("https://dynamodb", 400, {}, None), parsed

    client.meta.events.register(
        "before-call.dynamodb.TransactWriteItems", refuse, unique_id="throttle"
    )
    return lambda: client.meta.events.unregister(
        "before-call.dynamodb.TransactWriteItems", unique_id="throttle"
    )


def run(ctx: Context, kind: str, actor, **parameters) -> Run:
    started = runs.start(ctx.environment, kind, actor=actor, parameters=parameters, enqueue=False)
    jobs.execute(started.pk)
    started.refresh_from_db()
    return started


def test_failed_ingests_are_found_missing_and_a_redrive_after_the_fix_completes_the_day(
    trail, monkeypatch, operator
):
    good = [make_record(project="alpha", created_at=at(hour)) for hour in (3, 3, 4, 9)]
    beta = make_record(project="beta", created_at=at(5))
    throttled = make_record(project="alpha", created_at=at(6))
    malformed = f"logs/{DAY:%Y/%m/%d}/{unique('bad')}.json"

    # A bug for one project, and a write DynamoDB keeps throttling.
    original = ingest.ingest_record

    def buggy(record, **options):
        if record["project"] == "beta":
            raise RuntimeError("bug: beta's records break the ingest")
        return original(record, **options)

    monkeypatch.setattr(ingest, "ingest_record", buggy)
    unthrottle = throttle(throttled["requestId"])
    delivered = [deliver(trail, upload(trail, record)) for record in [*good, beta, throttled]]
    delivered.append(deliver(trail, upload(trail, key=malformed, body=b"{not json")))
    unthrottle()
    assert delivered == [True] * 4 + [False] * 3

    checked = run(trail, "check", operator, day=str(DAY))
    assert checked.status == Run.Status.SUCCEEDED, checked.explanation
    day = AuditDay.objects.get(environment=trail.environment, day=DAY)
    assert not day.complete
    assert (day.objects_count, day.items_count, day.rollup_count) == (7, 4, 4)
    missing = {row["key"]: row["deadLettered"] for row in day.details["missing"]}
    assert missing == {record_key(beta): True, record_key(throttled): True, malformed: True}
    assert day.details["extra_count"] == day.details["double_count"] == 0
    assert day.details["miscounted_hours"] == []
    assert "3 missing (3 dead-lettered)" in checked.explanation

    letters = {
        letter.keys[0]: letter
        for letter in DeadLetter.objects.filter(environment=trail.environment)
    }
    assert set(letters) == set(missing)
    assert "beta's records break the ingest" in letters[record_key(beta)].error
    assert "ThrottlingError" in letters[record_key(throttled)].error
    assert "invalid audit record" in letters[malformed].error
    assert {letter.attempts for letter in letters.values()} == {3}

    # Redriving before the fix fails again, and the events stay waiting.
    failed = run(trail, "redrive", operator, letters=[letters[record_key(beta)].pk])
    assert failed.status == Run.Status.FAILED
    assert "1 failed again" in failed.explanation
    assert DeadLetter.objects.get(pk=letters[record_key(beta)].pk).status == "waiting"

    # The fix; the malformed record can never be ingested, so it is discarded with a reason.
    monkeypatch.setattr(ingest, "ingest_record", original)
    assert (
        audit_runs.discard([letters[malformed]], "truncated by a disk-full host", actor=operator)
        == 1
    )
    redriven = run(trail, "redrive", operator, all=True)
    assert redriven.status == Run.Status.SUCCEEDED, redriven.explanation
    assert redriven.result == {"redriven": 2, "failed": 0}

    day.refresh_from_db()
    assert day.complete, day.details
    assert (day.objects_count, day.items_count, day.rollup_count) == (7, 6, 6)
    assert day.details["discarded"] == [
        {"requestId": malformed.rsplit("/", 1)[1][:-5], "key": malformed}
    ]
    statuses = set(
        DeadLetter.objects.filter(environment=trail.environment).values_list("status", flat=True)
    )
    assert statuses == {"redriven", "discarded"}

    # Redriving an ingested record again counts nothing twice.
    again = dead_letters.redrive(
        trail, dead_letters.s3_event(trail.name("AuditBucket"), [record_key(beta)])
    )
    assert again["duplicates"] == 1
    assert run(trail, "check", operator, day=str(DAY)).status == Run.Status.SUCCEEDED
    day.refresh_from_db()
    assert day.complete and day.rollup_count == day.items_count == 6


def test_extra_items_double_items_and_miscounted_hours_are_listed(trail):
    kept = make_record(created_at=at(10))
    ingest.ingest_record(kept, key=upload(trail, kept))
    no_object = make_record(created_at=at(11))
    ingest.ingest_record(no_object)  # its object was never written (or deleted)
    # A second item of one request id, as written before request ids had guards: no rollup.
    second = item_from_record({**kept, "createdAt": "2026-11-20T12:00:00.000Z"})
    trail.client("dynamodb").put_item(TableName=trail.name("AuditTable"), Item=serialize(second))
    # The same request written again on the day after: one object more, kept once.
    rewritten = {**kept, "createdAt": "2026-11-21T00:00:01.000Z"}
    upload(trail, rewritten)

    check = completeness.check_day(trail, DAY, dead_lettered=set())
    assert [row["requestId"] for row in check.extra] == [no_object["requestId"]]
    assert [row["requestId"] for row in check.double] == [kept["requestId"]]
    assert check.miscounted_hours == [{"hour": "2026-11-20T12", "items": 1, "rollups": 0}]
    assert check.missing == [] and not check.complete

    next_day = completeness.check_day(trail, DAY + timedelta(days=1), dead_lettered=set())
    assert next_day.duplicate_objects == [
        {
            "requestId": kept["requestId"],
            "key": record_key(rewritten),
            "keptCreatedAt": kept["createdAt"],
        }
    ]
    assert next_day.missing == [] and next_day.complete


def test_an_hour_that_counted_a_status_as_other_is_checked_by_every_status(trail, monkeypatch):
    """Before a full breakdown folded alone, a flood of project names sent a status class's
    statuses to "(other)" too; the check then stopped on it (int("(other)"))."""
    monkeypatch.setattr(rollups, "BREAKDOWN_CAP", 1)
    ids = (unique("req") for _ in iter(int, 1))
    one_shard = (request_id for request_id in ids if shard_of(request_id, ROLLUP_SHARDS) == 0)
    records = [
        make_record(request_id=next(one_shard), project=project, status=status, created_at=at(7))
        for project, status in (("first", 200), ("second", 201))
    ]
    with monkeypatch.context() as before:  # as the ingest folded a whole item before
        before.setattr(ingest, "full_breakdowns", lambda *_: set())
        for record in records:
            assert ingest.ingest_record(record, key=upload(trail, record))
    hours = rollups.read_rollups("statusClass", "2xx", at(7), at(7))
    assert hours[0]["breakdowns"]["status"] == {"200": 1, "(other)": 1}

    check = completeness.check_day(trail, DAY, dead_lettered=set())
    assert check.complete and check.probed_statuses
    assert (check.objects, check.items) == (2, 2)


def test_the_pages_list_redrive_and_refuse_bad_input(trail, client, operator, viewer):
    record = make_record(created_at=at(8), prompt="what only raw readers may see")
    ingest_key = upload(trail, record)
    trail.client("sqs").send_message(
        QueueUrl=dead_letters.queue_url(trail),
        MessageBody=json.dumps(dead_letters.s3_event(trail.name("AuditBucket"), [ingest_key])),
        MessageAttributes={"ErrorMessage": {"DataType": "String", "StringValue": "boom"}},
    )
    name = trail.environment.name
    client.force_login(operator)
    page = client.get(reverse("audit_explorer:dead-letters", args=[name])).content.decode()
    assert "1 in the queue, not collected yet" in page
    client.post(reverse("audit_explorer:dead-letter-collect", args=[name]))
    page = client.get(reverse("audit_explorer:dead-letters", args=[name])).content.decode()
    assert ingest_key in page and "boom" in page
    letter = DeadLetter.objects.get(environment=trail.environment)

    refused = client.post(
        reverse("audit_explorer:dead-letter-discard", args=[name]),
        {"letter": [letter.pk], "reason": " "},
        follow=True,
    )
    assert "Say why these events are discarded." in refused.content.decode()
    assert DeadLetter.objects.get(pk=letter.pk).status == "waiting"
    nothing = client.post(reverse("audit_explorer:dead-letter-redrive", args=[name]), follow=True)
    assert "Select the events to redrive" in nothing.content.decode()
    assert (
        client.get(reverse("audit_explorer:audit-day", args=[name, "yesterday"])).status_code == 404
    )
    future = client.post(
        reverse("audit_explorer:audit-day-check", args=[name, str(audit_runs.today())]), follow=True
    )
    assert "is not over yet" in future.content.decode()

    shown = client.get(
        reverse("audit_explorer:dead-letter", args=[name, letter.pk]), {"record": ingest_key}
    )
    assert "what only raw readers may see" in shown.content.decode()  # the record, from S3

    started = client.post(
        reverse("audit_explorer:dead-letter-redrive", args=[name]), {"letter": [letter.pk]}
    )
    redrive = Run.objects.get(kind="redrive", environment=trail.environment)
    assert started.url == reverse("provisioning:run", args=[redrive.pk])

    client.force_login(viewer)
    assert client.get(reverse("audit_explorer:dead-letters", args=[name])).status_code == 200
    assert (
        client.post(
            reverse("audit_explorer:dead-letter-redrive", args=[name]), {"all": 1}
        ).status_code
        == 403
    )
    hidden = client.get(
        reverse("audit_explorer:dead-letter", args=[name, letter.pk]), {"record": ingest_key}
    )
    assert "what only raw readers may see" not in hidden.content.decode()


def test_the_nightly_check_takes_yesterday_in_each_standing_environment(trail, redis_conn):
    standing, destroyed = trail.environment, Environment.objects.create(name="gone", suffix="-g")
    for environment, kinds in ((standing, ["apply"]), (destroyed, ["apply", "destroy"])):
        for kind in kinds:
            Run.objects.create(
                environment=environment, kind=kind, status="succeeded", started_by_name="ann"
            )
    job = Queue("default", connection=redis_conn, is_async=False).enqueue(
        audit_runs.check_yesterday
    )
    [started] = job.return_value()
    check = Run.objects.get(pk=started)
    assert (check.environment, check.kind) == (standing, "check")
    assert check.started_by_name == "job: check_yesterday"
    assert check.parameters == {"day": str(audit_runs.today() - timedelta(days=1))}
    assert audit_runs.check_yesterday() == []  # one already waits for a worker


def test_a_days_missing_objects_are_ingested_in_one_action(trail, monkeypatch, operator):
    delivered, lost, failing = (make_record(created_at=at(hour)) for hour in (13, 14, 15))
    assert deliver(trail, upload(trail, delivered))
    upload(trail, lost)  # its S3 event never came (a notification switched off, say)
    original = ingest.ingest_record

    def bug(record, **options):
        raise RuntimeError("bug")

    monkeypatch.setattr(ingest, "ingest_record", bug)
    assert not deliver(trail, upload(trail, failing))
    monkeypatch.setattr(ingest, "ingest_record", original)
    run(trail, "check", operator, day=str(DAY))
    missing = AuditDay.objects.get(environment=trail.environment, day=DAY).details["missing"]
    assert {(row["requestId"], row["deadLettered"]) for row in missing} == {
        (lost["requestId"], False),
        (failing["requestId"], True),
    }

    redriven = run(trail, "redrive", operator, day=str(DAY))
    assert redriven.result == {"redriven": 2, "failed": 0}, redriven.explanation
    day = AuditDay.objects.get(environment=trail.environment, day=DAY)
    assert day.complete and day.items_count == day.rollup_count == 3
    letter = DeadLetter.objects.get(environment=trail.environment)
    assert (letter.status, letter.run) == ("redriven", redriven)


def test_the_local_ingest_takes_its_environments_lambda_settings(trail, monkeypatch):
    environment = trail.environment
    environment.audit_retention_days = 30
    environment.redaction_rules = '["email"]'
    environment.save()
    for name in ("TABLE_NAME", "AUDIT_RETENTION_DAYS", "REDACTION_RULES", "QUOTA_PERIOD"):
        monkeypatch.setenv(name, "")  # restored after the test
    monkeypatch.setenv("LOCAL_INGEST_QUEUE", unique("llm-audit-ingest-local"))
    monkeypatch.setenv("DLQ_NAME", trail.name("DlqName"))
    with pytest.raises(CommandError, match="There is no environment 'nope'"):
        call_command("consume_audit_events", "--once", "--environment", "nope")

    call_command("consume_audit_events", "--once", "--environment", environment.name)
    assert os.environ["TABLE_NAME"] == trail.name("AuditTable")
    assert os.environ["AUDIT_RETENTION_DAYS"] == "30"
    assert os.environ["REDACTION_RULES"] == '["email"]'
