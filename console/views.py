from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required, permission_required
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from audit_explorer import action_stream, audit_runs, overview
from console import action_exports, alerts, health, metrics, signin, timezones
from console.action_exports import FORMATS, ExportForm
from core import actions
from core import permissions as perms
from core.models import Action
from provisioning import state
from provisioning.models import Environment, Run


@login_not_required
@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers and monitors: up or down, nothing more."""
    alive = health.is_alive()
    return JsonResponse({"status": "up" if alive else "down"}, status=200 if alive else 503)


@login_not_required
@require_GET
@never_cache
def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    """The console's metrics for Prometheus, to a scraper with the token or from an allowed
    network (console.metrics)."""
    refused = metrics.refusal(request)
    if refused:
        response = HttpResponse(refused.text, status=refused.status, content_type="text/plain")
        if refused.status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = metrics.exposition(request.headers.get("Accept", ""))
    return HttpResponse(body, content_type=content_type)


@require_GET
@never_cache
@permission_required(perms.VIEW_STATE, raise_exception=True)
def health_checks(request: HttpRequest) -> JsonResponse:
    """Every check with its detail (endpoint, account, workers), for signed-in users."""
    report = health.as_json(health.run_checks())
    return JsonResponse(report, status=200 if report["status"] == "ok" else 503)


@never_cache
def dashboard(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm(perms.VIEW_STATE):
        # Signed in but given no role yet: nothing of the platform, not even its account.
        context = {"provider_name": signin.provider_name()}
        return render(request, "console/no_role.html", context, status=403)
    template = "console/dashboard.html"
    if request.htmx and not request.htmx.boosted:
        template = "console/_health_badges.html"
    if template == "console/_health_badges.html":
        return render(request, template, {"checks": health.run_checks()})
    environments = [
        {
            "environment": environment,
            "seen": state.last_seen(environment),
            # Cached in Redis: many dashboards cost one set of AWS calls per period.
            "healthy": state.healthy(state.live(environment)),
            "validation": state.last_validation(environment),
            "running": environment.runs.filter(status__in=Run.ACTIVE).first(),
            "image": state.live_image(environment),
            # The newest release: a rollout ECS rolled back shows beside the live image.
            "last_release": environment.releases.first(),
        }
        for environment in Environment.objects.all()
    ]
    checked = audit_runs.yesterday_of([row["environment"] for row in environments])
    for row in environments:
        row["audit_day"] = checked.get(row["environment"].pk)
        if request.user.has_perm(perms.VIEW_AUDIT):
            row["last_day"] = overview.last_day(row["environment"], detail=False)
    context = {
        "checks": health.run_checks(),
        "environments": environments,
        "alerts": alerts.gather([row["environment"] for row in environments], request.user),
        "cache_seconds": settings.AWS_STATE_CACHE_SECONDS,
    }
    return render(request, template, context)


def _filtered_actions(request: HttpRequest) -> QuerySet[Action]:
    found = Action.objects.all()
    if request.GET.get("verb"):
        found = found.filter(verb__startswith=request.GET["verb"])
    if request.GET.get("actor"):
        found = found.filter(actor_name__icontains=request.GET["actor"])
    return found


@permission_required(perms.MANAGE_USERS, raise_exception=True)
def action_list(
    request: HttpRequest, export_form: ExportForm | None = None, status: int = 200
) -> HttpResponse:
    page = Paginator(_filtered_actions(request), 50).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "export_form": export_form or ExportForm(initial={"format": "csv"}),
        "lags": action_stream.lags(),
        "lag_minutes": action_stream.LAG_SECONDS // 60,
    }
    return render(request, "console/action_list.html", context, status=status)


@permission_required(perms.MANAGE_USERS, raise_exception=True)
def action_export(request: HttpRequest) -> HttpResponse:
    """A time range of the log (with the page's filters) as CSV or JSON lines, streamed; the
    export itself is recorded. A range that cannot be read shows the page with why."""
    form = ExportForm(request.GET)
    if not form.is_valid():
        return action_list(request, export_form=form, status=400)
    start, end, kind = (
        form.cleaned_data["start"],
        form.cleaned_data["end"],
        form.cleaned_data["format"],
    )
    found = _filtered_actions(request).filter(at__gte=start, at__lt=end).order_by("at", "id")
    actions.record_about(
        "action_log.export",
        "core.action",
        "",
        "the action log",
        actor=request.user,
        parameters={
            "format": kind,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "verb": request.GET.get("verb", ""),
            "actor": request.GET.get("actor", ""),
        },
    )
    response = StreamingHttpResponse(action_exports.lines(found, kind), content_type=FORMATS[kind])
    name = f"actions-{start:%Y%m%dT%H%M}-{end:%Y%m%dT%H%M}.{kind}"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@require_POST
def set_timezone(request: HttpRequest) -> HttpResponse:
    """Show times in the timezone the user picked (stored times stay UTC)."""
    name = request.POST.get("timezone", "").strip()
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, {request.get_host()}, request.is_secure()):
        back = "/"
    if not timezones.is_known(name):
        messages.error(request, f"{name!r} is not a timezone name like Europe/Berlin or UTC.")
        return redirect(back)
    before = request.session.get(timezones.SESSION_KEY, timezones.DEFAULT)
    timezones.choose(request, name)
    actions.record_about(
        "preference.timezone",
        "auth.user",
        str(request.user.pk),
        request.user.get_username(),
        actor=request.user,
        before={"timezone": before},
        after={"timezone": name},
    )
    messages.success(request, f"Times are now shown in {name}.")
    return redirect(back)
