import os

import pytest
from playwright.sync_api import expect, sync_playwright

from devtools.services import ensure_os_package

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def page(monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the live server's ORM calls
    # happen in another thread, so Django's async-safety guard does not apply to them.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    chromium = ensure_os_package("chromium", "chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield browser.new_page()
        browser.close()


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
