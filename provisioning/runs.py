"""Starting, confirming, cancelling, retrying and reaping runs, of any kind
(``provisioning.kinds``).

Every function here checks, acts and records who did it in the action log, in one
transaction. The environment lock is the database's: a partial unique constraint allows one
queued or running run that holds the environment per environment, whichever web process or
worker asks.
"""

from contextlib import suppress
from datetime import timedelta
from functools import partial

import django_rq
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.worker import Worker

from core import actions
from core.actions import Actor
from core.refusals import Refused
from provisioning import kinds
from provisioning.models import Environment, Run, RunEvent, RunStep

QUEUE = "provisioning"


def log(run: Run, text: str, *, step: str = "", level: str = "info") -> RunEvent:
    """Append to the run's log. Several writers (the worker, a cancel, the reaper) may race for
    a sequence number: the unique constraint decides, and the loser takes the next one."""
    for _ in range(10):
        last = run.events.order_by("-seq").values_list("seq", flat=True).first() or 0
        try:
            with transaction.atomic():
                return RunEvent.objects.create(
                    run=run, seq=last + 1, step=step, level=level, text=text
                )
        except IntegrityError:
            continue
    raise RuntimeError(f"could not append to the log of {run}")


def holder_of(environment: Environment) -> Run | None:
    """The queued or running run that holds the environment (an apply, say), if any."""
    return (
        Run.objects.filter(environment=environment, status__in=Run.ACTIVE, holds_environment=True)
        .select_related("environment")
        .first()
    )


def held_message(holder: Run) -> str:
    since = timezone.localtime(holder.created_at).strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"{holder.environment.name} is held by {holder.kind} #{holder.pk}, started by "
        f"{holder.started_by_name} at {since} ({holder.status}). Wait for it to end, or cancel it."
    )


def _kind(key: str) -> kinds.RunKind:
    try:
        return kinds.get(key)
    except LookupError as exc:
        raise Refused(str(exc)) from None


def start(
    environment: Environment,
    kind: str,
    *,
    actor: Actor,
    parameters: dict | None = None,
    plan: Run | None = None,
    retry_of: Run | None = None,
    enqueue: bool = True,
) -> Run:
    """A new run, queued for a worker once the transaction commits (``enqueue=False``: the
    caller executes it itself, as ``manage.py env`` does). A person (``actor``) needs the
    kind's permission; the system (None: the scheduler, a command) does not."""
    run_kind = _kind(kind)
    if actor is not None and not actor.has_perm(run_kind.permission):
        raise PermissionDenied(f"{actions.actor_name(actor)} may not start a {kind}.")
    parameters = parameters or {}
    try:
        spec = environment.spec()
    except ValidationError as exc:
        problems = "; ".join(f"{field}: {' '.join(errors)}" for field, errors in exc)
        raise Refused(f"Environment {environment.name} is not valid: {problems}") from None
    if run_kind.check is not None:
        run_kind.check(environment, parameters)
    steps = run_kind.steps_for(spec)
    for _ in range(3):
        try:
            with transaction.atomic():
                run = Run.objects.create(
                    environment=environment,
                    kind=kind,
                    parameters=parameters,
                    started_by=actor,
                    started_by_name=actions.actor_name(actor),
                    plan=plan,
                    retry_of=retry_of,
                    explanation="Waiting for a worker to take it.",
                )
                RunStep.objects.bulk_create(
                    RunStep(run=run, position=n, key=key, title=title)
                    for n, (key, title) in enumerate(steps, start=1)
                )
                actions.record(
                    f"run.{kind}",
                    run,
                    actor=actor,
                    parameters={"environment": environment.name, **run.parameters},
                )
                if enqueue:
                    transaction.on_commit(partial(_enqueue, run))
            return run
        except IntegrityError:
            holder = holder_of(environment)
            if holder is not None and not reap(holder):
                raise Refused(held_message(holder), see=holder.get_absolute_url()) from None
            # The holder ended meanwhile, or had died: try again.
    raise Refused(f"{environment.name} changed hands while this {kind} started: start it again.")


def _enqueue(run: Run) -> None:
    from provisioning.jobs import execute

    django_rq.get_queue(QUEUE).enqueue(execute, run.pk, job_id=run.job_id)


