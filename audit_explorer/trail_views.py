"""The audit trail's operations pages, per environment: the dead-letter queue (redrive,
discard) and the checked days (a 30-day calendar, a day's findings and seal, check, redrive
and seal again)."""

import json
from datetime import date

from botocore.exceptions import BotoCoreError, ClientError
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from audit_explorer import audit_runs, dead_letters, retention, seals
from audit_explorer.models import AuditDay, DeadLetter
from core import actions
from core import permissions as perms
from core.refusals import Refused
from core.views import refused
from provisioning import runs
from provisioning.models import Environment
from provisioning.resources.base import Context

VIEW = perms.VIEW_AUDIT
OPERATE = perms.START_PROVISIONING
RAW = perms.VIEW_RAW_AUDIT


def _environment(name: str) -> Environment:
    return get_object_or_404(Environment, name=name)


def environment_section(environment: Environment) -> dict:
    """What the audit trail's section of the environment's page shows."""
    return {
        "calendar": audit_runs.calendar(environment),
        "retention": retention.kept_for(environment),
        "waiting_letters": environment.dead_letters.filter(
            status=DeadLetter.Status.WAITING
        ).count(),
    }


@permission_required(VIEW, raise_exception=True)
def dead_letter_list(request: HttpRequest, name: str) -> HttpResponse:
    environment = _environment(name)
    status = request.GET.get("status", DeadLetter.Status.WAITING)
    if status not in DeadLetter.Status.values:
        status = DeadLetter.Status.WAITING
    letters = environment.dead_letters.filter(status=status)
    context = {
        "environment": environment,
        "status": status,
        "statuses": DeadLetter.Status.values,
        # Only operators act on waiting events: others see no checkboxes.
        "selectable": status == DeadLetter.Status.WAITING and request.user.has_perm(OPERATE),
        "page": Paginator(letters, 100).get_page(request.GET.get("page")),
        "waiting_count": environment.dead_letters.filter(status=DeadLetter.Status.WAITING).count(),
        "in_queue": _in_queue(environment),
    }
    return render(request, "audit_explorer/dead_letters.html", context)


def _in_queue(environment: Environment) -> int | str:
    """What waits in SQS, not collected yet; the reason when SQS cannot say."""
    with Context(environment.spec()) as ctx:
        try:
            return dead_letters.waiting_in_queue(ctx)
        except (BotoCoreError, ClientError) as exc:
            return f"unknown ({exc})"


@require_POST
@permission_required(OPERATE, raise_exception=True)
def dead_letter_collect(request: HttpRequest, name: str) -> HttpResponse:
    environment = _environment(name)
    with Context(environment.spec()) as ctx:
        try:
            collected = dead_letters.collect(ctx, environment, limit=1000)
        except (BotoCoreError, ClientError) as exc:
            messages.error(request, f"The dead-letter queue could not be read: {exc}")
        else:
            messages.success(request, f"{collected} new events collected from the queue.")
    return redirect("audit_explorer:dead-letters", name=name)


@require_POST
@permission_required(OPERATE, raise_exception=True)
def dead_letter_redrive(request: HttpRequest, name: str) -> HttpResponse:
    """Redrive the selected dead letters, or all that wait: a run, with its live page."""
    environment = _environment(name)
    if request.POST.get("all"):
        parameters = {"all": True}
    else:
        chosen = _chosen(request, environment)
        if not chosen:
            messages.error(request, "Select the events to redrive, or redrive all.")
            return redirect("audit_explorer:dead-letters", name=name)
        parameters = {"letters": [letter.pk for letter in chosen]}
    back = reverse("audit_explorer:dead-letters", args=[name])
    return _start(request, environment, audit_runs.REDRIVE.key, parameters, back)


@require_POST
@permission_required(OPERATE, raise_exception=True)
def dead_letter_discard(request: HttpRequest, name: str) -> HttpResponse:
    environment = _environment(name)
    chosen = _chosen(request, environment)
    if not chosen:
        messages.error(request, "Select the events to discard.")
        return redirect("audit_explorer:dead-letters", name=name)
    try:
        discarded = audit_runs.discard(chosen, request.POST.get("reason", ""), actor=request.user)
    except Refused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{discarded} events discarded; the reason is recorded.")
    return redirect("audit_explorer:dead-letters", name=name)


def _chosen(request: HttpRequest, environment: Environment) -> list[DeadLetter]:
    ids = [value for value in request.POST.getlist("letter") if value.isdigit()]
    return list(environment.dead_letters.filter(pk__in=ids))


