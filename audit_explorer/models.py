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
