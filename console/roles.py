"""The three roles, as Django groups with the console's permissions.

Each role includes everything of the one before it. Migrations call ``sync_roles`` so the
groups exist in every database; change the lists here and add a migration that calls it again.
"""

from typing import Any

VIEWER = "viewer"
OPERATOR = "operator"
ADMIN = "admin"

_VIEWER_PERMS = ["view_audit", "view_state"]
# Raw bodies may hold personal data: operators and admins read them, each view logged.
_OPERATOR_PERMS = [
    *_VIEWER_PERMS,
    "start_provisioning",
    "start_rollout",
    "view_raw_audit",
    "view_api_keys",
]
# What is governed rather than operated: usage limits, retention, redaction, the secrets the
# task role may read, and the job queues themselves.
_ADMIN_PERMS = [
    *_OPERATOR_PERMS,
    "manage_api_keys",
    "manage_users",
    "change_policy",
    "manage_queues",
]

ROLE_PERMISSIONS: dict[str, list[str]] = {
    VIEWER: _VIEWER_PERMS,
    OPERATOR: _OPERATOR_PERMS,
    ADMIN: _ADMIN_PERMS,
}


def sync_roles(apps: Any) -> None:
    """Create or update the role groups; ``apps`` is a migration's app registry."""
    from console.models import Role

    content_type_model = apps.get_model("contenttypes", "ContentType")
    permission_model = apps.get_model("auth", "Permission")
    group_model = apps.get_model("auth", "Group")
    content_type, _ = content_type_model.objects.get_or_create(app_label="console", model="role")
    names = dict(Role._meta.permissions)
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = group_model.objects.get_or_create(name=role)
        permissions = [
            permission_model.objects.get_or_create(
                content_type=content_type, codename=codename, defaults={"name": names[codename]}
            )[0]
            for codename in codenames
        ]
        group.permissions.set(permissions)
