import uuid

from django.conf import settings
from django.db import models


class SavedSearch(models.Model):
    """A user's named audit search: the URL's query string, listed on the Audit page."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_searches"
    )
    name = models.CharField(max_length=80)
    query = models.CharField(max_length=2000, help_text="The search's URL parameters.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["user", "name"], name="one_saved_search_per_name")
        ]

    def __str__(self) -> str:
        return self.name


class ChosenEnvironment(models.Model):
    """The environment whose audit trail a user's audit pages read: chosen on those pages and
    kept across sessions (``scope.environment_for``)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE
    )
    environment = models.ForeignKey(
        "provisioning.Environment", on_delete=models.CASCADE, related_name="+"
    )

    def __str__(self) -> str:
        return f"{self.user} reads {self.environment}"


class Export(models.Model):
    """A search written to the audit bucket by a background job (``exports.write``): for
    exports too large to stream, downloaded through a presigned link."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    environment = models.ForeignKey(
        "provisioning.Environment",
        null=True,
        on_delete=models.CASCADE,
        related_name="exports",
        help_text="Whose audit trail it read; empty on exports made before they said.",
    )
    query = models.CharField(max_length=2000, help_text="The search's URL parameters.")
    format = models.CharField(max_length=5)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    expected_rows = models.PositiveBigIntegerField(help_text="At most, from the rollups.")
    rows = models.PositiveBigIntegerField(default=0, help_text="Written so far.")
    size = models.PositiveBigIntegerField(default=0)
    key = models.CharField(max_length=300, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="When the worker writing it last wrote a page."
    )
    worker_name = models.CharField(max_length=200, blank=True, help_text="RQ's name for it.")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"export {self.pk} ({self.format})"

    @property
    def job_id(self) -> str:
        return f"audit-export-{self.pk}"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    def object_key(self) -> str:
        return f"exports/{self.created_at:%Y/%m/%d}/{self.pk}.{self.format}"

    def manifest_key(self) -> str:
        return f"exports/{self.created_at:%Y/%m/%d}/{self.pk}.manifest.json"

    @property
    def filename(self) -> str:
        return f"audit-export-{self.pk}.{self.format}"


class DeadLetter(models.Model):
    """An audit event the ingest gave up on, taken out of the dead-letter queue
    (``dead_letters.collect``) so that it outlives SQS's 14 days until it is redriven or
    discarded, each with who did it."""

    class Status(models.TextChoices):
        WAITING = "waiting"
        REDRIVEN = "redriven"
        DISCARDED = "discarded"

    environment = models.ForeignKey(
        "provisioning.Environment", on_delete=models.CASCADE, related_name="dead_letters"
    )
    message_id = models.CharField(max_length=100, help_text="The DLQ message's id.")
    request_id = models.CharField(max_length=100, blank=True, help_text="Lambda's RequestID.")
    body = models.TextField(help_text="The S3 event, as Lambda received it.")
    keys = models.JSONField(default=list, help_text="The S3 keys the event names.")
    bucket = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Times SQS handed it out.")
    failed_at = models.DateTimeField(help_text="When it reached the dead-letter queue.")
    collected_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.WAITING)
    redrive_attempts = models.PositiveIntegerField(default=0)
    last_redrive_error = models.TextField(blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by_name = models.CharField(max_length=150, blank=True)
    reason = models.TextField(blank=True, help_text="Why it was discarded.")
    run = models.ForeignKey(
        "provisioning.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-failed_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "message_id"], name="one_dead_letter_per_message"
            )
        ]

    def __str__(self) -> str:
        return f"dead letter {self.message_id[:12]} of {self.environment}"


class AuditDay(models.Model):
    """The last completeness check of one day of one environment's audit trail
    (``completeness.check_day``): what S3, DynamoDB, the rollups, the DLQ and API Gateway
    count, and what is missing or extra."""

    environment = models.ForeignKey(
        "provisioning.Environment", on_delete=models.CASCADE, related_name="audit_days"
    )
    day = models.DateField()
    complete = models.BooleanField()
    objects_count = models.PositiveBigIntegerField(help_text="Audit objects in S3.")
    items_count = models.PositiveBigIntegerField(help_text="Audit items in DynamoDB.")
    rollup_count = models.PositiveBigIntegerField(help_text="Requests the rollups counted.")
    dead_lettered = models.PositiveBigIntegerField(default=0)
    gateway_count = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="API Gateway's Count; none locally."
    )
    missing_count = models.PositiveBigIntegerField(default=0)
    extra_count = models.PositiveBigIntegerField(default=0)
    details = models.JSONField(
        default=dict, help_text="missing, extra, duplicate objects and miscounted hours."
    )
    checked_at = models.DateTimeField(auto_now=True)
    run = models.ForeignKey(
        "provisioning.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The day's seal (``seals.seal_or_verify``): the seal itself is in the audit bucket; this
    # is what the console last wrote or found, and it witnesses the seal's Merkle root.
    seal_status = models.CharField(
        max_length=10,
        blank=True,
        choices=[(status, status) for status in ("sealed", "verified", "changed", "tampered")],
        help_text="Empty: not sealed.",
    )
    sealed_at = models.DateTimeField(null=True, blank=True)
    seal_checked_at = models.DateTimeField(
        null=True, blank=True, help_text="When the seal was last checked against the objects."
    )
    seal = models.JSONField(
        default=dict,
        blank=True,
        help_text="The seal's key, root, counts and key; what its last check found; seals kept.",
    )

    class Meta:
        ordering = ["-day"]
        constraints = [
            models.UniqueConstraint(fields=["environment", "day"], name="one_check_per_day")
        ]

    def __str__(self) -> str:
        return f"{self.day} of {self.environment}"


class ActionBatch(models.Model):
    """Actions bound for one audit bucket as one object, written once (``action_stream``): its
    key and its actions are fixed before the first PUT, so a batch put again, after a crash or
    by a second worker, finds its own object there and never makes a second."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    bucket = models.CharField(max_length=63)
    region = models.CharField(max_length=30)
    key = models.CharField(max_length=200, blank=True, help_text="actions/YYYY/MM/DD/…")
    created_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveIntegerField(default=0, help_text="PUTs that failed.")
    next_try_at = models.DateTimeField(db_index=True)
    last_error = models.TextField(blank=True)
    shipped_at = models.DateTimeField(null=True, blank=True, db_index=True)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class ActionShipment(models.Model):
    """One action bound for one audit bucket: the action stream's outbox, written in the
    transaction that records the action, put in a batch once it ships."""

    action = models.ForeignKey("core.Action", on_delete=models.CASCADE, related_name="+")
    environment = models.ForeignKey(
        "provisioning.Environment",
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Whose audit bucket; its bucket still receives it once it is deleted.",
    )
    bucket = models.CharField(max_length=63)
    region = models.CharField(max_length=30)
    batch = models.ForeignKey(
        ActionBatch, null=True, blank=True, on_delete=models.PROTECT, related_name="shipments"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["action", "bucket"], name="one_shipment_per_bucket")
        ]
        indexes = [models.Index(fields=["bucket", "batch"], name="action_shipments_waiting")]

    def __str__(self) -> str:
        return f"action {self.action_id} to {self.bucket}"
