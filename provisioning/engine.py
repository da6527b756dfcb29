"""Plan, apply, destroy and drift of an environment, resource by resource.

The order comes from each resource's declared dependencies. Every step is an ensure (read,
then create or update what differs), so an interrupted apply is resumed by applying again,
and a converged environment costs reads only.
"""

import copy
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from graphlib import TopologicalSorter
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from centralllm import aws
from core.refusals import Refused
from provisioning.resources import CATALOGUE
from provisioning.resources.base import (
    DRIFTED,
    MISSING,
    PRESENT,
    UNKNOWN,
    Context,
    Pending,
    Progress,
    ProvisioningError,
    Resource,
    Seen,
    Spec,
    duration,
    is_read_only,
)

CREATE, UPDATE, NONE = "create", "update", "none"
_BY_KEY = {cls.key: cls for cls in CATALOGUE}
SETTLE_POLL_SECONDS = 5
Sleep = Callable[[float], None]
# Failures an operator can act on; anything else is a bug and keeps its traceback.
_EXPECTED = (ClientError, BotoCoreError, ProvisioningError, Refused)


@dataclass
class Change:
    """What apply would do to one resource (or, for drift, how it differs)."""

    key: str
    title: str
    action: str
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    note: str = ""
    expected_seconds: int = 0  # how long the change usually takes on AWS

    @property
    def expected(self) -> str:
        return duration(self.expected_seconds) if self.expected_seconds else ""

    def __str__(self) -> str:
        if self.action == UPDATE:
            return f"update {self.title}: {_describe(self.fields)}"
        return f"{self.action} {self.title}" + (f" ({self.note})" if self.note else "")


@dataclass
class Result:
    """What a run did: one line per resource, their outputs, and how many AWS calls it made."""

    outcomes: dict[str, str]
    calls: dict[str, int]
    outputs: dict[str, dict] = field(default_factory=dict)


class Declared(Protocol):
    """An Environment (or anything else that declares a Spec)."""

    def spec(self) -> Spec: ...


def spec_of(target: Spec | Declared) -> Spec:
    """The declared state; an Environment is validated on the way (ValidationError)."""
    return target if isinstance(target, Spec) else target.spec()


def ordered(spec: Spec) -> list[type[Resource]]:
    """The resources this environment declares, dependencies first."""
    wanted = {cls.key: cls for cls in CATALOGUE if cls.wanted(spec)}
    graph = {key: [dep for dep in cls.depends_on if dep in wanted] for key, cls in wanted.items()}
    return [wanted[key] for key in TopologicalSorter(graph).static_order()]


def _describe(fields: dict[str, tuple[Any, Any]]) -> str:
    return "; ".join(
        f"{name}: {current!r} -> {desired!r}" for name, (current, desired) in fields.items()
    )


def diff(desired: dict, current: dict) -> dict[str, tuple[Any, Any]]:
    """The fields that differ; fields AWS did not report are not drift."""
    return {
        name: (current[name], value)
        for name, value in desired.items()
        if name in current and current[name] != value
    }


@contextmanager
def _run(
    target: Spec | Declared, progress: Progress | None, sleep: Sleep | None
) -> Iterator[Context]:
    spec = spec_of(target)
    refuse_local_against_aws(spec)
    with Context(spec, progress, **({"sleep": sleep} if sleep else {})) as ctx:
        ctx.account_id  # noqa: B018 - refuses to run in any account but the declared one
        yield ctx


def refuse_local_against_aws(spec: Spec) -> None:
    """A local environment declares production's names (and the default VPC): against real
    AWS it would adopt, change or delete another deployment's resources."""
    if not spec.is_local:
        return
    remote = [service for service in SERVICES if not aws.serves_locally(service)]
    if remote:
        which = "every service" if remote == SERVICES else ", ".join(remote)
        raise Refused(
            f"{spec.name} is a local environment, but {which} would be answered by AWS "
            "itself, not by the local AWS: start the local AWS (make run) and run this "
            "with its AWS_ENDPOINT_URL (make manage reads it from var/local.env), or declare a "
            "real-AWS environment with its account id and a name suffix."
        )


