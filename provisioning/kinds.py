"""The run kinds: what each kind of run is, declared once by the app that owns it and
registered from its ``AppConfig.ready()``. ``provisioning.runs`` (start, retry, cancel, reap)
and ``provisioning.jobs`` (claim, progress, finish) read what they need from here and know no
kind by name."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from provisioning.models import Environment, Run
    from provisioning.resources.base import Progress, Spec

Steps = list[tuple[str, str]]


@dataclass(frozen=True)
class RunKind:
    key: str  # what Run.kind holds
    title: str
    # (key, title) of each step, in order, or a function of the environment's Spec giving them.
    steps: Steps | Callable[["Spec"], Steps]
    # Carries the run out in a worker: (run, spec, progress) -> (result, explanation).
    execute: Callable[["Run", "Spec", "Progress"], tuple[dict, str]]
    permission: str  # what a person needs to start or retry it, as for ``has_perm``
    # While queued or running it locks the environment against every other such run.
    holds_environment: bool = False
    step_noun: str = "steps"  # what its steps are, for people
    records_lookups: bool = False  # a resource looked up is a step done (plan, drift)
    # Refuses a start of it (raising core.refusals.Refused): what it needs is missing or wrong.
    check: Callable[["Environment", dict], None] | None = None
    # Parameters a person types each time (the phrases of a destroy): a retry asks again.
    asks: tuple[str, ...] = ()
    # The kind a succeeded run of this kind is confirmed into (a plan into an apply).
    confirmed_as: str = ""
    result_template: str = ""  # shows the result on the run's page
    # What a run that succeeded does next, in the transaction that marks it succeeded.
    on_success: Callable[["Run", dict], Any] | None = None

    def steps_for(self, spec: "Spec") -> Steps:
        return self.steps(spec) if callable(self.steps) else list(self.steps)


_registry: dict[str, RunKind] = {}


def register(kind: RunKind) -> RunKind:
    if _registry.get(kind.key, kind) is not kind:
        raise ValueError(f"run kind {kind.key!r} is registered twice")
    _registry[kind.key] = kind
    return kind


def get(key: str) -> RunKind:
    """The kind registered as ``key``; LookupError if none is."""
    try:
        return _registry[key]
    except KeyError:
        raise LookupError(f"No run kind {key!r}: known are {', '.join(_registry)}.") from None


def choices() -> list[tuple[str, str]]:
    return [(kind.key, kind.title) for kind in _registry.values()]
