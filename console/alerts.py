"""What needs someone, for the dashboard: keys near their quota or expiring, rotations ending,
dead letters waiting, audit days incomplete, runs stalled, projects near their budget; each
alert links to where it is fixed.

Every source reads one environment, cheaply and bounded; its docstring counts its AWS calls.
A user gets only the alerts of the pages they may open, and a source they may not see is not
read. A source that fails (AWS down, Redis gone) becomes an alert saying what could not be
read; the others still show.
"""

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from django.db.models import Q
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone

from api_access import api_keys
from api_access.models import KeyRotation
from audit_explorer import audit_runs
from audit_explorer.models import AuditDay, DeadLetter
from core import permissions as perms
from core.templatetags.figures import relative
from costs import budgets
from provisioning import runs, state
from provisioning.models import Environment

log = logging.getLogger(__name__)

CRITICAL, WARNING = "critical", "warning"
GRACE_NOTICE = timedelta(hours=24)  # a rotation's old key stops working within this
RECENT_DAYS = 30  # the audit days looked at


@dataclass(frozen=True)
class Alert:
    severity: str  # CRITICAL or WARNING
    environment: str
    text: str
    url: str  # where it is fixed


@dataclass(frozen=True)
class Source:
    what: str  # "could not read <what>"
    permission: str  # the permission of the page it links to
    read: Callable[[Environment], list[Alert]]
    page: Callable[[Environment], str]  # where to look when it cannot be read


def gather(environments: Iterable[Environment], user) -> list[Alert]:
    """The alerts ``user`` may follow, the critical first, in the environments' order."""
    found = []
    for environment in environments:
        for source in SOURCES:
            if not user.has_perm(source.permission):
                continue
            try:
                found += source.read(environment)
            except Exception as exc:  # one source down must not take the dashboard with it
                log.warning("Alerts: %s of %s: %s", source.what, environment.name, exc)
                found.append(unreadable(environment, source.what, str(exc), source.page))
    return sorted(found, key=lambda alert: alert.severity != CRITICAL)


def unreadable(
    environment: Environment, what: str, error: str, page: Callable[[Environment], str]
) -> Alert:
    return Alert(WARNING, environment.name, f"could not read {what}: {error}", page(environment))


def _key_page(environment: Environment, key_id: str) -> str:
    return reverse("api-key-detail", args=[environment.name, key_id])


def keys(environment: Environment) -> list[Alert]:
    """Keys at 80% of their quota (critical at 95%) and keys expiring within 7 days. No AWS
    call while the scheduler's note is kept (it renews it every minute); without one, the
    keys page's reads, cached 30 s: ceil(keys/500) GetUsagePlanKeys and GetApiKeys, and
    ceil(8 * enabled keys / 100) BatchGetItem of the rollups."""
    noted = api_keys.alerts(environment)
    found = [
        Alert(
            CRITICAL if quota["percent"] >= api_keys.WARNINGS[0] else WARNING,
            environment.name,
            f"{quota['key']} is at {quota['percent']}% of its quota",
            _key_page(environment, quota["id"]),
        )
        for quota in noted["quota"]
    ]
    for expiring in noted["expiring"]:
        expires = date.fromisoformat(expiring["expires"])
        when = "has expired" if expires < timezone.now().date() else f"expires on {expires}"
        found.append(
            Alert(
                WARNING,
                environment.name,
                f"{expiring['key']} {when}: rotate it",
                _key_page(environment, expiring["id"]),
            )
        )
    return found


def rotations(environment: Environment) -> list[Alert]:
    """Rotations whose old key stops working within a day, or should have stopped (its grace
    and quiet time are over, yet it is enabled). One query, no AWS call."""
    now = timezone.now()
    found = []
    ending = environment.key_rotations.filter(
        status=KeyRotation.Status.GRACE, grace_until__lt=now + GRACE_NOTICE
    )
    for rotation in ending:
        old = f"the old key of {rotation.old_key_name} ({rotation.old_key_id})"
        if rotation.grace_until > now:
            text = (
                f"{old} is disabled {relative(rotation.grace_until)}, once quiet: its callers "
                "should be on the new key by then"
            )
        elif rotation.grace_until + timedelta(minutes=rotation.quiet_minutes) < now:
            last = rotation.old_key_last_used or "not lately"
            text = (
                f"{old} is still enabled, its grace over {relative(rotation.grace_until)}: "
                f"still in use (last: {last}) or no scheduler runs; find its callers, or "
                "disable it now"
            )
        else:
            continue  # in its quiet time: the scheduler disables it when that is over
        found.append(
            Alert(WARNING, environment.name, text, _key_page(environment, rotation.old_key_id))
        )
    return found


def _dead_letter_page(environment: Environment) -> str:
    return reverse("audit_explorer:dead-letters", args=[environment.name])


