"""The audit trail's runs, two run kinds that ``apps.py`` registers, carried out by
``provisioning.jobs`` like every run (same live page, cancel and action log): a completeness
check of one day, which also seals the day or checks its seal, and a redrive of dead-lettered
events or of a day's missing objects, which checks the days it touched again."""

import time
from datetime import UTC, date, timedelta

from django.db import transaction
from django.utils import timezone

from audit_explorer import completeness, dead_letters, seals
from audit_explorer.models import AuditDay, DeadLetter
from centralllm.audit.contract import parse_timestamp
from core.actions import Actor, actor_name, record
from core.permissions import START_PROVISIONING
from core.refusals import Refused
from provisioning import runs
from provisioning.engine import refuse_local_against_aws, run_step
from provisioning.engine_runs import APPLY, DESTROY
from provisioning.kinds import RunKind
from provisioning.models import Environment, Run
from provisioning.resources.base import Context, Progress, ProvisioningError, Spec

COLLECT = ("collect", "Collect the dead-letter queue")
SEAL = ("seal", "Seal the day's objects, or check its seal")
CHECK_STEPS = [COLLECT, *completeness.STEPS, SEAL]
REDRIVE_STEPS = [COLLECT, ("redrive", "Ingest the events again"), ("recheck", "Check the days")]
PROGRESS_SECONDS = 2  # how often a long redrive says how far it is


def check_run(run: Run, spec: Spec, progress: Progress) -> tuple[dict, str]:
    day = date.fromisoformat(run.parameters["day"])
    refuse_local_against_aws(spec)
    with Context(spec, progress) as ctx:
        _collect_step(ctx, run.environment)
        checked = check_and_keep(ctx, run, day)
        sealed = run_step(
            ctx, *SEAL, lambda: seal_and_keep(ctx, checked, reseal=run.parameters.get("reseal"))
        )
    result = {"day": str(day), "complete": checked.complete, "seal": checked.seal_status}
    return result, f"{describe(checked)} {sealed}"


def _collect_step(ctx: Context, environment: Environment) -> None:
    def collect() -> str:
        return f"{dead_letters.collect(ctx, environment)} new dead-lettered events"

    run_step(ctx, *COLLECT, collect)


def check_and_keep(ctx: Context, run: Run, day: date) -> AuditDay:
    """Check ``day`` and keep the result as the day's AuditDay."""
    environment = run.environment
    check = completeness.check_day(
        ctx,
        day,
        _keys(environment, DeadLetter.Status.WAITING),
        _keys(environment, DeadLetter.Status.DISCARDED),
    )
    found, _ = AuditDay.objects.update_or_create(
        environment=environment,
        day=day,
        defaults={
            "complete": check.complete,
            "objects_count": check.objects,
            "items_count": check.items,
            "rollup_count": check.rollups,
            "dead_lettered": check.dead_lettered,
            "gateway_count": check.gateway,
            "missing_count": len(check.missing),
            "extra_count": len(check.extra) + len(check.double),
            "details": check.details(),
            "run": run,
        },
    )
    return found


def seal_and_keep(ctx: Context, checked: AuditDay, *, reseal: bool = False) -> str:
    """Seal the checked day, or check its seal, and keep what was found with the day."""
    try:
        found = seals.seal_or_verify(
            ctx, checked.day, expected_root=checked.seal.get("root", ""), reseal=bool(reseal)
        )
    except seals.NoSealKey as exc:
        return f"Not sealed: {exc}."
    kept, before = dict(checked.seal), checked.seal.get("sealedAt", "")
    if found.statement:  # a seal that holds: this one is witnessed from now on
        statement = found.statement
        kept.update(
            key=found.key,
            root=statement["merkleRoot"],
            objects=statement["objects"],
            bytes=statement["bytes"],
            signedWith=found.signed_with,
            sealedAt=statement["sealedAt"],
        )
        checked.sealed_at = parse_timestamp(statement["sealedAt"])
    kept["problem"] = found.problem
    for name in ("changed", "vanished", "added"):
        rows = getattr(found, name)
        kept[name], kept[f"{name}_count"] = rows[: completeness.MAX_LISTED], len(rows)
    if found.kept:
        kept["kept"] = [*kept.get("kept", []), {**found.kept, "sealedAt": before}]
    checked.seal, checked.seal_status = kept, found.status
    checked.seal_checked_at = None if found.status == seals.Status.SEALED else timezone.now()
    checked.save(update_fields=["seal", "seal_status", "sealed_at", "seal_checked_at"])
    return found.describe()


_PROBLEMS = (("extra", "extra"), ("double", "double"), ("miscounted_hours", "hours miscounted"))


def _keys(environment: Environment, status: str) -> set[str]:
    letters = DeadLetter.objects.filter(environment=environment, status=status)
    return {key for keys in letters.values_list("keys", flat=True) for key in keys}


