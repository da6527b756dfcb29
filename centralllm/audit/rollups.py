"""Hourly rollups, so that summaries never scan records.

Per hour and per project, user, API key and status class: the number of requests, errors
(client and server), cancellations, token sums, the latency sum and a latency histogram; a
project's hours also count requests per user and request type, a user's per project and
request type, a status class's per HTTP status, project and API key (``BREAKDOWNS``). They
live in the audit table under the base key (``table.py``) and are updated by ADD in the same
transaction as the record's first write (``ingest.py``), so a redelivered record never counts
twice.

The histogram has log-spaced buckets, eight per doubling: bucket i holds latencies in
(2^((i-1)/8), 2^(i/8)] ms, so a percentile read from it is at most 9% above the true value.
Bucket 0 holds everything up to 1 ms; the last bucket (about 70 minutes) everything longer.

Speed (issue 23) is counted beside it, with attribute names of its own, none from a record:

- the time to first token in a histogram of the same buckets (``t<i>``), for records with a
  usable one; ``ttftNone`` counts those without (non-streaming answers, errors, whose first
  byte is their error, streams that ended before their first byte), ``ttftUnusable`` those
  whose TTFT the contract found unusable (flag ``ttft_unusable``). A record counts in
  exactly one of the three, so an hour whose three add up to fewer than its requests was
  (partly) ingested before they were counted.
- generation: ``genMs`` (latency - TTFT for a stream, the whole latency for a non-streaming
  answer, which then includes reading the prompt) and ``genTokens`` (its completion tokens),
  added up over ``genRequests``, the records whose figures are plausible (see
  ``generation``). Time per output token is genMs / genTokens, tokens per second its
  inverse: averages weighted by tokens, as a client waiting for them sees them.
"""

import math
import os
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from centralllm import aws
from centralllm.audit.contract import format_timestamp, table_name
from centralllm.audit.items import MISSING, batch_get
from centralllm.audit.table import ROLLUP_SHARDS, shard_of, sharded

DIMENSIONS = ("project", "user", "apiKey", "statusClass")
# What a dimension's hour also counts, for "top users of a project" and the like: one
# number attribute "<breakdown>#<value>" per value seen.
# An API key's usage in its usage plan's quota period, one item per period (and write shard)
# under the base key ``id = rollup#apiKeyPeriod#<key id>``, ``createdAt`` = the period:
# ``2026-12-02`` (DAY), ``2026-W11-29`` (WEEK: from the Sunday, as API Gateway counts) or
# ``2026-12`` (MONTH), with ``lastAt``, the newest record counted. So a page of keys reads
# its quota usage in a few BatchGetItems.
PERIOD_DIMENSION = "apiKeyPeriod"
QUOTA_PERIODS = ("DAY", "WEEK", "MONTH")
BREAKDOWNS = {
    "project": ("user", "requestType"),
    "user": ("project", "requestType"),
    "apiKey": ("project", "user"),
    PERIOD_DIMENSION: ("project", "user"),
    # Which statuses a day has, so the completeness check reads only those status keys; and
    # which projects and API keys an hour has, so the Audit overview can name them. Both are
    # few (operators issue keys and bind them to projects), unlike users or request types.
    "statusClass": ("status", "project", "apiKeyId"),
}
BUCKETS_PER_DOUBLING = 8
LAST_BUCKET = 22 * BUCKETS_PER_DOUBLING
HISTOGRAM_PREFIX = "h"  # bucket i is the number attribute "h<i>"
TTFT_PREFIX = "t"  # bucket i of the time to first token is "t<i>"
COUNTERS = (
    "requests",
    "errors",
    "cancelled",
    "promptTokens",
    "completionTokens",
    "totalTokens",
    "latencyMsSum",
    "ttftNone",
    "ttftUnusable",
    "genRequests",
    "genMs",
    "genTokens",
)
# A generation beyond these is not a measurement (a writer not ours, a clock gone wrong):
# left out of the sums, which then stay far inside DynamoDB's 38 digits.
MAX_GENERATION_MS = 24 * 3600 * 1000
MAX_GENERATION_TOKENS = 10**7


def latency_bucket(latency_ms: float) -> int:
    if latency_ms <= 1:
        return 0
    return min(math.ceil(math.log2(latency_ms) * BUCKETS_PER_DOUBLING), LAST_BUCKET)


