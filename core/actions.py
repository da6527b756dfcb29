"""The action log: every change, from every page and command, recorded with who made it."""

import getpass
import json
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from rq import get_current_job

from core.models import Action

Actor = AbstractBaseUser | None


def actor_name(actor: Actor) -> str:
    """A console user's name; for a background job (the scheduler's, say) the job's function,
    ``job: check_yesterday``; for a management command the operating-system user's."""
    if actor is not None:
        return actor.get_username()
    job = get_current_job()
    if job is not None:
        return f"job: {job.func_name.rpartition('.')[2]}"
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
    return record_about(
        verb,
        target._meta.label_lower,
        str(target.pk),
        str(target),
        actor=actor,
        parameters=parameters,
        before=before,
        after=after,
    )


def record_about(
    verb: str,
    object_type: str,
    object_id: str,
    object_repr: str,
    *,
    actor: Actor,
    parameters: dict | None = None,
    before: dict | None = None,
    after: dict | None = None,
) -> Action:
    """An action on something that is no database row (an audit record in DynamoDB, say)."""
    return Action.objects.create(
        actor=actor,
        actor_name=actor_name(actor),
        verb=verb,
        object_type=object_type,
        object_id=object_id[:60],
        object_repr=object_repr[:200],
        parameters=parameters or {},
        before=before,
        after=after,
    )