def dead_letters(environment: Environment) -> list[Alert]:
    """Dead letters waiting for a redrive or a discard (one COUNT query), and those still in
    the dead-letter queue: SQS's depth from the environment's live state, which the
    dashboard's health reads anyway (one set of calls per ``AWS_STATE_CACHE_SECONDS`` for
    every viewer): no AWS call of its own."""
    waiting = environment.dead_letters.filter(status=DeadLetter.Status.WAITING).count()
    live = state.live(environment)
    queue = live.get("dlq") or {}
    error = live.get("error") or queue.get("error")
    in_queue = 0 if error else queue.get("messages", 0)
    parts = []
    if waiting:
        verb = f"wait{pluralize(waiting, 's,')}"
        parts.append(
            f"{waiting:,} dead letter{pluralize(waiting)} {verb} for a redrive or a discard"
        )
    if in_queue:
        noun = "more" if waiting else f"event{pluralize(in_queue)}"
        parts.append(f"{in_queue:,} {noun} in the dead-letter queue, not collected yet")
    found = []
    if parts:
        text = "; ".join(parts)
        found.append(Alert(WARNING, environment.name, text, _dead_letter_page(environment)))
    if error:
        found.append(unreadable(environment, "dead letters", error, _dead_letter_page))
    return found


_SEAL_PROBLEMS = {"tampered": "its seal fails", "changed": "a record changed since it was sealed"}


def audit_days(environment: Environment) -> list[Alert]:
    """Days of the last 30 whose check found records missing, extra or miscounted, or whose
    seal no longer holds: one query, no AWS call (the checks ran before)."""
    since = audit_runs.today() - timedelta(days=RECENT_DAYS)
    bad = list(
        AuditDay.objects.filter(environment=environment, day__gte=since)
        .filter(Q(complete=False) | Q(seal_status__in=list(_SEAL_PROBLEMS)))
        .order_by("-day")
    )
    if not bad:
        return []
    newest = bad[0]
    if newest.seal_status in _SEAL_PROBLEMS:
        text = f"{newest.day}: {_SEAL_PROBLEMS[newest.seal_status]}"
    else:
        text = audit_runs.describe(newest).rstrip(".")
    if len(bad) == 1:
        url = reverse("audit_explorer:audit-day", args=[environment.name, newest.day.isoformat()])
    else:
        text = f"{len(bad)} days of the last {RECENT_DAYS} need a look; the newest, {text}"
        url = _days_page(environment)
    return [Alert(CRITICAL, environment.name, text, url)]


def stalled_runs(environment: Environment) -> list[Alert]:
    """Runs whose worker has been silent ``RUN_STALLED_SECONDS``, each with what it last said:
    one query, and one per stalled run; no AWS call."""
    found = []
    for run in runs.stalled(environment):
        last = run.events.order_by("-seq").first()
        said = f"; it last said: {last.text[:120]}" if last else ""
        text = (
            f"{run.kind} #{run.pk} is stalled, last heard from {relative(run.heartbeat_at)}{said}"
        )
        found.append(Alert(WARNING, environment.name, text, run.get_absolute_url()))
    return found


def _costs_page(environment: Environment) -> str:
    return reverse("costs:environment", args=[environment.name])


def project_budgets(environment: Environment) -> list[Alert]:
    """Projects at 80% or 100% of their monthly budget: warnings, never a cut-off. No read
    without budgets; with some, the month's ledger (kept 10 minutes for every viewer):
    40 Queries of the status classes' rollups, 8 per project with traffic this month and
    one GetMetricData."""
    return [
        Alert(
            WARNING,
            environment.name,
            f"project {found.budget.project} has cost {found.percent}% of its monthly budget "
            f"(${found.spent:,.2f} of ${found.budget.monthly_usd:,}): a warning only, nothing "
            "is cut off",
            _costs_page(environment),
        )
        for found in budgets.warnings(environment)
    ]


def _keys_page(environment: Environment) -> str:
    return reverse("api-key-list", args=[environment.name])


def _days_page(environment: Environment) -> str:
    return reverse("audit_explorer:audit-days", args=[environment.name])


def _environment_page(environment: Environment) -> str:
    return reverse("provisioning:environment", args=[environment.name])


SOURCES = (
    Source("API keys", perms.VIEW_API_KEYS, keys, _keys_page),
    Source("key rotations", perms.VIEW_API_KEYS, rotations, _keys_page),
    Source("dead letters", perms.VIEW_AUDIT, dead_letters, _dead_letter_page),
    Source("the audit days", perms.VIEW_AUDIT, audit_days, _days_page),
    Source("the runs", perms.VIEW_STATE, stalled_runs, _environment_page),
    Source("the projects' budgets", perms.VIEW_AUDIT, project_budgets, _costs_page),
)