def confirm(proposal: Run, *, actor: Actor) -> Run:
    """Carry out what ``proposal`` (a plan) showed, as a run of the kind it is confirmed as
    (an apply), which checks first that it would still do just that."""
    confirmed_as = _kind(proposal.kind).confirmed_as
    if not confirmed_as or proposal.status != Run.Status.SUCCEEDED:
        raise Refused(
            f"Only a finished run that proposes changes can be confirmed; {proposal} is "
            f"{proposal.status}."
        )
    with transaction.atomic():
        decided = Run.objects.filter(pk=proposal.pk, decision=Run.Decision.PENDING).update(
            decision=Run.Decision.CONFIRMED
        )
        if not decided:
            raise Refused(_decided_message(proposal))
        return start(
            proposal.environment,
            confirmed_as,
            actor=actor,
            parameters={"plan": proposal.pk},
            plan=proposal,
        )


def discard(proposal: Run, *, actor: Actor) -> str:
    with transaction.atomic():
        decided = Run.objects.filter(pk=proposal.pk, decision=Run.Decision.PENDING).update(
            decision=Run.Decision.DISCARDED
        )
        if not decided:
            raise Refused(_decided_message(proposal))
        actions.record("run.discard", proposal, actor=actor)
    return f"{_named(proposal)} discarded: nothing was changed."


def _named(run: Run) -> str:
    return f"{run.kind.capitalize()} #{run.pk}"


def _decided_message(proposal: Run) -> str:
    proposal.refresh_from_db(fields=["decision"])
    if proposal.decision == Run.Decision.CONFIRMED:
        confirmed = proposal.applies.order_by("-pk").first()
        where = f": see {confirmed.kind} #{confirmed.pk}" if confirmed else ""
        return f"{_named(proposal)} was already confirmed{where}."
    if proposal.decision == Run.Decision.DISCARDED:
        return f"{_named(proposal)} was discarded: make a fresh {proposal.kind}."
    return f"{_named(proposal)} has nothing to confirm."


def retry(run: Run, *, actor: Actor, parameters: dict | None = None) -> Run:
    """A new run of the same kind and parameters, linked to ``run``, started as any run is.
    What a person types for its kind (a destroy's phrases) is not copied: it comes again in
    ``parameters``. A retried apply is no longer its plan's: it resumes the declaration as it
    stands, since what the plan showed is partly done already."""
    if run.status not in (Run.Status.FAILED, Run.Status.CANCELLED):
        raise Refused(f"Only a failed or cancelled run can be retried; {run} is {run.status}.")
    dropped = {"plan", *_kind(run.kind).asks}
    kept = {key: value for key, value in run.parameters.items() if key not in dropped}
    return start(
        run.environment,
        run.kind,
        actor=actor,
        parameters={**kept, **(parameters or {})},
        retry_of=run,
    )


def cancel(run: Run, *, actor: Actor) -> str:
    """Take a queued run off the queue, or ask a running one to stop after its current step.
    Returns what happened, for the operator."""
    name = actions.actor_name(actor)
    now = timezone.now()
    with transaction.atomic():
        off_queue = Run.objects.filter(pk=run.pk, status=Run.Status.QUEUED).update(
            status=Run.Status.CANCELLED,
            finished_at=now,
            explanation=f"Cancelled by {name} before it started.",
        )
        if off_queue:
            transaction.on_commit(partial(_remove_job, run))
            outcome = "Cancelled before it started."
        elif Run.objects.filter(
            pk=run.pk, status=Run.Status.RUNNING, cancel_requested_at=None
        ).update(cancel_requested_at=now, cancel_requested_by=name):
            outcome = "Cancel requested: the run stops after its current step."
        else:
            run.refresh_from_db()
            if run.cancel_requested_at:
                return f"Cancel was already requested by {run.cancel_requested_by}."
            raise Refused(f"{run} has already ended ({run.status}).")
        log(run, f"{outcome} (by {name})", level="warning")
        actions.record("run.cancel", run, actor=actor)
    return outcome


