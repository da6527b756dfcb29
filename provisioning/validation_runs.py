"""The validation checklist (``provisioning.validation``) as a run: each check a step with
its evidence. Every rollout that goes live starts one."""

from django.conf import settings

from core.permissions import START_PROVISIONING
from provisioning import engine, validation
from provisioning.kinds import RunKind
from provisioning.models import Run
from provisioning.resources.base import Context, Progress, ProvisioningError, Spec


def _validate(run: Run, spec: Spec, progress: Progress) -> tuple[dict, str]:
    """A failed check fails the run; a skipped one is counted, and the first says why (the
    completion skipped locally when no model is served: the checks after it have no request
    to follow)."""
    engine.refuse_local_against_aws(spec)  # rollouts and checks, as plans and applies
    outcomes = {}
    with Context(spec, progress) as ctx:
        checks = validation.Validation(
            ctx,
            model_url=settings.LOCAL_MODEL_URL or None,
            local_api_url=settings.LOCAL_API_URL or None,
        )
        for key, title in validation.CHECKS:
            outcome = engine.run_step(ctx, key, title, lambda key=key: str(checks.check(key)))
            outcomes[key] = outcome
    failed = [key for key, outcome in outcomes.items() if outcome.startswith(validation.FAIL)]
    if failed:
        titles = ", ".join(dict(validation.CHECKS)[key] for key in failed)
        raise ProvisioningError(f"Validation failed: {titles}.")
    skipped = [outcome for outcome in outcomes.values() if outcome.startswith(validation.SKIPPED)]
    result = {"checks": outcomes, "skipped": len(skipped)}
    if not skipped:
        return result, f"Validated: all {len(outcomes)} checks passed."
    passed, why = len(outcomes) - len(skipped), skipped[0].partition(": ")[2]
    return result, (
        f"Validated: {passed} of {len(outcomes)} checks passed, {len(skipped)} skipped: {why}."
    )


VALIDATE = RunKind(
    key="validate",
    title="Validation",
    steps=validation.CHECKS,
    execute=_validate,
    permission=START_PROVISIONING,
)
