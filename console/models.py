from django.conf import settings
from django.db import models


class Role(models.Model):  # noqa: DJ008 - never instantiated
    """Holds the console's permissions; the roles themselves are Django groups (console.roles)."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_audit", "Can read audit records"),
            ("view_raw_audit", "Can read the full prompts and completions of audit records"),
            ("view_state", "Can read deployment state and runs"),
            ("start_provisioning", "Can plan and apply environments"),
            ("start_rollout", "Can roll out and roll back the serving image"),
            ("view_api_keys", "Can see API keys (never their values) and usage plans"),
            ("manage_api_keys", "Can create, disable and delete API keys"),
            ("manage_users", "Can manage users and their roles"),
            (
                "change_policy",
                "Can change environments' quotas, retention, redaction rules and secrets",
            ),
            ("manage_queues", "Can see and change the job queues and their workers"),
        ]


class Action(models.Model):
    """One change made through the console or its commands: who, what, to which object, with
    what before and after. Written by ``console.actions.record`` only, never edited."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # Kept apart from the user row, so the log still says who once the user is deleted, and
    # names a command's operator ("command: alice") where there is no console user.
    actor_name = models.CharField(max_length=150)
    verb = models.CharField(max_length=60, db_index=True)  # e.g. "environment.create"
    object_type = models.CharField(max_length=60)
    object_id = models.CharField(max_length=60)
    object_repr = models.CharField(max_length=200)
    parameters = models.JSONField(default=dict, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        return f"{self.actor_name} {self.verb} {self.object_repr}"


class Preference(models.Model):
    """What a user chose for themselves: for now, the timezone times are shown in."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE
    )
    timezone = models.CharField(max_length=64, default="UTC")

    def __str__(self) -> str:
        return f"preferences of {self.user}"


class KeyRotation(models.Model):
    """One rotation of an API key: a new key on the same plan at once, the old one disabled
    when its grace period is over and it has been quiet (or when an admin forces it). The id
    comes with the form, so a retried request finds this rotation instead of making another."""

    class Status(models.TextChoices):
        GRACE = "grace"  # both keys work
        DONE = "done"  # the old key is disabled

    id = models.UUIDField(primary_key=True)
    environment = models.ForeignKey(
        "provisioning.Environment", on_delete=models.CASCADE, related_name="key_rotations"
    )
    old_key_id = models.CharField(max_length=64)
    old_key_name = models.CharField(max_length=128)
    new_key_id = models.CharField(max_length=64, blank=True)
    grace_until = models.DateTimeField()
    quiet_minutes = models.PositiveIntegerField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.GRACE)
    old_key_last_used = models.CharField(max_length=32, blank=True, help_text="Hour, UTC.")
    outcome = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"rotation of {self.old_key_name}"


class QuotaIncrease(models.Model):
    """Extra requests on a usage plan's quota until the end of its period, with the reason;
    the scheduled job takes it back then."""

    environment = models.ForeignKey(
        "provisioning.Environment", on_delete=models.CASCADE, related_name="quota_increases"
    )
    extra = models.PositiveIntegerField()
    reason = models.CharField(max_length=300)
    until = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    reverted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"+{self.extra} on {self.environment} until {self.until:%Y-%m-%d}"
