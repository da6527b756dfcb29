"""Rollouts and rollbacks as runs, with the releases they make live and the holds they put:
a rollout builds an image and moves the service onto it (``provisioning.rollout`` does the
AWS part), a rollback moves it back to an earlier release; "Roll back now" stops a rollout
and goes back at once."""

from functools import partial
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core import actions
from core.actions import Actor
from core.permissions import START_ROLLOUT
from core.refusals import Refused
from provisioning import deployment_alarms, engine, rollout, runs
from provisioning.jobs import RunCancelled
from provisioning.kinds import RunKind
from provisioning.models import Environment, Hold, Release, Run
from provisioning.resources.applicationautoscaling import ScalableTarget
from provisioning.resources.base import Context, Progress, ProvisioningError, Spec
from provisioning.resources.cloudwatch import ServiceHealthAlarm
from provisioning.runs import log
from provisioning.validation_runs import VALIDATE


def _rollout(run: Run, spec: Spec, progress: Progress) -> tuple[dict, str]:
    """Build, find the image, register a revision, move the service, follow it; the release
    is recorded as soon as the service moves, and becomes live only once it is steady."""
    source_version = run.parameters.get("source_version") or "main"
    engine.refuse_local_against_aws(spec)  # rollouts and checks, as plans and applies
    with Context(spec, progress) as ctx:
        build = partial(rollout.build_image, ctx, source_version)
        tag = _stage(ctx, "build", build, lambda tag: f"pushed {tag}")
        image = _stage(ctx, "image", lambda: _unheld_image(run, ctx, tag), lambda i: i.digest)
        arn = _stage(
            ctx, "task_definition", lambda: rollout.register_revision(ctx, image), _short_arn
        )
        release = Release.objects.create(
            environment=run.environment,
            run=run,
            image_tag=image.tag,
            image_digest=image.digest,
            task_definition=arn,
            alarms={"watched": deployment_alarms.watched(spec)},
        )
        try:
            _stage(ctx, "service", lambda: rollout.move_service(ctx, arn), lambda _: "moved")
            _stage(
                ctx, "deployment", lambda: rollout.follow_deployment(ctx, arn), lambda _: "steady"
            )
        except rollout.RolledBack as exc:
            _rolled_back_by_ecs(release, exc)
            raise
        except RunCancelled:
            run.refresh_from_db(fields=["roll_back_reason", "cancel_requested_by"])
            if not run.roll_back_reason:
                _end_release(release, Release.Outcome.FAILED, "cancelled")
                raise
            raise RunCancelled(_roll_back_now(ctx, run, release)) from None
        except (ProvisioningError, Refused) as exc:
            _end_release(release, Release.Outcome.FAILED, str(exc))
            raise
        _make_live(release)
    if not spec.live_image_tag:
        _bring_into_force(run, progress)
    result = {"image_tag": image.tag, "image_digest": image.digest, "task_definition": arn}
    return result, f"{image.tag} ({image.digest[:19]}) is live on {_short_arn(arn)}."


def _validate_after(run: Run, result: dict) -> None:
    """The guide's checklist follows every rollout or rollback that went live."""
    try:
        validate = runs.start(
            run.environment, VALIDATE.key, actor=run.started_by, parameters={"after": run.pk}
        )
    except (Refused, PermissionDenied) as exc:
        log(run, f"The validation did not start: {exc}", level="warning")
    else:
        log(run, f"validation #{validate.pk} started")


def _check_rollout(environment: Environment, parameters: dict) -> None:
    hold = environment.holds.filter(
        cleared_at=None, image_tag=parameters.get("source_version")
    ).first()
    if hold is not None:
        raise Refused(f"{hold.image_tag} is on hold ({hold.reason}): clear the hold first.")


# What waits for the first release, and how it waits until an apply if bringing it fails.
_AFTER_FIRST_RELEASE = (
    (ServiceHealthAlarm.key, "the running-tasks alarm stays silent"),
    (ScalableTarget.key, "scaling stays suspended at no task"),
)


