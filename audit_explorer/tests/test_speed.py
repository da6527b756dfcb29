"""The speed section of the project and user pages: TTFT, time per output token, tokens/s,
and what each release did to them, from records ingested as the Lambda ingests them."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse

from audit_explorer.tests.conftest import NOW
from centralllm.audit import rollups
from centralllm.audit.ingest import ingest_record
from centralllm.audit.tests.conftest import make_record
from core.templatetags.figures import duration_ms
from provisioning.models import Release

pytestmark = pytest.mark.django_db
TRAFFIC = reverse("audit_explorer:traffic")
LIVE = NOW.replace(minute=0, second=0) - timedelta(hours=10)  # the hour release v2 went live


def release(environment, tag: str, went_live, outcome: str = "replaced") -> Release:
    made = Release.objects.create(
        environment=environment,
        image_tag=tag,
        image_digest="sha256:1",
        task_definition="arn:aws:ecs:eu-central-1:123456789012:task-definition/x:1",
        outcome=outcome,
    )
    # A rollout of a quarter of an hour.
    started = went_live - timedelta(minutes=15)
    Release.objects.filter(pk=made.pk).update(started_at=started, finished_at=went_live)
    return made


def ingest(at, n: int, **fields) -> None:
    for i in range(n):
        ingest_record(
            make_record(
                project="search",
                user="ann",
                created_at=at + timedelta(seconds=i),
                **{"usage": {"prompt_tokens": 9, "completion_tokens": 50}, **fields},
            )
        )


def test_the_project_page_says_what_each_release_did_to_its_speed(
    client, viewer, audited, monkeypatch
):
    earlier = release(audited, "v1", LIVE - timedelta(hours=20, minutes=-20))
    v2 = release(audited, "v2", LIVE + timedelta(minutes=20), outcome="live")
    # Before v2: TTFT 200 ms, then 50 tokens in 1 s; after: 400 ms, then 50 in 1.5 s, and
    # three errors. Around v1, five streams only.
    ingest(LIVE - timedelta(hours=3), 30, stream=True, ttft_ms=200, latency_ms=1200)
    ingest(LIVE + timedelta(hours=3), 30, stream=True, ttft_ms=400, latency_ms=1900)
    ingest(LIVE + timedelta(hours=3, minutes=5), 3, status=500, latency_ms=30, usage=None)
    ingest(LIVE - timedelta(hours=22), 5, stream=True, ttft_ms=200, latency_ms=1200)
    # One request ingested before speed was counted, outside both windows.
    monkeypatch.setattr(rollups, "speed_increments", lambda record: {})
    ingest(NOW - timedelta(hours=1), 1, stream=True, ttft_ms=200, latency_ms=1200)
    client.force_login(viewer)

    page = client.get(TRAFFIC, {"project": "search", "range": "7d"}).content.decode()

    p95 = duration_ms(rollups.bucket_upper_ms(rollups.latency_bucket(400)))
    assert f"<dt>TTFT p95</dt><dd>{p95}</dd>" in page
    assert "<dt>Time per output token</dt><dd>25 ms</dd>" in page  # 80 s for 3,250 tokens
    assert "1 request of this range was ingested before speed was counted" in page
    [after_v2] = re.findall(rf"release {v2.pk} \(v2, live.*?for project search\.", page, re.S)
    assert "TTFT p95 <strong>+100%</strong>" in after_v2  # one doubling: eight buckets up
    assert "time per output token <strong>+50%</strong> (20 ms → 30 ms)" in after_v2
    assert "error rate <strong>+9.1 points</strong> (0.0% → 9.1%)" in after_v2
    [after_v1] = re.findall(rf"release {earlier.pk} \(v1, live.*?for project search\.", page, re.S)
    assert "too few requests to compare (5 before, 0 after) for project" in after_v1
    svg = re.search(r'<svg class="trend".*?</svg>', page, re.S).group(0)
    assert svg.count('<line class="marker"') == 2
    assert f"<title>release {v2.pk} (v2) live</title>" in svg

    user = client.get(TRAFFIC, {"user": "ann", "range": "7d"}).content.decode()
    assert f"<dt>TTFT p95</dt><dd>{p95}</dd>" in user
    assert "TTFT p95 <strong>+100%</strong>" in user and "for user ann." in user
