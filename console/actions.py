"""The action log: every change, from every page and command, recorded with who made it."""

import getpass
import json
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from console.models import Action

Actor = AbstractBaseUser | None


def actor_name(actor: Actor) -> str:
    """A console user's name, or for a management command the operating-system user's."""
    if actor is not None:
        return actor.get_username()
    try:
        return f"command: {getpass.getuser()}"
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "command"


def snapshot(instance: models.Model, *, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The instance's concrete fields as JSON values, for ``before`` and ``after``."""
    values = {
        field.name: field.value_from_object(instance)
        for field in instance._meta.concrete_fields
        if field.name not in exclude
    }
    return json.loads(json.dumps(values, cls=DjangoJSONEncoder))


def record(
    verb: str,
    target: models.Model,
    *,
    actor: Actor,
    parameters: dict | None = None,
    before: dict | None = None,
    after: dict | None = None,
) -> Action:
    return Action.objects.create(
        actor=actor,
        actor_name=actor_name(actor),
        verb=verb,
        object_type=target._meta.label_lower,
        object_id=str(target.pk),
        object_repr=str(target)[:200],
        parameters=parameters or {},
        before=before,
        after=after,
    )
