"""What a rollout's page says of its deployment alarms."""

from typing import Any

from django import template
from django.core.exceptions import ValidationError

from provisioning import deployment_alarms
from provisioning.models import Run

register = template.Library()


@register.simple_tag
def rollout_alarms(run: Run) -> dict[str, Any]:
    """The alarms the rollout's deployment watches (as recorded when the service moved, else
    as the environment declares them now) and the one that fired, if any."""
    release = run.releases.first()
    environment = run.environment
    if release is not None and "watched" in release.alarms:
        watched = release.alarms["watched"]
    else:
        try:
            watched = deployment_alarms.watched(environment.spec())
        except ValidationError:
            watched = []
    return {
        "watched": watched,
        "fired": release.alarms.get("fired") if release is not None else None,
        "local": environment.is_local,
        "local_limits": deployment_alarms.LOCAL_LIMITS,
    }
