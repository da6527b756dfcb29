"""The local stand-in for S3 → Lambda, which moto cannot run without Docker.

In local mode the audit bucket notifies an SQS queue instead (moto delivers those), and this
consumer hands each event to the very same ``lambda_handler`` with Lambda's asynchronous
semantics: a first try and two retries, then the event goes to the DLQ with the error, as
Lambda's own dead-letter queue receives it (message attributes RequestID, ErrorCode,
ErrorMessage). Like Lambda it handles several events at once (``LOCAL_INGEST_CONCURRENCY``
pollers), so demo traffic and benchmarks are not held to one event at a time.
"""

import io
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import Any

from centralllm import aws
from centralllm.audit.ingest import log_json
from llm_audit_ingest.handler import lambda_handler

DEFAULT_QUEUE = "llm-audit-ingest-local"
DEFAULT_DLQ = "llm-audit-dlq"
DEFAULT_LOG_GROUP = "/aws/lambda/llm-audit-ingest"
DEFAULT_CONCURRENCY = 4
# Lambda waits about one and then two minutes between attempts; locally seconds will do.
RETRY_DELAYS = (1.0, 2.0)
# Longer than all attempts together, so no one else receives a message being handled.
VISIBILITY_TIMEOUT = 60
# Lambda puts at most the first kilobyte of the error in the DLQ message.
MAX_DLQ_ERROR_CHARS = 1024

Handler = Callable[[dict, Any], Any]


def queue_name() -> str:
    return os.environ.get("LOCAL_INGEST_QUEUE") or DEFAULT_QUEUE


def dlq_name() -> str:
    return os.environ.get("DLQ_NAME") or DEFAULT_DLQ


def log_group() -> str:
    return os.environ.get("INGEST_LOG_GROUP") or DEFAULT_LOG_GROUP


def concurrency() -> int:
    return max(1, int(os.environ.get("LOCAL_INGEST_CONCURRENCY") or DEFAULT_CONCURRENCY))


class _ThreadStdout(io.TextIOBase):
    """``sys.stdout`` that each poller thread can capture for itself (``redirect_stdout``
    would swap it for every thread at once)."""

    def __init__(self, real) -> None:
        self.real = real
        self.captured = threading.local()

    def write(self, text: str) -> int:
        buffer = getattr(self.captured, "buffer", None)
        return (buffer or self.real).write(text)

    def flush(self) -> None:
        self.real.flush()


_lock = threading.Lock()


def _thread_stdout() -> _ThreadStdout:
    with _lock:
        if not isinstance(sys.stdout, _ThreadStdout):
            sys.stdout = _ThreadStdout(sys.stdout)
        return sys.stdout


@contextmanager
def log_lines_to_cloudwatch() -> Iterator[None]:
    """What the handler prints, also put to its CloudWatch Logs group as Lambda does, so
    that the validation's log check reads the same group locally as in AWS."""
    stdout, printed = _thread_stdout(), io.StringIO()
    stdout.captured.buffer = printed
    try:
        yield
    finally:
        stdout.captured.buffer = None
        lines = printed.getvalue().splitlines()
        stdout.write(printed.getvalue())
        if lines:
            _put_log_lines(lines)


_streams_made: set[tuple[str, str]] = set()


def _put_log_lines(lines: list[str]) -> None:
    logs, group = aws.client("logs"), log_group()
    stream = f"{time.strftime('%Y/%m/%d')}/[local]{os.getpid()}"
    if (group, stream) not in _streams_made:  # two calls saved on every later event
        for create in (
            lambda: logs.create_log_group(logGroupName=group),
            lambda: logs.create_log_stream(logGroupName=group, logStreamName=stream),
        ):
            with suppress(logs.exceptions.ResourceAlreadyExistsException):
                create()
        _streams_made.add((group, stream))
    now = int(time.time() * 1000)
    events = [{"timestamp": now, "message": line} for line in lines]
    logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)


def ensure_queue(name: str) -> str:
    """The queue's URL, creating it if needed (CreateQueue is idempotent)."""
    return aws.client("sqs").create_queue(QueueName=name)["QueueUrl"]


def ensure_local_notification(bucket: str, queue: str) -> str:
    """Make ``bucket`` notify ``queue`` of every new ``logs/`` object; returns the queue URL.

    This replaces the bucket's whole notification configuration: locally the queue is its
    only subscriber (in AWS it is the Lambda, deployment guide section 6.1).
    """
    sqs = aws.client("sqs")
    url = ensure_queue(queue)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    aws.client("s3").put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "Id": "llm-audit-ingest-local",
                    "QueueArn": arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "logs/"}]}},
                }
            ]
        },
    )
    return url


def deliver(
    message: dict,
    *,
    handler: Handler,
    dlq_url: str,
    retry_delays: tuple[float, ...] = RETRY_DELAYS,
) -> bool:
    """Invoke ``handler`` with the message's event as Lambda would; False if dead-lettered."""
    error: Exception | None = None
    for attempt, delay in enumerate((0.0, *retry_delays), start=1):
        time.sleep(delay)
        try:
            with log_lines_to_cloudwatch():
                handler(json.loads(message["Body"]), None)
            return True
        except Exception as exc:  # like Lambda: any error is a failed attempt
            error = exc
            log_json(
                event="audit_delivery_failed",
                level="error",
                attempt=attempt,
                messageId=message["MessageId"],
                error=f"{type(exc).__name__}: {exc}",
            )
    aws.client("sqs").send_message(
        QueueUrl=dlq_url,
        MessageBody=message["Body"],
        MessageAttributes={
            "RequestID": {"DataType": "String", "StringValue": message["MessageId"]},
            "ErrorCode": {"DataType": "Number", "StringValue": "200"},
            "ErrorMessage": {
                "DataType": "String",
                "StringValue": str(error)[:MAX_DLQ_ERROR_CHARS] or type(error).__name__,
            },
        },
    )
    log_json(event="audit_dead_lettered", level="error", messageId=message["MessageId"])
    return False


def consume(
    *,
    stop: threading.Event | None = None,
    once: bool = False,
    retry_delays: tuple[float, ...] = RETRY_DELAYS,
    wait_seconds: int = 5,
) -> int:
    """Deliver queued S3 events until ``stop`` is set, or with ``once`` until the queue is empty,
    with ``concurrency()`` pollers, as Lambda runs several instances.

    Returns how many messages were handled (delivered or dead-lettered).
    """
    queue_url, dlq_url = ensure_queue(queue_name()), ensure_queue(dlq_name())
    stop = stop or threading.Event()
    with ThreadPoolExecutor(concurrency(), thread_name_prefix="ingest") as pool:
        pollers = [
            pool.submit(_poll, queue_url, dlq_url, stop, once, retry_delays, wait_seconds)
            for _ in range(concurrency())
        ]
        return sum(poller.result() for poller in pollers)


def _poll(
    queue_url: str,
    dlq_url: str,
    stop: threading.Event,
    once: bool,
    retry_delays: tuple[float, ...],
    wait_seconds: int,
) -> int:
    sqs = aws.client("sqs")
    handled = 0
    while not stop.is_set():
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=1,  # one event at a time per poller, as per Lambda instance
            WaitTimeSeconds=1 if once else wait_seconds,
            VisibilityTimeout=VISIBILITY_TIMEOUT,
        ).get("Messages", [])
        if once and not messages:
            break
        for message in messages:
            deliver(message, handler=lambda_handler, dlq_url=dlq_url, retry_delays=retry_delays)
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            handled += 1
    return handled
