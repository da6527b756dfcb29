"""The action log page: each change readable at a glance, however much it recorded."""

import re

import pytest
from django.urls import reverse

from core import actions

pytestmark = pytest.mark.django_db


def test_a_long_change_folds_under_its_names_and_a_short_one_stays_in_line(client, admin_user):
    # What "Check this account" records: a dozen outcomes, once printed down a narrow column.
    outcomes = {f"check {n}": "could not check" for n in range(12)}
    actions.record_about(
        "environment.check_account", "provisioning.environment", "", "staging",
        actor=admin_user, after={"outcomes": outcomes, "seconds": 4.06},
    )  # fmt: skip
    actions.record_about(
        "preference.timezone", "auth.user", "1", "ada",
        actor=admin_user, before={"timezone": "UTC"}, after={"timezone": "Europe/Berlin"},
    )  # fmt: skip
    client.force_login(admin_user)

    page = client.get(reverse("actions")).content.decode()

    cells = re.findall(r'<td class="change">(.*?)</td>', page, re.S)
    timezone, check = cells  # newest first
    assert "<details>" not in timezone
    assert "Europe/Berlin" in timezone and "UTC" in timezone
    assert check.startswith("<details><summary>outcomes, seconds</summary>")
    assert "&#x27;check 11&#x27;: &#x27;could not check&#x27;" in check  # all of it, unfolded
