import copy
import re
from functools import partial

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling

from core import actions
from core import permissions as perms
from core.refusals import Refused
from core.views import refused
from provisioning import kinds, rollout_runs, runs, sections, state
from provisioning.account_check import check_account
from provisioning.engine_runs import DESTROY, DRIFT, PLAN
from provisioning.forms import DestroyForm, EnvironmentForm, RunFilterForm
from provisioning.models import Environment, Hold, Release, Run
from provisioning.rollout_runs import ROLLOUT as ROLLOUT_RUN
from provisioning.validation_runs import VALIDATE

VIEW = perms.VIEW_STATE
CHANGE = perms.START_PROVISIONING
ROLLOUT = perms.START_ROLLOUT
# What CodeBuild accepts as a source version: a branch, a tag or a commit id.
SOURCE_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")
TAIL = 200  # events a run page opens with; older ones are paged in on demand


@permission_required(VIEW, raise_exception=True)
def environment_list(request: HttpRequest) -> HttpResponse:
    environments = Environment.objects.all()
    return render(request, "provisioning/environment_list.html", {"environments": environments})


@permission_required(VIEW, raise_exception=True)
def environment_detail(request: HttpRequest, name: str) -> HttpResponse:
    environment = get_object_or_404(Environment, name=name)
    holder = runs.holder_of(environment)
    if holder is not None and runs.reap(holder):
        holder = None  # its worker had died: the environment is free again
    live = state.live(environment)
    seen = state.last_seen(environment)
    context = {
        "environment": environment,
        "holder": holder,
        "held": runs.held_message(holder) if holder else "",
        "seen": seen,
        "endpoint": state.endpoint_url(seen.outputs),
        "live": live,
        "healthy": state.healthy(live),
        "recent": environment.runs.all()[:10],
        "destroyable": not seen.left,
        "releases": environment.releases.select_related("run")[:10],
        "holds": environment.holds.filter(cleared_at=None),
        "validation": state.last_validation(environment),
    }
    if request.htmx and not request.htmx.boosted:
        return render(request, "provisioning/_environment_live.html", context)
    context["sections"] = sections.rendered(request, context)
    return render(request, "provisioning/environment_detail.html", context)


@permission_required(CHANGE, raise_exception=True)
def environment_create(request: HttpRequest) -> HttpResponse:
    initial = {}
    copy_of = Environment.objects.filter(name=request.GET.get("copy", "")).first()
    if copy_of is not None:
        copied = actions.snapshot(copy_of, exclude=("id", "name", "created_at", "updated_at"))
        # Empty values left out: the form shows them empty either way, and posts strings.
        initial = {name: value for name, value in copied.items() if value is not None}
    form = EnvironmentForm(request.POST or None, initial=initial, user=request.user)
    context = {"form": form, "copy": copy_of}
    if "check" in request.POST:
        return _account_checked(request, form, context)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            environment = form.save()
            actions.record(
                "environment.create",
                environment,
                actor=request.user,
                after=actions.snapshot(environment),
            )
        messages.success(request, f"Environment {environment.name} created. Plan it next.")
        return redirect("provisioning:environment", name=environment.name)
    return render(request, "provisioning/environment_form.html", context)


@permission_required(CHANGE, raise_exception=True)
def environment_edit(request: HttpRequest, name: str) -> HttpResponse:
    environment = get_object_or_404(Environment, name=name)
    before = actions.snapshot(environment)
    # The form fills in a copy: the page goes on naming the saved environment, whatever is typed.
    editing = copy.deepcopy(environment)
    form = EnvironmentForm(request.POST or None, instance=editing, user=request.user)
    context = {"form": form, "environment": environment}
    if "check" in request.POST:
        return _account_checked(request, form, context)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            environment = form.save()
            after = actions.snapshot(environment)
            changed = {key for key in after if before.get(key) != after[key]} - {"updated_at"}
            actions.record(
                "environment.update",
                environment,
                actor=request.user,
                before={key: before[key] for key in changed},
                after={key: after[key] for key in changed},
            )
        messages.success(request, f"Saved. Plan {environment.name} to see what it changes.")
        return redirect("provisioning:environment", name=environment.name)
    return render(request, "provisioning/environment_form.html", context)


