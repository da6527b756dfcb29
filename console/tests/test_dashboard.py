"""The dashboard's own part of each environment: the live image and its age, and the alerts
that need someone, each linked to where it is fixed, as an admin and as a viewer sees them;
a source AWS does not answer still leaves a dashboard."""

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from console.tests.conftest import DIGEST
from provisioning.models import Run

pytestmark = pytest.mark.django_db

ALERT = re.compile(r'<li class="alert (\w+)"[^>]*>.*?<a href="([^"]+)">([^<]+)</a></li>', re.S)


def alerts_on(page: str) -> list[tuple[str, str, str]]:
    """(severity, url, text) of each alert the dashboard shows, in its order."""
    return ALERT.findall(page)


def test_an_admin_sees_each_alert_and_the_live_image_and_can_follow_them(
    client, troubled, admin_user
):
    client.force_login(admin_user)
    page = client.get(reverse("dashboard")).content.decode()

    shown = alerts_on(page)
    assert [severity for severity, _, _ in shown] == ["critical", "warning", "warning", "warning"]
    texts = " | ".join(text for _, _, text in shown)
    for expected in ("is incomplete: 2 missing", "at 90% of its quota", "1 dead letter waits",
                     "is stalled, last heard from 5 min ago"):  # fmt: skip
        assert expected in texts
    for _, url, _ in shown:
        assert client.get(url).status_code == 200, url

    image = troubled.resource_name("EcrRepository") + ":main"
    rollout = troubled.releases.get().run
    assert f'data-live-image="{image}"><a href="{rollout.get_absolute_url()}"><code>' in page
    assert f'<code title="{DIGEST}">sha256:ab12cd34…</code>' in page
    assert ">3 d ago</time>" in page


def test_a_viewer_sees_the_alerts_of_the_pages_they_may_open_and_can_follow_them(
    client, troubled, viewer
):
    client.force_login(viewer)
    page = client.get(reverse("dashboard")).content.decode()

    shown = alerts_on(page)
    assert len(shown) == 3 and "quota" not in page and "/api-keys/" not in page
    for _, url, _ in shown:
        assert client.get(url).status_code == 200, url


def test_sqs_down_still_renders_the_dashboard_with_that_alert(
    client, troubled, admin_user, monkeypatch
):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:1")
    client.force_login(admin_user)

    response = client.get(reverse("dashboard"))

    assert response.status_code == 200
    texts = [text for _, _, text in alerts_on(response.content.decode())]
    assert len(texts) == 5 and "is stalled" in texts[-1]
    assert any(text.startswith("could not read dead letters: Could not connect") for text in texts)


def test_a_validation_that_skipped_checks_is_not_shown_as_a_plain_pass(client, audited, viewer):
    """The environment's badge said "passed, 4 skipped" while the dashboard said a green
    "passed": the same run, read two ways."""
    run = Run.objects.create(
        environment=audited,
        kind="validate",
        status="succeeded",
        finished_at=timezone.now(),
        result={"checks": {}, "skipped": 4},
    )
    client.force_login(viewer)
    page = client.get(reverse("dashboard")).content.decode()

    cell = re.search(r'<a href="([^"]+)" class="([^"]+)" data-validation>([^<]+)</a>', page)
    assert cell.groups() == (run.get_absolute_url(), "status", "passed, 4 skipped")
    badge = client.get(reverse("provisioning:environment", args=[audited.name])).content.decode()
    assert '<span class="state">passed, 4 skipped</span>' in badge
