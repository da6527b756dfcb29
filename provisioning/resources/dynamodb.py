"""The audit table ``CentralLLMAudit`` and its GSIs, as ``centralllm.audit.table`` defines them.

AWS builds one GSI at a time (a second concurrent create fails with LimitExceededException)
and backfills it from existing items, which can take a long time: missing indexes are added
one by one, each waited for until it and the table are ACTIVE.
"""

from botocore.exceptions import ClientError

from centralllm.audit import items, table
from provisioning.resources.base import (
    ProvisioningError,
    Resource,
    duration,
    error_code,
    ignoring,
    in_declared_order,
    wait_until,
)

INDEX_NAMES = [index["IndexName"] for index in table.GLOBAL_SECONDARY_INDEXES]
# Answers meaning "busy with another change": wait for it, then try again.
_BUSY = ("LimitExceededException", "ResourceInUseException")


class AuditTable(Resource):
    key = "dynamodb.audit_table"
    title = "DynamoDB audit table and its indexes"
    service = "dynamodb"
    base_name = "AuditTable"
    holds_data = True
    typical_create_seconds = 30  # CREATING, with its indexes, on an empty table
    poll_seconds = 10
    timeout_seconds = 4 * 3600  # a backfill of a large table takes hours
    busy_attempts = 30

    def desired(self) -> dict:
        return {
            "key_schema": table.KEY_SCHEMA,
            "billing_mode": table.BILLING_MODE,
            "indexes": INDEX_NAMES,
            # Always on: items written without the attribute (no retention) are kept for ever.
            "time_to_live": items.EXPIRY_ATTRIBUTE,
        }

    def _describe(self) -> dict | None:
        found = ignoring(
            lambda: self.client.describe_table(TableName=self.name), "ResourceNotFoundException"
        )
        return found["Table"] if found else None

    def read(self) -> dict | None:
        description = self._describe()
        if description is None or description["TableStatus"] == "DELETING":
            return None  # gone, or going: apply makes it anew once it is gone
        present = {
            index["IndexName"]
            for index in description.get("GlobalSecondaryIndexes", [])
            if index.get("IndexStatus") != "DELETING"
        }
        return {
            "key_schema": description["KeySchema"],
            "billing_mode": description.get("BillingModeSummary", {}).get(
                "BillingMode", "PROVISIONED"
            ),
            "indexes": in_declared_order(present, INDEX_NAMES),
            "time_to_live": self._time_to_live(),
        }

    def _time_to_live(self) -> str | None:
        found = self.client.describe_time_to_live(TableName=self.name)["TimeToLiveDescription"]
        on = found.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
        return found.get("AttributeName") if on else None

    def create(self, desired: dict) -> None:
        self._wait_deleted()  # a table deleted just now keeps its name until it is gone
        # CreateTable takes every GSI at once (nothing to backfill in an empty table).
        ignoring(
            lambda: self.client.create_table(**table.create_table_request(self.name)),
            "ResourceInUseException",
        )
        self.wait_until_active()
        self._enable_time_to_live(desired)

    def _enable_time_to_live(self, desired: dict) -> None:
        self.client.update_time_to_live(
            TableName=self.name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": desired["time_to_live"]},
        )

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        if "key_schema" in fields:
            raise ProvisioningError(
                "the table's key schema differs; a key schema cannot be changed in place"
            )
        if "billing_mode" in fields:
            self._when_not_busy(
                lambda: self.client.update_table(
                    TableName=self.name, BillingMode=desired["billing_mode"]
                )
            )
        for index in table.GLOBAL_SECONDARY_INDEXES:
            if index["IndexName"] not in current["indexes"]:
                self.ctx.say(f"adding index {index['IndexName']}")
                self._when_not_busy(
                    lambda index=index: self.client.update_table(
                        TableName=self.name, **table.gsi_update(index)
                    )
                )
        if "time_to_live" in fields:
            self._enable_time_to_live(desired)

    def _when_not_busy(self, change) -> None:
        """Make ``change`` once the table is idle, then wait until it is idle again."""
        for _attempt in range(self.busy_attempts):
            self.wait_until_active()
            try:
                change()
                break
            except ClientError as exc:
                if error_code(exc) not in _BUSY:
                    raise
                self.ctx.say(f"the table is busy ({error_code(exc)}); waiting")
                self.ctx.sleep(self.poll_seconds)
        else:
            raise ProvisioningError(f"the table stayed busy for {self.busy_attempts} attempts")
        self.wait_until_active()

    def _wait_deleted(self) -> None:
        wait_until(
            self.ctx,
            lambda: (self._describe() or {}).get("TableStatus") != "DELETING",
            what="the table of this name to be deleted",
            usually="seconds to minutes",
            poll_seconds=self.poll_seconds,
            timeout_seconds=30 * 60,
        )

    def wait_until_active(self) -> None:
        """Poll until the table and all its indexes are ACTIVE."""
        waited = 0.0
        while True:
            description = self._describe()
            if description is None:
                raise ProvisioningError("the table disappeared while being changed")
            busy = [] if description["TableStatus"] == "ACTIVE" else [description["TableStatus"]]
            busy += [
                f"{index['IndexName']} {index['IndexStatus']}"
                for index in description.get("GlobalSecondaryIndexes", [])
                if index.get("IndexStatus", "ACTIVE") != "ACTIVE"
            ]
            if not busy:
                return
            if waited >= self.timeout_seconds:
                raise ProvisioningError(
                    f"gave up waiting for the table ({', '.join(busy)}) after "
                    f"{duration(waited)}: nothing is lost, apply again to resume from here"
                )
            self.ctx.say(
                f"waiting for {', '.join(busy)}: {duration(waited)}; usually under a minute, "
                "hours while an index backfills a large table"
            )
            self.ctx.progress.checkpoint()
            self.ctx.sleep(self.poll_seconds)
            waited += self.poll_seconds

    def delete(self, current: dict) -> None:
        self.client.delete_table(TableName=self.name)

    def outputs(self, current: dict) -> dict:
        arn = f"arn:aws:dynamodb:{self.spec.region}:{self.ctx.account_id}:table/{self.name}"
        return {"name": self.name, "arn": arn}
