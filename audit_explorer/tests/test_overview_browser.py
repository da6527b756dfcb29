"""A viewer opens the Audit page on the last 24 hours of demo traffic, in Debian's chromium
through Playwright."""

import io

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from devtools.testing import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_overview_leads_to_a_project_and_an_empty_search_says_so(
    page, live_server, viewer, audited, audit_bucket
):
    # Through the real path: objects put to the audit bucket, ingested by the Lambda's handler.
    call_command("demo_traffic", records=80, days=1, environment=audited.name, stdout=io.StringIO())
    log_in(page, live_server.url, "vera")  # a viewer
    page.goto(f"{live_server.url}/audit/")

    expect(page.get_by_role("heading", name=f"Last 24 hours in {audited.name}")).to_be_visible()
    expect(page.locator("[data-figure='requests']")).to_have_text("80")
    projects = page.locator("table.projects tbody tr")
    expect(projects.first).to_be_visible()
    assert projects.count() >= 3
    expect(page.locator("table.projects svg.sparkline")).to_have_count(projects.count())
    expect(page.locator("table.audit.recent tbody tr[data-request-id]")).to_have_count(20)
    # The prompts are cut to the width left: the page does not scroll sideways (at 1280 px it
    # once ran 110 px past the window).
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path="var/audit-overview.png", full_page=True)

    busiest = projects.first.get_attribute("data-project")
    projects.first.get_by_role("link", name=busiest).click()
    expect(page.get_by_role("heading", name=f"Project {busiest}")).to_be_visible()
    expect(page.locator(".charts .uplot")).to_have_count(4)

    page.go_back()
    page.get_by_label("Project", exact=True).fill("no-such-project")
    page.get_by_role("button", name="Search").click()
    message = page.locator("[data-no-records]")
    expect(message).to_contain_text("No records for project no-such-project")
    expect(message).to_contain_text(f"projects with traffic in the last 24 hours: {busiest}")
    expect(page.locator("#audit-overview")).to_have_count(0)  # the search took its place
    expect(page.get_by_text("0 shown")).to_have_count(0)
    page.screenshot(path="var/audit-no-records.png", full_page=True)

    page.goto(f"{live_server.url}/")
    expect(page.locator("[data-last-day]")).to_contain_text("80 requests")
    page.screenshot(path="var/dashboard-traffic.png", full_page=True)
