import json
from datetime import datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import SimpleLazyObject
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from audit_explorer import exports, follow, overview, scope, speed, traffic
from audit_explorer import search as audit_search
from audit_explorer.models import Export, SavedSearch
from centralllm.audit import items
from core import actions
from core import permissions as perms
from costs import pages as cost_pages
from provisioning.models import Environment, Release

SEARCH_FIELDS = (
    "project",
    "user",
    "status",
    "request_id",
    "api_key",
    "request_type",
    "outcome",
    "start",
    "end",
    "min_latency_ms",
    "max_latency_ms",
    "order",
    "limit",
    "environment",
)
# Said where a page cannot read without an environment (the pages show the selector).
NO_ENVIRONMENT = "Choose the environment whose audit trail to read."


def _scoped(request: HttpRequest, asked: str) -> dict:
    """The environment the page reads (``asked`` for, remembered or the only one; None if
    none) and those to choose from, for ``_environment_select.html``."""
    return {
        "environment": scope.environment_for(request.user, asked),
        "environments": Environment.objects.all(),
    }


@permission_required(perms.VIEW_AUDIT, raise_exception=True)
def audit_home(request: HttpRequest) -> HttpResponse:
    """The search form, one page of results and the range's summary, in one environment; the
    URL holds the whole search, its environment included."""
    params = {name: request.GET.get(name, "") for name in SEARCH_FIELDS}
    context = {
        **_scoped(request, params["environment"]),
        "params": params,
        "error": None,
        "results": None,
        "saved": SavedSearch.objects.filter(user=request.user),
    }
    environment = context["environment"]
    params["environment"] = environment.name if environment else ""
    # Any field filled is a search: its mistakes (a start after the end, no project, user,
    # status or request id) get their message rather than the overview in their place.
    if environment and any(value for name, value in params.items() if name != "environment"):
        try:
            found = audit_search.parse(request.GET)
            results = audit_search.run(
                found, request.GET.get("cursor", ""), environment=environment
            )
        except audit_search.BadSearch as exc:
            context["error"] = str(exc)
        except (BotoCoreError, ClientError) as exc:
            context["error"] = f"DynamoDB did not answer the search: {exc}"
        else:
            # The next page repeats the search with its time window resolved, so the cursor
            # stays bound to the same search however long the reader waits.
            resolved = {**params, "start": found.start.isoformat(), "end": found.end.isoformat()}
            resolved = {name: value for name, value in resolved.items() if value}
            summary = audit_search.summary(found, environment=environment)
            live = urlencode(_live_params(params))
            if follow.can_follow(found) and not request.GET.get("cursor") and not params["end"]:
                context["follow_url"] = f"{reverse('audit_explorer:follow')}?{live}"
            context.update(
                search=found,
                results=results,
                query=urlencode(resolved),
                query_live=live,
                # Saved as typed: "the last 24 hours" stays relative.
                saved_query=urlencode({name: value for name, value in params.items() if value}),
                summary=summary,
                charts=_charts(environment, summary, found.start, found.end) if summary else None,
            )
    template = "audit_explorer/home.html"
    if request.htmx and not request.htmx.boosted:
        template = "audit_explorer/_results.html"
    if environment is None:
        context["known"] = {}
    elif template.endswith("home.html") and context["results"] is None and not context["error"]:
        # The page opens on the last 24 hours; the form suggests what they hold.
        context["overview"] = overview.last_day(environment)
        context["known"] = overview.remember(context["overview"])
    else:
        # Read only if the page shows it: the form, or a search that found nothing.
        context["known"] = SimpleLazyObject(lambda: overview.known_values(environment))
    return render(request, template, context)


def _live_params(params: dict[str, str]) -> dict[str, str]:
    """The search without its time window: what "now" means is up to each request."""
    return {name: value for name, value in params.items() if value and name not in ("start", "end")}