def force_cancel(run: Run, *, actor: Actor) -> str:
    """Mark a run whose worker no longer answers as cancelled, and free the environment.
    The worker, if it still lives, is told to stop the job."""
    name = actions.actor_name(actor)
    with transaction.atomic():
        ended = Run.objects.filter(pk=run.pk, status__in=Run.ACTIVE).update(
            status=Run.Status.CANCELLED,
            finished_at=timezone.now(),
            explanation=f"Force-cancelled by {name}; the environment is free. Whatever step was "
            "under way may be half done: plan again before applying.",
        )
        if not ended:
            raise Refused(f"{run} has already ended.")
        log(run, f"Force-cancelled by {name}.", level="warning")
        actions.record("run.force_cancel", run, actor=actor)
    transaction.on_commit(partial(_remove_job, run))
    return f"Run #{run.pk} force-cancelled; {run.environment.name} is free."


def _remove_job(run: Run) -> None:
    connection = django_rq.get_connection(QUEUE)
    try:
        job = Job.fetch(run.job_id, connection=connection)
    except NoSuchJobError:
        return
    if job.get_status(refresh=False) == JobStatus.STARTED:
        with suppress(InvalidJobOperation):  # it ended meanwhile
            send_stop_job_command(connection, run.job_id)
    else:
        job.cancel()


def stalled_after() -> timedelta:
    return timedelta(seconds=settings.RUN_STALLED_SECONDS)


def is_stalled(run: Run) -> bool:
    """Running, but its worker silent (no event, no AWS call) for ``RUN_STALLED_SECONDS``."""
    return (
        run.status == Run.Status.RUNNING
        and run.heartbeat_at is not None
        and timezone.now() - run.heartbeat_at > stalled_after()
    )


def stalled(environment: Environment) -> list[Run]:
    """The environment's stalled runs, quietest first (one query)."""
    return list(
        environment.runs.filter(
            status=Run.Status.RUNNING, heartbeat_at__lt=timezone.now() - stalled_after()
        ).order_by("heartbeat_at")
    )


def reap(run: Run) -> bool:
    """Mark ``run`` failed if its worker died (SIGKILL, out of memory) or its job was lost,
    freeing the environment. True when it did. Cheap when the run is alive: one look at its
    heartbeat, and Redis only when that is old."""
    now = timezone.now()
    if run.status == Run.Status.RUNNING:
        if run.heartbeat_at and now - run.heartbeat_at < timedelta(
            seconds=settings.RUN_HEARTBEAT_TIMEOUT_SECONDS
        ):
            return False
        reason = _why_dead(run)
    elif run.status == Run.Status.QUEUED and now - run.created_at > timedelta(seconds=30):
        reason = _why_lost(run)
    else:
        return False
    if reason is None:
        return False
    ended = Run.objects.filter(pk=run.pk, status=run.status).update(
        status=Run.Status.FAILED, finished_at=now, explanation=reason
    )
    if ended:
        log(run, reason, level="error")
        run.refresh_from_db()
    return bool(ended)


def reap_all() -> int:
    """Reap every active run that needs it; returns how many were marked failed."""
    return sum(reap(run) for run in Run.objects.filter(status__in=Run.ACTIVE))


def _why_dead(run: Run) -> str | None:
    connection = django_rq.get_connection(QUEUE)
    heard = timezone.localtime(run.heartbeat_at).strftime("%H:%M:%S") if run.heartbeat_at else "?"
    try:
        job = Job.fetch(run.job_id, connection=connection)
    except NoSuchJobError:
        job = None
    if job is not None and job.get_status() == JobStatus.FAILED:
        result = job.latest_result()
        last_line = ((result and result.exc_string) or "").strip().splitlines()[-1:]
        detail = f": {last_line[0]}" if last_line else ""
        return f"The worker's job failed{detail}. The environment is free: retry to resume."
    worker = None
    if run.worker_name:
        key = Worker.redis_worker_namespace_prefix + run.worker_name
        worker = Worker.find_by_key(key, connection=connection)
    if worker is not None and worker.get_current_job_id() == run.job_id:
        beat = worker.last_heartbeat
        if beat and timezone.now() - beat < timedelta(
            seconds=settings.RUN_HEARTBEAT_TIMEOUT_SECONDS
        ):
            return None  # the worker says it is still on it
    return (
        f"The worker running it ({run.worker_name or 'unknown'}) stopped answering; last heard "
        f"from at {heard}. It was killed or ran out of memory. The environment is free: retry "
        "to resume."
    )


def _why_lost(run: Run) -> str | None:
    try:
        Job.fetch(run.job_id, connection=django_rq.get_connection(QUEUE))
    except NoSuchJobError:
        return "Its job was lost from the queue (Redis restarted or was flushed): retry it."
    return None