def _blocked(ctx: Context, cls: type[Resource]) -> list[str]:
    """The dependencies found absent: the resource cannot be looked up without their outputs
    (unless they do not block lookups)."""
    return [
        dep
        for dep in cls.depends_on
        if isinstance(ctx.outputs.get(dep), Pending) and _BY_KEY[dep].blocks_lookups
    ]


def _observe(ctx: Context, keys: set[str] | None = None) -> Iterator[tuple[Resource, dict | None]]:
    """Read every resource (or those of ``keys``) in order, recording outputs (pending for
    what is absent); each is yielded as soon as it is read."""
    for cls in ordered(ctx.spec):
        if keys is not None and cls.key not in keys:
            continue
        resource = cls(ctx)
        ctx.step = cls.key
        with _about(resource):
            current = None if _blocked(ctx, cls) else resource.read()
            ctx.outputs[cls.key] = Pending() if current is None else resource.outputs(current)
        ctx.progress.looked_up(cls.key, cls.title, current is not None)
        yield resource, current


def _seen(
    ctx: Context,
    resource: Resource,
    state: str,
    current: dict | None = None,
    differences: dict | None = None,
) -> None:
    """Tell the run what ``resource`` is in AWS now; ``current``: what was read of it."""
    outputs = {} if current is None else dict(ctx.outputs[resource.key])
    kept = resource.holds_data or (current is not None and not resource.owns(current))
    seen = Seen(resource.key, resource.title, state, outputs, differences or {}, kept)
    ctx.progress.observed(seen)


@contextmanager
def _unknown_if_it_fails(ctx: Context, resource: Resource) -> Iterator[None]:
    """A change that failed (or was cancelled) may have been made half-way: what the resource
    is now, only a fresh look tells."""
    try:
        yield
    except Exception:
        _seen(ctx, resource, UNKNOWN)
        raise


def plan(target: Spec | Declared, progress: Progress | None = None) -> list[Change]:
    """Every resource with what apply would do to it. Makes no change."""
    with _run(target, progress, None) as ctx:
        changes = []
        for resource, current in _observe(ctx):
            cls = type(resource)
            if current is None:
                blocked = _blocked(ctx, cls)
                note = f"after {', '.join(blocked)}" if blocked else ""
                expected = cls.typical_create_seconds
                changes.append(
                    Change(cls.key, cls.title, CREATE, note=note, expected_seconds=expected)
                )
                _seen(ctx, resource, MISSING)
                continue
            with _about(resource):
                fields = diff(resource.desired(), current)
            changes.append(Change(cls.key, cls.title, UPDATE if fields else NONE, fields))
            _seen(ctx, resource, DRIFTED if fields else PRESENT, current, fields)
        return changes


def expected_duration(changes: list[Change]) -> str:
    """How long applying ``changes`` usually takes on AWS: the steps run one after another."""
    return duration(sum(change.expected_seconds for change in changes))


def drift(target: Spec | Declared, progress: Progress | None = None) -> list[Change]:
    """The resources that differ from the declared state now (missing or changed)."""
    return [change for change in plan(target, progress) if change.action != NONE]


def apply(
    target: Spec | Declared, progress: Progress | None = None, *, sleep: Sleep | None = None
) -> Result:
    """Create or update every resource that differs; stops at the first failure."""
    with _run(target, progress, sleep) as ctx:
        resources = ordered(ctx.spec)
        for path in sorted({path for cls in resources for path in cls.files()}):
            ctx.render(path)  # a missing or broken file stops the run before any change
        outcomes = {}
        for cls in resources:
            resource = cls(ctx)
            outcomes[cls.key] = _step(ctx, resource, partial(_ensure, ctx, resource))
        return Result(outcomes, dict(ctx.calls), _plain_outputs(ctx))


