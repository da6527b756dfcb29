import json
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone

from centralllm import aws
from centralllm.audit.redaction import RedactionRulesError, parse_rules
from provisioning import kinds
from provisioning.resources.base import (
    MAX_SUFFIX_LENGTH,
    RESOURCE_STATES,
    Seen,
    Spec,
    names_too_long,
    resource_name,
)

# The Spec's fields that an operator declares (the rest comes from the environment's history).
DECLARED = [
    field.name
    for field in fields(Spec)
    if field.name not in ("subnet_ids", "live_image_tag", "quota_extra")
]
QUOTA_PERIODS = [("DAY", "per day"), ("WEEK", "per week"), ("MONTH", "per month")]
GOVERNANCE, COMPLIANCE = "GOVERNANCE", "COMPLIANCE"
OBJECT_LOCK_MODES = [("", "off"), (GOVERNANCE, "governance"), (COMPLIANCE, "compliance")]
_not_negative = MinValueValidator(0, "Must be zero or more.")
# An alarm at zero errors or messages would always be in alarm.
_at_least_one = MinValueValidator(1, "Must be one or more.")


def days(count: int) -> str:
    return f"{count} day" if count == 1 else f"{count} days"


def validate_redaction_rules(value: str) -> None:
    """The ingest Lambda would refuse to start with these rules: refuse them on the form."""
    try:
        parse_rules(value)
    except RedactionRulesError as exc:
        raise ValidationError(str(exc)) from None


# What other apps add to an environment's declaration (api_access: the quota increases in
# force), registered from their AppConfig.ready(), so provisioning imports none of them.
SPEC_ADDITIONS: list[Callable[["Environment"], dict[str, Any]]] = []


def _declared_elsewhere(environment: "Environment") -> dict[str, Any]:
    return {name: value for add in SPEC_ADDITIONS for name, value in add(environment).items()}


