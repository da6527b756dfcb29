"""The audit buckets (encrypted, versioned, private, with lifecycle), the audit bucket's
optional S3 Object Lock, and its notification."""

from typing import Any

from botocore.exceptions import ClientError

from centralllm import aws
from llm_audit_ingest import local as local_ingest
from provisioning.resources.base import (
    ProvisioningError,
    Resource,
    Spec,
    error_code,
    ignoring,
    retrying,
    suggested_suffix,
)

PRIVATE = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
_QUEUES, _FUNCTIONS = "QueueConfigurations", "LambdaFunctionConfigurations"
_KINDS = (_QUEUES, _FUNCTIONS)
# An object replaced or expired is kept this long as a previous version, for recovery.
NONCURRENT_DAYS = 7
_CLEANUP = {"AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}
_LIFECYCLE_KEYS = (
    "ID",
    "Status",
    "Filter",
    "Expiration",
    "Transitions",
    "NoncurrentVersionExpiration",
    "AbortIncompleteMultipartUpload",
)


# https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock-configure.html
OBJECT_LOCK_DOCS = "object-lock-configure.html"
LOCK_OFF = "off"


def _rule(rule_id: str, prefix: str, **settings: dict | list) -> dict:
    return {"ID": rule_id, "Status": "Enabled", "Filter": {"Prefix": prefix}, **settings}


class Bucket(Resource):
    service = "s3"
    holds_data = True
    lifecycle: list[dict]  # the lifecycle rules, from the environment's retention
    # "You might have to wait a few minutes for the new or updated lifecycle configuration to
    # fully propagate" (S3 user guide, how-to-set-lifecycle-configuration-intro).
    settle_seconds = 15 * 60
    settles_in = "a few minutes for S3 bucket settings"
    typical_create_seconds = 60  # until the new lifecycle configuration shows

    def desired(self) -> dict:
        return {
            "encryption": "AES256",
            "versioning": "Enabled",
            "public_access_block": PRIVATE,
            "lifecycle": self.lifecycle,
        }

    def read(self) -> dict | None:
        s3, bucket = self.client, self.name
        try:
            s3.head_bucket(Bucket=bucket)
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchBucket"):
                return None
            if error_code(exc) == "403":
                raise self._taken() from exc
            raise
        encryption = ignoring(
            lambda: s3.get_bucket_encryption(Bucket=bucket),
            "ServerSideEncryptionConfigurationNotFoundError",
        )
        rules = encryption["ServerSideEncryptionConfiguration"]["Rules"] if encryption else []
        block = ignoring(
            lambda: s3.get_public_access_block(Bucket=bucket),
            "NoSuchPublicAccessBlockConfiguration",
        )
        lifecycle = ignoring(
            lambda: s3.get_bucket_lifecycle_configuration(Bucket=bucket),
            "NoSuchLifecycleConfiguration",
        )
        return {
            "encryption": rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
            if rules
            else None,
            "versioning": s3.get_bucket_versioning(Bucket=bucket).get("Status", "Disabled"),
            "public_access_block": block["PublicAccessBlockConfiguration"] if block else None,
            "lifecycle": [
                {key: rule[key] for key in _LIFECYCLE_KEYS if key in rule}
                for rule in (lifecycle or {}).get("Rules", [])
            ],
        }

    def create(self, desired: dict) -> None:
        location = {}
        if self.spec.region != "us-east-1":
            location = {"CreateBucketConfiguration": {"LocationConstraint": self.spec.region}}
        try:
            self.client.create_bucket(Bucket=self.name, **location)
        except ClientError as exc:
            if error_code(exc) == "BucketAlreadyExists":
                raise self._taken() from exc
            if error_code(exc) != "BucketAlreadyOwnedByYou":
                raise

    def _taken(self) -> ProvisioningError:
        """Bucket names are global: the guide's own names belong to the account that followed
        it first. S3 answers another account's bucket with a bare 403."""
        return ProvisioningError(
            f"the bucket name {self.name} is owned by another AWS account (S3 bucket names are "
            "global), or these credentials may not read it: declare a name suffix for this "
            f"environment, e.g. {suggested_suffix(self.spec.suffix, self.ctx.account_id)}"
        )

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        s3, bucket = self.client, self.name
        if "encryption" in fields:
            by_default = {"SSEAlgorithm": desired["encryption"]}
            s3.put_bucket_encryption(
                Bucket=bucket,
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": by_default}]
                },
            )
        if "versioning" in fields:
            s3.put_bucket_versioning(
                Bucket=bucket, VersioningConfiguration={"Status": desired["versioning"]}
            )
        if "public_access_block" in fields:
            s3.put_public_access_block(
                Bucket=bucket, PublicAccessBlockConfiguration=desired["public_access_block"]
            )
        if "lifecycle" in fields:
            s3.put_bucket_lifecycle_configuration(
                Bucket=bucket, LifecycleConfiguration={"Rules": desired["lifecycle"]}
            )

    def delete(self, current: dict) -> None:
        s3, bucket = self.client, self.name
        lock = current.get("object_lock", LOCK_OFF)
        # Governance mode lets whoever may bypass it delete; compliance mode lets nobody.
        bypass = {"BypassGovernanceRetention": True} if lock != LOCK_OFF else {}
        refused: list[dict] = []
        # A versioned bucket is empty only when every version and delete marker is gone.
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            objects = [
                {"Key": item["Key"], "VersionId": item["VersionId"]}
                for item in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            if objects:
                answer = s3.delete_objects(
                    Bucket=bucket, Delete={"Objects": objects, "Quiet": True}, **bypass
                )
                refused += answer.get("Errors", [])
        if refused:
            raise ProvisioningError(_not_deleted(bucket, refused, lock))
        s3.delete_bucket(Bucket=bucket)

    def outputs(self, current: dict) -> dict:
        return {"name": self.name, "arn": f"arn:aws:s3:::{self.name}"}


class AuditBucket(Bucket):
    """The records' bucket, with S3 Object Lock when the environment asks for it. AWS enables
    Object Lock on an existing, versioned bucket (PutObjectLockConfiguration, since November
    2023; object-lock-configure.html) but never turns it off again: "off" after it was on
    removes the default retention, so new objects are no longer locked, and says so."""

    key = "s3.audit_bucket"
    title = "S3 audit bucket"
    base_name = "AuditBucket"
    # S3 moves no object under 128 KB to STANDARD_IA, and audit records are a few KB: a
    # transition would do nothing, so records stay STANDARD until they expire.

    def desired(self) -> dict:
        return {**super().desired(), "object_lock": declared_lock(self.spec)}

    def read(self) -> dict | None:
        current = super().read()
        if current is not None:
            current["object_lock"] = _as_declared(object_lock(self.client, self.name))
        return current

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        super().update(desired, current, fields)  # versioning first: Object Lock needs it
        if "object_lock" in fields:
            self._put_lock(desired["object_lock"], current["object_lock"])

    def _put_lock(self, lock: dict | str, found: dict | str) -> None:
        config: dict[str, Any] = {"ObjectLockEnabled": "Enabled"}
        if lock == LOCK_OFF:
            self.ctx.say(
                "S3 cannot turn Object Lock off once it is on: the bucket keeps it without a "
                "default retention, so new objects are no longer locked"
            )
        else:
            config["Rule"] = {"DefaultRetention": {"Mode": lock["mode"], "Days": lock["days"]}}
        if found != LOCK_OFF and found["mode"] == "COMPLIANCE":
            self.ctx.say(
                "the objects written under compliance mode keep their retention: nobody, not "
                "even the account's root user, can shorten it or delete them before it ends"
            )
        try:
            self.client.put_object_lock_configuration(
                Bucket=self.name, ObjectLockConfiguration=config
            )
        except ClientError as exc:
            if aws.is_stand_in() and error_code(exc) == "InvalidBucket":
                raise ProvisioningError(
                    "the local AWS (moto) sets Object Lock only on an empty bucket, where AWS "
                    f"sets it on one with objects too ({OBJECT_LOCK_DOCS}): destroy the "
                    "environment with its data, or leave Object Lock off locally"
                ) from exc
            raise

    @property
    def lifecycle(self) -> list[dict]:
        days = self.spec.audit_retention_days
        return [
            _rule(
                "audit-records",
                "logs/",
                **({"Expiration": {"Days": days}} if days else {}),
                NoncurrentVersionExpiration={"NoncurrentDays": NONCURRENT_DAYS},
            ),
            # Background exports of the audit explorer: copies, downloaded within days.
            _rule(
                "audit-exports",
                "exports/",
                Expiration={"Days": 7},
                NoncurrentVersionExpiration={"NoncurrentDays": 1},
            ),
            _rule("cleanup", "", **_CLEANUP),
        ]


def declared_lock(spec: Spec) -> dict | str:
    """The audit bucket's Object Lock as the environment declares it."""
    if not spec.object_lock_mode:
        return LOCK_OFF
    return {"mode": spec.object_lock_mode, "days": spec.object_lock_days}


def object_lock(s3: Any, bucket: str) -> dict:
    """A bucket's Object Lock as S3 has it: enabled or not, and its default retention (a mode
    and days; an empty mode when there is none)."""
    found = ignoring(
        lambda: s3.get_object_lock_configuration(Bucket=bucket),
        "ObjectLockConfigurationNotFoundError",
    )
    config = (found or {}).get("ObjectLockConfiguration", {})
    retention = (config.get("Rule") or {}).get("DefaultRetention") or {}
    lock = {
        "enabled": config.get("ObjectLockEnabled") == "Enabled",
        "mode": retention.get("Mode", ""),
        "days": retention.get("Days") or 0,
    }
    if retention.get("Years"):  # set by hand: we declare days
        lock["years"] = retention["Years"]
    return lock


def _as_declared(lock: dict) -> dict | str:
    """Enabled without a default retention locks no new object: that is "off" as declared
    (S3 cannot turn it off further)."""
    if not lock["mode"]:
        return LOCK_OFF
    return {key: value for key, value in lock.items() if key != "enabled"}


def _not_deleted(bucket: str, refused: list[dict], lock: dict | str) -> str:
    first = refused[0]
    text = (
        f"{len(refused)} object versions of {bucket} could not be deleted (e.g. "
        f"{first.get('Key')}: {first.get('Code')} {first.get('Message', '')}".rstrip()
        + "), so the bucket stays"
    )
    if lock != LOCK_OFF and lock["mode"] == "COMPLIANCE":
        text += (
            ": S3 Object Lock in compliance mode keeps each object until its retention ends "
            f"({lock['days']} days after it was written, by default) and nobody can delete it "
            "before; destroy again once it has ended"
        )
    return text


class RawBucket(Bucket):
    key = "s3.raw_bucket"
    title = "S3 raw prompt bucket"
    base_name = "RawBucket"
    # Raw prompts and completions are the most sensitive data: kept the fewest days.

    @property
    def lifecycle(self) -> list[dict]:
        return [
            _rule(
                "raw-retention",
                "",
                Expiration={"Days": self.spec.raw_retention_days},
                NoncurrentVersionExpiration={"NoncurrentDays": NONCURRENT_DAYS},
                **_CLEANUP,
            ),
        ]


class AuditNotification(Resource):
    """New audit records (``logs/``) go to the ingest Lambda; locally, to the ingest queue."""

    key = "s3.audit_notification"
    title = "S3 audit bucket notification"
    service = "s3"
    base_name = "AuditBucket"
    depends_on = ("s3.audit_bucket", "lambda.s3_permission", "sqs.local_ingest_queue")
    settle_seconds = 5 * 60
    settles_in = "seconds for S3 bucket settings"
    typical_create_seconds = 15  # until S3 shows the new configuration

    def desired(self) -> dict:
        if self.spec.is_local:
            # As llm_audit_ingest.local.ensure_local_notification writes it.
            queue = self.output("sqs.local_ingest_queue")["arn"]
            target = {"QueueArn": queue, **_notification("s3:ObjectCreated:*", "logs/")}
            return {_QUEUES: [target], _FUNCTIONS: []}
        function = self.output("lambda.function")["arn"]
        target = {"LambdaFunctionArn": function, **_notification("s3:ObjectCreated:Put", "logs")}
        return {_QUEUES: [], _FUNCTIONS: [target]}

    def read(self) -> dict | None:
        config = self.client.get_bucket_notification_configuration(Bucket=self.name)
        found = {kind: [_normalised(item) for item in config.get(kind, [])] for kind in _KINDS}
        return found if any(found.values()) else None

    def create(self, desired: dict) -> None:
        self.update(desired, {}, list(desired))

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        if self.spec.is_local:
            local_ingest.ensure_local_notification(self.name, self.ctx.name("LocalIngestQueue"))
            return
        retrying(
            self.ctx,
            lambda: self.client.put_bucket_notification_configuration(
                Bucket=self.name, NotificationConfiguration={_FUNCTIONS: desired[_FUNCTIONS]}
            ),
            retry_if=_destination_unsettled,
            why="S3 cannot validate the Lambda destination until its invoke permission settles",
        )

    def delete(self, current: dict) -> None:
        self.client.put_bucket_notification_configuration(
            Bucket=self.name, NotificationConfiguration={}
        )


def _destination_unsettled(exc: ClientError) -> bool:
    # "Unable to validate the following destination configurations" right after the
    # function's permission is added (hashicorp/terraform-provider-aws#19088).
    return error_code(exc) == "InvalidArgument" and "Unable to validate" in str(exc)


def _notification(event: str, prefix: str) -> dict:
    return {
        "Events": [event],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
    }


def _normalised(item: dict) -> dict:
    """A notification as we declare it: without its id, rule names in lower case (S3 answers
    "Prefix" whatever was set, and the local AWS accepts only "prefix")."""
    item = {key: value for key, value in item.items() if key != "Id"}
    rules = item.get("Filter", {}).get("Key", {}).get("FilterRules")
    if rules:
        rules = [{"Name": rule["Name"].lower(), "Value": rule["Value"]} for rule in rules]
        item["Filter"] = {"Key": {"FilterRules": rules}}
    return item
