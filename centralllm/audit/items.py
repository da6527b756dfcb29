"""The DynamoDB item of an audit record, its key layout, and the queries the explorer runs.

Keys of an item (``table.py`` has the indexes; write shards are explained there):

- ``id`` = requestId, ``createdAt`` = the record's createdAt (base table)
- ``userIdPk`` = ``user#<user>``, ``userIdSk`` = ``<createdAt>#<id>`` (GSI_UserTime)
- ``statusPk`` = ``status#<HTTP status>`` (shard k > 0: ``status.k#<status>``),
  ``statusSk`` = ``<createdAt>#<id>`` (GSI_StatusTime)
- ``latencyPk`` = ``project#<project>``, ``latencySk`` = ``<latency ms, 10 digits>#<createdAt>``
  (GSI_ProjectLatency)

A request rejected for lacking ``x-llm-user`` or ``x-llm-source`` is filed under ``user#-`` or
``project#-``, so operators can list those rejections too.

Each request id also has a guard item, ``id`` = requestId, ``createdAt`` = ``~request``, with
the record's createdAt and content hash: it keeps one record per request id (``ingest.py``).
"""

import base64
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypedDict, Unpack

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from centralllm import aws
from centralllm.audit.contract import (
    dumps,
    format_timestamp,
    parse_timestamp,
    record_key,
    table_name,
)
from centralllm.audit.redaction import redact, rules_from_env
from centralllm.audit.table import (
    PROJECT_LATENCY,
    STATUS_SHARDS,
    STATUS_TIME,
    USER_TIME,
    shard_of,
    sharded,
)

DEFAULT_MAX_PREVIEW_CHARS = 2048
EXPIRY_ATTRIBUTE = "expiresAt"  # the table's TTL attribute: DynamoDB deletes items past it
GUARD_SORT_KEY = "~request"  # "~" sorts after the digits every createdAt starts with
MISSING = "-"
LATENCY_DIGITS = 10  # up to 9,999,999,999 ms: longer requests sort as the longest

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def max_preview_chars() -> int:
    return int(os.environ.get("MAX_PREVIEW_CHARS") or DEFAULT_MAX_PREVIEW_CHARS)


def retention_days() -> int:
    """Days an audit item is kept (``AUDIT_RETENTION_DAYS``; 0 or unset: for ever)."""
    return max(0, int(os.environ.get("AUDIT_RETENTION_DAYS") or 0))


def expires_at(created_at: str) -> int | None:
    """The item's DynamoDB TTL (``EXPIRY_ATTRIBUTE``, epoch seconds), None to keep it."""
    days = retention_days()
    if not days:
        return None
    return int(parse_timestamp(created_at).timestamp()) + days * 86400


def user_key(user: str | None) -> str:
    return f"user#{user or MISSING}"


def status_key(status: int, shard: int = 0) -> str:
    return f"{sharded('status', shard)}#{status}"


def project_key(project: str | None) -> str:
    return f"project#{project or MISSING}"


def latency_sort_prefix(latency_ms: float) -> str:
    """Latency as fixed-width whole milliseconds, so string order is numeric order."""
    return f"{min(round(latency_ms), 10**LATENCY_DIGITS - 1):0{LATENCY_DIGITS}d}"


def _cut(text: str | None, limit: int) -> str | None:
    return None if text is None else text[:limit]


# Redaction reads this far past the preview's end: a secret that starts inside the preview
# and ends after it is still matched whole, so no part of it is left.
REDACTION_MARGIN = 512


def _previews(
    texts: list[str | None], limit: int
) -> tuple[list[tuple[str | None, bool]], dict[str, int]]:
    """Each text cut to ``limit`` characters (and whether it was cut), with the environment's
    redaction rules applied; and the matches per rule. Only the preview and its margin are
    redacted: what is cut off is never stored in the item, and a megabyte of text a caller
    crafted costs no more than a preview."""
    rules, total = rules_from_env(), {}
    previews = []
    for text in texts:
        if text is None:
            previews.append((None, False))
            continue
        window = text[: limit + REDACTION_MARGIN]
        if rules:
            window, counts = redact(window, rules)
            for name, count in counts.items():
                total[name] = total.get(name, 0) + count
        cut = len(window) > limit or len(text) > limit + REDACTION_MARGIN
        previews.append((window[:limit], cut))
    return previews, total


