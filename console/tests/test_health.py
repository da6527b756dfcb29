import pytest
from django.urls import reverse


def _healthz(client):
    response = client.get(reverse("healthz"))
    return response.status_code, response.json()


@pytest.mark.django_db
def test_healthz_without_a_worker_is_degraded(client, redis_conn):
    status, body = _healthz(client)

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
def test_healthz_sees_a_running_worker(client, rq_worker):
    status, body = _healthz(client)

    assert status == 200, body
    assert body["status"] == "ok"
    assert body["checks"]["workers"]["detail"] == "1 running"


@pytest.mark.django_db
def test_healthz_reports_redis_down(client, settings):
    settings.RQ_QUEUES = {
        name: {**config, "URL": "redis://127.0.0.1:1/0"}
        for name, config in settings.RQ_QUEUES.items()
    }

    status, body = _healthz(client)

    assert status == 503
    assert not body["checks"]["redis"]["ok"]
    assert body["checks"]["redis"]["detail"].startswith("unreachable")
    assert body["checks"]["workers"]["detail"] == "unknown: Redis is unreachable"


@pytest.mark.django_db
def test_healthz_reports_aws_down(client, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")

    status, body = _healthz(client)

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
