"""What a worker does with a run: claim it, carry it out with its kind's executor, record
every step and event, and end it with a readable explanation."""

import logging
import os
import socket
import threading
from collections import Counter, defaultdict
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from rq import get_current_job

from core.refusals import Refused
from provisioning import engine, kinds
from provisioning.models import ResourceState, Run, RunStep
from provisioning.resources.base import Progress, ProvisioningError, Seen
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

    def observed(self, seen: Seen) -> None:
        ResourceState.record(self.run, seen)

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
    kind = kinds.get(run.kind)
    progress = RunProgress(run, record_lookups=kind.records_lookups, echo=echo)
    log(run, f"{run.kind} of {run.environment.name} started by {run.started_by_name}")
    try:
        spec = run.environment.spec()
        with engine.on_every_call(spec.region, progress.count_call):
            result, explanation = kind.execute(run, spec, progress)
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
    except (ProvisioningError, Refused, ValidationError) as exc:
        _finish(run, Run.Status.FAILED, _message(exc))
    except Exception as exc:
        logger.exception("run %s failed unexpectedly", run.pk)
        _finish(run, Run.Status.FAILED, f"Unexpected error ({type(exc).__name__}): {exc}")
        raise
    else:
        _finish(run, Run.Status.SUCCEEDED, explanation, result)


def _finish(run: Run, status: str, explanation: str, result: dict | None = None) -> None:
    """End the run; one that succeeded (with its result) also does what its kind does next."""
    values = {"status": status, "finished_at": timezone.now(), "explanation": explanation}
    if result is not None:
        values["result"] = result
    with transaction.atomic():
        # Only a running run ends here: a force-cancel meanwhile has the last word.
        if not Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING).update(**values):
            return
        on_success = kinds.get(run.kind).on_success
        if result is not None and on_success is not None:
            on_success(run, result)
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
