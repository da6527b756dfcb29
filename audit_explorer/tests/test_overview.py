"""The Audit page's overview of the last 24 hours and the dashboard's traffic cell: from the
rollups the real ingest writes (DynamoDB Local), and one page of the status index."""

import re
from collections import Counter
from datetime import timedelta

import pytest
from django.urls import reverse

from audit_explorer import overview
from audit_explorer.tests.conftest import NOW
from centralllm import aws
from centralllm.audit import rollups
from centralllm.audit.contract import format_timestamp
from centralllm.audit.ingest import ingest_record
from centralllm.audit.table import ROLLUP_SHARDS, STATUS_SHARDS, STATUS_TIME, shard_of
from centralllm.audit.tests.conftest import make_record
from provisioning.models import Environment

pytestmark = pytest.mark.django_db
HOME = reverse("audit_explorer:home")
PROJECTS = ["alpha", "alpha", "beta", "gamma"]
USERS = ["ann", "bob", "cid"]


@pytest.fixture
def day(audited) -> list[dict]:
    """Two requests an hour over the last 23 hours in three projects (statuses 200, 429 and
    500), and two from 30 hours ago, outside the window; returns those inside, newest first."""
    inside = []
    for n in range(46):
        status = 500 if n % 7 == 3 else 429 if n % 11 == 5 else 200
        record = make_record(
            request_id=f"d{n:02d}",
            project=PROJECTS[n % 4],
            user=USERS[n % 3],
            request_type="embedding" if n % 5 == 0 else "chat",
            status=status,
            latency_ms=80.0 + 61 * n,
            created_at=NOW - timedelta(minutes=30 * n + 7),
        )
        ingest_record(record)
        inside.append(record)
    for n in range(2):
        ingest_record(make_record(request_id=f"old{n}", created_at=NOW - timedelta(hours=30)))
    return inside


def queries():
    """The DynamoDB calls made while the block runs: (operation, index, key condition values)."""
    calls = []
    dynamodb = aws.client("dynamodb")

    def note(model, params, **_):
        calls.append((model.name, params.get("IndexName"), params["ExpressionAttributeValues"]))

    dynamodb.meta.events.register("before-parameter-build", note, unique_id="overview-calls")
    return calls, lambda: dynamodb.meta.events.unregister(
        "before-parameter-build", unique_id="overview-calls"
    )


def newest(records: list[dict], count: int) -> list[str]:
    ordered = sorted(records, key=lambda r: (r["createdAt"], r["requestId"]), reverse=True)
    return [record["requestId"] for record in ordered[:count]]


def test_the_last_day_agrees_with_its_records_in_a_bounded_number_of_queries(audited, day):
    calls, stop = queries()
    try:
        found = overview.last_day(audited)
        everything = list(calls)
        del calls[:]
        lean = overview.last_day(audited, detail=False)  # the dashboard's
        dashboard = list(calls)
        del calls[:]
        known = overview.known_values(audited)  # the search form's suggestions
        suggestions = list(calls)
        assert overview.known_values(audited) == known
        assert overview.last_day(audited).requests == found.requests  # kept for a while
        assert calls == suggestions  # neither read again
    finally:
        stop()
    calls = everything

    errors = [r for r in day if r["status"] >= 400]
    assert found.error is None
    assert (found.requests, found.errors) == (len(day), len(errors))
    assert found.error_rate == len(errors) / len(day)
    assert found.tokens == sum(r["usage"]["totalTokens"] for r in day)
    histogram = Counter(rollups.latency_bucket(r["latencyMs"]) for r in day)
    assert found.p50_ms == rollups.percentile(histogram, 50)
    assert found.p95_ms == rollups.percentile(histogram, 95)
    assert sum(found.hourly) == len(day) and len(found.hourly) == 25  # every hour, as 24h
    assert sum(found.hourly_errors) == len(errors)

    by_project = Counter(r["project"] for r in day)
    assert [(p.name, p.requests) for p in found.projects] == [
        ("alpha", by_project["alpha"]),
        ("beta", by_project["beta"]),
        ("gamma", by_project["gamma"]),
    ]
    for project in found.projects:
        mine = [r for r in day if r["project"] == project.name]
        assert project.errors == sum(r["status"] >= 400 for r in mine)
        assert sum(project.hourly) == len(mine) and sum(project.hourly_errors) == project.errors
    assert found.users == sorted(
        Counter(r["user"] for r in day).items(), key=lambda pair: (-pair[1], pair[0])
    )
    assert (found.request_types, found.api_keys) == (["chat", "embedding"], ["key-1"])
    assert found.unattributed == 0 and found.more_projects == []

    # The newest across every status, merged over the status index's shards.
    assert [item["id"] for item in found.recent] == newest(day, overview.PAGE)
    assert [item["id"] for item in found.recent_errors] == newest(errors, overview.PAGE)

    # Only Queries: the rollups' base keys and the status index; never a Scan, no record read
    # by id. 40 for the status classes, 8 per project, 8 per status read for the newest.
    assert {(name, index) for name, index, _ in calls} == {("Query", None), ("Query", STATUS_TIME)}
    rollup_reads = [values for _, index, values in calls if index is None]
    status_reads = [values for _, index, values in calls if index == STATUS_TIME]
    assert len(rollup_reads) == 5 * ROLLUP_SHARDS + 3 * ROLLUP_SHARDS
    # Newest requests: 200, 429 and 500 seen in their hours; newest errors: 429 and 500.
    assert len(status_reads) == (3 + 2) * STATUS_SHARDS
    assert len(calls) == found.reads
    # The newest requests are read from the latest hours that hold 20 of them, not the day.
    twentieth = sorted(day, key=lambda r: r["createdAt"])[-overview.PAGE]["createdAt"]
    lows = sorted({values[":low"]["S"] for values in status_reads})
    assert lows[-1] == f"{twentieth[:13]}:00:00.000Z"  # the hour holding the 20th newest
    assert lows[0] == format_timestamp(found.start)  # the newest errors: fewer than 20

    # The dashboard reads the status classes only; the suggestions, the projects too.
    assert len(dashboard) == 5 * ROLLUP_SHARDS == lean.reads
    assert (lean.requests, lean.hourly, lean.projects) == (found.requests, found.hourly, [])
    assert len(suggestions) == (5 + 3) * ROLLUP_SHARDS
    assert known == {
        "projects": ["alpha", "beta", "gamma"],
        "users": ["ann", "bob", "cid"],
        "request_types": ["chat", "embedding"],
        "api_keys": ["key-1"],
    }


