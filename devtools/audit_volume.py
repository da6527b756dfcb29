"""Audit records in bulk, for volume tests and benchmarks.

Real ingest (``centralllm.audit.ingest``) writes one TransactWriteItems per record, about 30
records a second against DynamoDB Local: an hour for a hundred thousand. ``bulk_load`` replays
the same actions (``ingest.write_actions``) faster: each Put's item with BatchWriteItem, and
the rollup Updates added up in memory, then each rollup put once as a whole item. The table
ends up as real ingest would have left it.
"""

import random
import re
import time
from collections.abc import Iterable, Iterator
from decimal import Decimal
from functools import lru_cache
from itertools import islice

from boto3.dynamodb.types import DYNAMODB_CONTEXT

from centralllm import aws
from centralllm.audit.ingest import write_actions
from centralllm.audit.items import serialize

BATCH_SIZE = 25  # BatchWriteItem's maximum
MAX_ATTEMPTS = 10
_CLAUSE = re.compile(r"(?:^|\s+)(SET|ADD|REMOVE|DELETE)\s+", re.IGNORECASE)
_ACTION = {"SET": re.compile(r"^([#\w]+)\s*=\s*(:\w+)$"), "ADD": re.compile(r"^([#\w]+)\s+(:\w+)$")}

_Rollups = dict[tuple[str, str], tuple[dict, dict[str, Decimal]]]


def bulk_load(records: Iterable[dict], *, table: str) -> int:
    """Write validated records and their rollups into ``table``; returns how many records.

    The table must be EMPTY and the request ids distinct: items are put blindly (ingest's
    conditions are not checked) and every rollup is put once as a whole item, so anything
    already there is overwritten. Records are streamed; only the rollup totals (hours x
    dimension values x shards) are kept in memory.
    """
    client = aws.client("dynamodb")
    rollups: _Rollups = {}
    loaded = 0

    def items() -> Iterator[dict]:
        nonlocal loaded
        for record in records:
            for action in write_actions(record, table=table):
                if "Put" in action:
                    yield action["Put"]["Item"]
                elif "Update" in action:
                    _merge(rollups, action["Update"])
                else:
                    raise ValueError(f"bulk_load cannot replay {', '.join(action)}")
            loaded += 1
        # Only now are the totals final: each rollup is put once.
        for fixed, sums in rollups.values():
            yield {**fixed, **serialize(sums)}

    stream = items()
    # One batch at a time: a writer thread was slower (its socket reads waited for the GIL
    # while the next batch was being built).
    while batch := list(islice(stream, BATCH_SIZE)):
        _put(client, table, batch)
    return loaded


def _merge(rollups: _Rollups, update: dict) -> None:
    """Add one ``Update`` action to the totals: SET values as the last write leaves them,
    ADD amounts summed in DynamoDB's decimal context (a sum DynamoDB refuses fails here), ADD
    string sets joined."""
    key = update["Key"]
    fixed, sums = rollups.setdefault((key["id"]["S"], key["createdAt"]["S"]), (dict(key), {}))
    names = update.get("ExpressionAttributeNames", {})
    values = update["ExpressionAttributeValues"]
    for clause, name, placeholder in _actions(update["UpdateExpression"]):
        name, value = names.get(name, name), values[placeholder]
        if clause == "SET":
            fixed[name] = value
        elif "N" in value:
            sums[name] = DYNAMODB_CONTEXT.add(sums.get(name, Decimal(0)), Decimal(value["N"]))
        elif "SS" in value:  # the breakdown values seen; their cap is the ingest's to keep
            sums.setdefault(name, set()).update(value["SS"])
        else:
            raise ValueError(f"bulk_load adds numbers and string sets only, not {value} to {name}")


@lru_cache(maxsize=64)
def _actions(expression: str) -> tuple[tuple[str, str, str], ...]:
    """``SET #a = :a ADD #b :b, ...`` as (clause, name, value placeholder) triples."""
    parts = _CLAUSE.split(expression.strip())
    actions = []
    for clause, listed in zip(parts[1::2], parts[2::2], strict=True):
        for action in (a.strip() for a in listed.split(",")):
            pattern = _ACTION.get(clause.upper())
            match = pattern.match(action) if pattern else None
            if match is None:  # e.g. SET with arithmetic, REMOVE: not a plain total
                raise ValueError(f"bulk_load cannot replay {clause} {action!r}")
            actions.append((clause.upper(), match[1], match[2]))
    return tuple(actions)


def _put(client, table: str, items: list[dict]) -> None:
    """One BatchWriteItem, then its unprocessed items again with backoff until none is left."""
    requests = [{"PutRequest": {"Item": item}} for item in items]
    for attempt in range(MAX_ATTEMPTS):
        if attempt:
            time.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))  # noqa: S311 - jitter
        response = client.batch_write_item(RequestItems={table: requests})
        requests = response.get("UnprocessedItems", {}).get(table, [])
        if not requests:
            return
    raise RuntimeError(f"{len(requests)} items still unprocessed after {MAX_ATTEMPTS} tries")