def bucket_upper_ms(bucket: int) -> float:
    return 2 ** (bucket / BUCKETS_PER_DOUBLING)


def percentile(histogram: Mapping[int, int], q: float) -> float | None:
    """The q-th percentile (0-100) in ms: the upper bound of the bucket holding it."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = max(1, math.ceil(q / 100 * total))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return bucket_upper_ms(bucket)
    raise AssertionError("unreachable: the ranks add up to the total")


def speed_increments(record: dict) -> dict[str, int | float]:
    """What a validated record adds to its rollups' speed counters: exactly one of a TTFT
    bucket, ``ttftNone`` or ``ttftUnusable``, and its generation when it has one."""
    if "ttft_unusable" in record["flags"]:
        counted: dict[str, int | float] = {"ttftUnusable": 1}
    elif record["ttftMs"] is None or not _answered(record):
        counted = {"ttftNone": 1}
    else:
        counted = {f"{TTFT_PREFIX}{latency_bucket(record['ttftMs'])}": 1}
    measured = generation(record)
    if measured is not None:
        counted.update(genRequests=1, genMs=measured[0], genTokens=measured[1])
    return counted


def generation(record: dict) -> tuple[float, int] | None:
    """(ms, tokens) the record spent generating its completion, or None when it has no
    plausible figure: an error, no tokens, a stream without a usable TTFT, no time left."""
    tokens = (record["usage"] or {}).get("completionTokens", 0)
    if not _answered(record):
        return None
    if record["stream"]:
        if record["ttftMs"] is None:
            return None
        spent = record["latencyMs"] - record["ttftMs"]
    else:
        spent = record["latencyMs"]
    if not (0 < spent <= MAX_GENERATION_MS and 0 < tokens <= MAX_GENERATION_TOKENS):
        return None
    return round(spent, 3), tokens


def _answered(record: dict) -> bool:
    """Whether the model answered (if cut short): an error's first byte is its error, fast."""
    return record["outcome"] in ("ok", "cancelled")


def hour_of(created_at: str) -> str:
    """The rollup hour of a record's createdAt: ``2026-11-27T05``."""
    return created_at[:13]


def rollup_id(dimension: str, value: str | None, shard: int = 0) -> str:
    return f"rollup#{sharded(dimension, shard)}#{value or MISSING}"


def dimension_values(record: dict) -> dict[str, str | None]:
    return {
        "project": record["project"],
        "user": record["user"],
        "apiKey": record["apiKeyId"],
        "statusClass": f"{record['status'] // 100}xx",
    }


# A caller can send any number of distinct users, request types or projects, and each would
# become an attribute of the rollup item, growing it towards DynamoDB's 400 KB (an update
# costs one write unit per KB of the item). So an item counts at most BREAKDOWN_CAP values per
# breakdown (held in a string set, ``seen.<breakdown>``, which a condition checks): a record
# bringing one more is counted under OTHER in that breakdown only (the failed condition
# returns the item, which says which set is full: ``full_breakdowns``), so a flood of project
# names never hides a status class's statuses or keys. An item DynamoDB still refuses for its
# size loses its breakdowns. The record is never refused for its rollups.
FULL, FOLDED, BARE = "full", "folded", "bare"
OTHER = "(other)"
BREAKDOWN_CAP = 100  # per breakdown and item; a status class has at most 100 statuses
SEEN_PREFIX = "seen."


