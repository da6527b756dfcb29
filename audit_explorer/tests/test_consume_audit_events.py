"""The local ingest consumer outlives a destroy of its queue (`make run` keeps running)."""

import logging
import threading
import time

import pytest

from audit_explorer.management.commands import consume_audit_events
from centralllm import aws
from centralllm.audit.items import get_item
from centralllm.audit.tests.conftest import make_record, put_record
from devtools.testing import create_bucket, unique
from llm_audit_ingest import local as local_ingest


def _ingested(bucket: str, consumer: threading.Thread, deadline: float) -> None:
    record = make_record()
    put_record(bucket, record)
    while get_item(record["requestId"]) is None:
        assert consumer.is_alive() and time.monotonic() < deadline, "not ingested"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_queue_deleted_under_the_consumer_is_waited_for_until_an_apply_makes_it_again(
    audit_table, monkeypatch, caplog
):
    bucket, queue = create_bucket(unique("audit")), unique("ingest")
    monkeypatch.setenv("LOCAL_INGEST_QUEUE", queue)
    monkeypatch.setenv("DLQ_NAME", unique("dlq"))
    monkeypatch.setattr(consume_audit_events, "QUEUE_POLL_SECONDS", 0.2)
    url = local_ingest.ensure_local_notification(bucket, queue)
    stop = threading.Event()
    consumer = threading.Thread(
        target=consume_audit_events.consume_while_queue_exists, args=(stop,)
    )
    deadline = time.monotonic() + 60
    with caplog.at_level(logging.WARNING):
        consumer.start()
        try:
            _ingested(bucket, consumer, deadline)
            aws.client("sqs").delete_queue(QueueUrl=url)  # what a destroy does
            while "is gone" not in caplog.text:
                assert consumer.is_alive() and time.monotonic() < deadline, caplog.text
                time.sleep(0.1)
            local_ingest.ensure_local_notification(bucket, queue)  # what an apply does
            _ingested(bucket, consumer, deadline)
        finally:
            stop.set()
            consumer.join(20)
    assert f"The ingest queue {queue} is gone" in caplog.text
    assert not consumer.is_alive()
