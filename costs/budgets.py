"""Budgets per project and month, and the warnings the dashboard shows at 80% and 100%.

Warnings only, and said so: nothing stops a project over its budget. The serving path has
no cost figure to refuse by, and API Gateway's usage plan quotas, the only limit there is,
are best effort (they count requests, and may let some through past the limit).
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.db import transaction

from core import actions
from core.refusals import Refused
from costs import ledger as ledgers
from costs.models import Budget
from provisioning.models import Environment

WARN_AT = (80, 100)  # percent of the month's budget


@dataclass(frozen=True)
class BudgetWarning:
    budget: Budget
    spent: Decimal
    percent: int  # of the budget, rounded down
    threshold: int  # the highest of WARN_AT reached


def set_budget(
    environment: Environment, project: str, amount: Decimal | None, *, actor
) -> Budget | None:
    """Set ``project``'s monthly budget (None: remove it), recorded with who did it."""
    project = project.strip()
    if not project:
        raise Refused("Name the project the budget is for.")
    if amount is not None and amount < 1:
        raise Refused("A budget is a dollar or more; leave it empty to remove it.")
    with transaction.atomic():
        budget = Budget.objects.filter(environment=environment, project=project).first()
        before = {"monthly_usd": str(budget.monthly_usd)} if budget else {}
        if amount is None:
            if budget is None:
                return None
            actions.record("costs.budget_remove", budget, actor=actor, before=before)
            budget.delete()
            return None
        budget = budget or Budget(environment=environment, project=project)
        budget.monthly_usd = amount
        budget.set_by, budget.set_by_name = actor, actions.actor_name(actor)
        budget.save()
        actions.record(
            "costs.budget_set",
            budget,
            actor=actor,
            parameters={"environment": environment.name, "project": project},
            before=before,
            after={"monthly_usd": str(amount)},
        )
    return budget


def month_start(now: datetime | None = None) -> datetime:
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def warnings(environment: Environment, now: datetime | None = None) -> list[BudgetWarning]:
    """Budgets of ``environment`` at 80% or more of this month's cost so far. No read at all
    without budgets; else the month's ledger (``ledger.ledger``, kept ten minutes)."""
    budgets = list(environment.budgets.all())
    if not budgets:
        return []
    now = now or datetime.now(UTC)
    month = ledgers.ledger(environment, month_start(now), now)
    found = []
    for budget in budgets:
        spent = month.project(budget.project).cost
        percent = int(spent * 100 / budget.monthly_usd)
        reached = [threshold for threshold in WARN_AT if percent >= threshold]
        if reached:
            found.append(BudgetWarning(budget, spent, percent, reached[-1]))
    return found
