"""Traffic of one project or user over time, from the hourly rollups alone.

What the per-project and per-user pages show: totals, series per hour (requests, errors,
latency percentiles, tokens), the top values of the dimension's breakdowns, and the latency
histogram. Nothing here reads a record, so 30 days cost the same whatever the traffic.
"""

from datetime import UTC, datetime, timedelta

from centralllm.audit import rollups

RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
DEFAULT_RANGE = "7d"
TOP = 10


def window(range_name: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The range's start and end; ValueError names the ranges there are."""
    if range_name not in RANGES:
        raise ValueError(f"range {range_name!r}: one of {', '.join(RANGES)}.")
    end = now or datetime.now(UTC)
    return end - RANGES[range_name], end


def traffic(
    dimension: str, value: str, start: datetime, end: datetime, *, table: str | None = None
) -> dict:
    """Totals, hourly series (every hour of the range, empty ones as 0) and top breakdowns."""
    hours = rollups.read_rollups(dimension, value, start, end, table=table)
    total = rollups.summarize(hours)
    total["errorRate"] = total["errors"] / total["requests"] if total["requests"] else None
    by_hour = {hour["hour"]: hour for hour in hours}
    series = {name: [] for name in ("time", "requests", "errors", "p50", "p95", "tokens")}
    at = start.replace(minute=0, second=0, microsecond=0)
    while at <= end:
        hour = by_hour.get(rollups.hour_of(at.isoformat()))
        series["time"].append(int(at.timestamp()))
        series["requests"].append(hour["requests"] if hour else 0)
        series["errors"].append(hour["errors"] if hour else 0)
        series["p50"].append(rollups.percentile(hour["histogram"], 50) if hour else None)
        series["p95"].append(rollups.percentile(hour["histogram"], 95) if hour else None)
        series["tokens"].append(hour["totalTokens"] if hour else 0)
        at += timedelta(hours=1)
    total["series"] = series
    total["top"] = {
        breakdown: sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))[:TOP]
        for breakdown, counts in total["breakdowns"].items()
    }
    total["histogramSeries"] = histogram_series(total["histogram"])
    return total


def histogram_series(histogram: dict[int, int]) -> dict[str, list]:
    """The latency histogram as chart columns: each bucket's upper bound (ms) and count."""
    buckets = sorted(histogram)
    return {
        "ms": [round(rollups.bucket_upper_ms(bucket), 1) for bucket in buckets],
        "requests": [histogram[bucket] for bucket in buckets],
    }
