"""What a worker does with a run: claim it, carry it out through the engine, record every step
and event, and end it with a readable explanation."""

import json
import logging
import os
import socket
import threading
from collections import Counter, defaultdict
from dataclasses import asdict
from functools import partial
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from rq import get_current_job

from audit_explorer import audit_runs
from provisioning import engine, preflight, rollout, runs, validation
from provisioning.models import Hold, Release, Run, RunStep
from provisioning.resources.base import Context, Progress, ProvisioningError, Spec
from provisioning.resources.cloudwatch import ServiceHealthAlarm
from provisioning.runs import log

logger = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 5


class RunCancelled(Exception):
    """Raised between steps once a cancel was asked for (or the run was force-cancelled);
    ``explanation`` says how it ended when that is more than a plain cancel."""

    def __init__(self, explanation: str = "") -> None:
        super().__init__(explanation or "stopped: a cancel was asked for")
        self.explanation = explanation


class RunProgress(Progress):
    """The engine's progress, written to the run's steps and log. Between two steps it looks
    whether the run was cancelled, so a cancel stops it where the environment is consistent."""

    def __init__(self, run: Run, *, record_lookups: bool, echo: Progress | None = None) -> None:
        self.run = run
        self.record_lookups = record_lookups
        self.echo = echo or Progress()
        self.calls: defaultdict[str, Counter] = defaultdict(Counter)
        self.step = ""
        self._thread = threading.get_ident()
        self._beat = timezone.now()

    def looked_up(self, step: str, title: str, found: bool) -> None:
        self._stop_if_cancelled()
        self.echo.looked_up(step, title, found)
        if self.record_lookups:
            now = timezone.now()
            self._save_step(step, RunStep.Status.DONE, "present" if found else "absent", now, now)

    def started(self, step: str, title: str) -> None:
        self._stop_if_cancelled()
        self.step = step
        RunStep.objects.filter(run=self.run, key=step).update(
            status=RunStep.Status.RUNNING, started_at=timezone.now()
        )
        log(self.run, f"{title}: started", step=step)
        self.echo.started(step, title)

    def message(self, step: str, text: str) -> None:
        log(self.run, text, step=step)
        self.echo.message(step, text)
        self.heartbeat()

    def finished(self, step: str, outcome: str) -> None:
        self._save_step(step, RunStep.Status.DONE, outcome, None, timezone.now())
        log(self.run, outcome, step=step)
        self.echo.finished(step, outcome)

    def failed(self, step: str, error: str) -> None:
        self._save_step(step, RunStep.Status.FAILED, error, None, timezone.now())
        log(self.run, error, step=step, level="error")
        self.echo.failed(step, error)

    def count_call(self, model: Any, **kwargs: Any) -> None:
        if threading.get_ident() == self._thread:
            self.calls[self.step or "-"][model.name] += 1
            self.heartbeat()

    def heartbeat(self) -> None:
        now = timezone.now()
        if (now - self._beat).total_seconds() >= HEARTBEAT_SECONDS:
            self._beat = now
            Run.objects.filter(pk=self.run.pk).update(heartbeat_at=now)

    def _save_step(self, step: str, status: str, outcome: str, started: Any, finished: Any) -> None:
        values = {"status": status, "outcome": outcome, "finished_at": finished}
        if started:
            values["started_at"] = started
        values["calls"] = dict(self.calls.pop(step, {}))
        RunStep.objects.filter(run=self.run, key=step).update(**values)

    def checkpoint(self) -> None:
        self._stop_if_cancelled()

    def _stop_if_cancelled(self) -> None:
        status, asked = (
            Run.objects.filter(pk=self.run.pk).values_list("status", "cancel_requested_at").get()
        )
        if asked or status != Run.Status.RUNNING:
            raise RunCancelled
        self.heartbeat()


