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
            ("manage_api_keys", "Can create, disable and delete API keys"),
            ("manage_users", "Can manage users and their roles"),
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
