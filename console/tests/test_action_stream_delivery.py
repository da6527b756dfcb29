"""An action made in the console reaches its audit bucket through the real schedule: the
cron job of ``console.cron``, enqueued as RQ's cron scheduler does, run by a real
``manage.py rqworker``, writing to the moto server; and after 30 s without S3, every action
arrives, once."""

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
from django.urls import reverse
from django.utils import timezone
from django_rq.cron import DjangoCronScheduler

from audit_explorer import action_stream
from audit_explorer.models import ActionBatch
from core.models import Action
from devtools.testing import shipped_actions
from inference.tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.django_db(transaction=True)

ZONES = ("Europe/Berlin", "Asia/Tokyo")


@contextmanager
def _scheduled(redis_conn) -> Iterator[None]:
    """The shipping job of ``console.cron`` enqueued when it is due, as ``manage.py rqcron``
    enqueues it (the other jobs of the schedule are not this test's)."""
    scheduler = DjangoCronScheduler(connection=redis_conn)
    scheduler.load_config_from_file("console.cron")
    [job] = [job for job in scheduler.get_jobs() if job.func == action_stream.ship]
    assert job.interval <= 30  # an action is in S3 within a minute, S3 willing
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.2):
            if job.should_run():
                job.enqueue(redis_conn)
                job.set_enqueue_time(timezone.now())

    ticking = threading.Thread(target=tick, daemon=True)
    ticking.start()
    try:
        yield
    finally:
        stop.set()
        ticking.join()


def _choose_timezone(client, zone: str) -> Action:
    """An action made through the console's page: a preference, which every environment's
    audit bucket receives."""
    response = client.post(reverse("set-timezone"), {"timezone": zone, "next": "/"})
    assert response.status_code == 302
    return Action.objects.filter(verb="preference.timezone").latest("id")


def _shipped_ids(bucket: str) -> list[int]:
    return sorted(line["id"] for lines in shipped_actions(bucket).values() for line in lines)


def _wait_for(ids: list[int], bucket: str, timeout: float) -> float:
    """Seconds until ``bucket`` holds exactly the actions ``ids``."""
    started = time.monotonic()
    while _shipped_ids(bucket) != sorted(ids):
        assert time.monotonic() - started < timeout, f"{ids} not in s3://{bucket} in {timeout} s"
        time.sleep(0.5)
    return time.monotonic() - started


def test_an_action_made_in_the_console_is_in_its_audit_bucket_within_a_minute(
    bucketed_environment, admin_user, client, rq_worker, redis_conn
):
    [(_, bucket)] = action_stream.audit_buckets(bucketed_environment("shipped"))
    client.force_login(admin_user)

    with _scheduled(redis_conn):
        action = _choose_timezone(client, "Europe/Berlin")
        assert _wait_for([action.pk], bucket, timeout=60) < 60

    [line] = next(iter(shipped_actions(bucket).values()))
    assert (line["verb"], line["actor_name"], line["after"]) == (
        "preference.timezone",
        "ada",
        {"timezone": "Europe/Berlin"},
    )


OUTAGE_SECONDS = 30


@pytest.fixture
def s3_behind_a_proxy(monkeypatch) -> TcpProxy:
    """The console's S3 reached through a proxy that can play an unreachable S3 (set before
    the worker starts, so that the worker reaches it the same way)."""
    proxy = TcpProxy(urlsplit(os.environ["AWS_ENDPOINT_URL"]).port).up()
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    return proxy


@pytest.mark.slow
def test_after_30_seconds_without_s3_every_action_arrives_exactly_once(
    bucketed_environment, s3_behind_a_proxy, admin_user, client, rq_worker, redis_conn
):
    proxy = s3_behind_a_proxy
    [(_, bucket)] = action_stream.audit_buckets(bucketed_environment("outage"))
    client.force_login(admin_user)

    with _scheduled(redis_conn):
        made = [_choose_timezone(client, ZONES[0]).pk]
        _wait_for(made, bucket, timeout=60)

        proxy.down()
        deadline = time.monotonic() + OUTAGE_SECONDS
        while time.monotonic() < deadline:
            made.append(_choose_timezone(client, ZONES[len(made) % 2]).pk)
            time.sleep(3)
        failed = ActionBatch.objects.filter(shipped_at=None).exclude(last_error="")
        assert failed.exists(), "no PUT was tried during the outage"
        assert len(made) >= 10
        proxy.up()
        made.append(_choose_timezone(client, ZONES[0]).pk)

        _wait_for(made, bucket, timeout=60)

    # Every version of every object: a batch written twice would show its lines twice.
    assert _shipped_ids(bucket) == sorted(made)
    assert not ActionBatch.objects.filter(shipped_at=None).exists()
    proxy.down()
