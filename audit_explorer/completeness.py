"""Whether one day of an environment's audit trail is complete, and provably so.

Four sources are set side by side: the objects under ``logs/YYYY/MM/DD/`` in the audit
bucket, the day's items in DynamoDB, the day's rollups, and the dead-lettered events (and on
real AWS, API Gateway's request count for the stage):

- an object without an item is *missing* (unless its request id was ingested from another
  object: a *duplicate object*, kept once by the guard; or an operator discarded its
  dead-lettered event with a reason: *discarded*, accounted for);
- an item without an object is *extra*, an item whose request id the day holds twice is
  *double*, and an hour whose rollups count otherwise than its items is *miscounted*.

The day's items are read through the status index: the status-class rollups say which
statuses the day has (``rollups.BREAKDOWNS``), so only those status keys are queried. The
objects are held in memory by request id only (the key follows from it): about 200 bytes
each, 2 GB at 10 million a day.
"""

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from http import HTTPStatus
from typing import Any

from centralllm.audit import rollups
from centralllm.audit.contract import format_timestamp
from centralllm.audit.items import GUARD_SORT_KEY, batch_get, status_key
from centralllm.audit.table import STATUS_SHARDS, STATUS_TIME
from provisioning.engine import run_step
from provisioning.resources.apigateway import STAGE
from provisioning.resources.base import Context

STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
# Statuses outside http.HTTPStatus that a day may hold: 499, a client gone before the answer.
NONSTANDARD_STATUSES = (499,)
MAX_LISTED = 10_000  # of each kind, kept with the day; the counts are always whole


def day_prefix(day: date) -> str:
    return f"logs/{day:%Y/%m/%d}/"


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


LISTS = ("missing", "duplicate_objects", "discarded", "extra", "double", "miscounted_hours")


@dataclass
class DayCheck:
    day: date
    objects: int = 0
    items: int = 0
    rollups: int = 0
    dead_lettered: int = 0
    gateway: int | None = None  # API Gateway's Count; None where there is no API Gateway
    missing: list[dict] = field(default_factory=list)
    duplicate_objects: list[dict] = field(default_factory=list)
    discarded: list[dict] = field(default_factory=list)
    extra: list[dict] = field(default_factory=list)
    double: list[dict] = field(default_factory=list)
    miscounted_hours: list[dict] = field(default_factory=list)
    probed_statuses: bool = False  # hours not naming every status: all were read
    read_units: float = 0.0  # what reading the day's items cost DynamoDB (read request units)

    @property
    def complete(self) -> bool:
        return not (self.missing or self.extra or self.double or self.miscounted_hours)

    def details(self) -> dict:
        """What is kept with the day: every list capped at MAX_LISTED, with its whole count."""
        listed = {}
        for name in LISTS:
            found = getattr(self, name)
            listed[name] = found[:MAX_LISTED]
            listed[f"{name}_count"] = len(found)
        return {**listed, "probed_statuses": self.probed_statuses}


class DayObjects:
    """The day's audit objects by request id, the key's file name. A key is kept only when it
    is not the contract's ``<prefix><id>.json``: the others follow from the id."""

    def __init__(self, day: date) -> None:
        self.prefix = day_prefix(day)
        self.ids: set[str] = set()
        self.odd_keys: dict[str, str] = {}

    def add(self, key: str) -> None:
        request_id = self._id_of(key)
        self.ids.add(request_id)
        if self.key(request_id) != key:
            self.odd_keys[request_id] = key

    def _id_of(self, key: str) -> str:
        return key[len(self.prefix) :].removesuffix(".json")

    def holds(self, key: str) -> bool:
        if not key.startswith(self.prefix):
            return False
        request_id = self._id_of(key)
        return request_id in self.ids and self.key(request_id) == key

    def key(self, request_id: str) -> str:
        return self.odd_keys.get(request_id) or f"{self.prefix}{request_id}.json"

    def __len__(self) -> int:
        return len(self.ids)


def list_objects(ctx: Context, day: date) -> DayObjects:
    """The day's audit objects."""
    found = DayObjects(day)
    pages = ctx.client("s3").get_paginator("list_objects_v2")
    for page in pages.paginate(Bucket=ctx.name("AuditBucket"), Prefix=found.prefix):
        for listed in page.get("Contents", []):
            found.add(listed["Key"])
    return found


