"""Each hour's tokens by project, as the audit rollups count them, and the days of it kept.

A ledger needs, for every hour with traffic, the hour's requests, tokens and API keys (the
five status classes' rollups) and each project's tokens and users (the project's rollups).
Read cold, a month is ``ROLLUP_SHARDS`` (8) Queries per status class and per project, and
tens of thousands of items (bench/costs.py). So what was read is kept, one ``KeptDay`` row
per environment and day, and a ledger reads again only the hours whose counts changed.

When a kept hour holds: while the status classes' rollups count it as kept (the same
requests and tokens); not after some waiting time, because none would be honest. A serving
host spools and retries records for as long as it cannot send them, the ingest's queue
retries and then dead-letters, and an operator may redrive a dead letter weeks later; but
each of these reaches the rollups one way (``centralllm.audit.ingest``): one transaction adds
the record to its hour's status class (``requests`` + 1 and its tokens) and to its project's
rollup. An hour whose status-class counts are unchanged therefore has unchanged project
rollups too: the counts the audit completeness check also compares with the day's records.
Checking them is 40 Queries of three attributes, whatever the range; the
hours changed (the current one, and any a late record reached) are read again, by key when
they are few (``BY_KEY_HOURS``), else over their span like a cold ledger. Nothing else
writes rollups and the retention keeps them for ever, so the check has no blind spot in
this code; a rollup edited by hand to the same counts would be one.

Every read is strongly consistent (``ConsistentRead``: twice the read units, of small items),
and an hour's status classes are read before its projects: so what is kept of an hour's
projects holds every record its kept counts hold (one that lands in between is in the
projects and not the counts, and has the hour read again next time). An eventually
consistent read of the projects could miss a record the counts hold, and keep the hour
without it for good.

Not kept: the instance-hours (one GetMetricData call reads any range, and CloudWatch may add
a late datapoint) and the price (an admin's new price applies to every hour at once): the
ledger reads both each time and apportions again, so a kept day never shows a stale cost.

A project's tokens in an hour are named only when that hour's status classes saw the
project (``seen.project``, at most ``BREAKDOWN_CAP`` names an item); past the cap they go to
the ledger's unnamed share. So an hour reads the same alone, or within any range.
"""

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date

from centralllm.audit import rollups
from centralllm.audit.items import batch_get
from centralllm.audit.table import ROLLUP_SHARDS
from costs.models import KeptDay
from provisioning.models import Environment

STATUS_CLASSES = tuple(f"{digit}xx" for digit in range(1, 6))  # the rollups' status classes
READERS = 8  # rollup keys read at once (botocore pools 10 connections)
# Changed hours up to this many are read by key: 40 keys an hour for the status classes and
# 8 per project the hour saw, 100 keys a BatchGetItem. Two days of 100 busy projects are
# about 800 calls: as many as 8 x (5 + 100) Queries, which read more hours at once.
BY_KEY_HOURS = 48


@dataclass
class HourUsage:
    """One hour with traffic, of every write shard: its requests and tokens (of the status
    classes), the API keys it saw and ``{project: (tokens, users)}``."""

    requests: int = 0
    tokens: int = 0
    api_keys: frozenset[str] = frozenset()
    projects: dict[str, tuple[int, frozenset[str]]] = field(default_factory=dict)

    @property
    def counts(self) -> tuple[int, int]:
        return self.requests, self.tokens

    def as_json(self) -> dict:
        return {
            "requests": self.requests,
            "tokens": self.tokens,
            "keys": list(self.api_keys),
            "projects": {
                name: [tokens, list(users)] for name, (tokens, users) in self.projects.items()
            },
        }

    @classmethod
    def from_json(cls, kept: dict) -> "HourUsage":
        return cls(
            kept["requests"],
            kept["tokens"],
            frozenset(kept["keys"]),
            {
                name: (tokens, frozenset(users))
                for name, (tokens, users) in kept["projects"].items()
            },
        )


def hourly(environment: Environment, first: str, last: str) -> dict[str, HourUsage]:
    """``{hour: usage}`` of the hours with traffic from ``first`` to ``last`` (as the
    rollups name hours: ``2026-11-27T05``): kept hours whose counts still hold, the others
    read; what was read is kept."""
    table = environment.audit_table()
    rows = {
        row.day: row
        for row in KeptDay.objects.filter(
            environment=environment, day__range=(_day(first), _day(last))
        )
    }
    kept = {
        hour: HourUsage.from_json(used)
        for row in rows.values()
        for hour, used in row.hours.items()
        if first <= hour <= last
    }
    if not kept:
        usage, fresh = {}, _read_range(first, last, **table)
    else:
        counts = _counts(first, last, **table)
        usage = {hour: used for hour, used in kept.items() if counts.get(hour) == used.counts}
        changed = sorted(set(counts) - set(usage))
        if len(changed) <= BY_KEY_HOURS:
            fresh = _read_hours(changed, **table)
        else:
            fresh = _read_range(changed[0], changed[-1], **table)
    _keep(environment, rows, fresh, gone=set(kept) - set(usage) - set(fresh))
    return usage | fresh


def _keep(
    environment: Environment,
    rows: dict[date, KeptDay],
    fresh: dict[str, HourUsage],
    gone: set[str],
) -> None:
    """Put the hours read into their days' rows, and take out kept hours no rollup counts
    any more. Two processes keeping one day at once: the last one's hours stay, and the
    others are read again when next wanted."""
    changes: dict[date, dict[str, dict | None]] = {}
    for hour, used in fresh.items():
        changes.setdefault(_day(hour), {})[hour] = used.as_json()
    for hour in gone:
        changes.setdefault(_day(hour), {})[hour] = None
    for day, changed in changes.items():
        hours = {**(rows[day].hours if day in rows else {}), **changed}
        KeptDay.objects.update_or_create(
            environment=environment,
            day=day,
            defaults={"hours": {hour: used for hour, used in hours.items() if used is not None}},
        )


