"""The audit events the ingest gave up on: collected from the dead-letter queue, and
ingested again through the same handler once the cause is fixed.

Collecting moves each message into the database (``DeadLetter``) before deleting it from
SQS, so an event is never in neither place, and none expires after SQS's 14 days while no
one looks. A redrive hands an event to the ingest handler as Lambda would: on real AWS by
invoking the ``llm-audit-ingest`` function itself, locally by running its handler with the
function's settings (``handler_environment``). Ingest is idempotent (the request id's guard),
so a record redriven twice, or already ingested, is counted once.
"""

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from urllib.parse import quote_plus, unquote_plus

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit_explorer.models import DeadLetter
from llm_audit_ingest import local as local_ingest
from provisioning.models import Environment
from provisioning.resources.base import Context
from provisioning.resources.lambda_ import handler_environment

RECEIVE_BATCH = 10  # the most one ReceiveMessage returns
# Attempts before an event reaches the DLQ: Lambda's default of a first try and two retries,
# which the local consumer copies.
INGEST_ATTEMPTS = 1 + len(local_ingest.RETRY_DELAYS)
KEYS_PER_EVENT = 50  # missing objects redriven in one invocation


def queue_url(ctx: Context) -> str:
    return ctx.client("sqs").get_queue_url(QueueName=ctx.name("DlqName"))["QueueUrl"]


def waiting_in_queue(ctx: Context) -> int:
    """Messages in the DLQ not collected yet (SQS's approximate count)."""
    attributes = ctx.client("sqs").get_queue_attributes(
        QueueUrl=queue_url(ctx), AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def collect(ctx: Context, environment: Environment, *, limit: int = 100_000) -> int:
    """Move the DLQ's messages into DeadLetter rows; returns how many were new. A message is
    deleted from SQS only once its row is saved (a second collect of it adds nothing)."""
    sqs, url, collected = ctx.client("sqs"), queue_url(ctx), 0
    while collected < limit:
        messages = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=RECEIVE_BATCH,
            WaitTimeSeconds=1,  # long polling asks every SQS server, so an empty answer is true
            VisibilityTimeout=60,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            collected += _save(environment, message)
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(n), "ReceiptHandle": message["ReceiptHandle"]}
                for n, message in enumerate(messages)
            ],
        )
        ctx.progress.checkpoint()
    return collected


def _save(environment: Environment, message: dict) -> bool:
    attributes = message.get("MessageAttributes", {})
    bucket, keys = event_objects(message["Body"])
    sent = int(message.get("Attributes", {}).get("SentTimestamp", "0")) / 1000
    try:
        with transaction.atomic():
            DeadLetter.objects.create(
                environment=environment,
                message_id=message["MessageId"],
                request_id=attributes.get("RequestID", {}).get("StringValue", ""),
                body=message["Body"],
                bucket=bucket,
                keys=keys,
                error=attributes.get("ErrorMessage", {}).get("StringValue", ""),
                attempts=INGEST_ATTEMPTS,
                failed_at=datetime.fromtimestamp(sent, UTC) if sent else timezone.now(),
            )
    except IntegrityError:
        return False  # collected before; its deletion from SQS had not gone through
    return True


def event_objects(body: str) -> tuple[str, list[str]]:
    """The bucket and the keys an S3 event names ("", [] for what is not an S3 event)."""
    try:
        event = json.loads(body)
        records = event.get("Records", []) if isinstance(event, dict) else []
        bucket = records[0]["s3"]["bucket"]["name"] if records else ""
        keys = [unquote_plus(record["s3"]["object"]["key"]) for record in records]
    except (ValueError, KeyError, TypeError, IndexError):
        return "", []
    return bucket, keys


def s3_event(bucket: str, keys: list[str]) -> dict:
    """An ObjectCreated event naming ``keys``, as S3 sends one to the Lambda."""
    return {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key)}},
            }
            for key in keys
        ]
    }


class RedriveFailed(Exception):
    """The handler failed the event again; the message is its error."""


def redrive(ctx: Context, event: dict) -> dict:
    """Hand one S3 event to the ingest handler; returns its summary or raises RedriveFailed."""
    if ctx.spec.is_local:
        with handler_settings(ctx):
            try:
                return local_ingest.lambda_handler(event, None)
            except Exception as exc:  # as Lambda: any error fails the event
                raise RedriveFailed(f"{type(exc).__name__}: {exc}") from None
    response = ctx.client("lambda").invoke(
        FunctionName=ctx.name("LambdaFunction"),
        InvocationType="RequestResponse",
        Payload=json.dumps(event).encode(),
    )
    payload = json.loads(response["Payload"].read() or b"null")
    if "FunctionError" in response:
        error = payload.get("errorMessage", "") if isinstance(payload, dict) else str(payload)
        raise RedriveFailed(error or response["FunctionError"])
    return payload


@contextmanager
def handler_settings(ctx: Context) -> Iterator[None]:
    """The Lambda's environment around the handler, as the function runs it (a redrive's RQ
    job, the demo traffic's command), put back as it was afterwards."""
    settings = handler_environment(ctx)
    before = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
