from django.conf import settings
from django.db import models

from core.permissions import ALL as PERMISSIONS


class Role(models.Model):  # noqa: DJ008 - never instantiated
    """Holds the console's permissions (named once, in ``core.permissions``); the roles
    themselves are Django groups (``console.roles``)."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = PERMISSIONS


class Action(models.Model):
    """One change made through the console or its commands: who, what, to which object, with
    what before and after. Written by ``core.actions.record`` only, never edited."""

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
        db_table = "console_action"  # moved from the console app without copying a row
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["object_type", "object_id"], name="console_act_object__ef31fb_idx")
        ]

    def __str__(self) -> str:
        return f"{self.actor_name} {self.verb} {self.object_repr}"

    def change(self) -> str:
        """Before → after as the action log shows it; empty when neither was recorded."""
        if not (self.before or self.after):
            return ""
        return f"{self.before or '—'} → {self.after or '—'}"

    def changed_names(self) -> list[str]:
        """The names a long change folds under, sorted: PostgreSQL's jsonb keeps keys in its
        own order (shortest first), not the order they were written in."""
        return sorted(self.after or self.before or {})
