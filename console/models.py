from django.conf import settings
from django.db import models


class Preference(models.Model):
    """What a user chose for themselves: for now, the timezone times are shown in."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE
    )
    timezone = models.CharField(max_length=64, default="UTC")

    def __str__(self) -> str:
        return f"preferences of {self.user}"