class Environment(models.Model):
    """One deployment of the platform: what the provisioning engine declares in AWS."""

    name = models.SlugField(max_length=40, unique=True)
    is_local = models.BooleanField(
        default=False, help_text="Targets the local AWS stand-in instead of real AWS."
    )
    region = models.CharField(max_length=30, default="eu-central-1")
    account_id = models.CharField(
        max_length=12,
        blank=True,
        validators=[RegexValidator(r"^\d{12}$", "An AWS account id is 12 digits.")],
        help_text="Required for real AWS: apply refuses to run in any other account.",
    )
    suffix = models.CharField(
        max_length=20,
        blank=True,
        validators=[
            RegexValidator(r"^(-[a-z0-9]+)*$", "Use '' or a suffix like '-staging' (a-z, 0-9).")
        ],
        help_text="Appended to every resource name: '' for production, '-staging' for staging.",
    )
    vpc_id = models.CharField("VPC", max_length=32, blank=True)
    subnet_ids = models.CharField(
        "subnets", max_length=400, blank=True, help_text="Comma-separated subnet ids."
    )
    security_group_id = models.CharField("security group", max_length=32, blank=True)
    model_id = models.CharField(max_length=200, default="mistralai/Ministral-8B-Instruct-2410")
    served_model_name = models.CharField(max_length=100, default="ministral-8b-instruct")
    # 32 GiB of memory: the task reserves 24 GiB (inference/ecs-task-definition.json).
    instance_type = models.CharField(max_length=40, default="g5.2xlarge")
    source_repository = models.URLField(
        default="https://github.com/central-llm/central-llm-service.git",
        help_text="The Git repository CodeBuild builds the inference image from.",
    )
    image_tag = models.CharField(max_length=128, default="latest")
    hf_token_secret_arn = models.CharField(
        "Hugging Face token secret ARN", max_length=300, blank=True
    )
    desired_count = models.IntegerField(default=1)  # within min..max tasks (clean)
    # Scaling: Application Auto Scaling moves the service's desired count between these on
    # the serving hosts' queue (centralllm.serving); desired_count is only where it starts.
    min_tasks = models.IntegerField(
        default=1,
        validators=[_at_least_one],
        help_text="Scaling never goes below this many tasks, however quiet the night.",
    )
    max_tasks = models.IntegerField(
        default=4,
        validators=[_at_least_one],
        help_text="Scaling never goes above this many tasks (one GPU instance each): the vCPU"
        " quota must hold them, and pre-flight checks it.",
    )
    target_requests_per_task = models.IntegerField(
        default=16,
        validators=[_at_least_one],
        help_text="Requests in flight per task (vLLM's waiting and running requests) that"
        " scaling holds: above it tasks are added, well below it removed.",
    )
    scale_out_cooldown_seconds = models.IntegerField(
        "scale-out cooldown (seconds)",
        default=60,
        validators=[_not_negative],
        help_text="After adding tasks, how long before adding more.",
    )
    scale_in_cooldown_seconds = models.IntegerField(
        "scale-in cooldown (seconds)",
        default=300,
        validators=[_not_negative],
        help_text="After removing tasks, how long before removing more.",
    )
    throttle_burst_limit = models.IntegerField(default=50, validators=[_not_negative])
    throttle_rate_limit = models.IntegerField(default=100, validators=[_not_negative])
    quota_limit = models.IntegerField(
        default=100_000, validators=[_not_negative], help_text="Requests per key per period."
    )
    quota_period = models.CharField(max_length=5, choices=QUOTA_PERIODS, default="MONTH")
    alarm_lambda_errors = models.IntegerField(
        default=1, validators=[_at_least_one], help_text="Lambda errors in 5 minutes that alarm."
    )
    alarm_dlq_messages = models.IntegerField(
        default=1, validators=[_at_least_one], help_text="Messages waiting in the DLQ that alarm."
    )
    alarm_spool_oldest_seconds = models.IntegerField(
        default=300,
        validators=[_at_least_one],
        help_text="Seconds the oldest audit record may wait on a serving host before alarming.",
    )
    alarm_min_running_tasks = models.IntegerField(
        default=1, validators=[_not_negative], help_text="Fewer running tasks than this alarm."
    )
    alarm_email = models.EmailField(
        "alarm e-mail",
        blank=True,
        help_text="Who the alarms e-mail (AWS asks the address to confirm first); blank: nobody.",
    )
    redaction_rules = models.TextField(
        blank=True,
        validators=[validate_redaction_rules],
        help_text='Redacted from the audit previews, a JSON list of built-in rules ("email",'
        ' "api_key", "card") and custom ones ({"name": "ticket", "pattern": "TCK-\\\\d+"});'
        " blank: none.",
    )
    audit_retention_days = models.IntegerField(
        default=400,
        validators=[_not_negative],
        help_text="Days the audit records (S3 objects and DynamoDB items) are kept; 0: for ever.",
    )
    raw_retention_days = models.IntegerField(
        default=90,
        validators=[_at_least_one],
        help_text="Days the raw request and response bodies are kept.",
    )
    preview_retention_days = models.IntegerField(
        default=0,
        validators=[_not_negative],
        help_text="Days the prompt and completion previews stay on the DynamoDB items (the"
        " rest of the item is kept); 0: as long as the item.",
    )
    object_lock_mode = models.CharField(
        "S3 Object Lock",
        max_length=10,
        blank=True,
        default="",
        choices=OBJECT_LOCK_MODES,
        help_text="Locks every new object of the audit bucket (records, exports, seals) for the"
        " days below. Governance: only users allowed to bypass it may delete or shorten it."
        " Compliance: nobody, not even the account's root user, until the days have passed."
        " S3 never turns Object Lock off again: 'off' then only stops locking new objects.",
    )
    object_lock_days = models.IntegerField(
        "Object Lock days",
        default=0,
        validators=[_not_negative],
        help_text="Days each new object of the audit bucket stays locked (with a mode).",
    )
    rollout_ttft_p95_ms = models.IntegerField(
        "rollout TTFT p95 limit (ms)",
        default=3000,
        validators=[_not_negative],
        help_text="A rollout rolls back when the time to first token's p95 stays above this"
        " many milliseconds for 2 of 3 minutes while ECS deploys and bakes; 0: not watched.",
    )
    rollout_error_rate_percent = models.IntegerField(
        "rollout 5xx rate limit (%)",
        default=5,
        validators=[_not_negative, MaxValueValidator(100, "A rate is at most 100 percent.")],
        help_text="A rollout rolls back when more than this percentage of responses are 5xx"
        " for 2 of 3 minutes while ECS deploys and bakes; 0: not watched.",
    )
    # Not declared to AWS (no Spec field): what the costs app prices a GPU instance-hour at.
    gpu_hourly_price = models.DecimalField(
        "GPU price per instance-hour (USD)",
        max_digits=10,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[_not_negative],
        help_text="What this environment pays per GPU instance-hour, for a discount or a"
        " reservation; blank: the instance type's on-demand Linux price (AWS Price List).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def subnets(self) -> list[str]:
        return [subnet.strip() for subnet in self.subnet_ids.split(",") if subnet.strip()]

    def resource_name(self, key: str) -> str:
        """This environment's name for ``key`` of BASE_NAMES (``"AuditTable"``), as provisioning
        names it."""
        return resource_name(key, self.suffix)

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` in this environment's region."""
        return aws.client(service, region_name=self.region)

    def audit_table(self) -> dict[str, Any]:
        """Where ``centralllm.audit``'s reads (items, rollups) find this environment's audit
        records: keywords for its table and a DynamoDB client in its region."""
        return {"table": self.resource_name("AuditTable"), "client": self.client("dynamodb")}

    def clean(self) -> None:
        errors = {}
        if not self.is_local:
            if not self.vpc_id:
                errors["vpc_id"] = "A real-AWS environment needs its VPC."
            if not self.subnets:
                errors["subnet_ids"] = "A real-AWS environment needs at least one subnet."
            if not self.security_group_id:
                errors["security_group_id"] = "A real-AWS environment needs its security group."
            if not self.account_id:
                errors["account_id"] = "A real-AWS environment needs its account id."
        if self.vpc_id and not self.vpc_id.startswith("vpc-"):
            errors["vpc_id"] = "A VPC id starts with 'vpc-'."
        if any(not subnet.startswith("subnet-") for subnet in self.subnets):
            errors["subnet_ids"] = "Every subnet id starts with 'subnet-'."
        if self.security_group_id and not self.security_group_id.startswith("sg-"):
            errors["security_group_id"] = "A security group id starts with 'sg-'."
        too_long = names_too_long(self.suffix)
        if too_long:
            # AWS would refuse the name half-way through the first apply.
            errors["suffix"] = (
                f"A suffix may have at most {MAX_SUFFIX_LENGTH} characters: {'; '.join(too_long)}."
            )
        previews, records = self.preview_retention_days, self.audit_retention_days
        if previews and records and previews >= records:
            errors["preview_retention_days"] = (
                "Previews go with the records after "
                f"{self.audit_retention_days} days: keep them fewer days, or 0."
            )
        errors.update(self._object_lock_errors())
        errors.update(self._scaling_errors())
        if errors:
            raise ValidationError(errors)

    def _object_lock_errors(self) -> dict[str, str]:
        if not self.object_lock_mode:
            return {}
        locked, records = self.object_lock_days, self.audit_retention_days
        if locked < 1:
            return {"object_lock_days": "Object Lock needs its retention: one day or more."}
        if records and locked > records:
            # S3 cannot delete a locked object: the lifecycle would hide the records (a delete
            # marker) on time but keep them until the lock ends.
            return {
                "object_lock_days": f"Records expire after {records} days: lock them at most "
                "as long (or keep the records for ever, 0)."
            }
        return {}

    def _scaling_errors(self) -> dict[str, str]:
        low, high = self.min_tasks, self.max_tasks
        if low is None or high is None:
            return {}  # a field's own validation already says what is wrong with it
        if high < low:
            return {"max_tasks": f"At least the min tasks ({low})."}
        if self.desired_count is not None and not low <= self.desired_count <= high:
            return {"desired_count": f"Between the min and max tasks ({low} to {high})."}
        return {}

    @property
    def object_lock(self) -> str:
        """The declared Object Lock, as the pages say it: "compliance, 365 days" or "off"."""
        if not self.object_lock_mode:
            return "off"
        return f"{self.get_object_lock_mode_display()}, {days(self.object_lock_days)}"

    def spec(self) -> Spec:
        """The declared state as plain data, for the engine. Raises ValidationError if invalid.

        ``live_image_tag`` is what the last rollout put live, so an apply never takes the
        service back to an image that was replaced."""
        self.full_clean(validate_unique=False, validate_constraints=False)
        values = {name: getattr(self, name) for name in DECLARED}
        live = self.live_release() if self.pk else None
        live_image_tag = live.image_tag if live is not None else ""
        return Spec(
            **values,
            subnet_ids=tuple(self.subnets),
            live_image_tag=live_image_tag,
            **(_declared_elsewhere(self) if self.pk else {}),
        )

    def live_release(self) -> "Release | None":
        return self.releases.filter(outcome=Release.Outcome.LIVE).first()


class Run(models.Model):
    """One run of an environment (a plan, an apply, a rollout, an audit check: its kind, as
    ``provisioning.kinds`` registers it): the source of truth for what ran (RQ's own results
    expire). Started through ``provisioning.runs`` only."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Decision(models.TextChoices):
        """What became of a plan: confirmed (an apply of it started) or discarded."""

        PENDING = "pending"
        CONFIRMED = "confirmed"
        DISCARDED = "discarded"

    ACTIVE = (Status.QUEUED, Status.RUNNING)
    TERMINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="runs")
    kind = models.CharField(max_length=40)  # a key of provisioning.kinds: no choices to migrate
    # Its kind's, copied when the run is created: the lock below reads it.
    holds_environment = models.BooleanField(default=False, editable=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    explanation = models.TextField(blank=True, help_text="Why it waits, failed or was cancelled.")
    parameters = models.JSONField(default=dict, blank=True)
    result = models.JSONField(null=True, blank=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_by_name = models.CharField(max_length=150)
    plan = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="applies"
    )
    decision = models.CharField(max_length=10, choices=Decision.choices, blank=True)
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker_name = models.CharField(max_length=200, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_by = models.CharField(max_length=150, blank=True)
    # "Roll back now" on a rollout: a cancel that also puts the service back at once.
    roll_back_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # The environment lock: it holds across web processes and workers alike.
            models.UniqueConstraint(
                fields=["environment"],
                condition=models.Q(status__in=["queued", "running"], holds_environment=True),
                name="one_holding_run_per_environment",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} of {self.environment}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self._state.adding:
            self.holds_environment = kinds.get(self.kind).holds_environment
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("provisioning:run", args=[self.pk])

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def job_id(self) -> str:
        return f"run-{self.pk}"

    @property
    def duration_seconds(self) -> float | None:
        """How long it ran, or has been running so far; None before it starts."""
        if self.started_at is None:
            return None
        return ((self.finished_at or timezone.now()) - self.started_at).total_seconds()


class RunStep(models.Model):
    """One resource of a run, in the engine's order."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveIntegerField()
    key = models.CharField(max_length=60)
    title = models.CharField(max_length=100)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    outcome = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    outputs = models.JSONField(default=dict, blank=True)
    calls = models.JSONField(default=dict, blank=True, help_text="AWS operations made, counted.")

    class Meta:
        ordering = ["position"]
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="one_step_per_resource")]

    def __str__(self) -> str:
        return f"{self.run}: {self.key}"


class ResourceState(models.Model):
    """One resource of an environment as AWS last showed it to a run (a plan or drift saw it,
    an apply or destroy left it so): what the environment's page, the dashboard and the API
    key pages read. Deleting runs leaves it as it is."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="resources")
    key = models.CharField(max_length=60)
    title = models.CharField(max_length=100)
    state = models.CharField(max_length=10, choices=[(state, state) for state in RESOURCE_STATES])
    outputs = models.JSONField(default=dict, blank=True, help_text="Names, ARNs, URLs.")
    differences = models.JSONField(
        default=dict, blank=True, help_text="What differs: {field: [in AWS, declared]}."
    )
    kept = models.BooleanField(
        default=False, help_text="A destroy leaves it: not made here, or it holds audit data."
    )
    seen_at = models.DateTimeField()
    run = models.ForeignKey(
        Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="resources_seen"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["environment", "key"], name="one_state_per_resource")
        ]

    def __str__(self) -> str:
        return f"{self.key} of {self.environment}: {self.state}"

    @classmethod
    def record(cls, run: Run, seen: Seen) -> None:
        """Keep what ``run`` saw of a resource (or left of it) just now."""
        cls.objects.update_or_create(
            environment=run.environment,
            key=seen.key,
            defaults={
                "title": seen.title,
                "state": seen.state,
                "outputs": _as_json(seen.outputs),
                "differences": _as_json(seen.differences),
                "kept": seen.kept,
                "seen_at": timezone.now(),
                "run": run,
            },
        )


def _as_json(value: dict) -> dict:
    return json.loads(json.dumps(value, default=str))


class RunEvent(models.Model):
    """The run's log, append-only; ``seq`` counts from 1 per run, the cursor of live pages."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    at = models.DateTimeField(auto_now_add=True)
    level = models.CharField(max_length=10, default="info")
    step = models.CharField(max_length=60, blank=True)
    text = models.TextField()

    class Meta:
        ordering = ["seq"]
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="one_event_per_seq")]

    def __str__(self) -> str:
        return f"{self.run} #{self.seq}: {self.text[:60]}"


class Release(models.Model):
    """An image a rollout put on an environment's service (or tried to): the history of what
    was live, and what a rollback goes back to."""

    class Outcome(models.TextChoices):
        ROLLING_OUT = "rolling out"
        LIVE = "live"
        REPLACED = "replaced"
        ROLLED_BACK = "rolled back"
        FAILED = "failed"

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="releases")
    run = models.ForeignKey(Run, on_delete=models.SET_NULL, null=True, related_name="releases")
    image_tag = models.CharField(max_length=128)
    image_digest = models.CharField(max_length=100)
    task_definition = models.CharField(max_length=300, help_text="The revision's ARN.")
    outcome = models.CharField(max_length=12, choices=Outcome.choices, default=Outcome.ROLLING_OUT)
    reason = models.TextField(blank=True, help_text="Why it failed or was rolled back.")
    # The deployment alarms ECS watched ({"watched": [...]}) and, after a rollback by one,
    # which fired with its values ({"fired": {...}}): provisioning.deployment_alarms.
    alarms = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment"], condition=models.Q(outcome="live"), name="one_live_release"
            )
        ]

    def __str__(self) -> str:
        return f"{self.image_tag} on {self.environment}"

    @property
    def status(self) -> str:
        """Its outcome as the pages say it: "rolled back (alarm)" when a deployment alarm
        made ECS roll it back."""
        if self.outcome == self.Outcome.ROLLED_BACK and self.alarms.get("fired"):
            return f"{self.outcome} (alarm)"
        return self.outcome

    @property
    def revision(self) -> str:
        """``family:revision``, as ECS names it."""
        return self.task_definition.rpartition("/")[2]


class Hold(models.Model):
    """An image that must not be rolled out on an environment again until someone clears the
    hold: every rollback puts one, with its reason."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="holds")
    image_tag = models.CharField(max_length=128)
    image_digest = models.CharField(max_length=100, blank=True)
    reason = models.TextField()
    release = models.ForeignKey(Release, on_delete=models.SET_NULL, null=True, blank=True)
    created_by_name = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    cleared_at = models.DateTimeField(null=True, blank=True)
    cleared_by_name = models.CharField(max_length=150, blank=True)
    clear_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"hold on {self.image_tag} in {self.environment}"