def hourly_counts(ctx: Context, day: date) -> tuple[Counter, set[int], bool]:
    """Requests per hour as the rollups count them, the statuses seen, and whether some hour
    does not name all its statuses (then every status of its class must be read): it
    predates the per-status counts, or counted some under "(other)", as the ingest did
    before a flood of project names could fold one breakdown alone."""
    start, end = day_bounds(day)
    per_hour, statuses, probe = Counter(), set(), False
    for status_class in STATUS_CLASSES:
        hours = rollups.read_rollups(
            "statusClass",
            status_class,
            start,
            end - timedelta(hours=1),
            table=ctx.name("AuditTable"),
            client=ctx.client("dynamodb"),
        )
        for hour in hours:
            per_hour[hour["hour"]] += hour["requests"]
            counts = hour["breakdowns"].get("status", {}).items()
            by_status = {int(status): count for status, count in counts if status.isdigit()}
            statuses.update(by_status)
            if sum(by_status.values()) < hour["requests"]:
                probe = True
                statuses.update(_statuses_of_class(status_class))
    return per_hour, statuses, probe


def _statuses_of_class(status_class: str) -> list[int]:
    hundred = int(status_class[0])
    known = [int(status) for status in HTTPStatus] + list(NONSTANDARD_STATUSES)
    return sorted(status for status in known if status // 100 == hundred)


def day_items(
    ctx: Context,
    day: date,
    statuses: Iterable[int],
    *,
    with_previews_only: bool = False,
    cost_into: DayCheck | None = None,
) -> Iterator[dict]:
    """The day's audit items (id, createdAt, recordKey), through the status index;
    ``with_previews_only``: those that still have a preview. The read units consumed are
    added to ``cost_into.read_units``."""
    start, end = (format_timestamp(moment) for moment in day_bounds(day))
    client = ctx.client("dynamodb")
    for status in sorted(statuses):
        for shard in range(STATUS_SHARDS):
            params: dict[str, Any] = {
                "TableName": ctx.name("AuditTable"),
                "IndexName": STATUS_TIME,
                # Sort keys are "<createdAt>#<id>": the end instant's own items sort after it.
                "KeyConditionExpression": "statusPk = :pk AND statusSk BETWEEN :start AND :end",
                "ExpressionAttributeValues": {
                    ":pk": {"S": status_key(status, shard)},
                    ":start": {"S": start},
                    ":end": {"S": end},
                },
                "ProjectionExpression": "id, createdAt, recordKey",
                "ReturnConsumedCapacity": "TOTAL",
            }
            if with_previews_only:
                params["FilterExpression"] = (
                    "attribute_exists(promptPreview) OR attribute_exists(completionPreview)"
                )
            while True:
                response = client.query(**params)
                if cost_into is not None:
                    units = response.get("ConsumedCapacity", {}).get("CapacityUnits", 0.0)
                    cost_into.read_units += units
                for item in response["Items"]:
                    yield {name: value["S"] for name, value in item.items()}
                if "LastEvaluatedKey" not in response:
                    break
                params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
            ctx.progress.checkpoint()


def ingested_elsewhere(ctx: Context, request_ids: list[str]) -> dict[str, str]:
    """Of these request ids, those whose guard exists: ingested, from another object. By
    request id, the createdAt of the record that was kept."""
    keys = [
        {"id": {"S": request_id}, "createdAt": {"S": GUARD_SORT_KEY}} for request_id in request_ids
    ]
    guards = batch_get(
        keys,
        table=ctx.name("AuditTable"),
        client=ctx.client("dynamodb"),
        projection="id, recordCreatedAt",
        sleep=ctx.sleep,
    )
    return {guard["id"]["S"]: guard["recordCreatedAt"]["S"] for guard in guards}


def gateway_count(ctx: Context, day: date) -> int | None:
    """API Gateway's request count for the stage that day; None locally (no API Gateway)."""
    if ctx.spec.is_local:
        return None
    start, end = day_bounds(day)
    response = ctx.client("cloudwatch").get_metric_statistics(
        Namespace="AWS/ApiGateway",
        MetricName="Count",
        Dimensions=[
            {"Name": "ApiName", "Value": ctx.name("RestApi")},
            {"Name": "Stage", "Value": STAGE},
        ],
        StartTime=start,
        EndTime=end,
        Period=86400,
        Statistics=["Sum"],
    )
    return round(sum(point["Sum"] for point in response["Datapoints"]))


def compare(
    check: DayCheck,
    objects: DayObjects,
    items: Iterable[dict],
    rollup_hours: Counter,
    dead_lettered: set[str],
) -> list[str]:
    """Fill ``check`` from the sources; returns the request ids of objects without an item,
    whose guards tell missing from duplicate objects."""
    unmatched = set(objects.ids)
    item_hours = Counter()
    for item in items:
        check.items += 1
        item_hours[item["createdAt"][:13]] += 1
        request_id = item["id"]
        if request_id in unmatched:
            unmatched.remove(request_id)
        elif request_id in objects.ids:
            check.double.append(_item_row(item))
        else:
            check.extra.append(_item_row(item))
    check.objects, check.rollups = len(objects), sum(rollup_hours.values())
    check.dead_lettered = sum(objects.holds(key) for key in dead_lettered)
    check.miscounted_hours = [
        {"hour": hour, "items": item_hours[hour], "rollups": rollup_hours[hour]}
        for hour in sorted(set(item_hours) | set(rollup_hours))
        if item_hours[hour] != rollup_hours[hour]
    ]
    return sorted(unmatched)


def _item_row(item: dict) -> dict:
    return {
        "requestId": item["id"],
        "createdAt": item["createdAt"],
        "recordKey": item.get("recordKey", ""),
    }


def file_unmatched(
    check: DayCheck,
    objects: DayObjects,
    unmatched: list[str],
    elsewhere: dict[str, str],
    dead_lettered: set[str],
    discarded: set[str],
) -> None:
    """Objects without an item of the day: duplicates of a record kept from another object,
    discarded by an operator, or missing (and then maybe waiting in the dead-letter queue)."""
    for request_id in unmatched:
        key = objects.key(request_id)
        if request_id in elsewhere:
            check.duplicate_objects.append(
                {"requestId": request_id, "key": key, "keptCreatedAt": elsewhere[request_id]}
            )
        elif key in discarded:
            check.discarded.append({"requestId": request_id, "key": key})
        else:
            check.missing.append(
                {"requestId": request_id, "key": key, "deadLettered": key in dead_lettered}
            )


# A check run's steps after the dead-letter queue's collection (``audit_runs``).
STEPS = [
    ("objects", "List the day's audit objects in S3"),
    ("rollups", "Add up the day's rollups"),
    ("items", "Read the day's items in DynamoDB"),
    ("guards", "Look up the objects without an item"),
    ("gateway", "API Gateway's request count"),
]


def check_day(
    ctx: Context, day: date, dead_lettered: set[str], discarded: set[str] = frozenset()
) -> DayCheck:
    """Check one day, each source a step of the run (``ctx.progress``). ``dead_lettered``:
    the S3 keys of events waiting in the dead-letter queue; ``discarded``: of those an
    operator discarded."""
    check = DayCheck(day)
    objects, counted, statuses, unmatched = DayObjects(day), Counter(), set(), []

    def list_step() -> str:
        nonlocal objects
        objects = list_objects(ctx, day)
        return f"{len(objects)} objects under {objects.prefix}"

    def rollups_step() -> str:
        nonlocal counted, statuses
        counted, statuses, check.probed_statuses = hourly_counts(ctx, day)
        probed = (
            ", every status read (some hours do not name theirs)" if check.probed_statuses else ""
        )
        return f"{sum(counted.values())} requests counted, statuses {sorted(statuses)}{probed}"

    def items_step() -> str:
        items = day_items(ctx, day, statuses, cost_into=check)
        unmatched.extend(compare(check, objects, items, counted, dead_lettered))
        return (
            f"{check.items} items ({check.read_units:.0f} read units); {len(check.extra)} extra,"
            f" {len(check.double)} double"
        )

    def guards_step() -> str:
        elsewhere = ingested_elsewhere(ctx, unmatched)
        file_unmatched(check, objects, unmatched, elsewhere, dead_lettered, discarded)
        return (
            f"{len(check.missing)} missing ({check.dead_lettered} dead-lettered), "
            f"{len(check.discarded)} discarded, {len(check.duplicate_objects)} duplicate objects"
        )

    def gateway_step() -> str:
        check.gateway = gateway_count(ctx, day)
        if check.gateway is None:
            return "skipped: no API Gateway in a local environment"
        gap = check.gateway - check.objects
        return f"{check.gateway} requests at the stage: {gap} more than records"

    for (key, title), step in zip(
        STEPS, (list_step, rollups_step, items_step, guards_step, gateway_step), strict=True
    ):
        run_step(ctx, key, title, step)
    return check
