"""The three roles, as Django groups with the console's permissions.

Each role includes everything of the one before it. Migrations call ``sync_roles`` so the
groups exist in every database; change the lists here and add a migration that calls it again.
"""

from typing import Any

from core import permissions as perms

VIEWER = "viewer"
OPERATOR = "operator"
ADMIN = "admin"

_VIEWER_PERMS = [perms.VIEW_AUDIT, perms.VIEW_STATE]
# Raw bodies may hold personal data: operators and admins read them, each view logged.
_OPERATOR_PERMS = [
    *_VIEWER_PERMS,
    perms.START_PROVISIONING,
    perms.START_ROLLOUT,
    perms.VIEW_RAW_AUDIT,
    perms.VIEW_API_KEYS,
]
# What is governed rather than operated: usage limits, retention, redaction, the secrets the
# task role may read, and the job queues themselves.
_ADMIN_PERMS = [
    *_OPERATOR_PERMS,
    perms.MANAGE_API_KEYS,
    perms.MANAGE_USERS,
    perms.CHANGE_POLICY,
    perms.MANAGE_QUEUES,
]

ROLE_PERMISSIONS: dict[str, list[str]] = {
    VIEWER: _VIEWER_PERMS,
    OPERATOR: _OPERATOR_PERMS,
    ADMIN: _ADMIN_PERMS,
}


def sync_roles(apps: Any) -> None:
    """Create or update the role groups; ``apps`` is a migration's app registry."""
    content_type_model = apps.get_model("contenttypes", "ContentType")
    permission_model = apps.get_model("auth", "Permission")
    group_model = apps.get_model("auth", "Group")
    content_type, _ = content_type_model.objects.get_or_create(
        app_label=perms.APP_LABEL, model="role"
    )
    names = dict(perms.ALL)
    for role, granted in ROLE_PERMISSIONS.items():
        group, _ = group_model.objects.get_or_create(name=role)
        permissions = [
            permission_model.objects.get_or_create(
                content_type=content_type,
                codename=perms.codename(permission),
                defaults={"name": names[perms.codename(permission)]},
            )[0]
            for permission in granted
        ]
        group.permissions.set(permissions)