def _account_checked(request: HttpRequest, form: EnvironmentForm, context: dict) -> HttpResponse:
    """After "Check this account": the form again, as typed, with what pre-flight found for
    its values, or which fields to correct first. Nothing is saved."""
    if form.is_valid():
        context["account_check"] = check_account(form.instance, actor=request.user)
    else:
        context["uncheckable"] = [field.label for field in form if field.errors] or ["see above"]
    if request.htmx and not request.htmx.boosted:
        return render(request, "provisioning/_environment_form.html", context)
    return render(request, "provisioning/environment_form.html", context)


@require_POST
@permission_required(CHANGE, raise_exception=True)
def environment_delete(request: HttpRequest, name: str) -> HttpResponse:
    environment = get_object_or_404(Environment, name=name)
    if request.POST.get("confirm") != environment.name:
        messages.error(request, f"Not deleted: type the environment's name, {environment.name}.")
    elif state.last_seen(environment).left:
        messages.error(request, f"Destroy {environment.name} first: its resources still exist.")
    else:
        with transaction.atomic():
            actions.record(
                "environment.delete",
                environment,
                actor=request.user,
                before=actions.snapshot(environment),
            )
            environment.runs.all().delete()
            environment.delete()
        messages.success(request, f"Environment {name} deleted.")
        return redirect("provisioning:environments")
    return redirect("provisioning:environment", name=environment.name)


@require_POST
@permission_required(CHANGE, raise_exception=True)
def run_start(request: HttpRequest, name: str) -> HttpResponse:
    environment = get_object_or_404(Environment, name=name)
    kind = request.POST.get("kind")
    parameters = {}
    if kind == ROLLOUT_RUN.key:
        parameters["source_version"] = request.POST.get("source_version", "").strip() or "main"
        if not SOURCE_VERSION.fullmatch(parameters["source_version"]):
            messages.error(request, "A source version is a branch, tag or commit, like main.")
            return redirect("provisioning:environment", name=name)
    elif kind not in (PLAN.key, DRIFT.key, VALIDATE.key):
        messages.error(request, "Start a plan, a drift check or a rollout here; apply a plan.")
        return redirect("provisioning:environment", name=name)
    start = partial(runs.start, environment, kind, actor=request.user, parameters=parameters)
    return _started(request, start, name)


@permission_required(CHANGE, raise_exception=True)
def run_destroy(request: HttpRequest, name: str) -> HttpResponse:
    environment = get_object_or_404(Environment, name=name)
    return _destroy(request, environment, partial(runs.start, environment, DESTROY.key))


def _destroy(
    request: HttpRequest, environment: Environment, start, retry_of: Run | None = None
) -> HttpResponse:
    """The destroy form; once its phrases are typed, ``start(actor=, parameters=)`` starts
    the destroy (or the retry of ``retry_of``)."""
    initial = {"delete_data": retry_of.parameters.get("delete_data")} if retry_of else None
    form = DestroyForm(request.POST or None, environment=environment, initial=initial)
    if request.method == "POST" and form.is_valid():
        started = partial(start, actor=request.user, parameters=dict(form.cleaned_data))
        return _started(request, started, environment.name)
    context = {"form": form, "environment": environment, "retry_of": retry_of}
    return render(request, "provisioning/destroy.html", context)


def _started(request: HttpRequest, start, name: str) -> HttpResponse:
    try:
        run = start()
    except Refused as exc:
        return refused(request, exc, reverse("provisioning:environment", args=[name]))
    return redirect(run)


@permission_required(VIEW, raise_exception=True)
def run_list(request: HttpRequest) -> HttpResponse:
    filters = RunFilterForm(request.GET or None)
    found = filters.filter(Run.objects.select_related("environment"))
    page = Paginator(found, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"filters": filters, "page": page, "query": query.urlencode()}
    return render(request, "provisioning/run_list.html", context)


def _run(pk: int) -> Run:
    return get_object_or_404(Run.objects.select_related("environment", "plan"), pk=pk)


@never_cache
@permission_required(VIEW, raise_exception=True)
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = _run(pk)
    runs.reap(run)
    before = _int(request.GET.get("before"))
    events = run.events.all()
    if before:
        events = events.filter(seq__lt=before)
    tail = list(events.order_by("-seq")[:TAIL])[::-1]
    context = {
        **_live_context(run),
        "events": tail,
        "older": tail[0].seq if tail and tail[0].seq > 1 else None,
        "after": tail[-1].seq if tail else 0,
        "paged": bool(before),
    }
    return render(request, "provisioning/run_detail.html", context)


