"""/metrics: who may scrape it, what a scrape says of the console's real state (read back with
prometheus_client's own parser), every gunicorn worker's requests in one scrape, and the
sample Grafana dashboard asking only for metrics that exist."""

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from ipaddress import ip_network

import django_rq
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api_access import api_keys
from centralllm import aws
from devtools import testing
from devtools.services import ROOT
from provisioning import state
from provisioning.models import Run

TOKEN = "scrape-token-for-the-tests"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
DASHBOARD = ROOT / "docs" / "grafana" / "central-llm-console.json"


def samples(text: str) -> dict[tuple, float]:
    """Every sample of a scrape, by its name and its labels."""
    return {
        (sample.name, *sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scraped: dict[tuple, float], name: str, **labels: str) -> float | None:
    return scraped.get((name, *sorted(labels.items())))


def scrape(base_url: str) -> str:
    request = urllib.request.Request(f"{base_url}/metrics", headers=BEARER)
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode()


def test_metrics_are_off_until_a_token_or_a_network_is_set(client, settings):
    settings.METRICS_TOKEN, settings.METRICS_NETWORKS = "", []

    response = client.get("/metrics", headers=BEARER)

    assert response.status_code == 404
    assert b"set CONSOLE_METRICS_TOKEN or CONSOLE_METRICS_NETWORKS" in response.content


def test_a_missing_or_wrong_token_is_refused(client, settings):
    settings.METRICS_TOKEN, settings.METRICS_NETWORKS = TOKEN, []
    wrong = [{}, {"Authorization": "Bearer not-it"}, {"Authorization": f"Basic {TOKEN}"}]
    wrong.append({"Authorization": "Bearer jeton-été"})  # non-ASCII: refused, not a 500

    for headers in wrong:
        response = client.get("/metrics", headers=headers)

        assert response.status_code == 401, headers
        assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
def test_only_the_networks_may_scrape_and_not_through_a_proxy(client, settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_NETWORKS = [ip_network("10.0.0.0/16")]

    def status(address: str, **headers: str) -> int:
        return client.get(
            "/metrics", headers={**BEARER, **headers}, REMOTE_ADDR=address
        ).status_code

    assert status("10.1.0.5") == 403
    # A load balancer's own address may be in the network: what it forwards is refused.
    assert status("10.0.0.7", **{"X-Forwarded-For": "10.0.0.9"}) == 403
    assert status("10.0.0.7") == 200
    assert status("::ffff:10.0.0.7") == 200  # an IPv4 scraper seen by a dual-stack socket
    settings.METRICS_TOKEN = ""  # the network alone
    assert status("10.0.0.7") == 200


def test_a_scrape_shows_the_console_state(live_server, settings, redis_conn, troubled):
    """``troubled``: a key at 90% of its quota, a dead letter waiting, yesterday incomplete, a
    drift running; here also a failed plan, a job waiting in the audit queue, and two events
    in the dead-letter queue as the environment page last read them."""
    settings.METRICS_TOKEN = TOKEN
    Run.objects.create(environment=troubled, kind="plan", status="failed", started_by_name="otto")
    django_rq.get_queue("audit").enqueue("console.health.is_alive")
    api_keys.note_alerts(troubled)  # the keys' schedule, every minute
    sqs = aws.client("sqs")
    queue_url = sqs.create_queue(QueueName=troubled.resource_name("DlqName"))["QueueUrl"]
    for body in ("one", "two"):
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    state.live(troubled)  # a page read it
    now = time.time()

    scraped = samples(scrape(live_server.url))
    env = troubled.name

    assert value(scraped, "console_runs", environment=env, kind="plan", status="failed") == 1
    assert value(scraped, "console_runs", environment=env, kind="drift", status="running") == 1
    assert value(scraped, "rq_jobs", queue="audit", status="queued") == 1
    assert value(scraped, "console_rq_oldest_queued_job_age_seconds", queue="audit") > 0
    assert value(scraped, "console_rq_oldest_queued_job_age_seconds", queue="default") == 0
    assert value(scraped, "console_dead_letters_waiting", environment=env) == 1
    assert value(scraped, "console_dead_letter_queue_messages", environment=env) == 2
    read_at = value(scraped, "console_aws_state_read_timestamp_seconds", environment=env)
    assert now - 60 < read_at <= now
    assert value(scraped, "console_audit_days_incomplete", environment=env) == 1
    checked = value(scraped, "console_audit_days_checked_timestamp_seconds", environment=env)
    assert now - 60 < checked <= now
    assert value(scraped, "console_api_keys_near_quota", environment=env, level="80") == 1
    assert value(scraped, "console_api_keys_near_quota", environment=env, level="95") == 0
    noted = value(scraped, "console_api_keys_noted_timestamp_seconds", environment=env)
    assert now - 60 < noted <= now
    sources = {key[1][1]: found for key, found in scraped.items() if key[0].endswith("source_up")}
    assert set(sources.values()) == {1}, sources


@pytest.mark.slow
def test_a_scrape_counts_the_requests_of_every_gunicorn_worker(transactional_db, tmp_path):
    """Each worker serves one request and is replaced (--max-requests 1): the scrape, answered
    by a worker that served nothing else, still counts the three before it."""
    listener = socket.create_server(("127.0.0.1", 0))
    host, port = listener.getsockname()
    log = tmp_path / "gunicorn.log"
    env = {
        **os.environ,
        "DATABASE_URL": testing.test_database_url(),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "CONSOLE_METRICS_TOKEN": TOKEN,
    }
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "console.wsgi",
        "-c",
        "python:console.gunicorn_conf",
    ]
    options = ["--bind", f"fd://{listener.fileno()}", "--workers", "2", "--max-requests", "1"]
    # --preload: the app loads once and each new worker is a fork, ready at once; no control
    # socket, whose default path every gunicorn on the machine shares.
    options += ["--preload", "--no-control-socket"]
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [*command, *options],
            env=env,
            pass_fds=[listener.fileno()],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    listener.close()  # gunicorn holds it now
    base_url = f"http://{host}:{port}"
    try:
        for _ in range(3):
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=30) as response:
                assert response.status == 200
        scraped = samples(scrape(base_url))
    finally:
        server.terminate()
        server.wait(10)

    healthz = {"method": "GET", "view": "healthz"}
    by_status = "django_http_responses_total_by_status_view_method_total"
    assert value(scraped, by_status, status="200", **healthz) == 3, log.read_text()
    latency = "django_http_requests_latency_seconds_by_view_method_count"
    assert value(scraped, latency, **healthz) == 3


_SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
_METRIC = re.compile(r"\b(?:console|django_http|rq)_[a-z0-9_]+")


@pytest.mark.django_db
def test_the_grafana_dashboard_asks_only_for_exported_metrics(client, settings, redis_conn):
    settings.METRICS_TOKEN, settings.METRICS_NETWORKS = TOKEN, []
    client.get("/healthz")
    text = client.get("/metrics", headers=BEARER).content.decode()
    exported = set()
    for family in text_string_to_metric_families(text):
        exported |= {family.name, *(family.name + end for end in _SUFFIXES.get(family.type, []))}
    panels = json.loads(DASHBOARD.read_text())["panels"]

    asked = {
        name
        for panel in panels
        for target in panel.get("targets", [])
        for name in _METRIC.findall(target["expr"])
    }

    assert asked, "the dashboard has no queries"
    assert all(panel.get("targets") for panel in panels if panel["type"] != "row")
    assert asked <= exported, f"not exported: {sorted(asked - exported)}"
