"""The monthly chargeback export: one CSV row per project and day, and one per day of idle
GPU time, with FOCUS-style columns (FinOps Open Cost and Usage Specification: its column
names, and ``x_`` for ours). Its rows add up to the environment's GPU cost for the month
exactly: each is a sum of hourly shares in whole millionths of a dollar (``apportion``).

``x_User`` and ``x_ApiKey`` name a user or key only where the rollups show it alone: the only
user a project's rollups counted that day, the only key the day's hours saw (of every
project). Elsewhere they are blank: the rollups count a project's tokens, not its users'
or keys' (those count requests), so a share among several is not known.
"""

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta

from centralllm.audit import rollups
from core.spreadsheets import inert
from costs import ledger as ledgers
from costs.prices import CURRENCY

COLUMNS = (
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ChargeDescription",
    "EffectiveCost",
    "BillingCurrency",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ServiceName",
    "ResourceId",
    "x_Allocation",
    "x_Project",
    "x_User",
    "x_ApiKey",
)
SERVICE = "Central LLM GPU serving"


def month_range(month: date) -> tuple[datetime, datetime]:
    """The first and last moments of ``month`` (its first day), UTC."""
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    following = (start + timedelta(days=32)).replace(day=1)
    return start, following - timedelta(microseconds=1)


def rows(ledger: ledgers.Ledger, month: date, resource_id: str) -> Iterator[dict]:
    """One row per (day, project) charged, and per day with idle cost, in day order, of
    ``month``'s ledger (its first day)."""
    start, end = month_range(month)
    end += timedelta(microseconds=1)
    grouped: dict[tuple[date, str | None], list[ledgers.Charge]] = {}
    for charge in ledger.charges:
        grouped.setdefault((charge.day, charge.project), []).append(charge)
    for (day, project), charges in sorted(
        grouped.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")
    ):
        idle = project is None
        users = frozenset().union(*(charge.users for charge in charges))
        keys = frozenset().union(*(charge.api_keys for charge in charges))
        yield {
            "BillingPeriodStart": _iso(start),
            "BillingPeriodEnd": _iso(end),
            "ChargePeriodStart": _iso(datetime(day.year, day.month, day.day, tzinfo=UTC)),
            "ChargePeriodEnd": _iso(
                datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
            ),
            "ChargeCategory": "Usage",
            "ChargeDescription": "GPU time without tokens (idle)"
            if idle
            else "GPU time, apportioned by tokens",
            "EffectiveCost": str(sum(charge.cost for charge in charges)),
            "BillingCurrency": CURRENCY,
            "ConsumedQuantity": "" if idle else sum(charge.tokens for charge in charges),
            "ConsumedUnit": "" if idle else "Tokens",
            "ServiceName": SERVICE,
            "ResourceId": resource_id,
            "x_Allocation": "idle" if idle else "tokens",
            "x_Project": project or "",
            "x_User": _alone(users),
            "x_ApiKey": "" if idle else _alone(keys),
        }


def _alone(values: frozenset[str]) -> str:
    return next(iter(values)) if len(values) == 1 and rollups.OTHER not in values else ""


def csv_text(found: Iterable[dict]) -> str:
    """The rows as CSV with a header, every cell a spreadsheet would run made inert (a
    month of 100 projects is about 3,000 rows: one string)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS)
    writer.writeheader()
    for row in found:
        writer.writerow({name: inert(value) for name, value in row.items()})
    return buffer.getvalue()


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
