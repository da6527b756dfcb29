"""The action log leaves the console: every action, as one JSON line (``core.actions.as_record``),
in an audit bucket under ``actions/YYYY/MM/DD/``, where a SIEM or an auditor reads it.

Which buckets: an action about an environment, or about something of one (a run, a release,
an API key, a dead letter), goes to that environment's audit bucket, the one its last run saw
(``ResourceState`` ``s3.audit_bucket``); an action about the console itself (users, roles,
preferences) goes to every environment's that has one. An environment without an audit
bucket yet (created, not applied) receives nothing: its first actions stay in the console's
log, which the action log page exports.

The database is the spool, as the serving hosts' disk is the audit records' (``inference.
uploader``): ``queue`` writes one shipment per (action, bucket) in the transaction that
records the action, so an action is never without its shipments. ``ship``, run by the cron
scheduler every ``SHIP_SECONDS``, first gathers waiting shipments into batches (one bucket,
one UTC day, at most ``BATCH_ACTIONS``), each with its own key, then puts every batch that is
due as one object, write-once (``IfNoneMatch='*'``). A batch's key and lines are fixed before
its first PUT, so a batch put again (its worker died after the PUT, or a second worker took it
too) answers 412, which means this very batch is there: shipped, never overwritten. A failed
PUT leaves the batch for later with its error, backing off from ``SHIP_SECONDS`` to
``RETRY_MAX_SECONDS``, and the bucket's other batches wait for the next pass; once a PUT to
the bucket succeeds again, the batches backing off there go at once.

Several workers at once: gathering claims rows with ``select_for_update(skip_locked=True)``
on PostgreSQL; on SQLite, which locks the whole database for a writer, the gathering writes
first, so a second worker waits for the first's commit and then finds the rows taken. A PUT
is claimed by moving the batch's ``next_try_at`` (compare-and-set).
"""

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.db import models, transaction
from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone

from audit_explorer.models import ActionBatch, ActionShipment
from centralllm import aws
from core.actions import as_json_line
from core.models import Action
from provisioning.models import Environment, ResourceState
from provisioning.resources.base import MISSING, error_code

log = logging.getLogger(__name__)

AUDIT_BUCKET = "s3.audit_bucket"
SHIP_SECONDS = 10  # the cron interval: an action is in S3 within about this, S3 willing
RETRY_MAX_SECONDS = 30
BATCH_ACTIONS = 500
# A PUT taken by a worker is not taken again before this (unless the worker failed it): a
# worker that died mid-PUT delays its batch by this much, no more.
CLAIM_SECONDS = 120
# The dashboard and the action log page warn when an action has waited this long.
LAG_SECONDS = 5 * 60
CONTENT_TYPE = "application/x-ndjson"


def environment_of(about: models.Model | None) -> Environment | None:
    """The environment an action is about: ``about`` itself or its owner; None for the
    console's own things (a user, a role, a preference)."""
    if isinstance(about, Environment):
        return about
    owner = getattr(about, "environment", None)
    return owner if isinstance(owner, Environment) else None


def audit_buckets(environment: Environment | None = None) -> list[tuple[Environment, str]]:
    """(environment, bucket name) of every environment with an audit bucket, or of one."""
    states = ResourceState.objects.filter(key=AUDIT_BUCKET).exclude(state=MISSING)
    if environment is not None:
        if environment.pk is None:  # checked before it was created: nothing in AWS yet
            return []
        states = states.filter(environment=environment)
    states = states.select_related("environment").order_by("environment__name")
    return [
        (state.environment, state.outputs["name"]) for state in states if state.outputs.get("name")
    ]


def queue(action: Action, about: models.Model | None) -> None:
    """Queue ``action`` for its audit buckets (``core.actions.follow``: in its transaction)."""
    environment = environment_of(about)
    ActionShipment.objects.bulk_create(
        [
            ActionShipment(action=action, environment=owner, bucket=bucket, region=owner.region)
            for owner, bucket in audit_buckets(environment)
        ],
        ignore_conflicts=True,  # two environments naming one bucket: it gets the line once
    )


def ship() -> int:
    """Gather what waits into batches and put the batches due; how many were shipped."""
    waiting = ActionShipment.objects.filter(batch=None).values_list("bucket", "region").distinct()
    for bucket, region in list(waiting):
        while _gather(bucket, region):
            pass
    return _put_due()


def _gather(bucket: str, region: str) -> bool:
    """One batch of ``bucket``'s waiting shipments; False when none waited."""
    with transaction.atomic():
        # Written first: on SQLite this takes the database's write lock before anything is
        # read, so a second worker gathering at once waits, then finds these rows taken.
        batch = ActionBatch.objects.create(bucket=bucket, region=region, next_try_at=timezone.now())
        waiting = list(
            ActionShipment.objects.filter(bucket=bucket, batch=None)
            .select_for_update(skip_locked=True, of=("self",))
            .order_by("action_id")
            .values_list("pk", "action__at")[:BATCH_ACTIONS]
        )
        claimed = 0
        if waiting:
            day = _utc_day(waiting[0][1])
            same_day = [pk for pk, at in waiting if _utc_day(at) == day]
            claimed = ActionShipment.objects.filter(pk__in=same_day, batch=None).update(batch=batch)
        if not claimed:
            batch.delete()
            return False
        first = waiting[0][1].astimezone(UTC)
        batch.key = f"actions/{first:%Y/%m/%d/%H%M%S}-{batch.pk.hex}.jsonl"
        batch.save(update_fields=["key"])
    return True


