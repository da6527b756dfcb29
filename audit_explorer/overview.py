"""An environment's last 24 hours, as the Audit page and the dashboard open on them: from the
hourly rollups and one page of the status index, never by reading the day's records.

``last_day`` reads, in DynamoDB Queries (25 hours of one rollup key are one page):

- the five status classes' rollups, ``ROLLUP_SHARDS`` (8) write shards each: 40 Queries.
  They give the totals and the hourly series, and per hour the statuses, projects and API
  keys seen (``rollups.BREAKDOWNS``). The dashboard (``detail=False``) reads only these.
- with ``detail``, the rollups of the ``MAX_PROJECTS`` (10) busiest projects, 8 Queries each:
  their sparklines, error rates, users and request types (``traffic.traffic``, as their own
  pages read them).
- with ``newest`` too, the status index: for the ``PAGE`` newest requests, one page of each
  status seen in the latest hours that hold that many (the rollups say which), merged over
  its ``STATUS_SHARDS`` (8) shards: 8 Queries per status; then likewise for the ``PAGE``
  newest errors (statuses of 400 and up).

So at most 40 + 80 + 8 * (statuses of the newest requests' hours + error statuses of the
newest errors' hours) Queries, whatever the traffic: ``LastDay.reads`` says how many a call
made. A status index Query reads at most ``PAGE`` items, and only of those latest hours.
The status classes, the projects and the statuses are each read ``READERS`` at a time: one
after another, a hundred Queries of milliseconds each made a cold page take seconds
(bench/overview.py).
"""

import heapq
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.cache import cache

from audit_explorer import traffic
from centralllm.audit import items, rollups
from centralllm.audit.table import ROLLUP_SHARDS, STATUS_SHARDS
from provisioning.models import Environment

WINDOW = timedelta(hours=24)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
MAX_PROJECTS = 10  # read in detail; the rest are named with their request counts
TOP_USERS = 10
PAGE = 20  # newest requests and newest errors shown
KNOWN_SECONDS = 300  # how long the search form's suggestions are kept
READERS = 8  # rollup keys or statuses read at once (botocore pools 10 connections)


@dataclass
class Project:
    name: str
    requests: int
    errors: int
    error_rate: float | None
    p95_ms: float | None
    tokens: int
    hourly: list[int]  # requests per hour, oldest first
    hourly_errors: list[int]


@dataclass
class LastDay:
    """What ``last_day`` found; ``error`` says why nothing was read (no table yet, AWS down)."""

    environment: Environment
    start: datetime
    end: datetime
    requests: int = 0
    errors: int = 0
    error_rate: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    tokens: int = 0
    hourly: list[int] = field(default_factory=list)
    hourly_errors: list[int] = field(default_factory=list)
    projects: list[Project] = field(default_factory=list)  # the busiest, read in detail
    more_projects: list[tuple[str, int]] = field(default_factory=list)  # (name, requests)
    # Requests of hours ingested before the status classes counted projects.
    unattributed: int = 0
    # Requests of projects an hour did not name: past its cap of project names (a caller can
    # send any number), counted as "(other)"; no project is read or linked for them.
    unnamed: int = 0
    users: list[tuple[str, int]] = field(default_factory=list)  # of the projects read
    request_types: list[str] = field(default_factory=list)
    api_keys: list[str] = field(default_factory=list)
    recent: list[dict] = field(default_factory=list)  # newest first, all statuses
    recent_errors: list[dict] = field(default_factory=list)  # newest first, status >= 400
    reads: int = 0  # DynamoDB Queries made
    error: str | None = None

    @property
    def project_names(self) -> list[str]:
        """Every project named with traffic in the window, busiest first."""
        return [project.name for project in self.projects] + [n for n, _ in self.more_projects]


def last_day(
    environment: Environment,
    now: datetime | None = None,
    *,
    detail: bool = True,
    newest: bool = True,
) -> LastDay:
    """``environment``'s last 24 hours (whole hours: the rollups' grain, as the traffic
    pages' ``24h``); with ``detail``, its projects, users, request types and keys, and with
    ``newest`` too, its newest requests and errors.

    Up to now (no ``now``), what was read within ``AWS_STATE_CACHE_SECONDS`` is kept, as the
    dashboard keeps what AWS said: records reach the table seconds after their request
    anyway, and a page many keep open, or reload, then costs one read a period."""
    if now is not None:
        return _last_day(environment, now, detail=detail, newest=newest)
    key = f"audit-last-day:{environment.pk}:{detail}:{newest}"
    found = cache.get(key)
    if found is None:
        found = _last_day(environment, datetime.now(UTC), detail=detail, newest=newest)
        cache.set(key, found, settings.AWS_STATE_CACHE_SECONDS)
    found.environment = environment  # as the caller has it, renamed or not
    return found


def _last_day(environment: Environment, now: datetime, *, detail: bool, newest: bool) -> LastDay:
    found = LastDay(environment, now - WINDOW, now)
    try:
        _read(found, detail=detail, newest=newest)
    except (BotoCoreError, ClientError) as exc:
        found.error = f"DynamoDB did not answer: {exc}"
    return found


def known_values(environment: Environment) -> dict[str, list[str]]:
    """The projects, users, request types and API keys of the last 24 hours, which the search
    form suggests: as the last ``last_day`` of the environment found them, within
    ``KNOWN_SECONDS``, else read afresh. Empty when DynamoDB did not answer."""
    known = cache.get(_known_key(environment))
    return known if known is not None else remember(last_day(environment, newest=False))