@permission_required(VIEW, raise_exception=True)
def dead_letter_detail(request: HttpRequest, name: str, pk: int) -> HttpResponse:
    """One dead letter: its event and error; the audit record it names on demand (the full
    prompt and completion: for those who may read raw bodies, and logged)."""
    environment = _environment(name)
    letter = get_object_or_404(DeadLetter, pk=pk, environment=environment)
    context = {
        "environment": environment,
        "letter": letter,
        "event": _pretty(letter.body),
        "record": None,
        "record_error": "",
    }
    key = request.GET.get("record", "")
    if key and request.user.has_perm(RAW):
        if key not in letter.keys:
            raise Http404("not a key of this event")
        context["record"], context["record_error"] = _read_record(environment, letter, key)
        actions.record(
            "audit.dead_letter.view_record", letter, actor=request.user, parameters={"key": key}
        )
    return render(request, "audit_explorer/dead_letter.html", context)


def _read_record(environment: Environment, letter: DeadLetter, key: str) -> tuple[str, str]:
    with Context(environment.spec()) as ctx:
        try:
            found = ctx.client("s3").get_object(
                Bucket=letter.bucket or ctx.name("AuditBucket"), Key=key
            )
            return _pretty(found["Body"].read(64 * 1024).decode(errors="replace")), ""
        except (BotoCoreError, ClientError) as exc:
            return "", f"S3 did not give the record: {exc}"


def _pretty(text: str) -> str:
    """JSON indented, anything else (a malformed record) as it is."""
    try:
        return json.dumps(json.loads(text), indent=2, sort_keys=True)
    except ValueError:
        return text


@permission_required(VIEW, raise_exception=True)
def audit_day_list(request: HttpRequest, name: str) -> HttpResponse:
    environment = _environment(name)
    context = {
        "environment": environment,
        "calendar": audit_runs.calendar(environment),
        "checks": environment.runs.filter(kind=audit_runs.CHECK.key)[:10],
    }
    return render(request, "audit_explorer/audit_days.html", context)


@permission_required(VIEW, raise_exception=True)
def audit_day_detail(request: HttpRequest, name: str, day: str) -> HttpResponse:
    environment = _environment(name)
    when = _day(day)
    context = {
        "environment": environment,
        "day": when,
        "checked": AuditDay.objects.filter(environment=environment, day=when).first(),
        "seal_key_problem": seals.key_problem(environment.is_local),
        "seal_threads": seals.THREADS,
    }
    return render(request, "audit_explorer/audit_day.html", context)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise Http404("not a day like 2026-12-01") from None


@require_POST
@permission_required(OPERATE, raise_exception=True)
def audit_day_check(request: HttpRequest, name: str, day: str) -> HttpResponse:
    environment = _environment(name)
    when = _day(day)
    if when >= audit_runs.today():
        messages.error(request, f"{when} is not over yet: check a day once it has ended.")
        return redirect("audit_explorer:audit-day", name=name, day=day)
    back = reverse("audit_explorer:audit-day", args=[name, day])
    return _start(request, environment, audit_runs.CHECK.key, {"day": str(when)}, back)


@require_POST
@permission_required(OPERATE, raise_exception=True)
def audit_day_seal(request: HttpRequest, name: str, day: str) -> HttpResponse:
    """Check the day and seal it as it is now; the seal it has is kept beside the new one."""
    environment = _environment(name)
    when = _day(day)
    checked = AuditDay.objects.filter(environment=environment, day=when).first()
    if checked is None or not checked.seal_status:
        messages.error(request, f"{when} has no seal yet: checking it seals it.")
        return redirect("audit_explorer:audit-day", name=name, day=day)
    back = reverse("audit_explorer:audit-day", args=[name, day])
    parameters = {"day": str(when), "reseal": True}
    return _start(request, environment, audit_runs.CHECK.key, parameters, back)


@require_POST
@permission_required(OPERATE, raise_exception=True)
def audit_day_redrive(request: HttpRequest, name: str, day: str) -> HttpResponse:
    """Ingest the day's missing objects again, in one action."""
    environment = _environment(name)
    when = _day(day)
    checked = AuditDay.objects.filter(environment=environment, day=when).first()
    if checked is None or not checked.missing_count:
        messages.error(request, f"{when} has nothing missing to redrive: check it first.")
        return redirect("audit_explorer:audit-day", name=name, day=day)
    back = reverse("audit_explorer:audit-day", args=[name, day])
    return _start(request, environment, audit_runs.REDRIVE.key, {"day": str(when)}, back)


def _start(
    request: HttpRequest, environment: Environment, kind: str, parameters: dict, back: str
) -> HttpResponse:
    """Start the run and follow it; if it cannot start, back to ``back`` with the reason."""
    try:
        run = runs.start(environment, kind, actor=request.user, parameters=parameters)
    except Refused as exc:
        return refused(request, exc, back)
    return redirect(run)
