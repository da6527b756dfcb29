"""An audit search, from the URL's parameters to one page of items.

Every page is one DynamoDB Query bounded by an index key and a time window (a request id is
one direct lookup): never a Scan. Filters no index serves are applied to what the query read,
and the page says how many of how many. The cursor is the query's position, signed and bound
to the search and its environment, so a tampered or foreign one is refused. Every read goes to
one environment's audit table, in its region.
"""

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from django.core import signing

from audit_explorer import traffic
from centralllm.audit import items
from provisioning.models import Environment

MAX_LIMIT = 200
DEFAULT_LIMIT = 50
DEFAULT_RANGE = timedelta(hours=24)
# A search's window: its summary has a point per hour and reads the rollups a day at a time,
# so 2000-9999 once took 12 s, 87 MB of HTML and 700 MB of memory. Records are kept 400 days.
MAX_RANGE = timedelta(days=400)
ORDERS = {"newest", "oldest", "slowest", "fastest"}
# Filters no index serves, applied to the items a query read: (parameter, item attribute).
FILTERS = (("request_type", "requestType"), ("outcome", "outcome"), ("api_key", "apiKeyId"))
_SALT = "audit_explorer.cursor"


class BadSearch(ValueError):
    """The search cannot run; the message says what to change."""


@dataclass
class Search:
    project: str = ""
    user: str = ""
    status: int | None = None
    request_id: str = ""
    start: datetime | None = None
    end: datetime | None = None
    min_latency_ms: float | None = None
    max_latency_ms: float | None = None
    order: str = ""
    limit: int = DEFAULT_LIMIT
    filters: dict[str, str] = field(default_factory=dict)

    @property
    def index(self) -> str:
        if self.request_id:
            return "request id"
        if self.project:
            return "project"
        if self.user:
            return "user"
        return "status"

    def dimension(self) -> tuple[str, str]:
        """The rollup that counts this search's records: its project, user or status class.
        A status class holds more than the status, so its counts are the class's."""
        if self.project:
            return "project", self.project
        if self.user:
            return "user", self.user
        return "statusClass", f"{self.status // 100}xx"

    def key(self) -> str:
        """What the cursor is bound to: everything but the cursor itself."""
        plain = {
            k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items()
        }
        return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:32]


@dataclass
class Results:
    items: list[dict]
    read: int  # items the query returned, before the filters no index serves
    next_cursor: str | None
    read_units: float = 0.0  # what the page cost DynamoDB


def parse(params) -> Search:
    """A Search from query parameters; BadSearch says what is wrong, in words."""
    search = Search(
        project=params.get("project", "").strip(),
        user=params.get("user", "").strip(),
        request_id=params.get("request_id", "").strip(),
        filters={name: params[name].strip() for name, _ in FILTERS if params.get(name, "").strip()},
    )
    if params.get("status", "").strip():
        search.status = _number(params["status"], "status", int)
        if not 100 <= search.status <= 599:
            raise BadSearch(f"status {search.status} is not an HTTP status (100-599).")
    if not (search.request_id or search.project or search.user or search.status is not None):
        raise BadSearch("Search by project, user, status or request id.")
    now = datetime.now(UTC)
    search.end = _time(params.get("end"), "end") or now
    search.start = _time(params.get("start"), "start") or search.end - DEFAULT_RANGE
    if search.start >= search.end:
        raise BadSearch("The start must be before the end.")
    if search.end - search.start > MAX_RANGE:
        raise BadSearch(
            f"A search covers at most {MAX_RANGE.days} days (how long records are kept): "
            "move the start or the end closer."
        )
    for name in ("min_latency_ms", "max_latency_ms"):
        if params.get(name, "").strip():
            value = _number(params[name], name, float)
            if not math.isfinite(value) or value < 0:
                raise BadSearch(f"{name} must be a number of 0 or more.")
            setattr(search, name, value)
    if (search.min_latency_ms or 0) > (search.max_latency_ms or float("inf")):
        raise BadSearch("min_latency_ms must not be above max_latency_ms.")
    if params.get("limit", "").strip():
        search.limit = _number(params["limit"], "limit", int)
        if not 1 <= search.limit <= MAX_LIMIT:
            raise BadSearch(f"limit must be between 1 and {MAX_LIMIT}.")
    order = params.get("order", "").strip()
    allowed = {"slowest", "fastest"} if search.project else {"newest", "oldest"}
    if order and order not in allowed:
        raise BadSearch(f"order {order!r}: this search sorts by {', '.join(sorted(allowed))}.")
    search.order = order or ("slowest" if search.project else "newest")
    return search


