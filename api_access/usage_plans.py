"""Usage plans: an environment's throttle and quota, changed by admins, and temporary quota
increases that the scheduler takes back at the end of their quota period.

Every change is saved on the environment (so drift stays clean), applied to the usage plan
alone at once, and recorded in the action log.
"""

import logging
from datetime import datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from api_access.models import QuotaIncrease
from centralllm.audit.rollups import period_start
from core import actions
from core.actions import Actor
from core.refusals import Refused
from provisioning import engine, runs
from provisioning.models import QUOTA_PERIODS, Environment
from provisioning.resources.apigateway import UsagePlan, plan_limits
from provisioning.resources.base import Context, ProvisioningError

log = logging.getLogger(__name__)

PLAN_FIELDS = ("throttle_burst_limit", "throttle_rate_limit", "quota_limit", "quota_period")
PERIODS = dict(QUOTA_PERIODS)
# API Gateway's limits are 32-bit integers (and so are the columns).
MAX_LIMIT = 2**31 - 1
# Days from a period's start that land inside the next period, whatever the month.
_INTO_NEXT = {"DAY": 1, "WEEK": 7, "MONTH": 32}


def with_plans() -> QuerySet:
    """Every environment, with ``extra`` and ``increases``: the increases in force now."""
    active = Q(quota_increases__reverted_at=None, quota_increases__until__gt=timezone.now())
    return Environment.objects.annotate(
        extra=Sum("quota_increases__extra", filter=active, default=0),
        increases=Count("quota_increases", filter=active),
    )


def declared(environment: Environment) -> dict:
    """The throttle and quota the environment declares, in the shape AWS is read in."""
    return plan_limits(environment.spec())


def live(environment: Environment) -> tuple[dict | None, str]:
    """The usage plan as AWS has it now (None: absent), and an error ('' when AWS answered)."""
    with Context(environment.spec()) as ctx:
        try:
            ctx.account_id  # noqa: B018 - another account's plan is not this environment's
            return UsagePlan(ctx).read(), ""
        except (BotoCoreError, ClientError, ProvisioningError) as exc:
            return None, f"Could not read the usage plan from AWS: {exc}"


def change_plan(
    environment: Environment,
    *,
    burst: int,
    rate: int,
    quota_limit: int,
    quota_period: str,
    actor: Actor,
) -> None:
    """Set the throttle and quota, and apply them to the usage plan in AWS."""
    values = dict(zip(PLAN_FIELDS, (burst, rate, quota_limit, quota_period), strict=True))
    for number, name in ((burst, "burst"), (rate, "rate"), (quota_limit, "quota")):
        _check_limit(number, name)
    if quota_period not in PERIODS:
        raise Refused(f"The quota period is one of {', '.join(PERIODS)}, not {quota_period!r}.")
    if rate > 0 and burst == 0:
        # The burst is the size of API Gateway's token bucket: at 0 no request ever passes.
        raise Refused("A burst of 0 lets no request through: set it to 1 or more.")
    _check_free(environment)
    before = {name: getattr(environment, name) for name in PLAN_FIELDS}
    if before == values:
        return
    try:
        with transaction.atomic():
            for name, value in values.items():
                setattr(environment, name, value)
            environment.save(update_fields=[*PLAN_FIELDS, "updated_at"])
            _apply(environment)
            actions.record(
                "usage_plan.change", environment, actor=actor, before=before, after=values
            )
    except Refused:
        environment.refresh_from_db(fields=PLAN_FIELDS)  # as saved: the change was rolled back
        raise


def grant_increase(
    environment: Environment, *, extra: int, reason: str, actor: Actor
) -> QuotaIncrease:
    """Raise the quota by ``extra`` until the end of the current quota period."""
    _check_limit(extra, "increase")
    if extra == 0:
        raise Refused("An increase is 1 request or more.")
    reason = reason.strip()
    if not reason:
        raise Refused("Say why the quota is increased: the reason is recorded.")
    limit = QuotaIncrease._meta.get_field("reason").max_length
    if len(reason) > limit:
        raise Refused(f"Keep the reason to {limit} characters.")
    _check_free(environment)
    before = {"quota": environment.quota_limit + QuotaIncrease.extra_for(environment)}
    if before["quota"] + extra > MAX_LIMIT:
        raise Refused(f"The quota with its increases cannot exceed {MAX_LIMIT}.")
    with transaction.atomic():
        increase = QuotaIncrease.objects.create(
            environment=environment,
            extra=extra,
            reason=reason,
            until=period_end(timezone.now(), environment.quota_period),
            created_by=actor,
        )
        _apply(environment)
        actions.record(
            "usage_plan.increase",
            environment,
            actor=actor,
            parameters=_about(increase),
            before=before,
            after={"quota": before["quota"] + extra},
        )
    return increase


def revert_due_increases(now: datetime | None = None) -> int:
    """Take back every increase whose period has ended; returns how many were.

    Run by the scheduler: each increase is claimed by a conditional update in the transaction
    that applies the plan, so two schedulers revert it once, and a failed apply leaves it for
    the next run."""
    now = now or timezone.now()
    due = QuotaIncrease.objects.filter(reverted_at=None, until__lte=now)
    reverted = 0
    for increase in due.select_related("environment"):
        environment = increase.environment
        try:
            _check_free(environment)
            with transaction.atomic():
                if not QuotaIncrease.objects.filter(pk=increase.pk, reverted_at=None).update(
                    reverted_at=now
                ):
                    continue  # another scheduler took it back first
                after = environment.quota_limit + QuotaIncrease.extra_for(environment)
                _apply(environment)
                actions.record(
                    "usage_plan.revert",
                    environment,
                    actor=None,
                    parameters={**_about(increase), "scheduled": True},
                    before={"quota": after + increase.extra},
                    after={"quota": after},
                )
            reverted += 1
        except Refused as exc:
            log.warning("Increase %s of %s not reverted yet: %s", increase.pk, environment, exc)
    return reverted


def period_end(moment: datetime, period: str) -> datetime:
    """When the quota period holding ``moment`` ends (the next one's start, UTC)."""
    start = period_start(moment, period)
    return period_start(start + timedelta(days=_INTO_NEXT[period]), period)


def _check_limit(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Refused(f"The {name} is a whole number, not {value!r}.")
    if not 0 <= value <= MAX_LIMIT:
        raise Refused(f"The {name} is between 0 and {MAX_LIMIT}, not {value}.")


def _check_free(environment: Environment) -> None:
    holder = runs.holder_of(environment)
    if holder is not None:
        raise Refused(runs.held_message(holder))


def _apply(environment: Environment) -> None:
    """The usage plan in AWS brought to what the environment now declares."""
    try:
        engine.apply_one(environment, UsagePlan.key)
    except (ProvisioningError, Refused, ValidationError) as exc:
        raise Refused(f"The usage plan was not changed: {exc}") from exc


def _about(increase: QuotaIncrease) -> dict:
    return {
        "increase": increase.pk,
        "extra": increase.extra,
        "reason": increase.reason,
        "until": increase.until.isoformat(),
    }