def item_from_record(record: dict, *, key: str | None = None) -> dict:
    """The item for a validated record, as plain Python values (numbers as Decimal).

    ``key`` is where the record was read from, if not where the contract puts it. The
    previews are redacted (``redaction.py``) before they are cut, so that a secret across
    the cut cannot leave a part behind.
    """
    request_id, created_at = record["requestId"], record["createdAt"]
    limit = max_preview_chars()
    previews, redactions = _previews([record["prompt"], record["completion"]], limit)
    (prompt, prompt_truncated), (completion, completion_truncated) = previews
    usage = record["usage"] or {}
    error = record["error"] or {}
    item = {
        "id": request_id,
        "createdAt": created_at,
        "userIdPk": user_key(record["user"]),
        "userIdSk": f"{created_at}#{request_id}",
        "statusPk": status_key(record["status"], shard_of(request_id, STATUS_SHARDS)),
        "statusSk": f"{created_at}#{request_id}",
        "latencyPk": project_key(record["project"]),
        "latencySk": f"{latency_sort_prefix(record['latencyMs'])}#{created_at}",
        "schemaVersion": record["schemaVersion"],
        "project": record["project"],
        "user": record["user"],
        "requestType": record["requestType"],
        "apiKeyId": record["apiKeyId"],
        "method": record["method"],
        "path": record["path"],
        "model": record["model"],
        "stream": record["stream"],
        "status": record["status"],
        "outcome": record["outcome"],
        "latencyMs": record["latencyMs"],
        "ttftMs": record["ttftMs"],
        "promptTokens": usage.get("promptTokens"),
        "completionTokens": usage.get("completionTokens"),
        "totalTokens": usage.get("totalTokens"),
        "errorType": error.get("type"),
        "errorMessage": _cut(error.get("message"), limit),
        "deployment": {k: v for k, v in record["deployment"].items() if v is not None},
        "promptPreview": prompt,
        "promptTruncated": prompt_truncated,
        "promptChars": len(record["prompt"] or ""),
        "completionPreview": completion,
        "completionTruncated": completion_truncated,
        "completionChars": len(record["completion"] or ""),
        "redactions": redactions or None,  # rule -> matches; absent when nothing was redacted
        "flags": record["flags"] or None,  # contract.FLAGS; absent when there are none
        "recordKey": key or record_key(record),
        "rawKey": record["rawKey"],
        EXPIRY_ATTRIBUTE: expires_at(created_at),
    }
    return {name: _to_dynamo(value) for name, value in item.items() if value is not None}


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


def serialize(item: dict) -> dict:
    """Plain values to the low-level client's typed attribute values."""
    return {name: _serializer.serialize(value) for name, value in item.items()}


