from django.db import models


class Role(models.Model):  # noqa: DJ008 - never instantiated
    """Holds the console's permissions; the roles themselves are Django groups (console.roles)."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_audit", "Can read audit records"),
            ("view_state", "Can read deployment state and runs"),
            ("start_provisioning", "Can plan and apply environments"),
            ("start_rollout", "Can roll out and roll back the serving image"),
            ("manage_api_keys", "Can create, disable and delete API keys"),
            ("manage_users", "Can manage users and their roles"),
        ]
