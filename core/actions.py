"""The action log: every change, from every page and command, recorded with who made it."""

import getpass
import json
from collections.abc import Callable
from datetime import UTC
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from rq import get_current_job

from core.models import Action

Actor = AbstractBaseUser | None
# Told of each new action inside the transaction that writes it, with the row it is about (the
# target, or what a ``record_about`` names as ``within``): the action stream
# (``audit_explorer.action_stream``) queues it there for the audit buckets, so an action and
# its shipments commit together or not at all.
Follower = Callable[[Action, models.Model | None], None]
_followers: list[Follower] = []


def follow(follower: Follower) -> None:
    """Call ``follower`` with every action recorded from now on (from an ``AppConfig.ready``)."""
    if follower not in _followers:
        _followers.append(follower)


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
        within=target,
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
    within: models.Model | None = None,
) -> Action:
    """An action on something that is no database row (an audit record in DynamoDB, say);
    ``within`` is the row it belongs to (an API key's environment), if any."""
    with transaction.atomic():
        action = Action.objects.create(
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
        for follower in _followers:
            follower(action, within)
    return action


def as_record(action: Action) -> dict[str, Any]:
    """The action as one JSON document: what the audit buckets receive (one line each) and
    the action log's exports hold. ``host`` names the console that recorded it."""
    return {
        "id": action.pk,
        "at": action.at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "actor_name": action.actor_name,
        "verb": action.verb,
        "object_type": action.object_type,
        "object_id": action.object_id,
        "object_repr": action.object_repr,
        "parameters": action.parameters,
        "before": action.before,
        "after": action.after,
        "host": settings.CONSOLE_HOST_NAME,
    }


def as_json_line(action: Action) -> str:
    """``as_record`` as one line: the same bytes for the same action, whoever writes it."""
    return json.dumps(as_record(action), sort_keys=True, ensure_ascii=False) + "\n"
