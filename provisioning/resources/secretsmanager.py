"""The gateway's secret (issue 20): a random value only API Gateway and the serving hosts know.

The REST API's integration sends it in ``x-llm-gateway-secret`` with every request it passes
on, and ECS hands it to the task as ``AUDIT_GATEWAY_SECRET``; the serving middleware trusts
``x-request-id`` and ``x-api-key-id`` only when the two match, so a caller that reaches the
NLB from inside the VPC cannot choose another request's id.

The value never passes through the console's records: plans, diffs, outputs and the run log
carry its fingerprint. The secret's own read fingerprints the value and drops it; only the
REST API's update holds it, for the one request that puts it in the integration.
"""

import hashlib
import re
import secrets

from botocore.exceptions import ClientError

from centralllm import aws
from centralllm.audit import contract
from provisioning.resources.base import (
    Context,
    ProvisioningError,
    Resource,
    error_code,
    ignoring,
)

# The value is made here with the standard library's CSPRNG rather than Secrets Manager's
# GetRandomPassword: one call less, the same in the local AWS, and its alphabet (letters,
# digits, "-" and "_") is one an API Gateway static value ('...') and an HTTP header carry as
# they are: no quote, backslash, comma or space to escape.
VALUE_BYTES = 32  # 256 random bits, 43 characters
SAFE_VALUE = re.compile(r"[A-Za-z0-9_-]+")
# Deleted, a secret is kept this many days (the least AWS allows), restorable: a destroy made by
# mistake loses nothing, and an apply within the window restores it (AWS keeps the name of a
# secret scheduled for deletion, so CreateSecret refuses it anyway: ForceDeleteWithoutRecovery
# would not free the name at once either, as AWS deletes asynchronously).
RECOVERY_DAYS = 7


def fingerprint(value: str) -> str:
    """What plans, outputs and logs show of the value: enough to see that it changed, nothing
    to find it from (the value has 256 random bits)."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:12]


def new_value() -> str:
    return secrets.token_urlsafe(VALUE_BYTES)


class GatewaySecret(Resource):
    """The secret in Secrets Manager. An existing one is kept, never made anew by an apply."""

    key = "secretsmanager.gateway_secret"
    title = "Secrets Manager gateway secret"
    service = "secretsmanager"
    # The name ends in the suffix, perhaps with a hyphen and six characters, as ARNs end:
    # harmless, as the secret is always addressed by its name or its full ARN, never by a
    # partial ARN.
    base_name = "GatewaySecret"
    blocks_lookups = False  # its dependents only declare its ARN and fingerprint

    def desired(self) -> dict:
        return {
            "description": f"Central LLM: the header API Gateway sends to the serving hosts "
            f"({contract.GATEWAY_SECRET_HEADER}), environment {self.spec.name}",
            "has_value": True,
        }

    def found(self) -> dict | None:
        """DescribeSecret's answer; None when absent or scheduled for deletion (unusable)."""
        found = ignoring(
            lambda: self.client.describe_secret(SecretId=self.name), "ResourceNotFoundException"
        )
        return None if found is None or found.get("DeletedDate") else found

    def read(self) -> dict | None:
        found = self.found()
        if found is None:
            return None
        try:
            value = self.client.get_secret_value(SecretId=found["ARN"]).get("SecretString")
        except ClientError as exc:
            # Made without a value (by hand): update puts one.
            if error_code(exc) != "ResourceNotFoundException":
                raise
            value = None
        return {
            "arn": found["ARN"],
            "description": found.get("Description", ""),
            "has_value": bool(value),
            "fingerprint": fingerprint(value) if value else "",
        }

    def create(self, desired: dict) -> None:
        try:
            self.client.create_secret(
                Name=self.name,
                Description=desired["description"],
                SecretString=new_value(),
                Tags=[{"Key": "central-llm:environment", "Value": self.spec.name}],
            )
        except ClientError as exc:
            if not _scheduled_for_deletion(exc):
                raise
            # An earlier destroy deleted it less than RECOVERY_DAYS ago: the same secret comes
            # back, value and all, rather than a new one under another name.
            self.client.restore_secret(SecretId=self.name)
            self.ctx.say(
                f"restored {self.name}, scheduled for deletion by an earlier destroy: its value "
                "is kept"
            )

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        if "description" in fields:
            self.client.update_secret(SecretId=current["arn"], Description=desired["description"])
        if "has_value" in fields:
            self.client.put_secret_value(SecretId=current["arn"], SecretString=new_value())

    def delete(self, current: dict) -> None:
        self.client.delete_secret(SecretId=current["arn"], RecoveryWindowInDays=RECOVERY_DAYS)

    def outputs(self, current: dict) -> dict:
        return {"name": self.name, "arn": current["arn"], "fingerprint": current["fingerprint"]}


def _scheduled_for_deletion(exc: ClientError) -> bool:
    """CreateSecret refused because a secret of this name is scheduled for deletion: AWS says
    InvalidRequestException ("You can't create this secret because a secret with this name is
    already scheduled for deletion."; API_CreateSecret.html, Errors); the local AWS (moto)
    says ResourceExistsException."""
    code = error_code(exc)
    if code == "InvalidRequestException":
        return "scheduled for deletion" in exc.response["Error"].get("Message", "")
    return code == "ResourceExistsException" and aws.is_stand_in()


def secret_arn(ctx: Context) -> str:
    """The secret's ARN. An engine run has it from the secret's step (known after apply while
    the secret is absent); a rollout registers a task definition outside the engine, and asks."""
    if GatewaySecret.key in ctx.outputs:
        return ctx.outputs[GatewaySecret.key]["arn"]
    found = GatewaySecret(ctx).found()
    if found is None:
        raise ProvisioningError(
            f"the gateway secret {ctx.name('GatewaySecret')} is missing: apply the environment"
        )
    return found["ARN"]


def secret_value(ctx: Context) -> str:
    """The value itself, for the one request that puts it (the REST API's integration). Never
    returned to anything that keeps or shows it."""
    arn = ctx.outputs[GatewaySecret.key]["arn"]
    value = ctx.client("secretsmanager").get_secret_value(SecretId=arn).get("SecretString", "")
    if not SAFE_VALUE.fullmatch(value):
        # Put there by hand: API Gateway would refuse it, quoting it in its error.
        raise ProvisioningError(
            f"the gateway secret {ctx.name('GatewaySecret')} holds characters other than "
            "letters, digits, '-' and '_', which an API Gateway static value cannot carry: "
            "put a new value of those characters (PutSecretValue), then apply"
        )
    return value