def discard(letters: list[DeadLetter], reason: str, *, actor: Actor) -> int:
    """Give up on dead letters, with the reason, recorded: a checked day counts their
    objects as discarded, not missing. Returns how many were waiting."""
    reason = reason.strip()
    if not reason:
        raise Refused("Say why these events are discarded.")
    discarded = 0
    with transaction.atomic():
        for letter in letters:
            if letter.status != DeadLetter.Status.WAITING:
                continue
            letter.status, letter.reason = DeadLetter.Status.DISCARDED, reason
            letter.resolved_at, letter.resolved_by_name = timezone.now(), actor_name(actor)
            letter.save(update_fields=["status", "reason", "resolved_at", "resolved_by_name"])
            record(
                "audit.dead_letter.discard",
                letter,
                actor=actor,
                parameters={"keys": letter.keys[:20], "error": letter.error[:200]},
                after={"reason": reason},
            )
            discarded += 1
    return discarded


def describe(day: AuditDay) -> str:
    discarded = day.details.get("discarded_count", 0)
    if day.complete:
        also = f" ({discarded} discarded)" if discarded else ""
        return (
            f"{day.day} is complete: {day.items_count} records in S3, DynamoDB and the"
            f" rollups{also}."
        )
    details, problems = day.details, []
    if day.missing_count:
        problems.append(f"{day.missing_count} missing ({day.dead_lettered} dead-lettered)")
    if details.get("discarded_count"):
        problems.append(f"{details['discarded_count']} discarded")
    for name, label in _PROBLEMS:
        if details.get(f"{name}_count"):
            problems.append(f"{details[f'{name}_count']} {label}")
    return f"{day.day} is incomplete: {', '.join(problems)}."


def redrive_run(run: Run, spec: Spec, progress: Progress) -> tuple[dict, str]:
    """Redrive the chosen dead letters (``letters``: ids, or ``all``) or the missing objects
    of a checked ``day``; then check again the checked days it touched."""
    parameters, environment = run.parameters, run.environment
    refuse_local_against_aws(spec)
    tally = {"redriven": 0, "failed": 0, "failures": []}
    days: set[date] = set()
    with Context(spec, progress) as ctx:
        _collect_step(ctx, environment)
        if "day" in parameters:
            day = date.fromisoformat(parameters["day"])
            days.add(day)
            step = lambda: _redrive_missing(ctx, run, day, tally)  # noqa: E731
        else:
            step = lambda: _redrive_letters(ctx, run, parameters, tally, days)  # noqa: E731
        run_step(ctx, "redrive", "Ingest the events again", step)
        run_step(ctx, "recheck", "Check the days", lambda: _recheck(ctx, run, days))
    summary = f"{tally['redriven']} ingested again"
    if tally["failed"]:
        first = tally["failures"][0]
        raise ProvisioningError(
            f"{summary}, {tally['failed']} failed again (the first: {first}); they stay "
            "waiting: fix the cause and redrive them, or discard them with a reason."
        )
    return {k: tally[k] for k in ("redriven", "failed")}, f"{summary}; nothing failed."


def _redrive_letters(ctx: Context, run: Run, parameters: dict, tally: dict, days: set) -> str:
    letters = DeadLetter.objects.filter(
        environment=run.environment, status=DeadLetter.Status.WAITING
    )
    if not parameters.get("all"):
        letters = letters.filter(pk__in=parameters.get("letters", []))
    letters = list(letters.order_by("failed_at", "pk"))
    said = time.monotonic()
    for done, letter in enumerate(letters, start=1):
        ctx.progress.checkpoint()
        error = _redrive_letter(ctx, run, letter)
        if error:
            tally["failed"] += 1
            tally["failures"].append(f"{letter.keys[:1] or letter.message_id}: {error}")
        else:
            tally["redriven"] += 1
            days.update(_day_of(key) for key in letter.keys)
        if time.monotonic() - said >= PROGRESS_SECONDS:
            ctx.say(f"{done} of {len(letters)} events handled")
            said = time.monotonic()
    return f"{tally['redriven']} of {len(letters)} events ingested again"


def _redrive_letter(ctx: Context, run: Run, letter: DeadLetter) -> str:
    """Redrive one dead letter; the error if it failed again, else ''."""
    if not letter.keys:
        error = "not an S3 event of the audit bucket: discard it"
    else:
        try:
            dead_letters.redrive(ctx, dead_letters.s3_event(letter.bucket, letter.keys))
            error = ""
        except dead_letters.RedriveFailed as exc:
            error = str(exc)
    letter.redrive_attempts += 1
    letter.run, letter.last_redrive_error = run, error
    if not error:
        _resolve(letter, run)
    letter.save()
    return error


