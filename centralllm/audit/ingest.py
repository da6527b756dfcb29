"""What the ``llm-audit-ingest`` Lambda does with an S3 event: read, validate, write once.

The record's item, its request id's guard and its rollup increments go in one
TransactWriteItems whose Puts require that neither exists yet. The guard
(``items.guard_item``) is keyed by the request id alone, so a redelivered event (S3 and Lambda
both deliver at least once) or a record written again with another ``createdAt`` is cancelled
by it and adds nothing; a second record with the same id and other content is refused with
the reason. A record DynamoDB refuses for its shape is that record's rejection only.
"""

import decimal
import json
import random
import sys
import time
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from centralllm import aws
from centralllm.audit.contract import InvalidRecord, encodable, table_name, validate_record
from centralllm.audit.items import (
    content_hash,
    get_guard,
    guard_item,
    item_from_record,
    serialize,
)
from centralllm.audit.rollups import (
    FULL,
    ROLLUP_ORDER,
    full_breakdowns,
    more_crowded,
    rollup_updates,
)

# Concurrent transactions on one rollup item cancel each other (TransactionConflict); they
# are retried here a few times before the whole event goes back to Lambda's retries.
CONFLICT_ATTEMPTS = 4


class IngestError(RuntimeError):
    """An audit object that could not be ingested; the message says which and why."""


def log_json(**fields) -> None:
    """One structured log line (CloudWatch Logs Insights parses JSON lines)."""
    print(json.dumps(fields, default=str, separators=(",", ":")), file=sys.stdout, flush=True)


class RecordConflict(IngestError):
    """A record whose request id was ingested before with other content."""


ROLLUPS_FROM = 2  # the index of the first rollup action: the guard and the item come first


def write_actions(
    record: dict,
    *,
    table: str,
    key: str | None = None,
    crowded: dict[str, str] | None = None,
    over_cap: dict[str, set[str]] | None = None,
) -> list[dict]:
    """The TransactWriteItems actions that ingest ``record``: its guard, its item and its
    rollups. ``key`` is the S3 key the record was read from; ``crowded`` and ``over_cap``
    cut the breakdowns of rollup items DynamoDB refused (``rollups.rollup_updates``)."""
    return [
        _put_new(table, guard_item(record)),
        _put_new(table, item_from_record(record, key=key)),
        *rollup_updates(record, table=table, crowded=crowded, over_cap=over_cap),
    ]


def _put_new(table: str, item: dict) -> dict:
    return {
        "Put": {
            "TableName": table,
            "Item": serialize(item),
            "ConditionExpression": "attribute_not_exists(id)",
        }
    }


def ingest_record(record: dict, *, table: str | None = None, key: str | None = None) -> bool:
    """Write a validated record and its rollups; False when it was already ingested.

    Raises RecordConflict when its id was ingested with other content, and IngestError when
    DynamoDB refuses the record's shape (a key too large, say).
    """
    table = table or table_name()
    crowded: dict[str, str] = {}
    over_cap: dict[str, set[str]] = {}
    client = aws.client("dynamodb")
    conflicts = 0
    while True:
        try:
            actions = write_actions(
                record, table=table, key=key, crowded=crowded, over_cap=over_cap
            )
        except decimal.DecimalException as exc:
            # The contract takes any JSON number; DynamoDB's have 38 digits, from 1E-130 to
            # 1E+126, and botocore checks before sending (10**40 tokens: decimal.Rounded).
            raise IngestError(
                f"request {record['requestId'][:80]!r}: DynamoDB refused the record: "
                f"a number out of DynamoDB's range or precision ({type(exc).__name__})"
            ) from None
        try:
            client.transact_write_items(TransactItems=actions)
            return True
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            codes = _cancellation_codes(exc) if code == "TransactionCanceledException" else []
            refused_items = [
                reason.get("Item", {}) for reason in exc.response.get("CancellationReasons", [])
            ]
            if _crowd(record, crowded, over_cap, codes, refused_items):
                full = {dimension: sorted(names) for dimension, names in over_cap.items()}
                log_json(
                    event="rollup_crowded", requestId=record["requestId"], cut=crowded, full=full
                )
                continue
            if code == "ValidationException" or "ValidationError" in codes:
                raise IngestError(
                    f"request {record['requestId'][:80]!r}: DynamoDB refused the record: "
                    f"{exc.response['Error'].get('Message', code)}"
                ) from None
            if code != "TransactionCanceledException":
                raise
            if codes[:1] == ["ConditionalCheckFailed"]:
                _check_same(record, table)
                return False
            if codes[1:2] == ["ConditionalCheckFailed"]:
                return False  # ingested before request ids had guards
            # Only conflicts count: the rounds that cut crowded rollups are not retries.
            conflicts += 1
            if "TransactionConflict" not in codes or conflicts >= CONFLICT_ATTEMPTS:
                raise
            time.sleep(random.uniform(0, 0.05 * 2**conflicts))  # noqa: S311 - jitter, not crypto