def _bring_into_force(run: Run, progress: Progress) -> None:
    """The first release is live: the running-tasks alarm, silent while no task was meant to
    run, now has tasks to watch, and scaling, held at no task, takes the count over. A
    failure here leaves the release live and says what to do."""
    for key, meanwhile in _AFTER_FIRST_RELEASE:
        try:
            engine.apply_one(run.environment, key, progress)
        except (ProvisioningError, Refused) as exc:
            log(run, f"{exc}: {meanwhile} until the next apply", level="error")


def _rollback(run: Run, spec: Spec, progress: Progress) -> tuple[dict, str]:
    """Back to an earlier recorded release, in one click: the service moves to its revision
    and is followed until steady; the image it leaves is put on hold."""
    target = Release.objects.get(pk=run.parameters["release"], environment=run.environment)
    reason = run.parameters.get("reason", "")
    leaving = run.environment.live_release()
    engine.refuse_local_against_aws(spec)  # rollouts and checks, as plans and applies
    arn = target.task_definition
    with Context(spec, progress) as ctx:
        _stage(ctx, "service", lambda: rollout.move_service(ctx, arn), lambda _: "moved")
        follow = partial(rollout.follow_deployment, ctx, arn)
        _stage(ctx, "deployment", follow, lambda _: "steady")
    release = Release.objects.create(
        environment=run.environment,
        run=run,
        image_tag=target.image_tag,
        image_digest=target.image_digest,
        task_definition=target.task_definition,
    )
    if leaving is not None:
        _hold(leaving, f"rolled back by {run.started_by_name}: {reason}", run.started_by_name)
    _make_live(release)
    result = {"image_tag": target.image_tag, "task_definition": target.task_definition}
    return result, f"Back on {target.image_tag} ({target.revision}): {reason}"


def _unheld_image(run: Run, ctx: Context, tag: str) -> rollout.Image:
    image = rollout.find_image(ctx, tag)
    hold = _held(run.environment, image.tag, image.digest)
    if hold is not None:
        raise ProvisioningError(
            f"{image.tag} is on hold in {run.environment.name} since "
            f"{timezone.localtime(hold.created_at):%Y-%m-%d %H:%M} ({hold.reason}): clear the "
            "hold on the environment's page to roll it out again."
        )
    return image


def _held(environment: Environment, tag: str, digest: str = "") -> Hold | None:
    """The hold that keeps an image (by tag or digest) from being rolled out, if any."""
    holds = environment.holds.filter(cleared_at=None)
    by_image = Q(image_tag=tag) | (Q(image_digest=digest) if digest else Q(pk__in=[]))
    return holds.filter(by_image).first()


def _make_live(release: Release) -> None:
    with transaction.atomic():
        release.environment.releases.filter(outcome=Release.Outcome.LIVE).update(
            outcome=Release.Outcome.REPLACED
        )
        _end_release(release, Release.Outcome.LIVE, "")


def _roll_back(release: Release, reason: str, *, by: str) -> None:
    _end_release(release, Release.Outcome.ROLLED_BACK, reason)
    _hold(release, reason, by)


def _rolled_back_by_ecs(release: Release, exc: rollout.RolledBack) -> None:
    """ECS put the service back: its circuit breaker, or a deployment alarm, kept on the
    release with the values it saw."""
    if exc.alarm is None:
        _roll_back(release, str(exc), by="ECS's circuit breaker")
        return
    release.alarms = {**release.alarms, "fired": exc.alarm}
    release.save(update_fields=["alarms"])
    _roll_back(release, str(exc), by=f"ECS's deployment alarm {exc.alarm['name']}")


def _hold(release: Release, reason: str, by: str) -> None:
    Hold.objects.create(
        environment=release.environment,
        image_tag=release.image_tag,
        image_digest=release.image_digest,
        release=release,
        reason=reason,
        created_by_name=by,
    )


