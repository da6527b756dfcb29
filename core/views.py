"""View helpers every app shares."""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from core.refusals import Refused


def refused(request: HttpRequest, refusal: Refused, back: str) -> HttpResponse:
    """The refusal as a message, on the page it points to or else on ``back``."""
    messages.error(request, str(refusal))
    return redirect(refusal.see or back)