def test_an_environment_without_its_table_says_so_and_raises_nothing(db):
    bare = Environment.objects.create(
        name="bare", suffix="-bare", is_local=True, region=aws.region()
    )
    found = overview.last_day(bare)
    assert found.error.startswith("DynamoDB did not answer") and found.requests == 0


def test_hours_ingested_before_projects_were_counted_are_in_the_totals_only(audited, monkeypatch):
    with monkeypatch.context() as before:  # as the Lambda wrote them before issue 22
        before.setitem(rollups.BREAKDOWNS, "statusClass", ("status",))
        ingest_record(make_record(request_id="before", created_at=NOW - timedelta(hours=2)))
    ingest_record(make_record(request_id="after", created_at=NOW - timedelta(hours=1)))

    found = overview.last_day(audited)
    assert (found.requests, found.unattributed) == (2, 1)
    assert [(p.name, p.requests) for p in found.projects] == [("smoke-test", 2)]
    assert [item["id"] for item in found.recent] == ["after", "before"]


def test_projects_past_an_hours_cap_are_counted_unnamed_not_read_as_a_project(
    client, viewer, audited, monkeypatch
):
    """A status class's hour names at most BREAKDOWN_CAP projects and counts the rest as
    "(other)": that is no project, and the rollup named so is a caller's who sent it."""
    monkeypatch.setattr(rollups, "BREAKDOWN_CAP", 2)
    ids = (f"cap-{n}" for n in range(10_000))
    one_shard = (request_id for request_id in ids if shard_of(request_id, ROLLUP_SHARDS) == 0)
    at = NOW - timedelta(hours=1)
    for project in ("first", "second", "third", "fourth", "first"):
        ingest_record(make_record(request_id=next(one_shard), project=project, created_at=at))
    ingest_record(make_record(project="(other)", created_at=at - timedelta(hours=2)))

    found = overview.last_day(audited)
    assert [(p.name, p.requests) for p in found.projects] == [("first", 2), ("second", 1)]
    assert (found.unnamed, found.more_projects, found.requests) == (3, [], 6)

    client.force_login(viewer)
    page = client.get(HOME).content.decode()
    assert re.findall(r'<tr data-project="([^"]+)">', page) == ["first", "second"]
    assert "3 requests are of projects not named" in page


# The pages ---------------------------------------------------------------------------------


def test_the_audit_page_opens_on_the_last_day(client, viewer, audited, day):
    client.force_login(viewer)
    response = client.get(HOME)
    assert response.status_code == 200
    page = response.content.decode()

    assert f'data-figure="requests">{len(day)}<' in page
    rows = re.findall(r'<tr data-project="([^"]+)">(.*?)</tr>', page, re.S)
    assert [name for name, _ in rows] == ["alpha", "beta", "gamma"]
    for name, row in rows:
        assert f'href="/audit/traffic?environment={audited.name}&amp;project={name}' in row
        assert '<svg class="sparkline"' in row
    users = re.search(r'<table class="top-users">(.*?)</table>', page, re.S).group(1)
    assert "/audit/traffic?environment=" in users and "user=ann" in users
    recent = re.search(r'<table class="audit recent">(.*?)</table>', page, re.S).group(1)
    assert re.findall(r'data-request-id="([^"]+)"', recent) == newest(day, overview.PAGE)
    # Readable figures: d45, a newest error, took 80 + 61 * 45 = 2825 ms.
    assert ">2.8 s</td>" in page and "2825 ms</td>" not in page
    assert '<datalist id="known-projects"><option value="alpha"><option value="beta">' in page


def test_a_search_for_a_project_without_records_says_so_and_names_those_with(
    client, viewer, audited, day
):
    client.force_login(viewer)
    page = client.get(HOME, {"project": "nope"}).content.decode()
    message = re.search(r"<p class=\"message\" data-no-records>(.*?)</p>", page, re.S).group(1)
    assert "No records for project <code>nope</code>" in message
    assert "projects with traffic in the last 24 hours: " in message
    assert re.findall(r">(\w+)</a>", message) == ["alpha", "beta", "gamma"]
    assert 'href="?project=beta"' in message
    assert "0 shown" not in page and "chart-data" not in page

    partial = client.get(HOME, {"user": "nobody"}, headers={"HX-Request": "true"})
    assert "No records for user <code>nobody</code>" in partial.content.decode()
    assert 'id="audit-overview" hx-swap-oob="delete"' in partial.content.decode()


@pytest.mark.slow  # the dashboard's other figures: about 5 s
def test_the_dashboard_shows_each_environments_last_day(client, viewer, audited, day):
    client.force_login(viewer)
    page = client.get(reverse("dashboard")).content.decode()
    cell = re.search(r"<a class=\"last-day\"[^>]*>(.*?)</a>", page, re.S).group(1)
    errors = sum(r["status"] >= 400 for r in day)
    assert '<svg class="sparkline"' in cell
    assert f"{len(day)} requests" in cell and f"{errors} errors" in cell and "p95 " in cell