@permission_required(perms.VIEW_AUDIT, raise_exception=True)
def audit_follow(request: HttpRequest) -> HttpResponse:
    """Follow mode's poller (htmx): the records that arrived since the last poll go on top of
    the results; after ten idle minutes it pauses until the viewer resumes."""
    params = {name: request.GET.get(name, "") for name in SEARCH_FIELDS}
    context = {"query": urlencode(_live_params(params)), "poll_seconds": follow.POLL_SECONDS}
    environment = context["environment"] = scope.environment_for(
        request.user, params["environment"]
    )
    try:
        if environment is None:
            raise audit_search.BadSearch(NO_ENVIRONMENT)
        found = audit_search.parse(request.GET)
        if not follow.can_follow(found):
            raise audit_search.BadSearch(
                "Follow works on searches by user or status, newest first: a project's "
                "records are sorted by latency."
            )
        token, user = request.GET.get("token", ""), request.user.pk
        if request.GET.get("resume") and not follow.resume(
            found, token, user, environment=environment
        ):
            token = ""  # forgotten while paused: follow afresh
        if token:
            new = follow.poll(found, token, user, environment=environment)
        else:
            token, new = follow.start(found, user, environment=environment), []
    except audit_search.BadSearch as exc:
        context["error"] = str(exc)
    except (BotoCoreError, ClientError) as exc:
        context["error"] = f"DynamoDB did not answer: {exc}"
    else:
        context.update(token=token, new=new or [], paused=new is None)
    return render(request, "audit_explorer/_follow.html", context)


def _charts(environment: Environment, summary: dict, start: datetime, end: datetime) -> dict:
    """What the charts draw (see console/static/console/charts.js): the hourly series, the
    latency histogram, and the environment's rollouts of the range as markers."""
    releases = Release.objects.select_related("environment").filter(
        environment=environment, started_at__gte=start - timedelta(hours=1), started_at__lte=end
    )
    return {
        "hours": summary["series"],
        "histogram": summary["histogramSeries"],
        "markers": [
            {
                "time": int(release.started_at.timestamp()),
                "at": release.started_at.isoformat(),
                "label": f"{release.environment.name}: {release.image_tag} ({release.outcome})",
            }
            for release in releases
        ],
        "timezone": timezone.get_current_timezone_name(),
    }


@permission_required(perms.VIEW_AUDIT, raise_exception=True)
def audit_traffic(request: HttpRequest) -> HttpResponse:
    """A project's or a user's (``?project=`` or ``?user=``) traffic, errors, latency and tokens
    over time, and its top users, projects and request types, in one environment: all from
    the rollups."""
    dimension = next((name for name in ("project", "user") if request.GET.get(name)), "")
    value = request.GET.get(dimension, "")
    range_name = request.GET.get("range", traffic.DEFAULT_RANGE)
    context = {
        **_scoped(request, request.GET.get("environment", "")),
        "dimension": dimension,
        "value": value,
        "ranges": traffic.RANGES,
        "error": None,
    }
    environment = context["environment"]
    try:
        if environment is None:
            raise ValueError(NO_ENVIRONMENT)
        if not dimension:
            raise ValueError("Name a project or a user: ?project=… or ?user=….")
        start, end = traffic.window(range_name)
        found, speed_found = speed.read(dimension, value, start, end, environment=environment)
    except ValueError as exc:
        context["error"] = str(exc)
    except (BotoCoreError, ClientError) as exc:
        context["error"] = f"DynamoDB did not answer: {exc}"
    else:
        search = {dimension: value, "start": start.isoformat(), "end": end.isoformat()}
        context.update(
            range=range_name,
            start=start,
            end=end,
            traffic=found,
            speed=speed_found,
            charts=_charts(environment, found, start, end),
            search_query=urlencode({**search, "environment": environment.name}),
        )
        if dimension == "project":
            context["cost"] = cost_pages.project_cost(environment, value, start, end)
    return render(request, "audit_explorer/traffic.html", context)


