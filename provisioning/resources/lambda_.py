"""The ``llm-audit-ingest`` Lambda and the permission that lets the audit bucket invoke it."""

import base64
import hashlib
import json
from functools import cached_property

from botocore.exceptions import ClientError

from centralllm import aws
from centralllm.audit import items
from llm_audit_ingest import bundle
from provisioning.resources.base import (
    Context,
    ProvisioningError,
    Resource,
    error_code,
    ignoring,
    retrying,
    role_not_ready,
    wait_until,
)

STATEMENT_ID = "AllowS3Invoke"


def _not_ready(exc: ClientError) -> bool:
    # A function being created or updated refuses further changes meanwhile.
    return role_not_ready(exc) or error_code(exc) == "ResourceConflictException"


def handler_environment(ctx: Context) -> dict[str, str]:
    """The ingest handler's settings in this environment: the Lambda's environment, and what
    a redrive sets around the handler when it runs it locally."""
    return {
        "TABLE_NAME": ctx.name("AuditTable"),
        "MAX_PREVIEW_CHARS": str(items.DEFAULT_MAX_PREVIEW_CHARS),
        # API keys' usage is counted per quota period of the usage plan.
        "QUOTA_PERIOD": ctx.spec.quota_period,
        "REDACTION_RULES": ctx.spec.redaction_rules,
        "AUDIT_RETENTION_DAYS": str(ctx.spec.audit_retention_days),
    }


class Function(Resource):
    key = "lambda.function"
    title = "audit ingest Lambda"
    service = "lambda"
    base_name = "LambdaFunction"
    depends_on = ("iam.lambda_role", "sqs.dlq", "dynamodb.audit_table")
    typical_create_seconds = 15  # Pending, then Active; and the new role's propagation

    @cached_property
    def code(self) -> bytes:
        # Deterministic: unchanged sources give the same bytes, so no update.
        return bundle.zip_bytes()

    def desired(self) -> dict:
        return {
            "runtime": bundle.RUNTIME,
            "handler": bundle.HANDLER,
            "timeout": 60,
            "role": self.output("iam.lambda_role")["arn"],
            "environment": handler_environment(self.ctx),
            "code_sha256": base64.b64encode(hashlib.sha256(self.code).digest()).decode(),
            "dead_letter_queue": self.output("sqs.dlq")["arn"],
        }

    def read(self) -> dict | None:
        found = ignoring(
            lambda: self.client.get_function_configuration(FunctionName=self.name),
            "ResourceNotFoundException",
        )
        if found is None:
            return None
        current = {
            "arn": found["FunctionArn"],
            "runtime": found.get("Runtime"),
            "handler": found.get("Handler"),
            "timeout": found.get("Timeout"),
            "role": found.get("Role"),
            "environment": found.get("Environment", {}).get("Variables", {}),
            "code_sha256": found.get("CodeSha256"),
        }
        # The local AWS drops the dead-letter setting; only real AWS reports it.
        if not aws.is_stand_in():
            current["dead_letter_queue"] = found.get("DeadLetterConfig", {}).get("TargetArn")
        return current

    def _configuration(self, desired: dict) -> dict:
        return {
            "FunctionName": self.name,
            "Runtime": desired["runtime"],
            "Handler": desired["handler"],
            "Timeout": desired["timeout"],
            "Role": desired["role"],
            "Environment": {"Variables": desired["environment"]},
            "DeadLetterConfig": {"TargetArn": desired["dead_letter_queue"]},
        }

    def create(self, desired: dict) -> None:
        retrying(
            self.ctx,
            lambda: self.client.create_function(
                **self._configuration(desired), Code={"ZipFile": self.code}
            ),
            retry_if=_not_ready,
            why="the new role is not usable by Lambda yet",
        )
        self._wait_ready()

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        if "code_sha256" in fields:
            retrying(
                self.ctx,
                lambda: self.client.update_function_code(FunctionName=self.name, ZipFile=self.code),
                retry_if=_not_ready,
                why="the function is being updated",
            )
            self._wait_ready()
        if set(fields) - {"code_sha256"}:
            retrying(
                self.ctx,
                lambda: self.client.update_function_configuration(**self._configuration(desired)),
                retry_if=_not_ready,
                why="the function is being updated",
            )
            self._wait_ready()

    def _wait_ready(self) -> None:
        """A new function is Pending and an updated one InProgress for a few seconds, and
        refuses changes and invocations meanwhile (as the waiters function_active_v2 and
        function_updated_v2 wait): https://docs.aws.amazon.com/lambda/latest/dg/functions-states.html
        """

        def ready() -> bool:
            found = self.client.get_function_configuration(FunctionName=self.name)
            for state, failed, reason in (
                ("State", "Failed", "StateReason"),
                ("LastUpdateStatus", "Failed", "LastUpdateStatusReason"),
            ):
                if found.get(state) == failed:
                    raise ProvisioningError(
                        f"Lambda could not set up the function: {found.get(reason, failed)}"
                    )
            return found.get("State", "Active") == "Active" and found.get(
                "LastUpdateStatus", "Successful"
            ) in ("Successful",)

        wait_until(
            self.ctx,
            ready,
            what="the function to be ready",
            usually="a few seconds",
            poll_seconds=2,
            timeout_seconds=5 * 60,
        )

    def delete(self, current: dict) -> None:
        self.client.delete_function(FunctionName=self.name)

    def outputs(self, current: dict) -> dict:
        return {"name": self.name, "arn": current["arn"]}


class S3Permission(Resource):
    """Section 6.1: only the audit bucket, in our account, may invoke the function."""

    key = "lambda.s3_permission"
    title = "audit ingest Lambda invoke permission"
    service = "lambda"
    base_name = "LambdaFunction"
    depends_on = ("lambda.function", "s3.audit_bucket")

    def desired(self) -> dict:
        return {
            "Effect": "Allow",
            "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "lambda:InvokeFunction",
            "Resource": self.output("lambda.function")["arn"],
            "Condition": {
                "StringEquals": {"AWS:SourceAccount": self.ctx.account_id},
                "ArnLike": {"AWS:SourceArn": self.output("s3.audit_bucket")["arn"]},
            },
        }

    def read(self) -> dict | None:
        found = ignoring(
            lambda: self.client.get_policy(FunctionName=self.name), "ResourceNotFoundException"
        )
        statements = json.loads(found["Policy"])["Statement"] if found else []
        for statement in statements:
            if statement.get("Sid") == STATEMENT_ID:
                return {key: value for key, value in statement.items() if key != "Sid"}
        return None

    def create(self, desired: dict) -> None:
        self.client.add_permission(
            FunctionName=self.name,
            StatementId=STATEMENT_ID,
            Action="lambda:InvokeFunction",
            Principal="s3.amazonaws.com",
            SourceArn=self.output("s3.audit_bucket")["arn"],
            SourceAccount=self.ctx.account_id,
        )

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        self.delete(current)
        self.create(desired)

    def delete(self, current: dict) -> None:
        self.client.remove_permission(FunctionName=self.name, StatementId=STATEMENT_ID)