def remember(found: LastDay) -> dict[str, list[str]]:
    """Keep what ``found`` knows for the search form (``known_values``); returns it."""
    known = {
        "projects": found.project_names,
        "users": [name for name, _ in found.users if name != rollups.OTHER],
        "request_types": found.request_types,
        "api_keys": found.api_keys,
    }
    if found.error is None:
        cache.set(_known_key(found.environment), known, KNOWN_SECONDS)
    return known


def _known_key(environment: Environment) -> str:
    return f"audit-known:{environment.pk}"


def _read(found: LastDay, *, detail: bool, newest: bool) -> None:
    environment, start, end = found.environment, found.start, found.end
    read = _each(
        lambda status_class: traffic.hours(
            "statusClass", status_class, start, end, environment=environment, breakdowns=detail
        ),
        STATUS_CLASSES,
    )
    hours = dict(zip(STATUS_CLASSES, read, strict=True))
    found.reads += len(STATUS_CLASSES) * ROLLUP_SHARDS
    everything = [hour for class_hours in hours.values() for hour in class_hours]
    total = traffic.totals(everything, start, end)
    found.requests, found.errors, found.tokens = (
        total["requests"],
        total["errors"],
        total["totalTokens"],
    )
    found.error_rate = total["errorRate"]
    found.p50_ms, found.p95_ms = total["p50LatencyMs"], total["p95LatencyMs"]
    found.hourly, found.hourly_errors = total["series"]["requests"], total["series"]["errors"]
    if not detail:
        return
    counted = total["breakdowns"]
    _projects(found, counted.get("project", {}))
    found.api_keys = sorted(set(counted.get("apiKeyId", {})) - {rollups.OTHER})
    if not newest:
        return
    errors = [hour for name in ("4xx", "5xx") for hour in hours[name]]
    found.recent = _newest(found, everything)
    found.recent_errors = _newest(found, errors)


def _projects(found: LastDay, counts: dict[str, int]) -> None:
    """The busiest projects read in detail (as their traffic pages read them), the rest
    named; users and request types added up over the projects read."""
    found.unattributed = max(0, found.requests - sum(counts.values()))
    # "(other)" names no project: its rollup would be that of a project a caller so named.
    found.unnamed = counts.get(rollups.OTHER, 0)
    named = [(name, count) for name, count in counts.items() if name != rollups.OTHER]
    busiest = sorted(named, key=lambda pair: (-pair[1], pair[0]))
    users: dict[str, int] = {}
    request_types: set[str] = set()
    names = [name for name, _ in busiest[:MAX_PROJECTS]]
    read = _each(
        lambda name: traffic.traffic(
            "project", name, found.start, found.end, environment=found.environment
        ),
        names,
    )
    found.reads += ROLLUP_SHARDS * len(names)
    for name, seen in zip(names, read, strict=True):
        found.projects.append(
            Project(
                name=name,
                requests=seen["requests"],
                errors=seen["errors"],
                error_rate=seen["errorRate"],
                p95_ms=seen["p95LatencyMs"],
                tokens=seen["totalTokens"],
                hourly=seen["series"]["requests"],
                hourly_errors=seen["series"]["errors"],
            )
        )
        for user, count in seen["breakdowns"].get("user", {}).items():
            users[user] = users.get(user, 0) + count
        request_types.update(seen["breakdowns"].get("requestType", {}))
    found.more_projects = busiest[MAX_PROJECTS:]
    found.users = sorted(users.items(), key=lambda pair: (-pair[1], pair[0]))[:TOP_USERS]
    found.request_types = sorted(request_types - {rollups.OTHER})


def _newest(found: LastDay, hours: list[dict]) -> list[dict]:
    """The ``PAGE`` newest records of the statuses ``hours`` count: one page of the status
    index per status, from the start of the latest hours that hold ``PAGE`` of them (the
    rollups say so), merged newest first."""
    by_hour: dict[str, list[dict]] = {}
    for hour in hours:
        by_hour.setdefault(hour["hour"], []).append(hour)
    since, statuses, held = found.start, set(), 0
    for name in sorted(by_hour, reverse=True):
        for hour in by_hour[name]:
            # A value folded into "(other)" (an hour over its cap) names no status.
            statuses.update(int(s) for s in hour["breakdowns"].get("status", {}) if s.isdigit())
            held += hour["requests"]
        if held >= PAGE:
            since = max(since, datetime.fromisoformat(f"{name}:00:00+00:00"))
            break
    table = found.environment.audit_table()
    pages = _each(
        lambda status: (
            items.query_status(status, start=since, end=found.end, limit=PAGE, **table).items
        ),
        sorted(statuses),
    )
    found.reads += STATUS_SHARDS * len(statuses)
    merged = heapq.merge(*pages, key=lambda item: item["statusSk"], reverse=True)
    return list(merged)[:PAGE]


def _each(read, values) -> list:
    """``read`` of every value, ``READERS`` at a time, in the values' order; the first
    exception is raised (boto3's clients are thread-safe; nothing here touches the ORM)."""
    with ThreadPoolExecutor(READERS, thread_name_prefix="overview") as pool:
        return list(pool.map(read, values))