@permission_required(perms.VIEW_AUDIT, raise_exception=True)
def traffic_moved(request: HttpRequest, dimension: str, value: str) -> HttpResponse:
    """``/audit/projects/<value>`` and ``/audit/users/<value>``: the value was in the path, where
    ``../`` in a caller's project name made links to other pages; now in the query string."""
    query = request.GET.copy()
    query[dimension] = value
    return redirect(f"{reverse('audit_explorer:traffic')}?{query.urlencode()}", permanent=True)


@permission_required(perms.VIEW_AUDIT, raise_exception=True)
def audit_export(request: HttpRequest) -> HttpResponse:
    """The whole search as CSV or JSON lines, streamed page by page (memory stays flat); a
    search larger than the stream's limit is offered as a background export instead."""
    kind = request.GET.get("format", "csv")
    environment = scope.environment_for(request.user, request.GET.get("environment", ""))
    try:
        if environment is None:
            raise audit_search.BadSearch(NO_ENVIRONMENT)
        found = audit_search.parse(request.GET)
        if kind not in exports.FORMATS:
            raise audit_search.BadSearch("format must be csv or jsonl.")
        expected = exports.expected_rows(found, environment)
    except audit_search.BadSearch as exc:
        return HttpResponse(f"{exc}\n", status=400, content_type="text/plain")
    except (BotoCoreError, ClientError) as exc:
        return HttpResponse(f"DynamoDB did not answer: {exc}\n", status=503)
    if expected > exports.STREAM_MAX_ROWS:
        query = request.GET.copy()
        query.pop("format", None)
        query.pop("cursor", None)
        query["environment"] = environment.name
        context = {"expected": expected, "limit": exports.STREAM_MAX_ROWS, "kind": kind}
        context["query"] = query.urlencode()
        return render(request, "audit_explorer/export_large.html", context)
    response = StreamingHttpResponse(
        exports.lines(exports.rows_of(found, environment), kind),
        content_type=exports.FORMATS[kind],
    )
    name = f"audit-{environment.name}-{found.index.replace(' ', '-')}.{kind}"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@require_POST
@permission_required(perms.VIEW_AUDIT, raise_exception=True)
def export_create(request: HttpRequest) -> HttpResponse:
    """Start a background export of the search in ``query``, in its environment."""
    query, kind = request.POST.get("query", ""), request.POST.get("format", "csv")
    asked = QueryDict(query).get("environment", "")
    environment = scope.environment_for(request.user, asked)
    try:
        if environment is None:
            raise audit_search.BadSearch(NO_ENVIRONMENT)
        found = audit_search.parse(QueryDict(query))
        if kind not in exports.FORMATS:
            raise audit_search.BadSearch("format must be csv or jsonl.")
        expected = exports.expected_rows(found, environment)
    except audit_search.BadSearch as exc:
        messages.error(request, f"Not exported: {exc}")
        return redirect(f"{reverse('audit_explorer:home')}?{query}")
    except (BotoCoreError, ClientError) as exc:
        messages.error(request, f"Not exported: DynamoDB did not answer: {exc}")
        return redirect(f"{reverse('audit_explorer:home')}?{query}")
    export = exports.start(request.user, environment, query[:2000], kind, expected)
    actions.record(
        "audit.export",
        export,
        actor=request.user,
        parameters={"environment": environment.name, "query": query, "format": kind},
    )
    messages.success(request, f"Export {export.pk} queued: at most {expected} rows.")
    return redirect("audit_explorer:exports")


@permission_required(perms.VIEW_AUDIT, raise_exception=True)
def export_list(request: HttpRequest) -> HttpResponse:
    """The user's background exports, live while any runs; one whose worker died is failed
    here too, with the reason, so the page stops polling."""
    found = list(Export.objects.filter(user=request.user).select_related("environment")[:50])
    for export in found:
        exports.reap(export)
    context = {"exports": found, "active": any(export.is_active for export in found)}
    template = "audit_explorer/exports.html"
    if request.htmx and not request.htmx.boosted:
        template = "audit_explorer/_export_rows.html"
    return render(request, template, context)


