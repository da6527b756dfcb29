import os

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_operator_logs_in_and_sees_every_badge_green(page, live_server, operator, rq_worker):
    page.goto(live_server.url)

    expect(page).to_have_url(f"{live_server.url}/login/?next=/")
    page.get_by_label("Username").fill("otto")
    page.get_by_label("Password").fill("otto-password-123")
    page.get_by_role("button", name="Log in").click()

    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    badges = page.locator("#health-badges .badge")
    expect(badges).to_have_count(4)
    for name in ("database", "redis", "workers", "aws"):
        expect(page.locator(f'.badge[data-check="{name}"]')).to_have_class("badge ok")
    os.makedirs("var", exist_ok=True)
    page.screenshot(path="var/dashboard.png", full_page=True)


def test_wrong_password_is_told_plainly(page, live_server, operator):
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill("otto")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()

    expect(page.get_by_text("didn't match")).to_be_visible()