def _resolve(letter: DeadLetter, run: Run) -> None:
    letter.status, letter.run = DeadLetter.Status.REDRIVEN, run
    letter.resolved_at, letter.resolved_by_name = timezone.now(), run.started_by_name


def _redrive_missing(ctx: Context, run: Run, day: date, tally: dict) -> str:
    """Ingest the missing objects of a checked day, 50 to an event; the dead letters of
    those ingested are resolved with them."""
    environment = run.environment
    checked = AuditDay.objects.filter(environment=environment, day=day).first()
    if checked is None:
        raise ProvisioningError(f"{day} was never checked: check it first.")
    keys = [row["key"] for row in checked.details.get("missing", [])]
    bucket, said, ingested = ctx.name("AuditBucket"), time.monotonic(), set()
    for first in range(0, len(keys), dead_letters.KEYS_PER_EVENT):
        ctx.progress.checkpoint()
        batch = keys[first : first + dead_letters.KEYS_PER_EVENT]
        try:
            dead_letters.redrive(ctx, dead_letters.s3_event(bucket, batch))
            ingested.update(batch)
        except dead_letters.RedriveFailed:
            # Which ones failed: one at a time (those ingested a moment ago are no-ops).
            for key in batch:
                try:
                    dead_letters.redrive(ctx, dead_letters.s3_event(bucket, [key]))
                    ingested.add(key)
                except dead_letters.RedriveFailed as exc:
                    tally["failed"] += 1
                    tally["failures"].append(f"{key}: {exc}")
        if time.monotonic() - said >= PROGRESS_SECONDS:
            ctx.say(f"{first + len(batch)} of {len(keys)} missing objects handled")
            said = time.monotonic()
    tally["redriven"] = len(ingested)
    waiting = environment.dead_letters.filter(status=DeadLetter.Status.WAITING)
    for letter in waiting.exclude(keys=[]):
        if set(letter.keys) <= ingested:
            _resolve(letter, run)
            letter.save()
    return f"{len(ingested)} of {len(keys)} missing objects ingested"


def _recheck(ctx: Context, run: Run, days: set[date]) -> str:
    checked = set(
        AuditDay.objects.filter(environment=run.environment, day__in=days).values_list(
            "day", flat=True
        )
    )
    outcomes = [describe(check_and_keep(ctx, run, day)) for day in sorted(checked)]
    return " ".join(outcomes) or "no checked day was touched"


def _day_of(key: str) -> date | None:
    """The day of an audit key ``logs/YYYY/MM/DD/<id>.json``."""
    parts = key.split("/")
    try:
        return date(int(parts[1]), int(parts[2]), int(parts[3]))
    except (IndexError, ValueError):
        return None


CALENDAR_DAYS = 30


def today() -> date:
    """Today in UTC, the audit trail's days (``logs/YYYY/MM/DD/``)."""
    return timezone.now().astimezone(UTC).date()


def calendar(environment: Environment, days: int = CALENDAR_DAYS) -> list[dict]:
    """The last ``days`` days before today, oldest first, each with its check if any."""
    last = today() - timedelta(days=1)
    first = last - timedelta(days=days - 1)
    checked = {
        found.day: found
        for found in AuditDay.objects.filter(environment=environment, day__range=(first, last))
    }
    return [
        {"day": first + timedelta(days=n), "checked": checked.get(first + timedelta(days=n))}
        for n in range(days)
    ]


def yesterday_of(environments: list[Environment]) -> dict[int, AuditDay]:
    """Yesterday's check of each environment, for the dashboard (one query)."""
    found = AuditDay.objects.filter(environment__in=environments, day=today() - timedelta(days=1))
    return {day.environment_id: day for day in found}


def check_yesterday() -> list[int]:
    """The scheduled daily check: yesterday, in every environment that stands (its last
    apply or destroy was an apply that succeeded). Returns the runs started."""
    day, started = str(today() - timedelta(days=1)), []
    for environment in Environment.objects.all():
        last = environment.runs.filter(kind__in=(APPLY.key, DESTROY.key)).filter(
            status=Run.Status.SUCCEEDED
        )
        if getattr(last.first(), "kind", None) != APPLY.key:
            continue
        pending = environment.runs.filter(
            kind=CHECK.key, status__in=Run.ACTIVE, parameters__day=day
        )
        if not pending.exists():
            started.append(
                runs.start(environment, CHECK.key, actor=None, parameters={"day": day}).pk
            )
    return started


CHECK = RunKind(
    key="check",
    title="Audit check",
    steps=CHECK_STEPS,
    execute=check_run,
    permission=START_PROVISIONING,
    result_template="audit_explorer/_check_result.html",
)
REDRIVE = RunKind(
    key="redrive",
    title="Redrive",
    steps=REDRIVE_STEPS,
    execute=redrive_run,
    permission=START_PROVISIONING,
    result_template="audit_explorer/_redrive_result.html",
)
