"""The action log's export: a time range in the user's timezone, over real HTTP, as CSV (made
safe for spreadsheets) or as the JSON lines the audit buckets receive; bad ranges answered
with a message."""

import csv
import io
import json
from datetime import UTC, datetime

import httpx
import pytest
from django.conf import settings
from django.urls import reverse

from console.action_exports import COLUMNS
from console.models import Preference
from core import actions
from core.models import Action

# 14:00-15:00 in Kolkata (UTC+05:30) is 08:30-09:30 UTC.
RANGE = {"start": "2026-12-01T14:00", "end": "2026-12-01T15:00"}


def _made_at(hour: int, minute: int, actor, **fields) -> Action:
    action = actions.record_about(
        "user.update", "auth.user", str(actor.pk), fields.pop("repr", "ada"), actor=actor, **fields
    )
    Action.objects.filter(pk=action.pk).update(at=datetime(2026, 12, 1, hour, minute, tzinfo=UTC))
    action.refresh_from_db()
    return action


@pytest.fixture
def signed_in(live_server, client, admin_user) -> httpx.Client:
    """An HTTP client of the live server, signed in as an admin who reads Kolkata's times."""
    Preference.objects.create(user=admin_user, timezone="Asia/Kolkata")
    client.force_login(admin_user)
    cookies = {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}
    with httpx.Client(base_url=live_server.url, cookies=cookies, timeout=10) as http:
        yield http


def test_a_range_in_the_users_timezone_streams_as_json_lines_and_csv(signed_in, admin_user):
    _made_at(8, 29, admin_user)
    inside = _made_at(8, 30, admin_user, after={"role": "operator"})
    formula = _made_at(9, 29, admin_user, repr='=HYPERLINK("http://evil.example","x")')
    _made_at(9, 30, admin_user)

    with signed_in.stream("GET", "/actions/export/", params={**RANGE, "format": "jsonl"}) as got:
        assert got.status_code == 200
        assert got.headers["content-type"] == "application/x-ndjson"
        assert "attachment" in got.headers["content-disposition"]
        body = got.read().decode()
    assert body == actions.as_json_line(inside) + actions.as_json_line(formula)

    got = signed_in.get("/actions/export/", params={**RANGE, "format": "csv", "actor": "ad"})
    assert got.status_code == 200 and got.headers["content-type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(got.text)))
    assert tuple(rows[0]) == COLUMNS
    assert [int(row["id"]) for row in rows] == [inside.pk, formula.pk]
    assert json.loads(rows[0]["after"]) == {"role": "operator"}
    assert rows[1]["object_repr"] == "'" + formula.object_repr  # text, never a formula

    exports = Action.objects.filter(verb="action_log.export").order_by("id")
    assert [export.parameters["format"] for export in exports] == ["jsonl", "csv"]
    assert exports[0].actor_name == "ada"
    assert exports[0].parameters["from"] == "2026-12-01T14:00:00+05:30"
    assert exports[1].parameters["actor"] == "ad"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({}, "From: This field is required."),
        ({"start": "yesterday", "end": "2026-12-01T15:00"}, "From: Enter a valid date/time."),
        ({**RANGE, "start": "2026-12-01T16:00"}, "To: The end must be after the start."),
        ({**RANGE, "end": "2026-12-01T14:00"}, "To: The end must be after the start."),
        ({**RANGE, "start": "0001-01-01T00:00"}, "From: This time is too far from today"),
        ({**RANGE, "format": "xlsx"}, "Format: Select a valid choice."),
        # Clocks went forward in Berlin at 02:00 that day: 02:30 never happened.
        ({"start": "2026-03-29T02:30", "end": "2026-03-29T05:00"}, "may not exist"),
    ],
)
def test_a_bad_range_gets_a_message_never_a_500(client, admin_user, query, message):
    Preference.objects.create(
        user=admin_user, timezone="Europe/Berlin" if "2026-03" in str(query) else "Asia/Kolkata"
    )
    client.force_login(admin_user)

    got = client.get(reverse("actions-export"), {"format": "csv", **query})

    assert got.status_code == 400
    assert message in got.content.decode()
    assert not Action.objects.filter(verb="action_log.export").exists()
