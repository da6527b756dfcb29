"""Traffic of one project or user over time, from the hourly rollups alone.

What the per-project and per-user pages show: totals, series per hour (requests, errors,
latency percentiles, tokens, speed), the top values of the dimension's breakdowns, and the
latency histogram. Nothing here reads a record, so 30 days cost the same whatever the traffic.
"""

from datetime import UTC, datetime, timedelta

from django.core.cache import cache

from centralllm.audit import rollups
from provisioning.models import Environment

RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
DEFAULT_RANGE = "7d"
TOP = 10
# The speed figures of each hour (``rollups.summarize``), by their series' names.
SPEED_SERIES = {
    "ttftP50": "p50TtftMs",
    "ttftP95": "p95TtftMs",
    "msPerToken": "msPerOutputToken",
    "tokensPerSecond": "outputTokensPerSecond",
}
SETTLED = timedelta(hours=1)  # records reach the table minutes late, rarely more
DAY_SECONDS = 3600


def window(range_name: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The range's start and end; ValueError names the ranges there are."""
    if range_name not in RANGES:
        raise ValueError(f"range {range_name!r}: one of {', '.join(RANGES)}.")
    end = now or datetime.now(UTC)
    return end - RANGES[range_name], end


def traffic(
    dimension: str,
    value: str,
    start: datetime,
    end: datetime,
    *,
    environment: Environment,
    breakdowns: bool = True,
) -> dict:
    """``environment``'s totals, hourly series (every hour of the range, empty ones as 0)
    and, with ``breakdowns``, the top values of the dimension's breakdowns."""
    found = hours(dimension, value, start, end, environment=environment, breakdowns=breakdowns)
    return totals(found, start, end)


def totals(found: list[dict], start: datetime, end: datetime) -> dict:
    """Totals, hourly series and top breakdowns of hourly summaries from ``start`` to
    ``end``; summaries of one hour from several rollups (the status classes) are added up."""
    total = rollups.summarize(found)
    total["errorRate"] = total["errors"] / total["requests"] if total["requests"] else None
    by_hour: dict[str, list[dict]] = {}
    for hour in found:
        by_hour.setdefault(hour["hour"], []).append(hour)
    series = {name: [] for name in ("time", "requests", "errors", "p50", "p95", "tokens")}
    series.update({name: [] for name in SPEED_SERIES})
    at = start.replace(minute=0, second=0, microsecond=0)
    while at <= end:
        group = by_hour.get(rollups.hour_of(at.isoformat()))
        hour = rollups.summarize(group) if group else None
        series["time"].append(int(at.timestamp()))
        series["requests"].append(hour["requests"] if hour else 0)
        series["errors"].append(hour["errors"] if hour else 0)
        series["p50"].append(hour["p50LatencyMs"] if hour else None)
        series["p95"].append(hour["p95LatencyMs"] if hour else None)
        series["tokens"].append(hour["totalTokens"] if hour else 0)
        for name, figure in SPEED_SERIES.items():
            series[name].append(hour[figure] if hour else None)
        at += timedelta(hours=1)
    total["series"] = series
    total["top"] = {
        breakdown: sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))[:TOP]
        for breakdown, counts in total["breakdowns"].items()
    }
    total["histogramSeries"] = histogram_series(total["histogram"])
    return total


def hours(
    dimension: str,
    value: str,
    start: datetime,
    end: datetime,
    *,
    environment: Environment,
    breakdowns: bool,
) -> list[dict]:
    """The hourly rollups of the range. Whole days that ended ``SETTLED`` ago no longer
    change, so they come from the cache, kept ``DAY_SECONDS``: a month's summary reads
    DynamoDB for today only, once its days have been read."""
    now = datetime.now(UTC)
    where = environment.audit_table()
    table = f"{environment.region}:{where['table']}"
    prefix = f"rollup-day:{table}:{dimension}:{value}:{breakdowns}"
    days = {}
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    while day + timedelta(days=1) <= min(end, now - SETTLED):
        days[f"{prefix}:{day:%Y-%m-%d}"] = day
        day += timedelta(days=1)
    cached = cache.get_many(days)
    missing = [day for key, day in days.items() if key not in cached]
    # A day missing from the cache is read whole, so that it can be kept.
    read_from = min(missing) if missing else max(start, day)
    fresh = rollups.read_rollups(dimension, value, read_from, end, breakdowns=breakdowns, **where)
    cache.set_many(
        {
            key: [hour for hour in fresh if hour["hour"].startswith(f"{day:%Y-%m-%d}")]
            for key, day in days.items()
            if key not in cached
        },
        DAY_SECONDS,
    )
    earlier = [
        hour
        for key, day in days.items()
        if key in cached and day < read_from
        for hour in cached[key]
    ]
    first, last = rollups.hour_of(start.isoformat()), rollups.hour_of(end.isoformat())
    return [hour for hour in earlier + fresh if first <= hour["hour"] <= last]


def histogram_series(histogram: dict[int, int]) -> dict[str, list]:
    """The latency histogram as chart columns: each bucket's upper bound (ms) and count."""
    buckets = sorted(histogram)
    return {
        "ms": [round(rollups.bucket_upper_ms(bucket), 1) for bucket in buckets],
        "requests": [histogram[bucket] for bucket in buckets],
    }
