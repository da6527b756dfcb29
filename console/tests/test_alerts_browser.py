"""An admin opens the dashboard on what needs someone, the critical first, and follows the dead
letters' alert to where they are redriven: Debian's chromium, a live server, the local AWS."""

import pytest
from playwright.sync_api import expect

from devtools.testing import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_admin_follows_an_alert_to_where_it_is_fixed(page, live_server, troubled, admin_user):
    log_in(page, live_server.url, "ada")

    shown = page.locator("#alerts li.alert")
    expect(shown).to_have_count(4)
    expect(shown.first).to_have_attribute("data-alert", "critical")
    expect(shown.first).to_contain_text("is incomplete: 2 missing")
    image = page.locator("[data-live-image]")
    expect(image).to_contain_text(":main")
    expect(image.locator("time")).to_have_text("3 d ago")
    # Times and ids keep to one line in tables (the stylesheet's rule, as chromium applies it).
    assert image.locator("time").evaluate("e => getComputedStyle(e).whiteSpace") == "nowrap"
    page.screenshot(path="var/dashboard-alerts.png", full_page=True)

    page.get_by_role("link", name="1 dead letter waits for a redrive or a discard").click()

    expect(page).to_have_url(f"{live_server.url}/audit/trail/{troubled.name}/dead-letters/")
    expect(page.get_by_role("link", name="logs/2026/11/27/r1.json")).to_be_visible()
