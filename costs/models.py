from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models

from provisioning.models import Environment


class Budget(models.Model):
    """What a project may cost an environment in a calendar month (UTC), set by an admin:
    the dashboard warns at 80% and 100%. A warning only: nothing is cut off."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="budgets")
    project = models.CharField(max_length=128)
    monthly_usd = models.DecimalField(
        "monthly budget (USD)",
        max_digits=12,
        decimal_places=2,
        validators=[MinValueValidator(1, "A budget is a dollar or more.")],
    )
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    set_by_name = models.CharField(max_length=150)
    set_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["environment", "project"]
        constraints = [
            models.UniqueConstraint(fields=["environment", "project"], name="one_budget_a_project")
        ]

    def __str__(self) -> str:
        return f"{self.project} in {self.environment.name}: ${self.monthly_usd} a month"


class KeptDay(models.Model):
    """One UTC day of an environment's hourly token usage as the audit rollups counted it
    (``costs.usage``), kept so that a ledger reads again only the hours whose counts changed.

    In the database rather than the cache: every gunicorn process and worker shares it, it
    outlives restarts and Redis's evictions, and a day is updated in place. Nothing in it is
    trusted unchecked: each hour is used only while the rollups still count it as kept."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    hours = models.JSONField(
        default=dict,
        help_text='{"2026-11-27T05": {"requests", "tokens", "keys", "projects": '
        "{name: [tokens, users]}}}, the hours with traffic only.",
    )
    kept_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["environment", "day"]
        constraints = [models.UniqueConstraint(fields=["environment", "day"], name="one_kept_day")]

    def __str__(self) -> str:
        return f"{self.day} of {self.environment}"
