"""Delivery of records when S3 goes away, when the server stops, and across restarts."""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client import REGISTRY

from centralllm import aws
from devtools import services
from devtools.testing import create_bucket
from inference.middleware import AuditMiddleware
from inference.tests import fake_vllm
from inference.tests.conftest import HEADERS, create_buckets, new_writer, serve
from inference.tests.tcp_proxy import TcpProxy
from inference.writer import AuditWriter, spooled_request_ids

CHAT = {"model": "ministral-8b-instruct", "messages": [{"role": "user", "content": "ping"}]}


def _chat(url: str) -> str:
    response = httpx.post(f"{url}/v1/chat/completions", json=CHAT, headers=HEADERS, timeout=10)
    assert response.status_code == 200
    return response.headers["x-request-id"]


def _spooled(spool_dir) -> list[str]:
    return sorted(spooled_request_ids(spool_dir))


def _wait_until(condition, timeout: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _versions(bucket: str) -> list[str]:
    """Every version ever stored in ``bucket``: a key written twice shows up twice."""
    pages = aws.client("s3").get_paginator("list_object_versions").paginate(Bucket=bucket)
    return [version["Key"] for page in pages for version in page.get("Versions", ())]


def test_s3_down_then_back_loses_nothing_and_writes_nothing_twice(tmp_path, monkeypatch):
    spool = tmp_path / "spool"
    local_aws = services.LocalAWS().start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", local_aws.url)
    buckets = create_buckets()
    writer = AuditWriter(
        audit_bucket=buckets.audit,
        raw_bucket=buckets.raw,
        spool_dir=spool,
        retry_initial_seconds=0.2,
        retry_max_seconds=1,
    )
    try:
        with serve(AuditMiddleware(fake_vllm.app, writer=writer)) as url:
            _chat(url)
            buckets.wait_for_records(1)

            local_aws.stop()
            started = time.perf_counter()
            during_outage = [_chat(url) for _ in range(5)]
            assert time.perf_counter() - started < 5, "an S3 outage slowed the requests down"
            _wait_until(lambda: _spooled(spool) == sorted(during_outage), what="the spool")

            # moto keeps nothing across a restart: the buckets come back empty, versioned so
            # that a second write of any key would show.
            local_aws = services.LocalAWS(port=local_aws.port).start()
            s3 = aws.client("s3")
            for bucket in (buckets.audit, buckets.raw):
                create_bucket(bucket)
                s3.put_bucket_versioning(
                    Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
                )
            buckets.wait_for_records(5)
            _wait_until(lambda: not _spooled(spool), what="an empty spool")
            time.sleep(2)  # more than the longest backoff: a stray retry would have happened

        delivered = sorted(key.rsplit("/", 1)[1].removesuffix(".json") for key in buckets.records())
        assert delivered == sorted(during_outage)
        assert len(_versions(buckets.audit)) == 5
        assert len(_versions(buckets.raw)) == 5
    finally:
        writer.close()
        local_aws.stop()


def test_records_spooled_at_shutdown_are_delivered_by_the_next_process(tmp_path, monkeypatch):
    buckets = create_buckets()
    spool = tmp_path / "spool"
    session_endpoint = os.environ["AWS_ENDPOINT_URL"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{services.free_port()}")
    first = AuditWriter(audit_bucket=buckets.audit, raw_bucket=buckets.raw, spool_dir=spool)
    with serve(AuditMiddleware(fake_vllm.app, writer=first)) as url:
        request_ids = [_chat(url) for _ in range(3)]
    assert _spooled(spool) == sorted(request_ids)

    monkeypatch.setenv("AWS_ENDPOINT_URL", session_endpoint)
    second = AuditWriter(audit_bucket=buckets.audit, raw_bucket=buckets.raw, spool_dir=spool)
    try:
        assert len(buckets.wait_for_records(3)) == 3
        _wait_until(lambda: not _spooled(spool), what="an empty spool")
    finally:
        second.close()


def _start_audited_uvicorn(buckets, spool: Path, **popen) -> tuple[subprocess.Popen, int]:
    """The imitation of vLLM behind the middleware, in a uvicorn process of its own."""
    port = services.free_port()
    env = {
        **os.environ,
        "AUDIT_BUCKET": buckets.audit,
        "RAW_BUCKET": buckets.raw,
        "AUDIT_SPOOL_DIR": str(spool),
    }
    app = "inference.tests.fake_vllm:audited"
    uvicorn = [sys.executable, "-m", "uvicorn", "--factory", "--log-level", "warning"]
    server = subprocess.Popen([*uvicorn, "--port", str(port), app], env=env, **popen)
    return server, port


def test_sigterm_flushes_the_queue_and_the_spool(tmp_path):
    buckets = create_buckets()
    server, port = _start_audited_uvicorn(buckets, tmp_path / "spool", start_new_session=True)
    try:
        services.wait_for_port(port)
        with ThreadPoolExecutor(8) as pool:
            request_ids = list(pool.map(lambda _: _chat(f"http://127.0.0.1:{port}"), range(120)))
        before = len(buckets.records())
        # To the whole process group, as `make run` and Ctrl-C do: the uploader must live on.
        os.killpg(server.pid, signal.SIGTERM)
        # uvicorn re-raises the signal once it has shut down cleanly.
        assert server.wait(30) in (0, -signal.SIGTERM)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
    assert before < len(request_ids), "the writer kept up: nothing was left to flush"
    delivered = {key.rsplit("/", 1)[1].removesuffix(".json") for key in buckets.records()}
    assert delivered == set(request_ids)
    assert not _spooled(tmp_path / "spool")


def test_a_killed_uploader_is_started_again(writer, buckets):
    writer._uploader.kill()
    writer._uploader.wait()
    with serve(AuditMiddleware(fake_vllm.app, writer=writer)) as url:
        request_id = _chat(url)
        assert buckets.record(request_id)["requestId"] == request_id


@contextmanager
def _broken(spool: Path) -> Iterator[None]:
    """Every spool write fails meanwhile: a file stands where the directory was."""
    aside = spool.with_name("spool-aside")
    spool.rename(aside)
    spool.write_bytes(b"")
    try:
        yield
    finally:
        spool.unlink()
        aside.rename(spool)


def test_a_record_the_disk_refused_is_held_and_delivered_once_it_works(writer, buckets):
    with serve(AuditMiddleware(fake_vllm.app, writer=writer)) as url:
        _chat(url)
        buckets.wait_for_records(1)
        with _broken(writer.spool_dir):
            request_id = _chat(url)
            _wait_until(lambda: writer.backlog()[1] == 1, what="the record held in memory")
            time.sleep(1.5)  # the writer thread has tried again, and failed again
            assert writer.backlog()[1] == 1
        assert buckets.record(request_id)["requestId"] == request_id
        assert writer.backlog()[1] == 0
        assert writer.lost == 0


def test_records_lost_when_memory_is_full_too_are_logged_and_counted(buckets, tmp_path, capsys):
    writer = new_writer(buckets, tmp_path / "spool", max_held=1)
    try:
        with serve(AuditMiddleware(fake_vllm.app, writer=writer)) as url:
            with _broken(writer.spool_dir):
                held, *lost = [_chat(url) for _ in range(3)]
                _wait_until(lambda: writer.lost == 2, what="two records lost")
                assert REGISTRY.get_sample_value("llm_audit_lost_records_total") == 2
            assert buckets.record(held)["requestId"] == held
    finally:
        writer.close()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    logged = [line for line in lines if line.get("event") == "audit_record_lost"]
    assert [line["requestId"] for line in logged] == lost
    for line in logged:
        assert line["LostRecords"] == 1
        assert line["_aws"]["CloudWatchMetrics"][0]["Metrics"] == [
            {"Name": "LostRecords", "Unit": "Count"}
        ]
        assert "memory is full" in line["reason"]


OUTAGE_SECONDS = 30


@pytest.mark.slow
def test_s3_unreachable_for_30_seconds_under_traffic_loses_nothing_and_puts_nothing_twice(
    tmp_path, monkeypatch
):
    buckets = create_buckets()
    s3 = aws.client("s3")
    for bucket in (buckets.audit, buckets.raw):
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    proxy = TcpProxy(urlsplit(os.environ["AWS_ENDPOINT_URL"]).port).up()
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)  # the uploader's S3 is behind the proxy
    writer = new_writer(buckets, tmp_path / "spool", retry_max_seconds=2)
    request_ids, latencies = [], []

    def traffic(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            request_ids.append(_chat(url))
            latencies.append(time.perf_counter() - started)
            time.sleep(0.1)

    try:
        with serve(AuditMiddleware(fake_vllm.app, writer=writer)) as url:
            traffic(2)
            proxy.down()
            before = len(request_ids)
            traffic(OUTAGE_SECONDS)
            during = len(request_ids) - before
            time.sleep(0.1)  # the last batch reaches the spool
            waiting = writer.backlog()[0]
            proxy.up()
            traffic(2)
            buckets.wait_for_records(len(request_ids), timeout=30)
            _wait_until(lambda: not _spooled(writer.spool_dir), what="an empty spool")
    finally:
        writer.close()
    assert waiting >= during > OUTAGE_SECONDS, "the records of the outage did not wait"
    assert max(latencies) < 1, "an S3 outage slowed the requests down"
    delivered = sorted(key.rsplit("/", 1)[1].removesuffix(".json") for key in buckets.records())
    assert delivered == sorted(request_ids)
    # Every version ever stored: a record or raw object put twice would show up twice.
    assert len(_versions(buckets.audit)) == len(request_ids)
    assert len(_versions(buckets.raw)) == len(request_ids)
    proxy.down()


def _running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_the_uploader_of_a_killed_server_does_not_linger(tmp_path):
    buckets = create_buckets()
    server, port = _start_audited_uvicorn(buckets, tmp_path / "spool")
    uploader = None
    try:
        services.wait_for_port(port)
        request_ids = {_chat(f"http://127.0.0.1:{port}") for _ in range(3)}
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        (uploader,) = map(int, children)
        # Records still in the writer's memory die with a SIGKILL; this test is about the uploader.
        buckets.wait_for_records(len(request_ids))
        server.kill()  # no lifespan shutdown, no atexit: only the closed pipe tells the uploader
        server.wait()
        _wait_until(lambda: not _running(uploader), timeout=15, what="the orphan uploader to exit")
    finally:
        server.kill()
        if uploader and _running(uploader):
            os.kill(uploader, signal.SIGKILL)
