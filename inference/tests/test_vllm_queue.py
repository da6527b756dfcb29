"""vLLM's queue per task, read from a real HTTP server that serves what vLLM serves on /metrics,
and written as embedded-metric-format lines."""

import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from inference.tests.conftest import emf_documents
from inference.vllm_queue import QueueReporter

SAMPLE = (Path(__file__).parent / "vllm_metrics.txt").read_bytes()
ROOT = Path(__file__).resolve().parents[2]


class _VllmMetrics(BaseHTTPRequestHandler):
    available = True  # False: vLLM answers 503, as while it restarts its engine

    def do_GET(self):
        if self.path != "/metrics" or not self.available:
            self.send_error(503 if self.path == "/metrics" else 404)
            return
        self.send_response(200)
        self.send_header("content-type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("content-length", str(len(SAMPLE)))
        self.end_headers()
        self.wfile.write(SAMPLE)

    def log_message(self, *args):
        pass


@pytest.fixture
def vllm() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_VllmMetrics,), {}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def metrics_url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_port}/metrics"


def test_the_queue_is_one_line_summed_over_engines(vllm, capsys, monkeypatch):
    monkeypatch.setenv("AUDIT_ENVIRONMENT", "staging")

    assert QueueReporter(metrics_url(vllm)).report()

    (document,) = emf_documents(capsys.readouterr().out, "vllm_queue")
    assert document["_aws"]["CloudWatchMetrics"] == [
        {
            "Namespace": "CentralLLM/Serving",
            "Dimensions": [["Environment"]],
            "Metrics": [
                {"Name": "RequestsWaiting", "Unit": "Count"},
                {"Name": "RequestsRunning", "Unit": "Count"},
                {"Name": "RequestsInFlight", "Unit": "Count"},
            ],
        }
    ]
    # Engines 0 and 1: 3 + 2 waiting, 7 + 5 running; waiting_by_reason is another gauge.
    assert {name: value for name, value in document.items() if name != "_aws"} == {
        "Environment": "staging",
        "event": "vllm_queue",
        "RequestsWaiting": 5,
        "RequestsRunning": 12,
        "RequestsInFlight": 17,
    }


def test_an_outage_writes_nothing_and_warns_once(vllm, capsys, caplog):
    reporter = QueueReporter(metrics_url(vllm))
    caplog.set_level(logging.INFO, logger="inference.vllm_queue")
    vllm.RequestHandlerClass.available = False
    assert not reporter.report()  # still loading: said once, as information
    vllm.RequestHandlerClass.available = True
    assert reporter.report()
    vllm.RequestHandlerClass.available = False
    assert [reporter.report() for _ in range(3)] == [False] * 3
    vllm.RequestHandlerClass.available = True
    assert reporter.report()

    assert len(emf_documents(capsys.readouterr().out, "vllm_queue")) == 2  # no zeros between
    said = [(record.levelname, record.getMessage()) for record in caplog.records]
    assert [level for level, _ in said] == ["INFO", "WARNING", "WARNING"]
    assert "503" in said[1][1] and "no datapoints" in said[1][1]
    assert "read again" in said[2][1]


def test_the_reader_runs_as_the_entrypoint_starts_it(vllm, monkeypatch):
    """``python -m inference.vllm_queue URL``, as a process of its own: its first line comes at
    once, the next after ``serving.QUEUE_INTERVAL_SECONDS``."""
    env = {"PYTHONPATH": str(ROOT), "AUDIT_ENVIRONMENT": "production", "PATH": "/usr/bin:/bin"}
    reader = subprocess.Popen(
        [sys.executable, "-m", "inference.vllm_queue", metrics_url(vllm)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        (document,) = emf_documents(reader.stdout.readline(), "vllm_queue")
    finally:
        reader.kill()
        reader.wait()
    assert (document["Environment"], document["RequestsInFlight"]) == ("production", 17)
