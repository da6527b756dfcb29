"""What the cost pages and the project page's cost show, from a ledger: figures, the daily
chart's bars (drawn as SVG on the server: no script, no inline style), and a message in
place of the figures when something could not be read."""

from datetime import date, datetime
from decimal import Decimal

from botocore.exceptions import BotoCoreError, ClientError

from costs import ledger as ledgers
from costs.prices import PriceUnknown
from provisioning.models import Environment

CHART_WIDTH, CHART_HEIGHT = 600, 120


def read(environment: Environment, start: datetime, end: datetime) -> dict:
    """``{"ledger": ...}``, or ``{"error": why}`` when the price or AWS failed."""
    try:
        return {"ledger": ledgers.ledger(environment, start, end)}
    except PriceUnknown as exc:
        return {"error": str(exc)}
    except (BotoCoreError, ClientError) as exc:
        return {"error": f"AWS did not answer: {exc}"}


def project_cost(environment: Environment, project: str, start: datetime, end: datetime) -> dict:
    """A project's cost over the range, for its audit page: its total, tokens, cost per
    million tokens and daily chart, with the range's idle cost beside it."""
    found = read(environment, start, end)
    if "ledger" in found:
        ledger = found["ledger"]
        found.update(project=ledger.project(project), chart=daily_chart(ledger.days(project)))
    return found


def daily_chart(days: list[tuple[date, Decimal, Decimal]]) -> dict:
    """Bars of each day's apportioned cost with its idle cost on top, scaled to the
    costliest day, in a ``CHART_WIDTH`` by ``CHART_HEIGHT`` view box."""
    top = max((used + idle for _, used, idle in days), default=Decimal(0))
    slot = CHART_WIDTH / max(len(days), 1)
    bars = []
    for index, (day, used, idle) in enumerate(days):
        used_height = float(used / top) * CHART_HEIGHT if top else 0.0
        idle_height = float(idle / top) * CHART_HEIGHT if top else 0.0
        bars.append(
            {
                "day": day,
                "used": used,
                "idle": idle,
                "x": round(index * slot + slot * 0.1, 2),
                "width": round(slot * 0.8, 2),
                "used_y": round(CHART_HEIGHT - used_height, 2),
                "used_height": round(used_height, 2),
                "idle_y": round(CHART_HEIGHT - used_height - idle_height, 2),
                "idle_height": round(idle_height, 2),
            }
        )
    return {"width": CHART_WIDTH, "height": CHART_HEIGHT, "bars": bars, "top": top}
