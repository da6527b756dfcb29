import pytest
from django.urls import reverse

from centralllm import aws
from console import health


@pytest.fixture
def signed_in(client, viewer):
    client.force_login(viewer)
    return client


def _healthz(client):
    response = client.get(reverse("health-checks"))
    return response.status_code, response.json()


@pytest.mark.django_db
def test_the_anonymous_probe_says_only_up_and_needs_no_worker_nor_aws(client, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")  # AWS down, no worker
    response = client.get(reverse("healthz"))
    assert (response.status_code, response.json()) == (200, {"status": "up"})
    assert client.get(reverse("health-checks")).status_code == 302  # details: sign in


@pytest.mark.django_db
def test_the_anonymous_probe_is_down_without_its_database(client, monkeypatch):
    monkeypatch.setattr(
        health, "check_database", lambda: health.Check("database", "Database", False, "gone")
    )
    response = client.get(reverse("healthz"))
    assert (response.status_code, response.json()) == (503, {"status": "down"})


@pytest.mark.django_db
def test_the_aws_check_is_one_sts_call_per_period(signed_in):
    calls = []
    sts = aws.client("sts", connect_timeout=2, read_timeout=5, max_attempts=1)
    sts.meta.events.register("before-call", lambda **_: calls.append(1), unique_id="n")
    try:
        for _ in range(3):
            _healthz(signed_in)
    finally:
        sts.meta.events.unregister("before-call", unique_id="n")
    assert len(calls) == 1


@pytest.mark.django_db
def test_healthz_without_a_worker_is_degraded(signed_in, redis_conn):
    status, body = _healthz(signed_in)

    assert status == 503
    assert body["status"] == "degraded"
    checks = body["checks"]
    assert checks["database"]["ok"] and checks["redis"]["ok"] and checks["aws"]["ok"]
    assert checks["workers"] == {
        "name": "workers",
        "label": "Workers",
        "ok": False,
        "detail": "no RQ worker is running",
    }


@pytest.mark.django_db
def test_healthz_sees_a_running_worker(signed_in, rq_worker):
    status, body = _healthz(signed_in)

    assert status == 200, body
    assert body["status"] == "ok"
    assert body["checks"]["workers"]["detail"] == "1 running"


@pytest.mark.django_db
def test_healthz_reports_redis_down(signed_in, settings):
    settings.RQ_QUEUES = {
        name: {**config, "URL": "redis://127.0.0.1:1/0"}
        for name, config in settings.RQ_QUEUES.items()
    }

    status, body = _healthz(signed_in)

    assert status == 503
    assert not body["checks"]["redis"]["ok"]
    assert body["checks"]["redis"]["detail"].startswith("unreachable")
    assert body["checks"]["workers"]["detail"] == "unknown: Redis is unreachable"


@pytest.mark.django_db
def test_healthz_reports_aws_down(signed_in, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")

    status, body = _healthz(signed_in)

    assert status == 503
    assert not body["checks"]["aws"]["ok"]
    assert body["checks"]["aws"]["detail"].startswith("http://127.0.0.1:1:")


@pytest.mark.django_db
def test_dashboard_shows_badges_and_htmx_gets_only_the_partial(client, viewer, redis_conn):
    client.force_login(viewer)

    page = client.get(reverse("dashboard"))
    partial = client.get(reverse("dashboard"), headers={"HX-Request": "true"})

    assert page.status_code == 200
    assert b"<nav" in page.content and b'data-check="workers"' in page.content
    assert partial.status_code == 200
    assert b"<nav" not in partial.content
    assert partial.content.count(b"data-check=") == 4
