"""An admin creates an API key in chromium: the value is copied once and never shown again."""

import pytest
from playwright.sync_api import expect

from centralllm import aws

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_admin_creates_a_key_copies_it_once_and_a_reload_does_not_show_it(
    page, live_server, admin_user, keyed
):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(f"{live_server.url}/login/?next=/api-keys/{keyed.name}/")
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill("ada-password-123")
    page.get_by_role("button", name="Log in").click()

    page.get_by_role("link", name="New key").click()
    page.get_by_label("Name").fill("partner-feed")
    page.get_by_label("Owner project").fill("search")
    page.get_by_label("Owner person").fill("ivo")
    page.get_by_role("button", name="Create the key").click()

    value = page.locator("#key-value").inner_text()
    page.get_by_role("button", name="Copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == value
    key_id = page.url.split("/keys/")[1].split("/")[0]
    assert aws.client("apigateway").get_api_key(apiKey=key_id, includeValue=True)["value"] == value

    page.reload()
    expect(page.get_by_text("shown once already")).to_be_visible()
    assert value not in page.content()
    page.goto(f"{live_server.url}/api-keys/{keyed.name}/")
    expect(page.locator(f"tr[data-key='{key_id}']")).to_contain_text(f"…{value[-4:]}")
    assert value not in page.content()
