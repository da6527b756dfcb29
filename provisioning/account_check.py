"""Will this account work? Asked from the environment form before saving: pre-flight with
the form's values, recorded in the action log, nothing saved.

It runs in the request rather than as a job. It is about fifteen reads, one after another
(``preflight.PERMISSIONS``): under a second against the local AWS and, at the tens to
hundreds of milliseconds an AWS read usually takes, an estimated one to two seconds against
AWS. A job would not answer sooner: the workers that would run it are held by plans, applies
and rollouts for minutes at a time. What bounds the request instead: clients that give up
after ``QUICK_CLIENTS``'s timeouts, each check abandoned after ``SECONDS_EACH``, and none
started after ``SECONDS_IN_ALL``, well under the web server's 30 s (gunicorn's default).
"""

import time
from dataclasses import dataclass

from core import actions
from core.actions import Actor
from provisioning import preflight
from provisioning.models import Environment
from provisioning.preflight import Check
from provisioning.resources.base import Context

QUICK_CLIENTS = {"connect_timeout": 3, "read_timeout": 5, "max_attempts": 2}
SECONDS_EACH = 8
SECONDS_IN_ALL = 20
# What the checks were asked about, for the action log: ids and names, never a secret (the
# console's credentials come from its process, never from the form).
CHECKED = (
    "region",
    "account_id",
    "suffix",
    "vpc_id",
    "subnet_ids",
    "security_group_id",
    "instance_type",
    "desired_count",
    "max_tasks",  # what the vCPU quota is measured against
    "model_id",
    "hf_token_secret_arn",
    "source_repository",
    "image_tag",
)


# Each outcome as the page counts it, worst first.
SAID = {
    "failed": "failed",
    "could not check": "could not be checked",
    "warning": "passed with a warning",
    "passed": "passed",
}


@dataclass(frozen=True)
class AccountCheck:
    checks: list[Check]
    seconds: float

    @property
    def summary(self) -> str:
        """How many checks had each outcome: "1 failed, 2 could not be checked, 9 passed"."""
        outcomes = [check.outcome for check in self.checks]
        return ", ".join(
            f"{outcomes.count(said)} {SAID[said]}" for said in SAID if said in outcomes
        )


def check_account(environment: Environment, *, actor: Actor) -> AccountCheck:
    """Pre-flight for ``environment`` as declared, saved or not (a valid form's instance):
    every check's outcome, recorded with who asked."""
    started = time.monotonic()
    with Context(environment.spec(), client_options=QUICK_CLIENTS) as ctx:
        checks = preflight.run_checks(ctx, seconds_each=SECONDS_EACH, seconds_in_all=SECONDS_IN_ALL)
    done = AccountCheck(checks, time.monotonic() - started)
    actions.record_about(
        "environment.check_account",
        Environment._meta.label_lower,
        str(environment.pk or ""),  # none yet: checked before it was created
        environment.name,
        actor=actor,
        parameters={name: getattr(environment, name) for name in CHECKED},
        after={
            "outcomes": {check.name: check.outcome for check in checks},
            "seconds": round(done.seconds, 2),
        },
        within=environment,
    )
    return done