@permission_required(perms.VIEW_AUDIT, raise_exception=True)
def export_download(request: HttpRequest, pk: int) -> HttpResponse:
    # An export made before exports said which environment they read cannot say where it is.
    done = Export.objects.filter(status=Export.Status.DONE, environment__isnull=False)
    export = get_object_or_404(done.select_related("environment"), pk=pk, user=request.user)
    actions.record("audit.export_download", export, actor=request.user)
    return redirect(exports.download_url(export, filename=export.filename))


@require_POST
@permission_required(perms.VIEW_AUDIT, raise_exception=True)
def export_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    export = get_object_or_404(Export, pk=pk, user=request.user)
    if exports.cancel(export):
        actions.record("audit.export_cancel", export, actor=request.user)
        messages.success(request, f"Export {export.pk} cancelled.")
    else:
        messages.error(request, f"Export {export.pk} was already {export.status}.")
    return redirect("audit_explorer:exports")


@never_cache  # raw prompts must not stay in a browser's or a proxy's cache
@permission_required(perms.VIEW_AUDIT, raise_exception=True)
def audit_record(request: HttpRequest, request_id: str) -> HttpResponse:
    """Every field of one record of the environment (one Query); the raw request and response
    on demand, for the roles that may read them, each view written to the action log."""
    context = _scoped(request, request.GET.get("environment", ""))
    environment = context["environment"]
    item = items.get_item(request_id, **environment.audit_table()) if environment else None
    if item is None:
        context["missing"] = request_id
        return render(request, "audit_explorer/record.html", context, status=404)
    raw = raw_gone = None
    if request.GET.get("raw") and request.user.has_perm(perms.VIEW_RAW_AUDIT):
        s3 = environment.client("s3")
        try:
            body = s3.get_object(Bucket=environment.resource_name("RawBucket"), Key=item["rawKey"])
        except s3.exceptions.NoSuchKey:
            # The raw bucket keeps bodies for less time than the table keeps records.
            raw_gone = item["rawKey"]
        else:
            raw = json.dumps(json.loads(body["Body"].read()), indent=2)
        actions.record_about(
            "audit.view_raw",
            "audit.record",
            request_id,
            f"audit record {request_id}",
            actor=request.user,
            parameters={"environment": environment.name, "rawKey": item["rawKey"]},
            within=environment,
        )
    context.update(item=item, raw=raw, raw_gone=raw_gone, fields=sorted(item.items()))
    template = "audit_explorer/record.html"
    if request.htmx and not request.htmx.boosted:
        template = "audit_explorer/_record_fields.html"  # a row expanding in place
    return render(request, template, context)


@require_POST
@permission_required(perms.VIEW_AUDIT, raise_exception=True)
def saved_search_create(request: HttpRequest) -> HttpResponse:
    """Keep the search in ``query`` under a name; the same name again replaces it."""
    name = request.POST.get("name", "").strip()[:80]
    query = request.POST.get("query", "")
    if not name:
        messages.error(request, "Give the search a name to save it.")
    else:
        try:
            audit_search.parse(QueryDict(query))
        except audit_search.BadSearch as exc:
            messages.error(request, f"Not saved: {exc}")
        else:
            SavedSearch.objects.update_or_create(
                user=request.user, name=name, defaults={"query": query[:2000]}
            )
            messages.success(request, f"Saved as {name!r}.")
    return redirect(f"{reverse('audit_explorer:home')}?{query}")


@require_POST
@permission_required(perms.VIEW_AUDIT, raise_exception=True)
def saved_search_delete(request: HttpRequest, pk: int) -> HttpResponse:
    deleted, _ = SavedSearch.objects.filter(pk=pk, user=request.user).delete()
    if deleted:
        messages.success(request, "Saved search deleted.")
    return redirect("audit_explorer:home")


@permission_required(perms.VIEW_AUDIT, raise_exception=True)
def demo_progress(request: HttpRequest) -> HttpResponse:
    """The Audit page's notice of the demo traffic loading into its environment; the notice
    polls this while the load runs and stops once it has ended."""
    context = {**_scoped(request, request.GET.get("environment", "")), "polled": True}
    return render(request, "audit_explorer/_demo_progress.html", context)
