"""Usage plan pages: operators and admins read them, admins change plans and grant increases."""

from collections.abc import Callable

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from api_access import usage_plans
from api_access.plan_forms import IncreaseForm, PlanForm
from core import permissions as perms
from core.refusals import Refused
from provisioning.engine import diff
from provisioning.models import Environment

# Viewers do not see usage plans at all.
VIEW = perms.VIEW_API_KEYS
CHANGE = perms.MANAGE_API_KEYS
ROWS = {
    "rate_limit": "Rate (requests per second)",
    "burst_limit": "Burst (requests)",
    "quota": "Quota (requests per key)",
    "quota_period": "Quota period",
}


@permission_required(VIEW, raise_exception=True)
def plan_list(request: HttpRequest) -> HttpResponse:
    context = {"environments": usage_plans.with_plans()}
    return render(request, "api_access/usage_plan_list.html", context)


@permission_required(VIEW, raise_exception=True)
def plan_detail(request: HttpRequest, name: str) -> HttpResponse:
    return _detail(request, get_object_or_404(Environment, name=name))


@require_POST
@permission_required(CHANGE, raise_exception=True)
def plan_change(request: HttpRequest, name: str) -> HttpResponse:
    done = f"The usage plan of {name} is changed in AWS."
    return _submit(request, name, PlanForm(request.POST), usage_plans.change_plan, done)


@require_POST
@permission_required(CHANGE, raise_exception=True)
def plan_increase(request: HttpRequest, name: str) -> HttpResponse:
    done = f"The quota of {name} is increased until the end of its period."
    return _submit(request, name, IncreaseForm(request.POST), usage_plans.grant_increase, done)


def _submit(
    request: HttpRequest, name: str, form: forms.Form, act: Callable, done: str
) -> HttpResponse:
    """``act(environment, **data, actor=...)`` with the form's data; when the form is invalid
    or the change is refused, the page again with the form saying why."""
    environment = get_object_or_404(Environment, name=name)
    if form.is_valid():
        try:
            act(environment, **form.cleaned_data, actor=request.user)
        except Refused as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, done)
            return redirect("usage-plan", name=name)
    return _detail(request, environment, form)


def _detail(
    request: HttpRequest, environment: Environment, submitted: forms.Form | None = None
) -> HttpResponse:
    initial = {
        "rate": environment.throttle_rate_limit,
        "burst": environment.throttle_burst_limit,
        "quota_limit": environment.quota_limit,
        "quota_period": environment.quota_period,
    }
    shown = {PlanForm: PlanForm(initial=initial), IncreaseForm: IncreaseForm()}
    if submitted is not None:
        shown[type(submitted)] = submitted  # with its errors
    declared = usage_plans.declared(environment)
    live, error = usage_plans.live(environment)
    drifted = diff(declared, live) if live else {}
    rows = [
        {
            "label": label,
            "declared": _plain(declared[key]),
            "live": _plain((live or {}).get(key)),
            "drifted": key in drifted,
        }
        for key, label in ROWS.items()
    ]
    context = {
        "environment": environment,
        "rows": rows,
        "live": live,
        "drifted": [ROWS[key] for key in drifted],
        "error": error,
        "increases": environment.quota_increases.select_related("created_by"),
        "plan_form": shown[PlanForm],
        "increase_form": shown[IncreaseForm],
    }
    return render(request, "api_access/usage_plan_detail.html", context)


def _plain(value: object) -> object:
    """A whole rate (API Gateway reports rates as 100.0) shown as 100."""
    return int(value) if isinstance(value, float) and value.is_integer() else value
