"""Follow mode: new records on top, one page Query per poll, late records too, idle pauses."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from audit_explorer import follow
from audit_explorer.tests.conftest import dynamodb_calls
from centralllm.audit.ingest import ingest_record
from centralllm.audit.tests.conftest import make_record

pytestmark = pytest.mark.django_db
FOLLOW = reverse("audit_explorer:follow")


def new_ids(fragment: str) -> list[str]:
    rows = re.search(r'<tbody hx-swap-oob="afterbegin:#audit-rows">(.*)</tbody>', fragment, re.S)
    return re.findall(r'data-request-id="([^"]+)"', rows.group(1)) if rows else []


def token_of(fragment: str) -> str:
    return re.search(r"token=([\w-]+)", fragment).group(1)


def ingest(request_id: str, user: str = "ann", ago: timedelta = timedelta(0)) -> None:
    created = datetime.now(UTC) - ago
    ingest_record(make_record(request_id=request_id, user=user, created_at=created))


def test_new_records_arrive_on_top_once_each_with_one_query_per_poll(client, viewer, seeded):
    client.force_login(viewer)
    page = client.get(reverse("audit_explorer:home"), {"user": "ann"}).content.decode()
    assert f"{FOLLOW}?user=ann" in page  # offered on a newest-first search
    started = client.get(FOLLOW, {"user": "ann"}).content.decode()
    token = token_of(started)
    assert new_ids(started) == []  # what the page shows is not new

    ingest("f1")
    ingest("f2", user="bob")  # another user's: not this search's
    calls, stop = dynamodb_calls()
    try:
        first = client.get(FOLLOW, {"user": "ann", "token": token}).content.decode()
    finally:
        stop()
    assert new_ids(first) == ["f1"]
    assert calls == [("Query", "GSI_UserTime")]
    assert 'hx-trigger="every 5s"' in first

    ingest("f3", ago=timedelta(minutes=2))  # ingested late: older than f1, still new to us
    second = client.get(FOLLOW, {"user": "ann", "token": token}).content.decode()
    assert new_ids(second) == ["f3"]
    assert new_ids(client.get(FOLLOW, {"user": "ann", "token": token}).content.decode()) == []


def test_an_idle_follower_pauses_without_querying_and_resumes(client, viewer, seeded, monkeypatch):
    client.force_login(viewer)
    token = token_of(client.get(FOLLOW, {"user": "ann"}).content.decode())
    monkeypatch.setattr(follow, "IDLE", timedelta(0))
    ingest("p1")
    calls, stop = dynamodb_calls()
    try:
        paused = client.get(FOLLOW, {"user": "ann", "token": token}).content.decode()
    finally:
        stop()
    assert "Follow paused after 10 minutes without a click" in paused
    assert "hx-trigger" not in paused and calls == []

    monkeypatch.setattr(follow, "IDLE", timedelta(minutes=10))
    resumed = client.get(FOLLOW, {"user": "ann", "token": token, "resume": 1}).content.decode()
    assert new_ids(resumed) == ["p1"]  # what came while paused


def test_a_follower_is_its_users_and_its_searchs_only(client, viewer, operator, seeded):
    client.force_login(viewer)
    token = token_of(client.get(FOLLOW, {"user": "ann"}).content.decode())
    other_search = client.get(FOLLOW, {"user": "bob", "token": token}).content.decode()
    assert "Follow paused" in other_search
    client.force_login(operator)
    assert "Follow paused" in client.get(FOLLOW, {"user": "ann", "token": token}).content.decode()


def test_a_search_that_cannot_be_followed_says_why(client, viewer, seeded):
    client.force_login(viewer)
    page = client.get(reverse("audit_explorer:home"), {"project": "alpha"}).content.decode()
    assert FOLLOW not in page
    refused = client.get(FOLLOW, {"project": "alpha"}).content.decode()
    assert "Follow works on searches by user or status, newest first" in refused
    assert "Search by project" in client.get(FOLLOW).content.decode()
