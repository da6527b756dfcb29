"""Signing in through a real OpenID provider in the browser: the role from the group, the group
removed, the access gone after the renewal interval; passwords off but for break-glass."""

import logging
import time

import pytest
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from console.roles import ADMIN
from core.models import Action

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RENEWAL_SECONDS = 3


def test_the_group_gives_the_role_and_removing_it_takes_the_access_away(
    page, live_server, browser_signin_with_provider, settings
):
    settings.OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS = RENEWAL_SECONDS
    oidc_provider = browser_signin_with_provider
    oidc_provider.set_user("olga", password="olga-at-the-provider", groups=["llm-operators"])
    create = f"{live_server.url}/environments/new/"

    page.goto(create)
    page.get_by_role("link", name="Sign in with Test provider").click()
    page.get_by_label("Username").fill("olga")
    page.get_by_label("Password").fill("olga-at-the-provider")
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(create)
    expect(page.get_by_role("heading", name="New environment")).to_be_visible()
    signed_in = time.monotonic()

    oidc_provider.set_user("olga", password="olga-at-the-provider", groups=["llm-viewers"])
    time.sleep(max(0, signed_in + RENEWAL_SECONDS + 0.5 - time.monotonic()))
    page.reload()

    expect(page).to_have_url(create)  # renewed at the provider without a form
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    page.get_by_role("link", name="Environments").click()
    expect(page.get_by_role("heading", name="Environments")).to_be_visible()
    change = Action.objects.filter(verb="user.roles_from_provider").latest("pk")
    assert (change.actor_name, change.after) == ("olga", {"roles": ["viewer"]})


def test_with_passwords_off_the_login_page_offers_only_the_provider_but_break_glass_works(
    page, live_server, browser_signin_with_provider, settings, django_user_model, caplog
):
    settings.CONSOLE_LOCAL_PASSWORDS = False
    admin = django_user_model.objects.create_superuser("admin", password="break-glass-pass-9")
    admin.groups.add(Group.objects.get(name=ADMIN))

    page.goto(f"{live_server.url}/")
    expect(page.get_by_role("link", name="Sign in with Test provider")).to_be_visible()
    expect(page.get_by_label("Password")).to_have_count(0)
    page.screenshot(path="var/signin-provider-only.png", full_page=True)

    with caplog.at_level(logging.WARNING, logger="console.signin"):
        page.goto(f"{live_server.url}/login/local/")
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill("break-glass-pass-9")
        page.screenshot(path="var/signin-break-glass.png", full_page=True)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

    assert Action.objects.filter(verb="user.break_glass_sign_in", actor_name="admin").exists()
    assert "break-glass sign-in: admin" in caplog.text