def apply_one(target: Spec | Declared, key: str, progress: Progress | None = None) -> str:
    """Bring the resource ``key`` to its declared state, reading only what it depends on."""
    with _run(target, progress, None) as ctx:
        wanted = {cls.key: cls for cls in ordered(ctx.spec)}
        if key not in wanted:
            raise Refused(f"{ctx.spec.name} does not declare {key}.")
        for dependency, current in _observe(ctx, _dependencies(wanted, key)):
            if current is None:
                raise Refused(f"{dependency.title} is missing: apply the environment first.")
        resource = wanted[key](ctx)
        for path in resource.files():
            ctx.render(path)
        return _step(ctx, resource, partial(_ensure, ctx, resource))


def _dependencies(wanted: dict[str, type[Resource]], key: str) -> set[str]:
    """What ``key`` depends on, directly or through other dependencies."""
    found: set[str] = set()
    todo = [key]
    while todo:
        for dependency in wanted[todo.pop()].depends_on:
            if dependency in wanted and dependency not in found:
                found.add(dependency)
                todo.append(dependency)
    return found


def _ensure(ctx: Context, resource: Resource) -> str:
    outcome = "unchanged"
    with _unknown_if_it_fails(ctx, resource):
        current = resource.read()
        desired = resource.desired()
        if current is None:
            resource.create(desired)
            current = _read_until(ctx, resource, desired, created=True)
            outcome = "created"
        fields = diff(desired, current)
        if fields:
            ctx.say(("setting " if outcome == "created" else "changing ") + ", ".join(fields))
            resource.update(desired, current, list(fields))
            current = _read_until(ctx, resource, desired, created=False)
            if outcome != "created":
                outcome = "updated " + ", ".join(fields)
        ctx.outputs[resource.key] = resource.outputs(current)
    _seen(ctx, resource, PRESENT, current)
    return outcome


def _plain_outputs(ctx: Context) -> dict[str, dict]:
    """Each resource's outputs; those of an absent one are left out."""
    return {
        key: dict(values) for key, values in ctx.outputs.items() if not isinstance(values, Pending)
    }


def _read_until(ctx: Context, resource: Resource, desired: dict, *, created: bool) -> dict:
    """Read what was just written until AWS shows it. AWS's reads lag its writes (S3 bucket
    configuration for minutes, IAM, SQS and ELB for seconds), so a single read right after a
    change proves nothing either way; only a change still unseen after the resource's
    ``settle_seconds`` is a failure."""
    waited = 0.0
    while True:
        current = resource.read()
        still = None if current is None else diff(desired, current)
        if current is not None and (created or not still):
            return current
        if waited >= resource.settle_seconds:
            if current is None:
                raise ProvisioningError(f"not found {duration(waited)} after it was created")
            raise ProvisioningError(
                f"still differs {duration(waited)} after the update: {_describe(still)}"
            )
        what = "the new resource" if created else "the change"
        ctx.say(
            f"waiting for AWS to show {what}: {duration(waited)}; usually {resource.settles_in}"
        )
        ctx.sleep(SETTLE_POLL_SECONDS)
        waited += SETTLE_POLL_SECONDS


def destroy(
    target: Spec | Declared,
    progress: Progress | None = None,
    *,
    confirm: str,
    delete_data: bool = False,
    confirm_data: str = "",
) -> Result:
    """Delete the environment's resources in reverse order.

    ``confirm`` must be the environment's name. The audit buckets and table are kept unless
    ``delete_data`` is set and ``confirm_data`` is ``data_confirmation(name)``.
    """
    spec = spec_of(target)
    check_destroy_confirmed(spec.name, confirm, delete_data=delete_data, confirm_data=confirm_data)
    with _run(spec, progress, None) as ctx:
        outcomes = {}
        for resource, current in reversed(list(_observe(ctx))):
            blocked = _blocked(ctx, type(resource))
            remove = partial(_remove, ctx, resource, current, blocked, delete_data=delete_data)
            outcomes[resource.key] = _step(ctx, resource, remove)
            # A resource not looked up counts as missing, as a plan counts it.
            if current is None or outcomes[resource.key] == "deleted":
                _seen(ctx, resource, MISSING)
            else:
                _seen(ctx, resource, PRESENT, current)
        return Result(outcomes, dict(ctx.calls), _plain_outputs(ctx))


