"""The engine's runs: a plan (confirmed into an apply), a drift check, an apply and a destroy
of an environment's resources, each resource a step."""

import json
from dataclasses import asdict

from core.permissions import START_PROVISIONING
from provisioning import engine, preflight
from provisioning.kinds import RunKind
from provisioning.models import Environment, Run, RunStep
from provisioning.resources.base import Context, Progress, ProvisioningError, Spec
from provisioning.runs import log


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


def _plan(run: Run, spec: Spec, progress: Progress) -> tuple[dict, str]:
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


def _await_decision(run: Run, result: dict) -> None:
    """A plan with changes waits to be confirmed or discarded."""
    if _pending(result["changes"]):
        Run.objects.filter(pk=run.pk).update(decision=Run.Decision.PENDING)


def _drift(run: Run, spec: Spec, progress: Progress) -> tuple[dict, str]:
    changes = [change_as_json(change) for change in engine.plan(spec, progress)]
    drifted = _pending(changes)
    summary = f"{len(drifted)} resources differ from the declaration." if drifted else "In sync."
    return {"changes": changes}, summary


def _apply(run: Run, spec: Spec, progress: Progress) -> tuple[dict, str]:
    _preflight(run, spec)
    if run.plan is not None:
        _check_the_plan_still_holds(run, spec)
    result = engine.apply(spec, progress)
    _save_outputs(run, result.outputs)
    changed = [key for key, outcome in result.outcomes.items() if outcome != "unchanged"]
    return _result(result), f"Applied: {len(changed)} of {len(result.outcomes)} resources changed."


def _destroy(run: Run, spec: Spec, progress: Progress) -> tuple[dict, str]:
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


def _check_destroy(environment: Environment, parameters: dict) -> None:
    engine.check_destroy_confirmed(
        environment.name,
        parameters.get("confirm", ""),
        delete_data=bool(parameters.get("delete_data")),
        confirm_data=parameters.get("confirm_data", ""),
    )


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


def _resources(spec: Spec) -> list[tuple[str, str]]:
    return [(cls.key, cls.title) for cls in engine.ordered(spec)]


def _resources_reversed(spec: Spec) -> list[tuple[str, str]]:
    return _resources(spec)[::-1]


PLAN = RunKind(
    key="plan",
    title="Plan",
    steps=_resources,
    execute=_plan,
    permission=START_PROVISIONING,
    step_noun="resources",
    records_lookups=True,
    confirmed_as="apply",
    result_template="provisioning/_plan_result.html",
    on_success=_await_decision,
)
DRIFT = RunKind(
    key="drift",
    title="Drift check",
    steps=_resources,
    execute=_drift,
    permission=START_PROVISIONING,
    step_noun="resources",
    records_lookups=True,
)
APPLY = RunKind(
    key="apply",
    title="Apply",
    steps=_resources,
    execute=_apply,
    permission=START_PROVISIONING,
    holds_environment=True,
    step_noun="resources",
)
DESTROY = RunKind(
    key="destroy",
    title="Destroy",
    steps=_resources_reversed,
    execute=_destroy,
    permission=START_PROVISIONING,
    holds_environment=True,
    step_noun="resources",
    check=_check_destroy,
    asks=("confirm", "confirm_data"),
)
