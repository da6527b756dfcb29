import json
import os
import signal
import subprocess
import sys
import time
from urllib.parse import unquote_plus

import pytest
from django.core.management import call_command

from centralllm import aws
from centralllm.audit.items import get_item
from centralllm.audit.tests.conftest import make_record, put_body, put_record
from devtools.services import ROOT
from devtools.testing import unique
from llm_audit_ingest import local
from llm_audit_ingest.local import (
    consume,
    ensure_local_notification,
    ensure_queue,
)


@pytest.fixture
def queues(monkeypatch, audit_bucket) -> dict[str, str]:
    names = {"queue": unique("llm-audit-ingest-local"), "dlq": unique("llm-audit-dlq")}
    monkeypatch.setenv("LOCAL_INGEST_QUEUE", names["queue"])
    monkeypatch.setenv("DLQ_NAME", names["dlq"])
    monkeypatch.setenv("INGEST_LOG_GROUP", f"/aws/lambda/{unique('llm-audit-ingest')}")
    urls = {
        "queue": ensure_local_notification(audit_bucket, names["queue"]),
        "dlq": ensure_queue(names["dlq"]),
    }
    yield urls
    for url in urls.values():
        aws.client("sqs").delete_queue(QueueUrl=url)


def dead_letters(url: str) -> list[dict]:
    return (
        aws.client("sqs")
        .receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=1
        )
        .get("Messages", [])
    )


def test_a_put_object_reaches_dynamodb_through_sqs(audit_bucket, audit_table, queues):
    record = make_record(request_id="local path+1")
    put_record(audit_bucket, record)
    put_body(audit_bucket, "elsewhere/not-audit.json", b"{}")  # outside logs/: no event

    handled = consume(once=True, retry_delays=(0, 0))

    assert handled == 2  # moto's s3:TestEvent, then the record
    assert get_item("local path+1")["recordKey"] == "logs/2026/11/27/local path+1.json"
    assert dead_letters(queues["dlq"]) == []
    # The handler's log lines reach its CloudWatch Logs group, as Lambda's would.
    events = aws.client("logs").filter_log_events(logGroupName=os.environ["INGEST_LOG_GROUP"])
    lines = [json.loads(event["message"]) for event in events["events"]]
    assert {"event": "audit_ingested", "requestId": "local path+1"}.items() <= lines[-1].items()


def test_a_poisoned_object_ends_in_the_dlq_after_three_attempts(
    audit_bucket, audit_table, queues, capsys
):
    put_body(audit_bucket, "logs/2026/11/27/poison.json", b"not json at all")

    consume(once=True, retry_delays=(0, 0))

    (letter,) = dead_letters(queues["dlq"])
    reason = letter["MessageAttributes"]["ErrorMessage"]["StringValue"]
    assert "logs/2026/11/27/poison.json: invalid audit record: not valid JSON" in reason
    event = json.loads(letter["Body"])
    assert unquote_plus(event["Records"][0]["s3"]["object"]["key"]) == "logs/2026/11/27/poison.json"
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    attempts = [line["attempt"] for line in logged if line["event"] == "audit_delivery_failed"]
    assert attempts == [1, 2, 3]
    # the event is gone from the ingest queue
    assert aws.client("sqs").receive_message(QueueUrl=queues["queue"]).get("Messages") is None


def test_the_command_drains_the_queue(audit_bucket, audit_table, queues):
    record = make_record()
    put_record(audit_bucket, record)

    call_command("consume_audit_events", "--once")

    assert get_item(record["requestId"]) is not None


@pytest.mark.slow
def test_the_command_runs_until_sigterm(audit_bucket, audit_table, queues):
    command = subprocess.Popen(
        [sys.executable, "manage.py", "consume_audit_events"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert command.stdout.readline().startswith("consuming audit events from")
        record = make_record()
        put_record(audit_bucket, record)
        deadline = time.monotonic() + 20
        while get_item(record["requestId"]) is None:
            assert time.monotonic() < deadline, "the running consumer never ingested the record"
            time.sleep(0.2)

        command.send_signal(signal.SIGTERM)
        assert command.wait(timeout=15) == 0
        assert "handled 2 audit events" in command.stdout.read()
    finally:
        command.kill()
        command.wait()


def test_events_are_handled_concurrently_each_logging_its_own_lines(
    audit_bucket, audit_table, queues, monkeypatch
):
    monkeypatch.setenv("LOCAL_INGEST_CONCURRENCY", "4")
    in_flight, most = [], []
    real = local.lambda_handler

    def watched(event, context):
        in_flight.append(1)
        most.append(len(in_flight))
        time.sleep(0.2)  # as a handler waiting on S3 and DynamoDB would
        try:
            return real(event, context)
        finally:
            in_flight.pop()

    monkeypatch.setattr(local, "lambda_handler", watched)
    records = [make_record() for _ in range(8)]
    for record in records:
        put_record(audit_bucket, record)

    handled = consume(once=True, retry_delays=(0, 0))

    assert handled == 9  # moto's s3:TestEvent and the eight records
    assert max(most) > 1
    assert all(get_item(record["requestId"]) for record in records)
    events = aws.client("logs").filter_log_events(logGroupName=os.environ["INGEST_LOG_GROUP"])
    logged = [json.loads(event["message"]) for event in events["events"]]
    ingested = sorted(line["requestId"] for line in logged if line["event"] == "audit_ingested")
    assert ingested == sorted(record["requestId"] for record in records)  # each line once
