from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation

from botocore.exceptions import BotoCoreError, ClientError
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from core import actions
from core import permissions as perms
from core.refusals import Refused
from core.views import refused
from costs import budgets, chargeback, gpu_hours, pages
from costs import ledger as ledgers
from costs.prices import PriceUnknown
from provisioning.models import Environment

# No platform ran before 2000; and 9999-12 has no month after it for the page to link.
FIRST_MONTH = date(2000, 1, 1)
MONTH_HINT = "Give a month as YYYY-MM, from 2000 on."


def _month(text: str) -> date | None:
    """The first day of ``YYYY-MM`` from 2000 to 9998; None if it is not one."""
    try:
        month = datetime.strptime(text, "%Y-%m").date()
    except ValueError:
        return None
    return month if FIRST_MONTH <= month < date(9999, 1, 1) else None


def _month_range(month: date) -> tuple[datetime, datetime]:
    """The month's first moment, and its last or now, whichever is earlier."""
    start, end = chargeback.month_range(month)
    return start, min(end, datetime.now(UTC))


@permission_required(perms.VIEW_AUDIT, raise_exception=True)
def environment_costs(request: HttpRequest, name: str) -> HttpResponse:
    """An environment's GPU cost in a month: idle share, each project with its budget, the
    daily chart, the chargeback export and (for admins) the budgets' form."""
    environment = get_object_or_404(Environment, name=name)
    this_month = budgets.month_start().date()
    asked = request.GET.get("month", "")
    month = _month(asked) or this_month
    context = {"environment": environment, "month": month, "this_month": this_month}
    if asked and _month(asked) is None:
        context["error"] = f"{MONTH_HINT} (not {asked!r})"
    elif month > this_month:
        context["error"] = "That month has not begun."
    else:
        context.update(pages.read(environment, *_month_range(month)))
    set_budgets = {budget.project: budget for budget in environment.budgets.all()}
    rows = []
    if "ledger" in context:
        ledger = context["ledger"]
        context["chart"] = pages.daily_chart(ledger.days())
        for project in ledger.projects():
            budget = set_budgets.pop(project.name, None)
            rows.append({"project": project, "budget": budget, **_of_budget(project.cost, budget)})
    rows += [
        {"project": None, "name": name, "budget": budget}
        for name, budget in sorted(set_budgets.items())
    ]
    context.update(
        rows=rows,
        previous=(month.replace(day=1) - timedelta(days=1)).replace(day=1),
        following=(month.replace(day=28) + 4 * timedelta(days=1)).replace(day=1),
        can_budget=request.user.has_perm(perms.CHANGE_POLICY),
    )
    return render(request, "costs/environment.html", context)


def _of_budget(cost: Decimal, budget) -> dict:
    if budget is None:
        return {}
    return {"percent": float(cost / budget.monthly_usd)}


@permission_required(perms.VIEW_AUDIT, raise_exception=True)
def chargeback_export(request: HttpRequest, name: str, month: str) -> HttpResponse:
    """The month's chargeback CSV (FOCUS-style columns), recorded in the action log."""
    environment = get_object_or_404(Environment, name=name)
    first = _month(month)
    if first is None or first > budgets.month_start().date():
        raise Http404("No such month.")
    try:
        ledger = ledgers.ledger(environment, *_month_range(first))
    except PriceUnknown as exc:
        return HttpResponse(f"{exc}\n", status=503, content_type="text/plain")
    except (BotoCoreError, ClientError) as exc:
        return HttpResponse(f"AWS did not answer: {exc}\n", status=503, content_type="text/plain")
    rows = list(chargeback.rows(ledger, first, gpu_hours.group_name(environment)))
    actions.record(
        "costs.chargeback_export",
        environment,
        actor=request.user,
        parameters={"month": month, "rows": len(rows), "total_usd": str(ledger.total)},
    )
    response = HttpResponse(chargeback.csv_text(rows), content_type="text/csv")
    filename = f"chargeback-{environment.name}-{month}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_POST
@permission_required(perms.CHANGE_POLICY, raise_exception=True)
def budget_set(request: HttpRequest, name: str) -> HttpResponse:
    """Set a project's monthly budget, or remove it (an empty amount)."""
    environment = get_object_or_404(Environment, name=name)
    back = reverse("costs:environment", args=[environment.name])
    project, text = request.POST.get("project", ""), request.POST.get("monthly_usd", "").strip()
    try:
        amount = Decimal(text) if text else None
        if amount is not None and not amount.is_finite():
            raise InvalidOperation
    except InvalidOperation:
        return refused(request, Refused(f"{text!r} is no amount of dollars."), back)
    try:
        budget = budgets.set_budget(environment, project, amount, actor=request.user)
    except Refused as exc:
        return refused(request, exc, back)
    if budget is None:
        messages.success(request, f"No budget for {project.strip()} any more.")
    else:
        messages.success(request, f"{budget.project}: ${budget.monthly_usd} a month.")
    return redirect(back)