def rollup_updates(
    record: dict,
    *,
    table: str,
    crowded: Mapping[str, str] | None = None,
    over_cap: Mapping[str, Collection[str]] | None = None,
) -> list[dict]:
    """TransactWriteItems ``Update`` actions adding one validated record to its rollups.

    Five distinct items per record (one per dimension, and the API key's quota period),
    never the same item twice, in ``ROLLUP_ORDER``. ``crowded`` says, per dimension, how
    far to cut its breakdowns (``FOLDED``, ``BARE``) for an item DynamoDB found too large;
    ``over_cap``, per dimension, the breakdowns whose item holds its cap of values without
    the record's (``full_breakdowns``): those count the record under OTHER.
    """
    usage = record["usage"] or {}
    increments = {
        "requests": 1,
        "errors": int(record["outcome"] in ("client_error", "server_error")),
        "cancelled": int(record["outcome"] == "cancelled"),
        "promptTokens": usage.get("promptTokens", 0),
        "completionTokens": usage.get("completionTokens", 0),
        "totalTokens": usage.get("totalTokens", 0),
        "latencyMsSum": record["latencyMs"],
        f"{HISTOGRAM_PREFIX}{latency_bucket(record['latencyMs'])}": 1,
    }
    speed = speed_increments(record)
    shard = shard_of(record["requestId"], ROLLUP_SHARDS)
    created = datetime.fromisoformat(record["createdAt"].replace("Z", "+00:00"))
    # The key's quota period is what the keys page reads, with the newest record counted.
    period = {"lastAt": record["createdAt"]}
    keys = {
        **{
            dimension: (value, hour_of(record["createdAt"]), {})
            for dimension, value in dimension_values(record).items()
        },
        PERIOD_DIMENSION: (record["apiKeyId"], period_of(created, quota_period()), period),
    }
    updates = []
    for dimension in ROLLUP_ORDER:
        value, sort_key, extra = keys[dimension]
        level = (crowded or {}).get(dimension, FULL)
        folded = (over_cap or {}).get(dimension, ())
        counted = {**increments, **_breakdowns(record, dimension, level, folded)}
        if dimension != PERIOD_DIMENSION:  # a key's quota period counts usage, not speed
            counted.update(speed)
        names = {f"#n{i}": name for i, name in enumerate(counted)}
        values = {f":v{i}": {"N": str(amount)} for i, amount in enumerate(counted.values())}
        adds = [f"#n{i} :v{i}" for i in range(len(counted))]
        sets = ["#dim = :dim", "#val = :val", *(f"#{name} = :{name}" for name in extra)]
        update = {
            "TableName": table,
            "Key": {
                "id": {"S": rollup_id(dimension, value, shard)},
                "createdAt": {"S": sort_key},
            },
            "ExpressionAttributeNames": {
                **names,
                "#dim": "dimension",
                "#val": "value",
                **{f"#{name}": name for name in extra},
            },
            "ExpressionAttributeValues": {
                **values,
                ":dim": {"S": dimension},
                ":val": {"S": value or MISSING},
                **{f":{name}": {"S": text} for name, text in extra.items()},
            },
        }
        if level == FULL:
            adds += _capped(record, dimension, update, folded)
        update["UpdateExpression"] = f"SET {', '.join(sets)} ADD {', '.join(adds)}"
        updates.append({"Update": update})
    return updates