def run(search: Search, cursor: str = "", *, environment: Environment) -> Results:
    """One page of ``environment``'s records: a direct lookup for a request id, else one Query
    on the search's index."""
    where = environment.audit_table()
    if search.request_id:
        item = items.get_item(search.request_id, **where)
        found = [item] if item else []
        return Results(_filtered(search, found), len(found), None)
    token = _unsign(cursor, search, environment) if cursor else None
    options = {"start": search.start, "end": search.end, "limit": search.limit, "token": token}
    options.update(where)
    try:
        if search.project:
            page = items.query_project_latency(
                search.project,
                min_latency_ms=search.min_latency_ms,
                max_latency_ms=search.max_latency_ms,
                slowest_first=search.order == "slowest",
                **options,
            )
        elif search.user:
            page = items.query_user(search.user, newest_first=search.order == "newest", **options)
        else:
            page = items.query_status(
                search.status, newest_first=search.order == "newest", **options
            )
    except ValueError as exc:  # a token of another query
        raise BadSearch(f"This page link does not belong to this search ({exc}).") from None
    next_cursor = _sign(page.next_token, search, environment) if page.next_token else None
    return Results(_filtered(search, page.items), len(page.items), next_cursor, page.read_units)


def _filtered(search: Search, found: list[dict]) -> list[dict]:
    wanted = [
        (attribute, search.filters[name]) for name, attribute in FILTERS if name in search.filters
    ]
    return [item for item in found if all(str(item.get(a)) == v for a, v in wanted)]


def _sign(token: str, search: Search, environment: Environment) -> str:
    data = {"t": token, "s": search.key(), "e": environment.pk}
    return signing.dumps(data, salt=_SALT, compress=True)


def _unsign(cursor: str, search: Search, environment: Environment) -> str:
    try:
        data = signing.loads(cursor, salt=_SALT)
    except signing.BadSignature:
        raise BadSearch(
            "This page link was changed or is not ours: start the search again."
        ) from None
    if data.get("s") != search.key() or data.get("e") != environment.pk:
        raise BadSearch("This page link belongs to another search: start the search again.")
    return data["t"]


def _time(value: str | None, name: str) -> datetime | None:
    if not value or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadSearch(f"{name} {value!r} is not a time like 2026-11-27T05:00:00Z.") from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if not 2000 <= moment.year <= 9999:  # the records' timestamps sort as text: four digits
        raise BadSearch(f"{name} {value!r} is outside the years 2000-9999.")
    return moment


def _number(value: str, name: str, kind: type):
    try:
        return kind(value.strip())
    except ValueError:
        raise BadSearch(f"{name} {value!r} is not a number.") from None


def summary(search: Search, *, environment: Environment) -> dict | None:
    """The search's traffic from the hourly rollups, never by reading records (whole hours:
    the rollups' grain). None for a request id: one record."""
    if search.request_id:
        return None
    dimension, value = search.dimension()
    total = traffic.traffic(
        dimension, value, search.start, search.end, environment=environment, breakdowns=False
    )
    total["scope"] = f"{dimension} {value}"
    return total


def pages(search: Search, *, environment: Environment):
    """Every item of the search, page after page (for exports: memory stays one page)."""
    cursor = ""
    while True:
        page = run(search, cursor, environment=environment)
        yield from page.items
        if not page.next_cursor:
            return
        cursor = page.next_cursor
