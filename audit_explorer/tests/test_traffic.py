"""Per-project and per-user pages, from the rollups; the timezone a user reads times in."""

import json
import re
from collections import Counter
from datetime import timedelta

import pytest
from django.urls import reverse

from audit_explorer import traffic
from audit_explorer.tests.conftest import NOW, dynamodb_calls
from centralllm import aws
from centralllm.audit.table import ROLLUP_SHARDS
from console.models import Preference
from core.models import Action
from provisioning.models import Environment, Release

pytestmark = pytest.mark.django_db
TRAFFIC = reverse("audit_explorer:traffic")


def chart_data(page: str) -> dict:
    found = re.search(r'<script id="chart-data" type="application/json">(.*?)</script>', page)
    return json.loads(found.group(1))


def top_rows(page: str, breakdown: str) -> list[tuple[str, int]]:
    table = re.search(rf'<table class="top {breakdown}">(.*?)</table>', page, re.S).group(1)
    return [
        (name, int(count))
        for name, count in re.findall(r"<a [^>]*>([^<]+)</a></td>\s*<td[^>]*>(\d+)</td>", table)
    ]


def test_a_project_page_agrees_with_the_records_and_reads_only_rollups(
    client, viewer, seeded, audited
):
    client.force_login(viewer)
    calls, stop = dynamodb_calls()
    try:
        page = client.get(TRAFFIC, {"project": "alpha", "range": "24h"}).content.decode()
    finally:
        stop()
    in_range = [
        r for r in seeded.values() if r["createdAt"] >= (NOW - timedelta(hours=24)).isoformat()
    ]
    # The base keys of the rollups, no index: the project's, then for its GPU cost the five
    # status classes' and its own again (costs.ledger).
    assert calls == [("Query", None)] * ROLLUP_SHARDS * (1 + 5 + 1)
    assert f"<strong>{len(in_range)}</strong> requests" in page
    assert f"errors {sum(r['status'] >= 400 for r in in_range)}" in page
    users = Counter(r["user"] for r in in_range)
    assert top_rows(page, "user") == sorted(users.items(), key=lambda kv: (-kv[1], kv[0]))
    assert top_rows(page, "requestType") == [("chat", 5), ("embedding", 1)]
    assert f"{TRAFFIC}?environment={audited.name}&amp;user=ann&amp;range=24h" in page
    charts = chart_data(page)
    assert sum(charts["hours"]["requests"]) == len(in_range)
    assert sum(charts["hours"]["tokens"]) == sum(r["usage"]["totalTokens"] for r in in_range)

    month = client.get(TRAFFIC, {"project": "alpha", "range": "30d"}).content.decode()
    assert f"<strong>{len(seeded)}</strong> requests" in month  # r7, 30 hours ago, too


def test_a_link_from_before_the_value_moved_to_the_query_string_still_works(client, viewer):
    client.force_login(viewer)
    response = client.get("/audit/projects/team/alpha", {"range": "24h"})
    assert response.status_code == 301
    assert response["Location"] == f"{TRAFFIC}?range=24h&project=team%2Falpha"


def test_a_user_page_counts_its_projects(client, viewer, seeded):
    client.force_login(viewer)
    page = client.get(TRAFFIC, {"user": "ann", "range": "7d"}).content.decode()
    assert top_rows(page, "project") == [("alpha", 4)]
    assert "&amp;project=alpha&amp;range=7d" in page


def test_a_bad_range_gets_a_message(client, viewer, audited):
    client.force_login(viewer)
    response = client.get(TRAFFIC, {"project": "alpha", "range": "1y"})
    assert response.status_code == 200
    assert "range &#x27;1y&#x27;: one of 24h, 7d, 30d" in response.content.decode()


def test_the_environments_rollouts_of_the_range_are_marked_on_the_charts(
    client, viewer, seeded, audited
):
    other = Environment.objects.create(name="other", suffix="-other", is_local=True)
    for environment, tag in ((audited, "0123abc"), (other, "fedcba9")):
        Release.objects.create(
            environment=environment,
            image_tag=tag,
            image_digest="sha256:1",
            task_definition="arn:aws:ecs:eu-central-1:123456789012:task-definition/x:1",
            outcome="live",
        )
    client.force_login(viewer)
    home = reverse("audit_explorer:home")
    page = client.get(home, {"project": "alpha", "environment": audited.name}).content.decode()
    [marker] = chart_data(page)["markers"]
    assert marker["label"] == f"{audited.name}: 0123abc (live)"
    assert f"Rollouts in this range: {audited.name}: 0123abc (live)" in page


def test_times_show_in_the_timezone_the_user_picked(client, viewer, seeded):
    client.force_login(viewer)
    home = reverse("audit_explorer:home")
    record = seeded["r1"]
    utc = client.get(home, {"request_id": "r1"}).content.decode()
    assert f"{record['createdAt'][:10]} {record['createdAt'][11:23]} UTC" in utc

    response = client.post(
        reverse("set-timezone"), {"timezone": "Asia/Tokyo", "next": f"{home}?request_id=r1"}
    )
    assert response.status_code == 302 and response["Location"] == f"{home}?request_id=r1"
    tokyo = client.get(home, {"request_id": "r1"}).content.decode()
    shown = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) JST", tokyo).group(1)
    assert shown[11:13] == f"{(int(record['createdAt'][11:13]) + 9) % 24:02d}"
    assert Preference.objects.get(user=viewer).timezone == "Asia/Tokyo"
    action = Action.objects.get(verb="preference.timezone")
    assert (action.actor_name, action.after) == ("vera", {"timezone": "Asia/Tokyo"})

    client.logout()
    client.force_login(viewer)  # a new session reads the stored choice
    assert " JST" in client.get(home, {"request_id": "r1"}).content.decode()


def test_an_unknown_timezone_or_a_foreign_next_is_refused(client, viewer):
    client.force_login(viewer)
    response = client.post(
        reverse("set-timezone"), {"timezone": "Mars/Olympus", "next": "https://evil.example/"}
    )
    assert response.status_code == 302 and response["Location"] == "/"
    page = client.get("/").content.decode()
    assert "is not a timezone name like Europe/Berlin" in page
    assert not Preference.objects.filter(user=viewer).exists()


def test_settled_days_are_read_once_then_kept(seeded, audited):
    end = NOW
    start = NOW - timedelta(days=3)
    starts = []
    dynamodb = aws.client("dynamodb")

    def note(params, **_):
        starts.append(params["ExpressionAttributeValues"][":start"]["S"])

    dynamodb.meta.events.register("before-parameter-build.dynamodb.Query", note, unique_id="starts")
    try:
        first = traffic.traffic("project", "alpha", start, end, environment=audited)
        starts_first, starts[:] = list(starts), []
        second = traffic.traffic("project", "alpha", start, end, environment=audited)
    finally:
        dynamodb.meta.events.unregister("before-parameter-build.dynamodb.Query", unique_id="starts")
    assert second["requests"] == first["requests"] == len(seeded)
    assert second["series"] == first["series"] and second["top"] == first["top"]
    assert min(starts_first) == f"{start:%Y-%m-%d}T00"  # the first day read whole
    settled_until = (NOW - traffic.SETTLED).replace(hour=0, minute=0, second=0, microsecond=0)
    assert min(starts) >= max(f"{settled_until:%Y-%m-%dT%H}", f"{start:%Y-%m-%dT%H}")
