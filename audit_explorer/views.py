from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.http import urlencode

from audit_explorer import search as audit_search

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
)


@permission_required("console.view_audit", raise_exception=True)
def audit_home(request: HttpRequest) -> HttpResponse:
    """The search form and one page of results; the URL holds the whole search."""
    params = {name: request.GET.get(name, "") for name in SEARCH_FIELDS}
    context = {"params": params, "error": None, "results": None}
    if any(params[name] for name in ("project", "user", "status", "request_id")):
        try:
            found = audit_search.parse(request.GET)
            results = audit_search.run(found, request.GET.get("cursor", ""))
        except audit_search.BadSearch as exc:
            context["error"] = str(exc)
        else:
            # The next page repeats the search with its time window resolved, so the cursor
            # stays bound to the same search however long the reader waits.
            resolved = {**params, "start": found.start.isoformat(), "end": found.end.isoformat()}
            resolved = {name: value for name, value in resolved.items() if value}
            context.update(search=found, results=results, query=urlencode(resolved))
    template = "audit_explorer/home.html"
    if request.htmx and not request.htmx.boosted:
        template = "audit_explorer/_results.html"
    return render(request, template, context)