def _utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def _put_due() -> int:
    now = timezone.now()
    # Due before the next pass: tried in this one.
    due = ActionBatch.objects.filter(
        shipped_at=None, next_try_at__lte=now + timedelta(seconds=SHIP_SECONDS / 2)
    )
    shipped, answered = _put_each(due, now)
    # S3 answers again: the bucket's batches backing off go now, not after their wait.
    again = ActionBatch.objects.filter(shipped_at=None, attempts__gt=0, bucket__in=answered)
    return shipped + _put_each(again, now)[0]


def _put_each(batches: QuerySet[ActionBatch], now: datetime) -> tuple[int, set[str]]:
    """Put each batch, oldest first, that no other worker has taken; a bucket that fails
    is not tried again in this pass. How many were shipped, and the buckets that answered."""
    answered: set[str] = set()
    failed: set[str] = set()
    shipped = 0
    for batch in batches.order_by("created_at"):
        if batch.bucket in failed:
            continue
        taken = ActionBatch.objects.filter(
            pk=batch.pk, shipped_at=None, next_try_at=batch.next_try_at
        ).update(next_try_at=now + timedelta(seconds=CLAIM_SECONDS))
        if not taken:
            continue  # another worker has it
        try:
            put(batch)
        except (BotoCoreError, ClientError) as exc:
            failed.add(batch.bucket)
            _failed(batch, exc)
        else:
            ActionBatch.objects.filter(pk=batch.pk).update(shipped_at=timezone.now())
            answered.add(batch.bucket)
            shipped += 1
    return shipped, answered - failed


def lines(batch: ActionBatch) -> bytes:
    shipments = batch.shipments.select_related("action").order_by("action_id")
    return "".join(as_json_line(shipment.action) for shipment in shipments).encode()


def s3_client(region: str) -> Any:
    """Quick to give up: one attempt, tried again by a later pass, as a batch is."""
    return aws.client("s3", region_name=region, connect_timeout=3, read_timeout=10, max_attempts=1)


def put(batch: ActionBatch) -> None:
    """Write the batch's object unless it is there already (S3 conditional writes:
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html)."""
    try:
        s3_client(batch.region).put_object(
            Bucket=batch.bucket,
            Key=batch.key,
            Body=lines(batch),
            ContentType=CONTENT_TYPE,
            IfNoneMatch="*",
            # A checksum, which S3 requires of a PUT into a bucket with Object Lock.
            ChecksumAlgorithm="CRC32",
        )
    except ClientError as exc:
        # 412: the key, which names this batch alone, holds its object already (a PUT of
        # ours that arrived, its answer lost). Anything else (409 ConditionalRequestConflict,
        # a write racing ours) is tried again.
        if error_code(exc) != "PreconditionFailed":
            raise
        log.info("s3://%s/%s was written before: shipped", batch.bucket, batch.key)


def _failed(batch: ActionBatch, exc: Exception) -> None:
    attempts = batch.attempts + 1
    delay = min(SHIP_SECONDS * 2 ** (attempts - 1), RETRY_MAX_SECONDS)
    log.warning("actions not shipped to s3://%s (attempt %d): %s", batch.bucket, attempts, exc)
    ActionBatch.objects.filter(pk=batch.pk).update(
        attempts=attempts,
        next_try_at=timezone.now() + timedelta(seconds=delay),
        last_error=str(exc)[:1000],
    )


@dataclass(frozen=True)
class Lag:
    bucket: str
    waiting: int
    oldest: datetime  # the oldest waiting action's time
    error: str  # the last failed PUT's, or what else may hold the shipping up


def lags(environment: Environment | None = None) -> list[Lag]:
    """Buckets whose oldest waiting action is older than ``LAG_SECONDS``, with why."""
    waiting = ActionShipment.objects.filter(Q(batch=None) | Q(batch__shipped_at=None))
    if environment is not None:
        waiting = waiting.filter(environment=environment)
    late = timezone.now() - timedelta(seconds=LAG_SECONDS)
    behind = (
        waiting.values("bucket")
        .annotate(count=Count("pk"), oldest=Min("action__at"))
        .filter(oldest__lt=late)
        .order_by("oldest")
    )
    return [
        Lag(row["bucket"], row["count"], row["oldest"], _last_error(row["bucket"]))
        for row in behind
    ]


def _last_error(bucket: str) -> str:
    failed = (
        ActionBatch.objects.filter(bucket=bucket, shipped_at=None)
        .exclude(last_error="")
        .order_by("-next_try_at")
        .first()
    )
    if failed is None:
        return "no PUT failed: is the cron scheduler (manage.py rqcron console.cron) running?"
    return failed.last_error
