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