def _remove(
    ctx: Context,
    resource: Resource,
    current: dict | None,
    blocked: list[str],
    *,
    delete_data: bool,
) -> str:
    if blocked:
        # Not looked up, so it may still exist (if made by hand): say so rather than "absent".
        return f"not looked up ({', '.join(blocked)} absent)"
    if current is None:
        return "absent"
    if not resource.owns(current):
        return f"left in place ({resource.kept_because})"
    if resource.holds_data and not delete_data:
        return "kept (holds audit data)"
    with _unknown_if_it_fails(ctx, resource):
        resource.delete(current)
    return "deleted"


def data_confirmation(name: str) -> str:
    return f"delete the audit data of {name}"


def check_destroy_confirmed(
    name: str, confirm: str, *, delete_data: bool = False, confirm_data: str = ""
) -> None:
    """Destroy needs the environment's name typed, and data deletion its own phrase."""
    if confirm != name:
        raise Refused(f"Destroy not confirmed: type the environment's name, {name!r}.")
    if delete_data and confirm_data != data_confirmation(name):
        raise Refused(f"Deleting the audit data not confirmed: type {data_confirmation(name)!r}.")


@contextmanager
def _about(resource: Resource) -> Iterator[None]:
    """AWS and provisioning errors as a ProvisioningError that names the resource."""
    try:
        yield
    except _EXPECTED as exc:
        raise ProvisioningError(f"{resource.title}: {exc}") from exc


def _step(ctx: Context, resource: Resource, action: Callable[[], str]) -> str:
    return run_step(ctx, resource.key, resource.title, action)


def run_step(ctx: Context, key: str, title: str, action: Callable[[], str]) -> str:
    """Run one step's action between started and finished (or failed) progress reports;
    AWS and provisioning errors come out as a ProvisioningError that names the step."""
    ctx.step = key
    ctx.progress.started(key, title)
    try:
        outcome = action()
    except Exception as exc:
        ctx.progress.failed(key, str(exc))
        if isinstance(exc, _EXPECTED):
            # Keeps its kind and what it carries (a rollback stays a rollback, with the alarm
            # that made it) and gains the step's name.
            named = copy.copy(exc) if isinstance(exc, ProvisioningError) else ProvisioningError()
            named.args = (f"{title}: {exc}",)
            raise named from exc
        raise
    ctx.progress.finished(key, outcome)
    return outcome


SERVICES = sorted({cls.service for cls in CATALOGUE} | {"sts", "ssm"})


@contextmanager
def on_every_call(region: str, hook: Callable[..., None]) -> Iterator[None]:
    """``hook(model=..., **kwargs)`` before every AWS call any engine run makes in ``region``."""
    clients = [aws.client(service, region_name=region) for service in SERVICES]
    unique_id = f"on-every-call-{id(hook)}"
    for client in clients:
        client.meta.events.register("before-call", hook, unique_id=unique_id)
    try:
        yield
    finally:
        for client in clients:
            client.meta.events.unregister("before-call", unique_id=unique_id)


@contextmanager
def counting_calls(region: str) -> Iterator[Counter]:
    """Count AWS calls, read-only and mutating, made in the block (for tests and benchmarks)."""
    calls: Counter = Counter()

    def count(model: Any, **kwargs: Any) -> None:
        calls["read" if is_read_only(model.name) else "mutating"] += 1

    with on_every_call(region, count):
        yield calls
