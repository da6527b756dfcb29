"""An environment's GPU cost over a range of hours, apportioned to its projects.

Per hour: the instance-hours (``gpu_hours``) times the price (``prices``), split among the
projects by their tokens (``apportion``). The tokens come from the hourly rollups alone: the
five status classes' give each hour's total, the projects it counted and the API keys it
saw; each project's own rollups give its tokens and the users it counted. Tokens the status
classes count but no named project does (projects past a rollup item's cap, counted as
"(other)") are charged to ``UNNAMED``, so an hour's shares always add up to its cost.

Reads: the hours' tokens through ``usage`` (cold, ``ROLLUP_SHARDS`` (8) DynamoDB Queries
per status class and per project with traffic in the range; then 40 Queries of counts and
the hours changed since, from the days it keeps), and one GetMetricData page per 100,800
datapoints (a range of hours is one); the instance-hours and the price are read for every
ledger. A ledger is kept ``CACHE_SECONDS``: the pages, the dashboard's budgets and the
export share it.
"""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.core.cache import cache

from centralllm.audit import rollups
from costs import apportion, gpu_hours, prices, usage
from provisioning.models import Environment

CACHE_SECONDS = 600
UNNAMED = "(unnamed projects)"
MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Charge:
    """One project's share of one hour's GPU cost; ``project`` None: the hour was idle."""

    hour: str  # as the rollups name it: 2026-11-27T05
    project: str | None
    cost: Decimal
    tokens: int
    users: frozenset[str] = frozenset()  # the users the project's hour counted
    api_keys: frozenset[str] = frozenset()  # the keys the hour saw, of every project

    @property
    def day(self) -> date:
        return date.fromisoformat(self.hour[:10])


@dataclass(frozen=True)
class ProjectCost:
    name: str
    cost: Decimal
    tokens: int

    @property
    def per_million_tokens(self) -> Decimal | None:
        return self.cost * MILLION / self.tokens if self.tokens else None


@dataclass
class Ledger:
    start: datetime
    end: datetime
    price: prices.Price
    instance_hours: dict[str, Decimal]
    charges: list[Charge] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return sum((charge.cost for charge in self.charges), Decimal(0))

    @property
    def idle(self) -> Decimal:
        return sum((charge.cost for charge in self.charges if charge.project is None), Decimal(0))

    @property
    def idle_share(self) -> float | None:
        return float(self.idle / self.total) if self.total else None

    @property
    def gpu_hours(self) -> Decimal:
        return sum(self.instance_hours.values(), Decimal(0))

    @property
    def unmeasured(self) -> int:
        """Hours of the range without a GPU figure: charged nothing."""
        return len(_hours(self.start, self.end)) - len(self.instance_hours)

    def projects(self) -> list[ProjectCost]:
        """Every project charged, the costliest first."""
        totals: dict[str, list] = {}
        for charge in self.charges:
            if charge.project is not None:
                into = totals.setdefault(charge.project, [Decimal(0), 0])
                into[0] += charge.cost
                into[1] += charge.tokens
        found = [ProjectCost(name, cost, tokens) for name, (cost, tokens) in totals.items()]
        return sorted(found, key=lambda project: (-project.cost, project.name))

    def project(self, name: str) -> ProjectCost:
        mine = [charge for charge in self.charges if charge.project == name]
        return ProjectCost(
            name,
            sum((charge.cost for charge in mine), Decimal(0)),
            sum(charge.tokens for charge in mine),
        )

    def days(self, project: str | None = None) -> list[tuple[date, Decimal, Decimal]]:
        """Every day of the range: (day, cost apportioned, idle cost); of one project's
        charges only (idle 0) with ``project``."""
        first, last = self.start.astimezone(UTC).date(), self.end.astimezone(UTC).date()
        by_day = {
            first + timedelta(days=n): [Decimal(0), Decimal(0)]
            for n in range((last - first).days + 1)
        }
        for charge in self.charges:
            if project is not None and charge.project != project:
                continue
            by_day.setdefault(charge.day, [Decimal(0), Decimal(0)])[charge.project is None] += (
                charge.cost
            )
        return [(day, used, idle) for day, (used, idle) in sorted(by_day.items())]


def ledger(environment: Environment, start: datetime, end: datetime) -> Ledger:
    """``environment``'s ledger from the hour holding ``start`` to the one holding ``end``,
    kept ``CACHE_SECONDS``. Raises PriceUnknown, and what AWS raises."""
    price = prices.hourly_price(environment)
    first, last = rollups.hour_of(_iso(start)), rollups.hour_of(_iso(end))
    key = f"cost-ledger:{environment.pk}:{first}:{last}:{price.per_hour}"
    found = cache.get(key)
    if found is None:
        found = compute(environment, start, end, price)
        cache.set(key, found, CACHE_SECONDS)
    return found


def compute(
    environment: Environment, start: datetime, end: datetime, price: prices.Price
) -> Ledger:
    measured = gpu_hours.instance_hours(environment, start, end)
    wanted = set(_hours(start, end))
    found = Ledger(start, end, price, {hour: n for hour, n in measured.items() if hour in wanted})
    first, last = rollups.hour_of(_iso(start)), rollups.hour_of(_iso(end))
    used_hours = usage.hourly(environment, first, last)
    for hour, instances in sorted(found.instance_hours.items()):
        cost = apportion.hour_cost(instances, price.per_hour)
        used = used_hours.get(hour)
        if used is None or not used.tokens:
            found.charges.append(Charge(hour, None, cost, 0))
            continue
        # By name: the shares come out in one order however the hour was read.
        weights = {name: tokens for name, (tokens, _) in sorted(used.projects.items()) if tokens}
        rest = used.tokens - sum(weights.values())
        if rest > 0:
            weights[UNNAMED] = rest
        for name, share in apportion.split(cost, weights).items():
            users = used.projects.get(name, (0, frozenset()))[1]
            found.charges.append(Charge(hour, name, share, weights[name], users, used.api_keys))
    return found


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _hours(start: datetime, end: datetime) -> list[str]:
    at = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    found = []
    while at <= end:
        found.append(rollups.hour_of(at.isoformat()))
        at += timedelta(hours=1)
    return found
