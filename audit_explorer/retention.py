"""What an environment keeps of its audit trail, for how long, and the one part no AWS
feature expires by itself: the previews on DynamoDB items older than
``preview_retention_days``, removed by a daily job while the rest of the item stays.

S3 lifecycle rules expire the records and raw bodies (``provisioning.resources.s3``), the
table's TTL the items and guards (``expiresAt``, set at ingest from
``AUDIT_RETENTION_DAYS``). A TTL deletes whole items, so dropping previews is an update per
item: the job takes the days that just passed the limit, and a few before in case a run was
missed; items already without previews are filtered out and not written again.
"""

import logging
from datetime import date, timedelta

from botocore.exceptions import BotoCoreError, ClientError

from audit_explorer import audit_runs, completeness
from centralllm.audit.items import EXPIRY_ATTRIBUTE
from provisioning.engine import refuse_local_against_aws
from provisioning.models import Environment
from provisioning.resources.base import Context, ProvisioningError
from provisioning.resources.s3 import NONCURRENT_DAYS

logger = logging.getLogger(__name__)
PREVIEWS = ("promptPreview", "completionPreview")
CATCH_UP_DAYS = 3  # a day missed by the scheduler is still done on the next runs


def kept_for(environment: Environment) -> list[dict]:
    """What is kept for how long, as the environment page lists it."""
    records = environment.audit_retention_days
    forever = "for ever"
    return [
        {
            "what": "Audit records in S3 (logs/)",
            "kept": f"{records} days" if records else forever,
            "how": f"S3 lifecycle expiry; a replaced version {NONCURRENT_DAYS} days more",
        },
        {
            "what": "Audit items in DynamoDB",
            "kept": f"{records} days" if records else forever,
            "how": f"DynamoDB TTL on {EXPIRY_ATTRIBUTE}, set at ingest (usually gone within"
            " days of it)",
        },
        {
            "what": "Prompt and completion previews on the items",
            "kept": f"{environment.preview_retention_days} days"
            if environment.preview_retention_days
            else "as long as the item",
            "how": "removed by the daily retention job",
        },
        {
            "what": "Raw request and response bodies (raw bucket)",
            "kept": f"{environment.raw_retention_days} days",
            "how": "S3 lifecycle expiry",
        },
        {"what": "Hourly rollups", "kept": forever, "how": "a few KB per hour: kept for charts"},
    ]


def drop_previews(ctx: Context, day: date) -> int:
    """Remove the previews from the items of ``day``; returns how many items changed."""
    counted, statuses, _ = completeness.hourly_counts(ctx, day)
    if not counted:
        return 0
    client, table, dropped = ctx.client("dynamodb"), ctx.name("AuditTable"), 0
    for item in completeness.day_items(ctx, day, statuses, with_previews_only=True):
        try:
            client.update_item(
                TableName=table,
                Key={"id": {"S": item["id"]}, "createdAt": {"S": item["createdAt"]}},
                UpdateExpression="REMOVE promptPreview, completionPreview SET previewsDropped"
                " = :true",
                ConditionExpression="attribute_exists(id)",  # expired meanwhile: not recreated
                ExpressionAttributeValues={":true": {"BOOL": True}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            continue
        dropped += 1
    return dropped


def drop_due_previews() -> dict[str, int]:
    """The daily job: in each environment with a preview limit, the days just past it."""
    dropped = {}
    for environment in Environment.objects.filter(preview_retention_days__gt=0):
        spec = environment.spec()
        limit = audit_runs.today() - timedelta(days=environment.preview_retention_days)
        try:
            refuse_local_against_aws(spec)
            with Context(spec) as ctx:
                dropped[environment.name] = sum(
                    drop_previews(ctx, limit - timedelta(days=n))
                    for n in range(1, CATCH_UP_DAYS + 1)
                )
        except (BotoCoreError, ClientError, ProvisioningError) as exc:
            logger.warning("previews of %s not dropped: %s", environment.name, exc)
    return dropped
