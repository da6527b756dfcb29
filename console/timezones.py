"""The timezone each user reads times in. Everything is stored in UTC; only display changes."""

import zoneinfo
from collections.abc import Callable
from functools import cache

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from console.models import Preference

SESSION_KEY = "timezone"
DEFAULT = "UTC"


@cache
def names() -> list[str]:
    return sorted(zoneinfo.available_timezones() | {DEFAULT})


def is_known(name: str) -> bool:
    return name in names()


def choose(request: HttpRequest, name: str) -> None:
    """Keep ``name`` for the user (for later sessions too) and use it from now on."""
    Preference.objects.update_or_create(user=request.user, defaults={"timezone": name})
    request.session[SESSION_KEY] = name


class UserTimezoneMiddleware:
    """Shows times in the user's timezone: read once per session, then from the session."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        name = request.session.get(SESSION_KEY)
        if name is None and request.user.is_authenticated:
            preference = Preference.objects.filter(user=request.user).first()
            name = request.session[SESSION_KEY] = preference.timezone if preference else DEFAULT
        if name and is_known(name):
            timezone.activate(zoneinfo.ZoneInfo(name))
        else:
            timezone.deactivate()
        return self.get_response(request)