def _crowd(
    record: dict,
    crowded: dict[str, str],
    over_cap: dict[str, set[str]],
    codes: list[str],
    refused_items: list[dict],
) -> bool:
    """Cut the breakdowns of the rollups DynamoDB refused: a breakdown at its cap of distinct
    values (a failed condition; the item returned with it says which) counts the record under
    "(other)", the item's other breakdowns as before; an item over 400 KB (or one that did
    not say) is cut whole. False when the refusal is not only theirs, or they have nothing
    left to cut. A record is never refused for its rollups."""
    refused = [index for index, code in enumerate(codes) if code != "None"]
    if not refused or min(refused) < ROLLUPS_FROM:
        return False
    if any(codes[index] not in ("ValidationError", "ConditionalCheckFailed") for index in refused):
        return False
    cuts, full = {}, {}
    for index in refused:
        dimension = ROLLUP_ORDER[index - ROLLUPS_FROM]
        level = crowded.get(dimension, FULL)
        item = refused_items[index] if index < len(refused_items) else {}
        newly_full = full_breakdowns(record, dimension, item) - over_cap.get(dimension, set())
        if level == FULL and newly_full:
            full[dimension] = newly_full
            continue
        cut = more_crowded(level)
        if cut is None:
            return False
        cuts[dimension] = cut
    crowded.update(cuts)
    for dimension, names in full.items():
        over_cap.setdefault(dimension, set()).update(names)
    return True


def _check_same(record: dict, table: str) -> None:
    """A record whose id is taken: a repeat of the first (fine) or another (refused)."""
    first = get_guard(record["requestId"], table=table)
    if first is not None and first["contentHash"] != content_hash(record):
        raise RecordConflict(
            f"request {record['requestId'][:80]!r} was ingested before with other content"
            f" (createdAt {first['recordCreatedAt']}); this one (createdAt"
            f" {record['createdAt']}) is refused and the first kept"
        )


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
        # Lone surrogates (JSON's "\ud800", which no UTF-8 holds) replaced as the uploader
        # replaces them: DynamoDB takes UTF-8 only, and a record is not refused for them.
        record = encodable(validate_record(read_object(bucket, key)))
    except InvalidRecord as exc:
        raise InvalidRecord(f"s3://{bucket}/{key}: invalid audit record: {exc}") from None
    try:
        written = ingest_record(record, table=table, key=key)
    except IngestError as exc:
        # Named by its object, as every failure of an event is: records of one request id
        # (a conflict) or one shape can be in several objects.
        raise type(exc)(f"s3://{bucket}/{key}: {exc}") from None
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

    A bad object does not stop the others, whatever goes wrong with it: they are all tried,
    then one exception names every failure, so Lambda retries the event (the good ones are
    no-ops the second time) and it reaches the dead-letter queue in the end.
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
            kind = "audit_conflict" if isinstance(exc, RecordConflict) else "audit_rejected"
            log_json(event=kind, level="error", bucket=bucket, key=key, error=str(exc))
            failures.append(str(exc))
            continue
        except Exception as exc:
            error = f"s3://{bucket}/{key}: {type(exc).__name__}: {exc}"
            log_json(event="audit_failed", level="error", bucket=bucket, key=key, error=error)
            failures.append(error)
            continue
        log_json(**outcome)
        summary["ingested" if outcome["event"] == "audit_ingested" else "duplicates"] += 1
    if failures:
        raise IngestError("; ".join(failures))
    return summary
