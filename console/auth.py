"""Django's model backend, with each user's permissions kept in Redis: a page that polls every
second checks them without two database queries each time. A change to a user's groups or to
a group's permissions, or deleting a group, drops what was kept, so a revoked role is refused
at once.

With local passwords off (``CONSOLE_LOCAL_PASSWORDS``), only superusers, the bootstrap admin
kept for break-glass, sign in with a password; others' password sessions end (console.signin
logs each break-glass sign-in)."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.db.models.signals import m2m_changed, pre_delete
from django.dispatch import receiver

CACHE_SECONDS = 300


def _key(user_id: int) -> str:
    return f"permissions:{user_id}"


class CachedPermissionsBackend(ModelBackend):
    def user_can_authenticate(self, user) -> bool:
        return super().user_can_authenticate(user) and (
            settings.CONSOLE_LOCAL_PASSWORDS or user.is_superuser
        )

    def get_all_permissions(self, user_obj, obj=None) -> set[str]:
        if obj is not None or not user_obj.is_active or user_obj.is_anonymous:
            return super().get_all_permissions(user_obj, obj)
        if not hasattr(user_obj, "_perm_cache"):
            cached = cache.get(_key(user_obj.pk))
            if cached is None:
                cached = super().get_all_permissions(user_obj)
                cache.set(_key(user_obj.pk), cached, CACHE_SECONDS)
            user_obj._perm_cache = set(cached)
        return user_obj._perm_cache


def forget_permissions(user_ids) -> None:
    cache.delete_many([_key(user_id) for user_id in user_ids])


def _memberships_changed(sender, instance, action, reverse, pk_set, **kwargs) -> None:
    """A user's groups or own permissions changed: ``user.groups.add(...)`` comes with the
    user, ``group.user_set.add(...)`` with the users (and a clear, with none: read them first)."""
    if reverse and action == "pre_clear":
        forget_permissions(instance.user_set.values_list("pk", flat=True))
    elif action.startswith("post_"):
        forget_permissions((pk_set or []) if reverse else [instance.pk])


def connect_signals() -> None:
    user_model = get_user_model()
    for through in (user_model.groups.through, user_model.user_permissions.through):
        m2m_changed.connect(_memberships_changed, sender=through, dispatch_uid=str(through))


@receiver(m2m_changed, sender=Group.permissions.through)
def _group_permissions_changed(sender, instance, action, reverse, **kwargs) -> None:
    if action.startswith("post_") and not reverse:
        forget_permissions(instance.user_set.values_list("pk", flat=True))


@receiver(pre_delete, sender=Group)
def _group_deleted(sender, instance, **kwargs) -> None:
    """A cascade deletes the memberships without an m2m signal: read the members first."""
    forget_permissions(instance.user_set.values_list("pk", flat=True))