def execute(run_id: int, *, echo: Progress | None = None) -> None:
    """The RQ job of a run (``manage.py env`` calls it directly, echoing the progress). A run
    cancelled or already taken is left alone: the claim is a compare-and-set on its status."""
    now = timezone.now()
    claimed = Run.objects.filter(pk=run_id, status=Run.Status.QUEUED).update(
        status=Run.Status.RUNNING,
        started_at=now,
        heartbeat_at=now,
        worker_name=_worker_name(),
        explanation="",
    )
    if not claimed:
        return
    run = Run.objects.select_related("environment", "plan").get(pk=run_id)
    lookups = run.kind in (Run.Kind.PLAN, Run.Kind.DRIFT)
    progress = RunProgress(run, record_lookups=lookups, echo=echo)
    log(run, f"{run.kind} of {run.environment.name} started by {run.started_by_name}")
    try:
        spec = run.environment.spec()
        with engine.on_every_call(spec.region, progress.count_call):
            result, explanation = _KINDS[run.kind](run, spec, progress)
    except RunCancelled as exc:
        run.refresh_from_db(fields=["cancel_requested_by", "status"])
        if run.status == Run.Status.RUNNING:
            where = f" after {progress.step}" if progress.step else ""
            _finish(
                run,
                Run.Status.CANCELLED,
                exc.explanation
                or f"Cancelled by {run.cancel_requested_by}{where}, between two steps: the "
                "environment is consistent, and applying again resumes it.",
            )
    except (ProvisioningError, ValidationError) as exc:
        _finish(run, Run.Status.FAILED, _message(exc))
    except Exception as exc:
        logger.exception("run %s failed unexpectedly", run.pk)
        _finish(run, Run.Status.FAILED, f"Unexpected error ({type(exc).__name__}): {exc}")
        raise
    else:
        _finish(run, Run.Status.SUCCEEDED, explanation, result)


def _finish(run: Run, status: str, explanation: str, result: dict | None = None) -> None:
    values = {"status": status, "finished_at": timezone.now(), "explanation": explanation}
    if result is not None:
        values["result"] = result
        if run.kind == Run.Kind.PLAN and _pending(result["changes"]):
            values["decision"] = Run.Decision.PENDING
    # Only a running run ends here: a force-cancel meanwhile has the last word.
    if Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING).update(**values):
        log(run, explanation, level="error" if status == Run.Status.FAILED else "info")


def _message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        problems = "; ".join(f"{field}: {' '.join(errors)}" for field, errors in exc)
        return f"The environment is not valid: {problems}"
    return str(exc)


def _worker_name() -> str:
    job = get_current_job()
    if job is not None and job.worker_name:
        return job.worker_name
    return f"command on {socket.gethostname()} (pid {os.getpid()})"


# The kinds ------------------------------------------------------------------------------------


def change_as_json(change: engine.Change) -> dict:
    fields = {name: [current, desired] for name, (current, desired) in change.fields.items()}
    plain = {
        "key": change.key,
        "title": change.title,
        "action": change.action,
        "note": change.note,
        "expected": change.expected,
    }
    return json.loads(json.dumps({**plain, "fields": fields}, default=str, sort_keys=True))


def describe_change(change: dict) -> str:
    """A change kept as JSON, as the engine words it: ``update ECS service: ...``."""
    fields = {name: tuple(values) for name, values in change["fields"].items()}
    return str(
        engine.Change(change["key"], change["title"], change["action"], fields, change["note"])
    )


def _pending(changes: list[dict]) -> list[dict]:
    return [change for change in changes if change["action"] != engine.NONE]


def declaration(spec: Spec) -> dict:
    return json.loads(json.dumps(asdict(spec), default=str))


def _plan(run: Run, spec: Spec, progress: RunProgress) -> tuple[dict, str]:
    checks = _preflight(run, spec)
    planned = engine.plan(spec, progress)
    changes = [change_as_json(change) for change in planned]
    pending = _pending(changes)
    summary = (
        f"{len(pending)} of {len(changes)} resources to change: review, then confirm or discard."
        if pending
        else "No changes: the environment matches its declaration."
    )
    result = {
        "changes": changes,
        "declaration": declaration(spec),
        "preflight": checks,
        "expected_duration": engine.expected_duration(planned),
    }
    return result, summary


