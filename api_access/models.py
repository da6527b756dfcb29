from django.conf import settings
from django.db import models
from django.utils import timezone

from provisioning.models import Environment


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
        db_table = "console_keyrotation"  # moved from the console app without copying a row
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
        db_table = "console_quotaincrease"  # moved from the console app without copying a row
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"+{self.extra} on {self.environment} until {self.until:%Y-%m-%d}"

    @classmethod
    def extra_for(cls, environment: Environment) -> int:
        """The increases in force now, added to every key's quota."""
        active = cls.objects.filter(
            environment=environment, reverted_at=None, until__gt=timezone.now()
        )
        return active.aggregate(total=models.Sum("extra"))["total"] or 0