def deserialize(attributes: dict) -> dict:
    """Typed attribute values to plain Python, numbers as int or float."""
    return {name: _plain(_deserializer.deserialize(value)) for name, value in attributes.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {name: _plain(inner) for name, inner in value.items()}
    return value


# Queries ------------------------------------------------------------------------------------


@dataclass
class Page:
    items: list[dict]
    next_token: str | None  # pass back as ``token`` for the next page; None on the last page
    read_units: float = 0.0  # what the page cost (ReturnConsumedCapacity)
    items_read: int = 0  # what DynamoDB read for it, a filter's leftovers included


def get_item(request_id: str, *, table: str | None = None, client: Any = None) -> dict | None:
    """The item of one request (the id is unique; its createdAt need not be known)."""
    response = (client or aws.client("dynamodb")).query(
        TableName=table or table_name(),
        KeyConditionExpression="id = :id AND createdAt < :guard",
        ExpressionAttributeValues={":id": {"S": request_id}, ":guard": {"S": GUARD_SORT_KEY}},
        Limit=1,
    )
    items = response["Items"]
    return deserialize(items[0]) if items else None


BATCH_GET_KEYS = 100  # what one BatchGetItem takes


def batch_get(
    keys: list[dict],
    *,
    table: str,
    client: Any = None,
    projection: str | None = None,
    names: dict[str, str] | None = None,
    consistent: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[dict]:
    """The items of ``keys`` (typed attribute values, as DynamoDB sends them), 100 keys a
    BatchGetItem; what DynamoDB leaves unprocessed is asked again, backing off. ``names``:
    the projection's expression attribute names, if it uses any; ``consistent``: strongly
    consistent reads."""
    client = client or aws.client("dynamodb")
    for first in range(0, len(keys), BATCH_GET_KEYS):
        wanted: dict[str, Any] = {"Keys": keys[first : first + BATCH_GET_KEYS]}
        if projection:
            wanted["ProjectionExpression"] = projection
        if names:
            wanted["ExpressionAttributeNames"] = names
        if consistent:
            wanted["ConsistentRead"] = True
        request = {table: wanted}
        for attempt in range(8):
            response = client.batch_get_item(RequestItems=request)
            yield from response["Responses"].get(table, [])
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
            sleep(0.05 * 2**attempt)  # throttled: AWS asks callers to back off
        else:
            raise RuntimeError("DynamoDB kept keys unprocessed: try again shortly")


def content_hash(record: dict) -> str:
    """What makes two records of one request id the same: everything but when it was
    written (``createdAt``, and the raw object's key that follows from it)."""
    same = {name: value for name, value in record.items() if name not in ("createdAt", "rawKey")}
    return hashlib.sha256(dumps(same)).hexdigest()


def guard_item(record: dict) -> dict:
    """The item that holds a request id once, whatever the record's createdAt: under the base
    key ``(requestId, GUARD_SORT_KEY)``, which sorts after every timestamp."""
    return {
        "id": record["requestId"],
        "createdAt": GUARD_SORT_KEY,
        "recordCreatedAt": record["createdAt"],
        "contentHash": content_hash(record),
        # The guard goes with the item: a record that outlived it could be ingested again.
        **({EXPIRY_ATTRIBUTE: expires_at(record["createdAt"])} if retention_days() else {}),
    }


def get_guard(request_id: str, *, table: str | None = None) -> dict | None:
    found = aws.client("dynamodb").get_item(
        TableName=table or table_name(),
        Key={"id": {"S": request_id}, "createdAt": {"S": GUARD_SORT_KEY}},
        ConsistentRead=True,
    )
    return deserialize(found["Item"]) if "Item" in found else None


@dataclass(frozen=True)
class _Index:
    name: str
    hash_key: str
    range_key: str

    def start_key(self, item: dict) -> dict:
        """The ExclusiveStartKey that resumes right after ``item``."""
        names = ("id", "createdAt", self.hash_key, self.range_key)
        return serialize({name: item[name] for name in names})


_USER_TIME = _Index(USER_TIME, "userIdPk", "userIdSk")
_STATUS_TIME = _Index(STATUS_TIME, "statusPk", "statusSk")
_PROJECT_LATENCY = _Index(PROJECT_LATENCY, "latencyPk", "latencySk")


class TimeQuery(TypedDict, total=False):
    """How to page a query by time: ``start`` included, ``end`` excluded, newest first unless
    told otherwise; ``token`` is the previous page's ``next_token``."""

    start: datetime | None
    end: datetime | None
    limit: int
    token: str | None
    newest_first: bool
    table: str | None
    client: Any  # a DynamoDB client (the table's region); None: the process's own


def query_user(user: str | None, **options: Unpack[TimeQuery]) -> Page:
    """Requests of one user, by time."""
    return _query_by_time(_USER_TIME, [user_key(user)], **options)


def query_status(status: int, **options: Unpack[TimeQuery]) -> Page:
    """Requests that ended with one HTTP status, by time, merged over the status shards."""
    shards = [status_key(status, shard) for shard in range(STATUS_SHARDS)]
    return _query_by_time(_STATUS_TIME, shards, **options)


def _query_by_time(
    index: _Index,
    partitions: list[str],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 50,
    token: str | None = None,
    newest_first: bool = True,
    table: str | None = None,
    client: Any = None,
) -> Page:
    return _query(
        index,
        partitions,
        _time_bounds(start, end),
        limit=limit,
        token=token,
        descending=newest_first,
        table=table,
        client=client,
    )


def query_project_latency(
    project: str | None,
    *,
    min_latency_ms: float | None = None,
    max_latency_ms: float | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 50,
    token: str | None = None,
    slowest_first: bool = True,
    table: str | None = None,
    client: Any = None,
) -> Page:
    """Requests of one project by latency (both bounds included, whole milliseconds).

    A time range here is a filter, not a key condition: a page may hold fewer than ``limit``
    items and still have a next token.
    """
    low = None if min_latency_ms is None else latency_sort_prefix(min_latency_ms)
    # '$' sorts right after '#', so every item of the maximum latency is included.
    high = None if max_latency_ms is None else latency_sort_prefix(max_latency_ms) + "$"
    return _query(
        _PROJECT_LATENCY,
        [project_key(project)],
        (low, high),
        limit=limit,
        token=token,
        descending=slowest_first,
        table=table,
        client=client,
        created_between=(start, end),
    )


def _time_bounds(start: datetime | None, end: datetime | None) -> tuple[str | None, str | None]:
    # Sort keys are "<createdAt>#<id>": one starting at the end instant sorts after the bare
    # timestamp, so using it as an inclusive upper bound excludes the end instant.
    return (
        None if start is None else format_timestamp(start),
        None if end is None else format_timestamp(end),
    )


def _key_condition(index: _Index, low: str | None, high: str | None) -> tuple[str, dict]:
    condition = f"{index.hash_key} = :pk"
    values = {}
    if low is not None and high is not None:
        condition += f" AND {index.range_key} BETWEEN :low AND :high"
    elif low is not None:
        condition += f" AND {index.range_key} >= :low"
    elif high is not None:
        condition += f" AND {index.range_key} <= :high"
    if low is not None:
        values[":low"] = {"S": low}
    if high is not None:
        values[":high"] = {"S": high}
    return condition, values


def _query(
    index: _Index,
    partitions: list[str],
    bounds: tuple[str | None, str | None],
    *,
    limit: int,
    token: str | None,
    descending: bool,
    table: str | None,
    client: Any = None,
    created_between: tuple[datetime | None, datetime | None] = (None, None),
) -> Page:
    """One page over one or more partitions (write shards), merged in sort key order.

    The token remembers where each partition stands; a partition left out is exhausted.
    """
    positions = _decode_token(token, partitions) if token else dict.fromkeys(partitions)
    condition, values = _key_condition(index, *bounds)
    params: dict[str, Any] = {
        "TableName": table or table_name(),
        "IndexName": index.name,
        "KeyConditionExpression": condition,
        "ScanIndexForward": not descending,
        "Limit": limit,
        "ReturnConsumedCapacity": "TOTAL",
    }
    created_filter, filter_values = _created_filter(*created_between)
    if created_filter:
        params["FilterExpression"] = created_filter
    client = client or aws.client("dynamodb")

    fetched: dict[str, list[dict]] = {}
    resume: dict[str, dict | None] = {}
    read_units, items_read = 0.0, 0
    for partition, position in positions.items():
        call = {**params, "ExpressionAttributeValues": {**values, **filter_values}}
        call["ExpressionAttributeValues"][":pk"] = {"S": partition}
        if position:
            call["ExclusiveStartKey"] = position
        response = client.query(**call)
        read_units += response.get("ConsumedCapacity", {}).get("CapacityUnits", 0.0)
        items_read += response.get("ScannedCount", len(response["Items"]))
        fetched[partition] = [deserialize(item) for item in response["Items"]]
        resume[partition] = response.get("LastEvaluatedKey")

    merged = sorted(
        ((item, partition) for partition, items in fetched.items() for item in items),
        key=lambda pair: pair[0][index.range_key],
        reverse=descending,
    )[:limit]

    next_positions: dict[str, dict | None] = {}
    for partition, position in positions.items():
        taken = [item for item, source in merged if source == partition]
        if len(taken) == len(fetched[partition]):
            # Everything read was used: carry on after the page (or stop if it was the last).
            if resume[partition]:
                next_positions[partition] = resume[partition]
        elif taken:
            next_positions[partition] = index.start_key(taken[-1])
        else:
            next_positions[partition] = position
    merged_items = [item for item, _ in merged]
    return Page(merged_items, _encode_token(next_positions), read_units, items_read)


def _created_filter(start: datetime | None, end: datetime | None) -> tuple[str | None, dict]:
    clauses, values = [], {}
    if start is not None:
        clauses.append("createdAt >= :createdFrom")
        values[":createdFrom"] = {"S": format_timestamp(start)}
    if end is not None:
        clauses.append("createdAt < :createdTo")
        values[":createdTo"] = {"S": format_timestamp(end)}
    return (" AND ".join(clauses) or None), values


def _encode_token(positions: dict[str, dict | None]) -> str | None:
    if not positions:
        return None
    return base64.urlsafe_b64encode(json.dumps(positions, sort_keys=True).encode()).decode()


def _decode_token(token: str, partitions: list[str]) -> dict[str, dict | None]:
    try:
        positions = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError):
        positions = None
    if not isinstance(positions, dict) or not set(positions) <= set(partitions):
        raise ValueError("not a page token of this query")
    return positions