def _drift(run: Run, spec: Spec, progress: RunProgress) -> tuple[dict, str]:
    changes = [change_as_json(change) for change in engine.plan(spec, progress)]
    drifted = _pending(changes)
    summary = f"{len(drifted)} resources differ from the declaration." if drifted else "In sync."
    return {"changes": changes}, summary


def _apply(run: Run, spec: Spec, progress: RunProgress) -> tuple[dict, str]:
    _preflight(run, spec)
    if run.plan is not None:
        _check_the_plan_still_holds(run, spec)
    result = engine.apply(spec, progress)
    _save_outputs(run, result.outputs)
    changed = [key for key, outcome in result.outcomes.items() if outcome != "unchanged"]
    return _result(result), f"Applied: {len(changed)} of {len(result.outcomes)} resources changed."


def _destroy(run: Run, spec: Spec, progress: RunProgress) -> tuple[dict, str]:
    parameters = run.parameters
    result = engine.destroy(
        spec,
        progress,
        confirm=parameters.get("confirm", ""),
        delete_data=bool(parameters.get("delete_data")),
        confirm_data=parameters.get("confirm_data", ""),
    )
    deleted = [key for key, outcome in result.outcomes.items() if outcome == "deleted"]
    return _result(result), f"Destroyed: {len(deleted)} resources deleted."


def _rollout(run: Run, spec: Spec, progress: RunProgress) -> tuple[dict, str]:
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
        )
        try:
            _stage(ctx, "service", lambda: rollout.move_service(ctx, arn), lambda _: "moved")
            _stage(
                ctx, "deployment", lambda: rollout.follow_deployment(ctx, arn), lambda _: "steady"
            )
        except rollout.RolledBack as exc:
            _roll_back(release, str(exc), by="ECS's circuit breaker")
            raise
        except RunCancelled:
            run.refresh_from_db(fields=["roll_back_reason", "cancel_requested_by"])
            if not run.roll_back_reason:
                _end_release(release, Release.Outcome.FAILED, "cancelled")
                raise
            raise RunCancelled(_roll_back_now(ctx, run, release)) from None
        except ProvisioningError as exc:
            _end_release(release, Release.Outcome.FAILED, str(exc))
            raise
        _make_live(release)
    if not spec.live_image_tag:
        _bring_alarm_into_force(run, progress)
    # The guide's checklist follows every rollout that went live.
    validate = runs.start(
        run.environment, Run.Kind.VALIDATE, actor=run.started_by, parameters={"after": run.pk}
    )
    log(run, f"validation #{validate.pk} started")
    result = {"image_tag": image.tag, "image_digest": image.digest, "task_definition": arn}
    return result, f"{image.tag} ({image.digest[:19]}) is live on {_short_arn(arn)}."


def _bring_alarm_into_force(run: Run, progress: RunProgress) -> None:
    """The first release is live: the running-tasks alarm, silent while no task was meant to
    run, now has tasks to watch. A failure here leaves the release live and says what to do."""
    try:
        engine.apply_one(run.environment, ServiceHealthAlarm.key, progress)
    except ProvisioningError as exc:
        log(run, f"{exc}: the running-tasks alarm stays silent until the next apply", level="error")


def _rollback(run: Run, spec: Spec, progress: RunProgress) -> tuple[dict, str]:
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
    hold = held(run.environment, image.tag, image.digest)
    if hold is not None:
        raise ProvisioningError(
            f"{image.tag} is on hold in {run.environment.name} since "
            f"{timezone.localtime(hold.created_at):%Y-%m-%d %H:%M} ({hold.reason}): clear the "
            "hold on the environment's page to roll it out again."
        )
    return image


def held(environment, tag: str, digest: str = "") -> Hold | None:
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


