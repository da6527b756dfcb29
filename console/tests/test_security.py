"""Sign-in lockout, the Content-Security-Policy and the idle timeout (issue 21, defect 9)."""

import re
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from console import idle

pytestmark = pytest.mark.django_db
LOGIN = reverse("login")
PAGE = reverse("provisioning:environments")


def _sign_in(client, password: str):
    return client.post(LOGIN, {"username": "otto", "password": password})


def test_wrong_passwords_lock_the_account_for_a_while(client, operator, viewer):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _sign_in(client, "guess").status_code == 200  # "didn't match"
    assert _sign_in(client, "guess").status_code == 429

    locked = _sign_in(client, "otto-password-123")

    assert locked.status_code == 429
    assert "Too many wrong passwords" in locked.content.decode()
    assert "Try again in 15 minutes" in locked.content.decode()
    assert client.get(PAGE).status_code == 302  # not signed in
    # Another account is not locked by otto's guesses.
    vera = client.post(LOGIN, {"username": "vera", "password": "vera-password-123"})
    assert vera.status_code == 302


def test_a_right_password_before_the_limit_starts_the_count_again(client, operator):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _sign_in(client, "guess")
    assert _sign_in(client, "otto-password-123").status_code == 302
    client.logout()

    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _sign_in(client, "guess")

    assert _sign_in(client, "otto-password-123").status_code == 302


def test_pages_carry_a_policy_without_inline_scripts(client, viewer):
    client.force_login(viewer)
    policy = client.get(PAGE)["Content-Security-Policy"]

    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"


def test_no_template_has_an_inline_handler():
    handler = re.compile(r"<[^>]*\son[a-z]+\s*=", re.IGNORECASE)
    templates = [
        path
        for app in ("core", "console", "provisioning", "audit_explorer", "api_access")
        for path in (Path(settings.BASE_DIR) / app).glob("templates/**/*.html")
    ]

    offenders = [str(path) for path in templates if handler.search(path.read_text())]

    assert len(templates) > 50 and not offenders


def _idle(client) -> None:
    session = client.session
    session[idle.LAST_USED] = int(time.time()) - settings.SESSION_IDLE_SECONDS - 1
    session.save()


def test_an_idle_session_is_signed_out(client, viewer):
    client.force_login(viewer)
    assert client.get(PAGE).status_code == 200
    _idle(client)

    response = client.get(PAGE)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={PAGE}"
    signed_in_again = client.get(response["Location"])
    assert "Signed out after 60 minutes without use." in signed_in_again.content.decode()
    assert client.get(PAGE).status_code == 302


def test_a_poll_of_an_idle_session_takes_the_page_to_the_sign_in_form(client, viewer):
    client.force_login(viewer)
    client.get(PAGE)
    _idle(client)

    response = client.get(PAGE, headers={"HX-Request": "true"})

    assert response["HX-Redirect"] == reverse("login")


def test_polls_are_not_use_but_opening_a_page_is(client, viewer):
    client.force_login(viewer)
    client.get(PAGE)
    an_hour_ago = int(time.time()) - 3600
    session = client.session
    session[idle.LAST_USED] = an_hour_ago
    session.save()

    client.get(PAGE, headers={"HX-Request": "true"})  # a poll
    assert client.session[idle.LAST_USED] == an_hour_ago

    client.get(PAGE, headers={"HX-Request": "true", "HX-Boosted": "true"})  # a click
    assert client.session[idle.LAST_USED] > an_hour_ago


def test_a_session_ends_at_the_latest_twelve_hours_after_sign_in(client, operator):
    signed_in = _sign_in(client, "otto-password-123")

    assert signed_in.status_code == 302
    assert signed_in.cookies[settings.SESSION_COOKIE_NAME]["max-age"] == 12 * 3600