@never_cache
@permission_required(VIEW, raise_exception=True)
def run_events(request: HttpRequest, pk: int) -> HttpResponse:
    """The live fragment: events after the cursor, the summary, and the next poller. Its cost
    does not grow with the run's length: a bounded read past the cursor."""
    run = _run(pk)
    if run.is_active:
        runs.reap(run)
    after = _int(request.GET.get("after"))
    events = list(run.events.filter(seq__gt=after).order_by("seq")[:TAIL])
    context = {
        **_live_context(run, with_steps=bool(events) or not run.is_active),
        "events": events,
        "after": events[-1].seq if events else after,
    }
    response = render(request, "provisioning/_run_events.html", context)
    if not run.is_active and len(events) < TAIL:
        response.status_code = HttpResponseStopPolling.status_code
    return response


def _live_context(run: Run, *, with_steps: bool = True) -> dict:
    steps = list(run.steps.all()) if with_steps else None
    # The heartbeat marks the worker's last activity (an event or an AWS call), so a healthy
    # refresh needs no extra query; only a stalled run looks up what it last said.
    stalled = runs.is_stalled(run)
    last = run.events.order_by("-seq").first() if stalled else None
    return {
        "run": run,
        "kind": kinds.get(run.kind),
        "steps": steps,
        "done": sum(step.status in ("done", "failed") for step in steps) if steps else 0,
        "stalled": stalled,
        "last_event": last,
    }


def _int(value: str | None) -> int:
    try:
        return max(int(value or 0), 0)
    except ValueError:
        return 0


def _run_action(request: HttpRequest, pk: int, act) -> HttpResponse:
    run = _run(pk)
    try:
        outcome = act(run)
    except Refused as exc:
        return refused(request, exc, run.get_absolute_url())
    if isinstance(outcome, Run):
        return redirect("provisioning:run", pk=outcome.pk)
    messages.success(request, outcome)
    return redirect("provisioning:run", pk=run.pk)


@require_POST
@permission_required(CHANGE, raise_exception=True)
def run_confirm(request: HttpRequest, pk: int) -> HttpResponse:
    return _run_action(request, pk, lambda run: runs.confirm(run, actor=request.user))


@require_POST
@permission_required(CHANGE, raise_exception=True)
def run_discard(request: HttpRequest, pk: int) -> HttpResponse:
    return _run_action(request, pk, lambda run: runs.discard(run, actor=request.user))


@require_POST
@permission_required(CHANGE, raise_exception=True)
def run_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    return _run_action(request, pk, lambda run: runs.cancel(run, actor=request.user))


@require_POST
@permission_required(perms.MANAGE_USERS, raise_exception=True)
def run_force_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    return _run_action(request, pk, lambda run: runs.force_cancel(run, actor=request.user))


@require_http_methods(["GET", "POST"])
@permission_required(CHANGE, raise_exception=True)
def run_retry(request: HttpRequest, pk: int) -> HttpResponse:
    run = _run(pk)
    if run.kind == DESTROY.key:  # its phrases are typed again, as for the first
        return _destroy(request, run.environment, partial(runs.retry, run), retry_of=run)
    if request.method != "POST":
        return redirect("provisioning:run", pk=run.pk)
    return _run_action(request, pk, lambda run: runs.retry(run, actor=request.user))


@require_POST
@permission_required(ROLLOUT, raise_exception=True)
def run_roll_back_now(request: HttpRequest, pk: int) -> HttpResponse:
    reason = request.POST.get("reason", "")
    return _run_action(
        request, pk, lambda run: rollout_runs.roll_back_now(run, actor=request.user, reason=reason)
    )


@require_POST
@permission_required(ROLLOUT, raise_exception=True)
def release_roll_back(request: HttpRequest, pk: int) -> HttpResponse:
    release = get_object_or_404(Release.objects.select_related("environment"), pk=pk)
    reason = request.POST.get("reason", "")
    start = partial(rollout_runs.roll_back_to, release, actor=request.user, reason=reason)
    return _started(request, start, release.environment.name)


@require_POST
@permission_required(ROLLOUT, raise_exception=True)
def hold_clear(request: HttpRequest, pk: int) -> HttpResponse:
    hold = get_object_or_404(Hold.objects.select_related("environment"), pk=pk)
    try:
        messages.success(
            request,
            rollout_runs.clear_hold(
                hold, actor=request.user, reason=request.POST.get("reason", "")
            ),
        )
    except Refused as exc:
        messages.error(request, str(exc))
    return redirect("provisioning:environment", name=hold.environment.name)