def _day(hour: str) -> date:
    return date.fromisoformat(hour[:10])


# What is read of a rollup item: its counts, and the sets of the values its breakdowns saw
# (at most BREAKDOWN_CAP each). A month of items is tens of thousands: reading only these
# keeps botocore's parsing (most of the time) small.
_COUNTED = {"#hour": "createdAt", "#requests": "requests", "#tokens": "totalTokens"}
_READ = {**_COUNTED, "#value": "value"} | {
    f"#seen{n}": f"{rollups.SEEN_PREFIX}{name}"
    for n, name in enumerate(("project", "apiKeyId", "user"))
}


def _counts(first: str, last: str, **table) -> dict[str, tuple[int, int]]:
    """``{hour: (requests, tokens)}`` of the status classes: ``COUNT_READS`` Queries."""
    counts: dict[str, tuple[int, int]] = {}
    status_classes = _query_each("statusClass", STATUS_CLASSES, first, last, _COUNTED, **table)
    for item in status_classes:
        requests, tokens = counts.get(item["createdAt"]["S"], (0, 0))
        counts[item["createdAt"]["S"]] = (
            requests + _number(item, "requests"),
            tokens + _number(item, "totalTokens"),
        )
    return counts


def _read_range(first: str, last: str, **table) -> dict[str, HourUsage]:
    """Every hour from ``first`` to ``last``: each status class's and each project's rollup
    key queried over the range."""
    hours: dict[str, HourUsage] = {}
    for item in _query_each("statusClass", STATUS_CLASSES, first, last, _READ, **table):
        _add_status(hours, item)
    names = sorted({name for used in hours.values() for name in used.projects})
    for item in _query_each("project", names, first, last, _READ, **table):
        _add_project(hours, item)
    return hours


def _read_hours(wanted: list[str], *, table: str, client) -> dict[str, HourUsage]:
    """The ``wanted`` hours by key (BatchGetItem): the status classes' items first, then
    those of the projects each hour saw."""
    hours: dict[str, HourUsage] = {}

    def get(keys: list[tuple[str, str, str]]) -> Iterable[dict]:
        return batch_get(
            [
                {
                    "id": {"S": rollups.rollup_id(dimension, value, shard)},
                    "createdAt": {"S": hour},
                }
                for dimension, value, hour in keys
                for shard in range(ROLLUP_SHARDS)
            ],
            table=table,
            client=client,
            projection=", ".join(_READ),
            names=_READ,
            consistent=True,
        )

    for item in get([("statusClass", c, hour) for hour in wanted for c in STATUS_CLASSES]):
        _add_status(hours, item)
    for item in get(
        [("project", name, hour) for hour, used in hours.items() for name in used.projects]
    ):
        _add_project(hours, item)
    return hours


def _add_status(hours: dict[str, HourUsage], item: dict) -> None:
    used = hours.setdefault(item["createdAt"]["S"], HourUsage())
    used.requests += _number(item, "requests")
    used.tokens += _number(item, "totalTokens")
    used.api_keys |= _seen(item, "apiKeyId")
    for name in _seen(item, "project"):
        used.projects.setdefault(name, (0, frozenset()))


def _add_project(hours: dict[str, HourUsage], item: dict) -> None:
    """A project's rollup item, added to its hour if the hour's status classes saw the
    project (see the module's docstring)."""
    used, name = hours.get(item["createdAt"]["S"]), item["value"]["S"]
    if used is None or name not in used.projects:
        return
    tokens, users = used.projects[name]
    used.projects[name] = (tokens + _number(item, "totalTokens"), users | _seen(item, "user"))


def _number(item: dict, name: str) -> int:
    return int(item.get(name, {}).get("N", 0))


def _seen(item: dict, breakdown: str) -> frozenset[str]:
    return frozenset(item.get(f"{rollups.SEEN_PREFIX}{breakdown}", {}).get("SS", ()))


def _query(
    dimension: str, value: str, first: str, last: str, read: dict, *, table: str, client
) -> list[dict]:
    """The items of one rollup key from hour ``first`` to ``last`` (every write shard and
    page), as DynamoDB returns them, with the attributes of ``read`` only."""
    found = []
    for shard in range(ROLLUP_SHARDS):
        params = {
            "TableName": table,
            "KeyConditionExpression": "id = :id AND #hour BETWEEN :first AND :last",
            "ExpressionAttributeValues": {
                ":id": {"S": rollups.rollup_id(dimension, value, shard)},
                ":first": {"S": first},
                ":last": {"S": last},
            },
            "ProjectionExpression": ", ".join(read),
            "ExpressionAttributeNames": read,
            "ConsistentRead": True,
        }
        while True:
            response = client.query(**params)
            found += response["Items"]
            if "LastEvaluatedKey" not in response:
                break
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
    return found


def _query_each(
    dimension: str, values: Iterable[str], first: str, last: str, read: dict, **table
) -> Iterator[dict]:
    """The items of each value's rollup key (``_query``), ``READERS`` keys at a time."""
    with ThreadPoolExecutor(READERS, thread_name_prefix="costs") as pool:
        for items in pool.map(
            lambda value: _query(dimension, value, first, last, read, **table), values
        ):
            yield from items
