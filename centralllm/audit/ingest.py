"""What the ``llm-audit-ingest`` Lambda does with an S3 event: read, validate, write once.

The record's item and its rollup increments go in one TransactWriteItems whose Put requires
that the item does not exist yet. A redelivered event (S3 and Lambda both deliver at least
once) is cancelled by that condition, and counts as done: nothing is counted twice.
"""

import json
import random
import sys
import time
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from centralllm import aws
from centralllm.audit.contract import InvalidRecord, table_name, validate_record
from centralllm.audit.items import item_from_record, serialize
from centralllm.audit.rollups import rollup_updates

# Concurrent transactions on one rollup item cancel each other (TransactionConflict); they
# are retried here a few times before the whole event goes back to Lambda's retries.
CONFLICT_ATTEMPTS = 4


class IngestError(RuntimeError):
    """An audit object that could not be ingested; the message says which and why."""


def log_json(**fields) -> None:
    """One structured log line (CloudWatch Logs Insights parses JSON lines)."""
    print(json.dumps(fields, default=str, separators=(",", ":")), file=sys.stdout, flush=True)


def ingest_record(record: dict, *, table: str | None = None, key: str | None = None) -> bool:
    """Write a validated record and its rollups; False when it was already ingested.

    ``key`` is the S3 key the record was read from.
    """
    table = table or table_name()
    put = {
        "Put": {
            "TableName": table,
            "Item": serialize(item_from_record(record, key=key)),
            "ConditionExpression": "attribute_not_exists(id)",
        }
    }
    actions = [put, *rollup_updates(record, table=table)]
    client = aws.client("dynamodb")
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            client.transact_write_items(TransactItems=actions)
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            codes = _cancellation_codes(exc)
            if codes and codes[0] == "ConditionalCheckFailed":
                return False
            if "TransactionConflict" not in codes or attempt == CONFLICT_ATTEMPTS:
                raise
            time.sleep(random.uniform(0, 0.05 * 2**attempt))  # noqa: S311 - jitter, not crypto
    raise AssertionError("unreachable: the last attempt returns or raises")


def _cancellation_codes(exc: ClientError) -> list[str]:
    """Why each action of a cancelled transaction failed, in action order ("None" if it didn't)."""
    reasons = exc.response.get("CancellationReasons")
    if reasons is not None:
        return [reason.get("Code", "None") for reason in reasons]
    # The reasons also appear in the message, "... reasons [ConditionalCheckFailed, None]".
    message = exc.response["Error"].get("Message", "")
    inside = message.rpartition("[")[2].partition("]")[0]
    return [code.strip() for code in inside.split(",") if code.strip()]


def read_object(bucket: str, key: str) -> bytes:
    try:
        response = aws.client("s3").get_object(Bucket=bucket, Key=key)
        return response["Body"].read()
    except ClientError as exc:
        error = exc.response["Error"]
        raise IngestError(
            f"s3://{bucket}/{key}: cannot read the audit record: {error.get('Code')}"
            f" {error.get('Message', '')}".rstrip()
        ) from exc


def ingest_object(bucket: str, key: str, *, table: str | None = None) -> dict:
    """Read, validate and write one audit object; returns what happened, for the log."""
    try:
        record = validate_record(read_object(bucket, key))
    except InvalidRecord as exc:
        raise InvalidRecord(f"s3://{bucket}/{key}: invalid audit record: {exc}") from None
    written = ingest_record(record, table=table, key=key)
    return {
        "event": "audit_ingested" if written else "audit_duplicate",
        "bucket": bucket,
        "key": key,
        "requestId": record["requestId"],
        "createdAt": record["createdAt"],
        "project": record["project"],
        "user": record["user"],
        "status": record["status"],
        "latencyMs": record["latencyMs"],
    }


def handle_s3_event(event: dict) -> dict:
    """Ingest every object an S3 notification names.

    A bad object does not stop the others: they are all tried, then one exception names
    every failure, so Lambda retries the event (the good ones are no-ops the second time).
    """
    if event.get("Event") == "s3:TestEvent":
        log_json(event="s3_test_event_ignored", bucket=event.get("Bucket"))
        return {"ingested": 0, "duplicates": 0, "ignored": 1}
    summary = {"ingested": 0, "duplicates": 0, "ignored": 0}
    failures = []
    for notification in event.get("Records", []):
        if not notification.get("eventName", "").startswith("ObjectCreated"):
            summary["ignored"] += 1
            continue
        bucket = notification["s3"]["bucket"]["name"]
        key = unquote_plus(notification["s3"]["object"]["key"])
        try:
            outcome = ingest_object(bucket, key)
        except (InvalidRecord, IngestError) as exc:
            log_json(event="audit_rejected", level="error", bucket=bucket, key=key, error=str(exc))
            failures.append(str(exc))
            continue
        log_json(**outcome)
        summary["ingested" if outcome["event"] == "audit_ingested" else "duplicates"] += 1
    if failures:
        raise IngestError("; ".join(failures))
    return summary