def _validate(run: Run, spec: Spec, progress: RunProgress) -> tuple[dict, str]:
    """The guide's validation checklist; each check a step with its evidence. A failed check
    fails the run, a skipped one says why."""
    engine.refuse_local_against_aws(spec)  # rollouts and checks, as plans and applies
    outcomes = {}
    with Context(spec, progress) as ctx:
        checks = validation.Validation(ctx, model_url=settings.LOCAL_MODEL_URL or None)
        for key, title in validation.CHECKS:
            outcome = engine.run_step(ctx, key, title, lambda key=key: str(checks.check(key)))
            outcomes[key] = outcome
    failed = [key for key, outcome in outcomes.items() if outcome.startswith(validation.FAIL)]
    if failed:
        titles = ", ".join(dict(validation.CHECKS)[key] for key in failed)
        raise ProvisioningError(f"Validation failed: {titles}.")
    skipped = sum(outcome.startswith(validation.SKIPPED) for outcome in outcomes.values())
    note = f", {skipped} skipped" if skipped else ""
    passed = len(outcomes) - skipped
    return {"checks": outcomes}, f"Validated: {passed} checks passed{note}."


def _stage(ctx: Context, key: str, action, outcome) -> Any:
    """One rollout stage as a run step; ``outcome(result)`` is what the step shows."""
    kept = []

    def step() -> str:
        kept.append(action())
        return outcome(kept[0])

    engine.run_step(ctx, key, _stage_title(key), step)
    return kept[0]


def _stage_title(key: str) -> str:
    return dict(rollout.STAGES)[key]


def _short_arn(arn: str) -> str:
    return arn.rpartition("/")[2]


def _end_release(release: Release, outcome: str, reason: str) -> None:
    release.outcome, release.reason, release.finished_at = outcome, reason, timezone.now()
    release.save(update_fields=["outcome", "reason", "finished_at"])


_KINDS = {
    Run.Kind.PLAN: _plan,
    Run.Kind.DRIFT: _drift,
    Run.Kind.APPLY: _apply,
    Run.Kind.DESTROY: _destroy,
    Run.Kind.ROLLOUT: _rollout,
    Run.Kind.ROLLBACK: _rollback,
    Run.Kind.VALIDATE: _validate,
    Run.Kind.AUDIT_CHECK: audit_runs.check_run,
    Run.Kind.REDRIVE: audit_runs.redrive_run,
}


def _result(result: engine.Result) -> dict:
    return {"outcomes": result.outcomes, "calls": result.calls}


def _save_outputs(run: Run, outputs: dict[str, dict]) -> None:
    for key, values in outputs.items():
        RunStep.objects.filter(run=run, key=key).update(
            outputs=json.loads(json.dumps(values, default=str))
        )


def _preflight(run: Run, spec: Spec) -> list[dict]:
    """The pre-flight checks of a real-AWS environment; a failed one stops the run before any
    change."""
    if spec.is_local:
        return []
    with Context(spec) as ctx:
        checks = preflight.run_checks(ctx)
    for check in checks:
        mark = "warning" if check.warning else "pass" if check.ok else "FAIL"
        log(run, f"pre-flight {mark}: {check.name}: {check.reason}", level=_level(check))
    failed = preflight.failures(checks)
    if failed:
        names = ", ".join(check.name for check in failed)
        raise ProvisioningError(f"Pre-flight checks failed ({names}): nothing was changed.")
    return [asdict(check) for check in checks]


def _level(check: preflight.Check) -> str:
    return "warning" if check.warning else "info" if check.ok else "error"


def _check_the_plan_still_holds(run: Run, spec: Spec) -> None:
    """Apply what was confirmed, or nothing: a changed declaration or a changed AWS since the
    plan stops the apply before its first change."""
    plan = run.plan
    was = plan.result["declaration"]
    now = declaration(spec)
    edited = sorted(name for name in now if was.get(name) != now[name])
    if edited:
        raise ProvisioningError(
            f"The environment was edited since plan #{plan.pk} ({', '.join(edited)}): nothing "
            "was changed. Make a fresh plan."
        )
    log(run, f"Checking that AWS is still as plan #{plan.pk} saw it")
    fresh = _pending([change_as_json(change) for change in engine.plan(spec)])
    confirmed = _pending(plan.result["changes"])
    if fresh != confirmed:
        differs = sorted(
            {change["title"] for change in fresh if change not in confirmed}
            | {change["title"] for change in confirmed if change not in fresh}
        )
        raise ProvisioningError(
            f"AWS changed since plan #{plan.pk}, so this apply would do something else "
            f"({', '.join(differs)}): nothing was changed. Make a fresh plan."
        )