def _capped(record: dict, dimension: str, update: dict, folded: Collection[str]) -> list[str]:
    """Put the sets of the breakdowns not ``folded`` and their cap into ``update``; the set
    additions."""
    names = [name for name in BREAKDOWNS.get(dimension, ()) if name not in folded]
    if not names:
        return []
    adds, conditions = [], []
    update["ExpressionAttributeValues"][":cap"] = {"N": str(BREAKDOWN_CAP)}
    for i, name in enumerate(names):
        update["ExpressionAttributeNames"][f"#s{i}"] = f"{SEEN_PREFIX}{name}"
        seen = _seen_value(record, name)
        update["ExpressionAttributeValues"][f":s{i}"] = {"SS": [seen]}
        update["ExpressionAttributeValues"][f":e{i}"] = {"S": seen}
        adds.append(f"#s{i} :s{i}")
        conditions.append(
            f"(attribute_not_exists(#s{i}) OR contains(#s{i}, :e{i}) OR size(#s{i}) < :cap)"
        )
    update["ConditionExpression"] = " AND ".join(conditions)
    # A failed condition returns the item: its sets say which breakdown is full.
    update["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    return adds


def _seen_value(record: dict, breakdown: str) -> str:
    return str(record[breakdown]) if record[breakdown] is not None else MISSING


def full_breakdowns(record: dict, dimension: str, item: Mapping[str, dict]) -> set[str]:
    """The breakdowns of ``dimension`` whose rollup ``item`` (as DynamoDB returns it with a
    failed condition) holds ``BREAKDOWN_CAP`` values, none of them the record's."""
    full = set()
    for name in BREAKDOWNS.get(dimension, ()):
        seen = item.get(f"{SEEN_PREFIX}{name}", {}).get("SS", [])
        if len(seen) >= BREAKDOWN_CAP and _seen_value(record, name) not in seen:
            full.add(name)
    return full


ROLLUP_ORDER = (*DIMENSIONS, PERIOD_DIMENSION)


def _breakdowns(
    record: dict, dimension: str, level: str, folded: Collection[str]
) -> dict[str, int]:
    if level == BARE:
        return {}
    return {
        breakdown_attribute(name, OTHER if level == FOLDED or name in folded else record[name]): 1
        for name in BREAKDOWNS.get(dimension, ())
    }


def more_crowded(level: str) -> str | None:
    """The next cut for a rollup item at its cap or refused for its size at ``level``; None
    after the last."""
    return {FULL: FOLDED, FOLDED: BARE}.get(level)


def quota_period() -> str:
    """The usage plan's quota period, which the ingest counts keys by (``QUOTA_PERIOD``)."""
    period = os.environ.get("QUOTA_PERIOD") or "MONTH"
    if period not in QUOTA_PERIODS:
        raise ValueError(f"QUOTA_PERIOD {period!r}: one of {', '.join(QUOTA_PERIODS)}")
    return period


def period_of(moment: datetime, period: str) -> str:
    """The quota period holding ``moment`` (UTC), as API Gateway counts it."""
    moment = moment.astimezone(UTC)
    if period == "DAY":
        return f"{moment:%Y-%m-%d}"
    if period == "WEEK":
        sunday = moment - timedelta(days=(moment.weekday() + 1) % 7)
        return f"{sunday:%Y-W%m-%d}"
    return f"{moment:%Y-%m}"


def period_start(moment: datetime, period: str) -> datetime:
    """Midnight UTC of the day the quota period holding ``moment`` began."""
    moment = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "WEEK":
        return moment - timedelta(days=(moment.weekday() + 1) % 7)
    if period == "MONTH":
        return moment.replace(day=1)
    return moment


def breakdown_attribute(breakdown: str, value: str | None) -> str:
    return f"{breakdown}#{value or MISSING}"


def read_rollups(
    dimension: str,
    value: str | None,
    start: datetime,
    end: datetime,
    *,
    table: str | None = None,
    breakdowns: bool = True,
    client: Any = None,
) -> list[dict]:
    """One summary per hour from ``start`` to ``end`` (both hours included), oldest first.

    Each is ``{"hour", "requests", "errors", ..., "histogram": {bucket: count},
    "breakdowns": {...}}``, the write shards already added up; ``breakdowns=False`` leaves
    those out and reads less. Hours without requests are left out.
    """
    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown rollup dimension {dimension!r}: one of {', '.join(DIMENSIONS)}")
    client = client or aws.client("dynamodb")
    wanted = BREAKDOWNS.get(dimension, ()) if breakdowns else ()
    hours: dict[str, dict] = {}
    for shard in range(ROLLUP_SHARDS):
        params = {
            "TableName": table or table_name(),
            "KeyConditionExpression": "id = :id AND createdAt BETWEEN :start AND :end",
            "ExpressionAttributeValues": {
                ":id": {"S": rollup_id(dimension, value, shard)},
                ":start": {"S": hour_of(format_timestamp(start))},
                ":end": {"S": hour_of(format_timestamp(end))},
            },
        }
        if not wanted:  # a month of hours is thousands of items: read only what is added up
            params["ProjectionExpression"] = ", ".join(_SUMMED_NAMES)
            params["ExpressionAttributeNames"] = _SUMMED_NAMES
        while True:
            response = client.query(**params)
            for item in response["Items"]:
                hour = item["createdAt"]["S"]
                summary = hours.get(hour) or hours.setdefault(hour, _empty(hour))
                _accumulate(summary, item, wanted)
            if "LastEvaluatedKey" not in response:
                break
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
    return [hours[hour] for hour in sorted(hours)]


_COUNTER_NAMES = frozenset(COUNTERS)
# A summary's histograms, by the prefix of their bucket attributes.
HISTOGRAMS = {HISTOGRAM_PREFIX: "histogram", TTFT_PREFIX: "ttftHistogram"}
# What a summary adds up, by expression attribute name (``#n0``: the attribute).
_SUMMED_NAMES = {
    f"#n{index}": name
    for index, name in enumerate(
        (
            "createdAt",
            *COUNTERS,
            *(f"{prefix}{b}" for prefix in HISTOGRAMS for b in range(LAST_BUCKET + 1)),
        )
    )
}


def _accumulate(summary: dict, attributes: dict, breakdowns: tuple[str, ...]) -> None:
    """Add one rollup item, as DynamoDB sent it, to ``summary``: one pass over its numbers,
    without building a Python item first (a month of hours is thousands of items)."""
    histograms = {prefix: summary[name] for prefix, name in HISTOGRAMS.items()}
    for name, typed in attributes.items():
        number = typed.get("N")
        if number is None:
            continue
        amount = float(number) if "." in number or "E" in number.upper() else int(number)
        if name in _COUNTER_NAMES:
            summary[name] += amount
        elif name[0] in histograms and name[1:].isdigit():
            histogram, bucket = histograms[name[0]], int(name[1:])
            histogram[bucket] = histogram.get(bucket, 0) + amount
        elif breakdowns:
            breakdown, _, value = name.partition("#")
            if breakdown in breakdowns:
                into = summary["breakdowns"].setdefault(breakdown, {})
                into[value] = into.get(value, 0) + amount


def read_key_periods(
    key_ids: Iterable[str], period: str, *, table: str | None = None, client: Any = None
) -> dict[str, dict]:
    """Each key's usage in one quota period (``period_of``): counters, breakdowns and
    ``lastAt``, from BatchGetItem (100 items a call), its write shards added up."""
    client = client or aws.client("dynamodb")
    table = table or table_name()
    usage = {key_id: {**_empty(period), "lastAt": None} for key_id in key_ids}
    by_id = {
        rollup_id(PERIOD_DIMENSION, key_id, shard): key_id
        for key_id in usage
        for shard in range(ROLLUP_SHARDS)
    }
    wanted = [{"id": {"S": item_id}, "createdAt": {"S": period}} for item_id in by_id]
    for item in batch_get(wanted, table=table, client=client):
        summary = usage[by_id[item["id"]["S"]]]
        _accumulate(summary, item, BREAKDOWNS[PERIOD_DIMENSION])
        last = item.get("lastAt", {}).get("S", "")
        summary["lastAt"] = max(summary["lastAt"] or "", last) or None
    return usage


def _empty(hour: str) -> dict:
    return {
        "hour": hour,
        **dict.fromkeys(COUNTERS, 0),
        **{name: {} for name in HISTOGRAMS.values()},
        "breakdowns": {},
    }


def _add(summary: dict, hour: Mapping) -> None:
    for counter in COUNTERS:
        summary[counter] += hour.get(counter, 0)
    for name in HISTOGRAMS.values():
        into = summary[name]
        # .get: hours kept in a cache from before the TTFT histogram have none.
        for bucket, count in hour.get(name, {}).items():
            into[bucket] = into.get(bucket, 0) + count
    for breakdown, counts in hour["breakdowns"].items():
        into = summary["breakdowns"].setdefault(breakdown, {})
        for value, count in counts.items():
            into[value] = into.get(value, 0) + count


def summarize(hours: Iterable[dict]) -> dict:
    """Totals over hourly summaries, with mean latency and p50/p95/p99 in ms, and speed:
    TTFT p50/p95 (ms), time per output token (ms), output tokens per second, and
    ``speedMissing``, the requests ingested before speed was counted (none of the three
    TTFT counts), which the speed figures leave out."""
    total = _empty("")
    del total["hour"]
    for hour in hours:
        _add(total, hour)
    total["meanLatencyMs"] = (
        total["latencyMsSum"] / total["requests"] if total["requests"] else None
    )
    for q in (50, 95, 99):
        total[f"p{q}LatencyMs"] = percentile(total["histogram"], q)
    for q in (50, 95):
        total[f"p{q}TtftMs"] = percentile(total["ttftHistogram"], q)
    total["ttftCount"] = sum(total["ttftHistogram"].values())
    counted = total["ttftCount"] + total["ttftNone"] + total["ttftUnusable"]
    total["speedMissing"] = max(0, total["requests"] - counted)
    generating = total["genTokens"] and total["genMs"]
    total["msPerOutputToken"] = total["genMs"] / total["genTokens"] if generating else None
    total["outputTokensPerSecond"] = (
        total["genTokens"] / total["genMs"] * 1000 if generating else None
    )
    return total
