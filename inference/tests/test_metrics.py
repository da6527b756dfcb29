"""The audit backlog on /metrics (the serving process) and as CloudWatch embedded metrics (the
uploader)."""

import json
import os
import time
from urllib.parse import urlsplit

import httpx
from prometheus_client import make_asgi_app

from inference.middleware import AuditMiddleware
from inference.tests import fake_vllm
from inference.tests.conftest import (
    HEADERS,
    audit_metrics,
    create_buckets,
    new_uploader,
    new_writer,
    serve,
    wait_for_metrics,
)
from inference.tests.tcp_proxy import TcpProxy

CHAT = {"model": "ministral-8b-instruct", "messages": [{"role": "user", "content": "ping"}]}
# What vLLM serves on /metrics: prometheus_client's default registry.
METRICS = make_asgi_app()


async def vllm_with_metrics(scope, receive, send) -> None:
    if scope["type"] == "http" and scope["path"] == "/metrics":
        await METRICS(scope, receive, send)
    else:
        await fake_vllm.app(scope, receive, send)


def test_the_backlog_on_metrics_grows_while_s3_is_away_and_drains_when_it_is_back(
    tmp_path, monkeypatch
):
    buckets = create_buckets()
    proxy = TcpProxy(urlsplit(os.environ["AWS_ENDPOINT_URL"]).port).up()
    proxy.down()
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    writer = new_writer(buckets, tmp_path / "spool")
    try:
        with serve(AuditMiddleware(vllm_with_metrics, writer=writer)) as url:
            for _ in range(3):
                response = httpx.post(f"{url}/v1/chat/completions", json=CHAT, headers=HEADERS)
                assert response.status_code == 200
            waiting = wait_for_metrics(
                url,
                lambda figures: (
                    figures["llm_audit_spool_records"] == 3
                    and figures["llm_audit_delivery_failures_total"] > 0
                ),
                "three records waiting and failed deliveries",
            )
            assert waiting["llm_audit_delivered_records_total"] == 0
            time.sleep(1)
            later = audit_metrics(url)
            oldest = "llm_audit_oldest_unsent_seconds"
            assert later[oldest] >= waiting[oldest] + 1 > 1

            proxy.up()
            drained = wait_for_metrics(
                url,
                lambda figures: figures["llm_audit_spool_records"] == 0,
                "an empty spool",
            )
    finally:
        writer.close()
    assert drained[oldest] == 0
    assert drained["llm_audit_delivered_records_total"] == 3
    assert drained["llm_audit_held_records"] == drained["llm_audit_lost_records_total"] == 0
    assert len(buckets.records()) == 3


def test_the_uploader_reports_the_backlog_as_embedded_metrics(
    tmp_path, buckets, monkeypatch, capsys
):
    monkeypatch.setenv("AUDIT_ENVIRONMENT", "staging")
    spool = tmp_path / "spool"
    uploader = new_uploader(buckets, spool)
    fake_vllm.spool_chats(spool, ["sent-1", "sent-2", "sent-3"], time.time(), HEADERS)
    assert uploader.deliver()
    fake_vllm.spool_chats(spool, ["waits-1", "waits-2"], time.time() - 30, HEADERS)
    uploader.report()
    uploader.report()

    first, second = map(json.loads, capsys.readouterr().out.splitlines())
    assert first["_aws"]["CloudWatchMetrics"] == [
        {
            "Namespace": "CentralLLM/Audit",
            "Dimensions": [["Environment"]],
            "Metrics": [
                {"Name": "SpoolRecords", "Unit": "Count"},
                {"Name": "SpoolOldestUnsentSeconds", "Unit": "Seconds"},
                {"Name": "DeliveredRecords", "Unit": "Count"},
                {"Name": "DeliveryFailures", "Unit": "Count"},
                {"Name": "QuarantinedRecords", "Unit": "Count"},
            ],
        }
    ]
    assert first["Environment"] == "staging"
    counts = ("SpoolRecords", "DeliveredRecords", "DeliveryFailures", "QuarantinedRecords")
    assert [first[name] for name in counts] == [2, 3, 0, 0]
    assert 30 <= first["SpoolOldestUnsentSeconds"] < 40
    # Counts are what happened since the line before: CloudWatch adds them up.
    assert (second["SpoolRecords"], second["DeliveredRecords"]) == (2, 0)
