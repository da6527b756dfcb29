"""Signs out a session nobody has used for ``SESSION_IDLE_SECONDS``.

A page left open keeps polling with htmx: those polls are not use, only pages opened (boosted
or not) and forms sent are. The session is saved for this at most once a minute.
"""

import time
from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django_htmx.http import HttpResponseClientRedirect

LAST_USED = "last_used"
SAVE_EVERY_SECONDS = 60


def _is_use(request: HttpRequest) -> bool:
    return not request.htmx or request.htmx.boosted or request.method != "GET"


class IdleTimeoutMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            now = int(time.time())
            last_used = request.session.get(LAST_USED, now)
            if now - last_used > settings.SESSION_IDLE_SECONDS:
                logout(request)
                minutes = settings.SESSION_IDLE_SECONDS // 60
                messages.info(request, f"Signed out after {minutes} minutes without use.")
                if request.htmx:  # a poll: take the whole page to the sign-in form
                    return HttpResponseClientRedirect(resolve_url(settings.LOGIN_URL))
                return redirect_to_login(request.get_full_path())
            if LAST_USED not in request.session or (
                _is_use(request) and now - last_used >= SAVE_EVERY_SECONDS
            ):
                request.session[LAST_USED] = now
        return self.get_response(request)