def _roll_back_now(ctx: Context, run: Run, release: Release) -> str:
    """An operator's "Roll back now": the service goes back to the live revision at once,
    without waiting for the circuit breaker."""
    who, why = run.cancel_requested_by, run.roll_back_reason
    live = run.environment.live_release()
    reason = f"rolled back by {who}: {why}"
    _roll_back(release, reason, by=who)
    if live is None:
        return (
            f"Stopped by {who} ({why}); there is no earlier release to go back to, so the "
            f"service stays on {release.revision}."
        )
    rollout.move_service(ctx, live.task_definition)
    back_to = f"{live.image_tag} on {live.revision}"
    return f"Rolled back by {who} ({why}): the service goes back to {back_to}."


def _stage(ctx: Context, key: str, action, outcome) -> Any:
    """One rollout stage as a run step; ``outcome(result)`` is what the step shows."""
    kept = []

    def step() -> str:
        kept.append(action())
        return outcome(kept[0])

    engine.run_step(ctx, key, dict(rollout.STAGES)[key], step)
    return kept[0]


def _short_arn(arn: str) -> str:
    return arn.rpartition("/")[2]


def _end_release(release: Release, outcome: str, reason: str) -> None:
    release.outcome, release.reason, release.finished_at = outcome, reason, timezone.now()
    release.save(update_fields=["outcome", "reason", "finished_at"])


def roll_back_now(run: Run, *, actor: Actor, reason: str) -> str:
    """Stop a running rollout and put the service back on the live revision at once, without
    waiting for ECS's circuit breaker. The image goes on hold with ``reason``."""
    reason = reason.strip()
    if not reason:
        raise Refused("Say why you roll back: the reason is kept with the hold on the image.")
    if run.kind != ROLLOUT.key:
        raise Refused(f"Only a rollout can be rolled back; {run} is a {run.kind}.")
    name = actions.actor_name(actor)
    with transaction.atomic():
        asked = Run.objects.filter(
            pk=run.pk, status=Run.Status.RUNNING, cancel_requested_at=None
        ).update(
            cancel_requested_at=timezone.now(), cancel_requested_by=name, roll_back_reason=reason
        )
        if not asked:
            raise Refused(f"{run} is not running (or is being cancelled already).")
        log(run, f"Roll back now, asked by {name}: {reason}", level="warning")
        actions.record("run.roll_back_now", run, actor=actor, parameters={"reason": reason})
    return "Rolling back: the service goes back to the live revision at the next check."


def roll_back_to(release: Release, *, actor: Actor, reason: str) -> Run:
    """A rollback run that puts ``release`` (an earlier one) live again."""
    reason = reason.strip()
    if not reason:
        raise Refused("Say why you roll back: the reason is kept with the hold on the image.")
    if release.outcome == Release.Outcome.LIVE:
        raise Refused(f"{release.image_tag} is live already.")
    parameters = {"release": release.pk, "image_tag": release.image_tag, "reason": reason}
    return runs.start(release.environment, ROLLBACK.key, actor=actor, parameters=parameters)


def clear_hold(hold: Hold, *, actor: Actor, reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise Refused("Say why the image may be rolled out again.")
    name = actions.actor_name(actor)
    with transaction.atomic():
        cleared = Hold.objects.filter(pk=hold.pk, cleared_at=None).update(
            cleared_at=timezone.now(), cleared_by_name=name, clear_reason=reason
        )
        if not cleared:
            raise Refused(f"The hold on {hold.image_tag} was cleared already.")
        actions.record(
            "hold.clear",
            hold,
            actor=actor,
            parameters={"reason": reason},
            before={"reason": hold.reason},
        )
    return f"{hold.image_tag} may be rolled out again."


ROLLOUT = RunKind(
    key="rollout",
    title="Rollout",
    steps=rollout.STAGES,
    execute=_rollout,
    permission=START_ROLLOUT,
    holds_environment=True,
    check=_check_rollout,
    result_template="provisioning/_rollout_result.html",
    on_success=_validate_after,
)
ROLLBACK = RunKind(
    key="rollback",
    title="Rollback",
    steps=[stage for stage in rollout.STAGES if stage[0] in ("service", "deployment")],
    execute=_rollback,
    permission=START_ROLLOUT,
    holds_environment=True,
    on_success=_validate_after,
)
