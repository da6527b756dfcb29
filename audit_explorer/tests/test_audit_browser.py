"""An operator searches the audit trail in Debian's chromium through Playwright."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import expect

from centralllm.audit.ingest import ingest_record
from centralllm.audit.tests.conftest import make_record

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_search_page_forward_and_back_expand_a_row_open_a_record_export(
    page,
    live_server,
    operator,
    seeded,
):
    page.goto(f"{live_server.url}/login/?next=/audit/")
    page.get_by_label("Username").fill("otto")
    page.get_by_label("Password").fill("otto-password-123")
    page.get_by_role("button", name="Log in").click()

    page.get_by_label("Project", exact=True).fill("alpha")
    page.get_by_label("Page size").fill("4")
    page.get_by_role("button", name="Search").click()
    rows = page.locator("tr[data-request-id]")
    expect(rows).to_have_count(4)
    expect(rows.first).to_have_attribute("data-request-id", "r4")  # slowest first
    expect(page.locator(".summary")).to_contain_text("6 requests (project alpha")
    first_url = page.url
    assert "project=alpha" in first_url  # the URL holds the search

    page.get_by_role("link", name="Next page").click()
    expect(rows).to_have_count(2)
    expect(rows.first).to_have_attribute("data-request-id", "r3")
    page.go_back()
    expect(rows.first).to_have_attribute("data-request-id", "r4")

    # The summary's charts, drawn by the pinned uPlot served with the page (no CDN).
    expect(page.locator(".summary .uplot")).to_have_count(2)
    assert page.locator("script[src^='http']").count() == 0

    rows.first.get_by_role("link", name=seeded["r4"]["createdAt"][:10]).click()  # in place
    expect(page.locator("table.record-fields").first).to_contain_text("latencyMs")
    page.screenshot(path="var/audit-search.png", full_page=True)

    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert len(lines) == 7 and lines[0].startswith("createdAt,id,project")

    page.goto(f"{live_server.url}/audit/records/r2")
    expect(page.get_by_role("heading", name="Request r2")).to_be_visible()

    page.get_by_role("link", name="alpha").click()  # the project's own page
    expect(page.get_by_role("heading", name="Project alpha")).to_be_visible()
    expect(page.locator(".charts .uplot")).to_have_count(4)
    expect(page.locator("table.top.user")).to_contain_text("ann")
    page.screenshot(path="var/audit-project.png", full_page=True)


def test_follow_mode_puts_new_records_on_top(page, live_server, operator, seeded):
    page.goto(f"{live_server.url}/login/?next=/audit/%3Fuser%3Dann")
    page.get_by_label("Username").fill("otto")
    page.get_by_label("Password").fill("otto-password-123")
    page.get_by_role("button", name="Log in").click()
    rows = page.locator("tr[data-request-id]")
    expect(rows.first).to_have_attribute("data-request-id", "r1")

    page.get_by_role("link", name="Follow new records").click()
    expect(page.locator(".following")).to_be_visible()
    ingest_record(make_record(request_id="live-1", user="ann", created_at=datetime.now(UTC)))
    expect(rows.first).to_have_attribute("data-request-id", "live-1", timeout=12_000)
    expect(rows).to_have_count(5)

    rows.first.locator("td").first.get_by_role("link").click()  # a new row expands too
    expect(page.locator("td.fields table.record-fields").first).to_contain_text("live-1")


def test_a_background_export_shows_progress_and_downloads(
    page, live_server, operator, seeded, audit_bucket, rq_worker
):
    page.goto(f"{live_server.url}/login/?next=/audit/%3Fproject%3Dalpha")
    page.get_by_label("Username").fill("otto")
    page.get_by_label("Password").fill("otto-password-123")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("button", name="Export CSV in the background").click()

    expect(page.get_by_role("heading", name="Exports")).to_be_visible()
    row = page.locator("tr[data-export]").first
    expect(row).to_have_attribute("data-status", "done", timeout=30_000)  # live, no reload
    with page.expect_download() as download:
        row.get_by_role("link", name="Download").click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert len(lines) == 7 and lines[0].startswith("createdAt,id,project")
    assert download.value.suggested_filename.startswith("audit-export-")
