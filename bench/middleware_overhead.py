"""What the audit middleware adds: the same ASGI upstream with and without it, on loopback.

    .venv/bin/python bench/middleware_overhead.py [--concurrency 32] [--requests 3000]

The upstream is the vLLM imitation of the tests (inference/tests/fake_vllm.py), so
the upstream costs almost nothing and the middleware's share is as large as it can get.
Each side runs under its own uvicorn subprocess (the same settings, h11 and asyncio loop);
a minimal keep-alive HTTP/1.1 client on asyncio, in this process, keeps ``--concurrency``
requests in flight and times each one. Sides alternate over ``--rounds`` so that drift on a
shared machine hits both. The audited side writes its records to a local AWS (moto) started
here, or to ``AWS_ENDPOINT_URL`` when set; at the end the server is stopped with SIGTERM and
every record is counted in S3 and in the spool: none may be missing.

Attribution is on unless ``--no-attribution``: requests come as from the gateway (its secret,
an API key id) and the audited side enforces bindings published for ``--bound-keys`` keys,
the benchmark's own among them (issue 20: within 0.2 ms of the figures without it).
"""

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from centralllm import aws
from centralllm.audit import contract
from devtools import services
from inference.uploader import NICENESS
from inference.writer import BATCH_SECONDS, spooled_request_ids

UPSTREAM = "inference.tests.fake_vllm"
CHAT = {"model": "ministral-8b-instruct", "messages": [{"role": "user", "content": "ping"}]}
HEADERS = {"x-llm-source": "bench", "x-llm-user": "bench", "x-llm-request-type": "chat"}
GATEWAY_SECRET = uuid.uuid4().hex
FROM_GATEWAY = {contract.GATEWAY_SECRET_HEADER: GATEWAY_SECRET, "x-api-key-id": "bench-key"}


def request_bytes(body: dict, headers: dict[str, str]) -> bytes:
    payload = json.dumps(body).encode()
    lines = [
        "POST /v1/chat/completions HTTP/1.1",
        "host: 127.0.0.1",
        "content-type: application/json",
        f"content-length: {len(payload)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes]]:
    """One HTTP/1.1 response with a content-length: its status line and its headers
    (lowercase names); the body is read and dropped."""
    status, *lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
    headers = dict(line.split(b":", 1) for line in lines if line)
    headers = {name.lower(): value.strip() for name, value in headers.items()}
    await reader.readexactly(int(headers.get(b"content-length", 0)))
    return status, headers


async def _connection(
    port: int, request: bytes, count: int, deadline: float, latencies: list[float]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(count):
            if time.monotonic() > deadline:
                return
            started = time.perf_counter()
            writer.write(request)
            status, _ = await read_response(reader)
            latencies.append(time.perf_counter() - started)
            if not status.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected answer: {status[:40]!r}")
    finally:
        writer.close()


async def answer(port: int, request: bytes) -> bytes:
    """The status line of one request's answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        status, _ = await read_response(reader)
        return status
    finally:
        writer.close()


async def load(
    port: int, request: bytes, concurrency: int, requests: int, seconds: float
) -> tuple[list, float]:
    """``requests`` requests over ``concurrency`` connections; latencies and wall time."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    per_connection = requests // concurrency
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _connection(port, request, per_connection, deadline, latencies)
            for _ in range(concurrency)
        )
    )
    return latencies, time.perf_counter() - started


@contextmanager
def uvicorn(target: str, env: dict, factory: bool = False):
    port = services.free_port()
    args = [sys.executable, "-m", "uvicorn", "--log-level", "warning", "--no-access-log"]
    args += ["--factory"] if factory else []
    # stdout holds only the uploader's metric lines (logs go to stderr): not for the report.
    server = subprocess.Popen(
        [*args, "--port", str(port), target], env=env, stdout=subprocess.DEVNULL
    )
    try:
        services.wait_for_port(port)
        yield port, server
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(120)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--requests", type=int, default=500, help="per side and round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--upstream-ms", type=float, default=0, help="upstream time per request")
    parser.add_argument("--seconds", type=float, default=60, help="time limit of one run")
    parser.add_argument("--no-attribution", dest="attribution", action="store_false")
    parser.add_argument("--bound-keys", type=int, default=1000, help="keys in the bindings")
    parser.add_argument(
        "--pause-uploader",
        action="store_true",
        help="stop the uploader during runs: the serving process's own cost, alone",
    )
    options = parser.parse_args()

    started_aws = None
    if not os.environ.get("AWS_ENDPOINT_URL"):
        services.VAR.mkdir(exist_ok=True)
        started_aws = services.LocalAWS().start()
        # moto stands in for S3, which does not share our CPUs in production: lowest priority,
        # so that it cannot slow either side down. It runs in a session of its own, so the
        # nice value goes to its autogroup (Linux shares CPU between those first).
        Path(f"/proc/{started_aws.process.popen.pid}/autogroup").write_text("19")
        os.environ.update(started_aws.env())
    try:
        return run(options)
    finally:
        if started_aws:
            started_aws.stop()


def run(options: argparse.Namespace) -> int:
    suffix = uuid.uuid4().hex[:10]
    audit_bucket, raw_bucket = f"bench-audit-{suffix}", f"bench-raw-{suffix}"
    s3 = aws.client("s3")
    for bucket in (audit_bucket, raw_bucket):
        s3.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": aws.region()}
        )
    spool = Path(tempfile.mkdtemp(prefix="bench-spool-"))
    env = {
        **os.environ,
        "AUDIT_BUCKET": audit_bucket,
        "RAW_BUCKET": raw_bucket,
        "AUDIT_SPOOL_DIR": str(spool),
        "AUDIT_FLUSH_SECONDS": "120",
    }
    headers = HEADERS
    if options.attribution:
        bindings = {f"key-{number}": [f"project-{number}"] for number in range(options.bound_keys)}
        bindings["bench-key"] = ["bench", "other"]
        document = json.dumps({"keys": bindings}).encode()
        s3.put_object(Bucket=audit_bucket, Key=contract.ATTRIBUTION_KEY, Body=document)
        env[contract.GATEWAY_SECRET_ENV] = GATEWAY_SECRET
        headers = {**HEADERS, **FROM_GATEWAY}
    body = {**CHAT, "delay": options.upstream_ms / 1000, "untracked": True}
    request = request_bytes(body, headers)
    latencies: dict[str, list] = {"plain": [], "audited": []}
    walls = {"plain": 0.0, "audited": 0.0}
    cpu = {"plain": 0.0, "audited": 0.0}
    ratios = []
    with (
        uvicorn(f"{UPSTREAM}:app", env) as (plain_port, plain_server),
        uvicorn(f"{UPSTREAM}:audited", env, factory=True) as (audited_port, audited_server),
    ):
        servers = {
            "plain": (plain_port, plain_server.pid),
            "audited": (audited_port, audited_server.pid),
        }
        uploader = child_pids(audited_server.pid)[0]
        uploader_cpu = cpu_seconds(uploader)
        warm_up = options.concurrency * 4
        for port, _ in servers.values():  # connections, imports, the boto3 client
            asyncio.run(load(port, request, options.concurrency, warm_up, 30))
        refusals = 0
        if options.attribution:  # the bindings are read and enforced
            refused = request_bytes(body, {**headers, "x-llm-source": "not-bound"})
            status = asyncio.run(answer(audited_port, refused))
            if not status.startswith(b"HTTP/1.1 403"):
                raise RuntimeError(f"attribution is not enforced: {status!r}")
            refusals = 1
        catch_up = []
        for _ in range(options.rounds):
            rates = {}
            for name, (port, pid) in servers.items():
                # The uploader delivers its backlog before the next run, so that it never
                # slows the next side down; how long that takes is reported.
                catch_up.append(wait_for_empty_spool(spool))
                if options.pause_uploader:
                    os.kill(uploader, signal.SIGSTOP)
                before = cpu_seconds(pid)
                run_latencies, wall = asyncio.run(
                    load(port, request, options.concurrency, options.requests, options.seconds)
                )
                cpu[name] += cpu_seconds(pid) - before
                os.kill(uploader, signal.SIGCONT)
                latencies[name] += run_latencies
                walls[name] += wall
                rates[name] = len(run_latencies) / wall
            ratios.append(rates["audited"] / rates["plain"])
        catch_up.append(wait_for_empty_spool(spool))
        uploader_cpu = cpu_seconds(uploader) - uploader_cpu
        audited_server.send_signal(signal.SIGTERM)
        flush_started = time.perf_counter()
        audited_server.wait(180)
        flush_seconds = time.perf_counter() - flush_started

    sent = warm_up + refusals + len(latencies["audited"])
    delivered = count_records(s3, audit_bucket)
    spooled = count_spooled(spool)
    upstream = f"upstream {options.upstream_ms:g} ms" if options.upstream_ms else "instant upstream"
    uploading = "paused during runs" if options.pause_uploader else "running"
    attribution = f"on, {options.bound_keys} keys bound" if options.attribution else "off"
    print(
        f"{options.concurrency} connections, {options.rounds} alternating rounds of"
        f" {options.requests} requests per side, {upstream}, uploader {uploading},"
        f" attribution {attribution}"
    )
    print(f"{'':10}{'requests':>10}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}{'CPU us/req':>12}")
    rows = {}
    for name, values in latencies.items():
        rows[name] = (percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000)
        print(
            f"{name:10}{len(values):>10}{rows[name][0]:>10.3f}{rows[name][1]:>10.3f}"
            f"{len(values) / walls[name]:>10.0f}{cpu[name] / len(values) * 1e6:>12.0f}"
        )
    print(f"added latency p50: {rows['audited'][0] - rows['plain'][0]:+.3f} ms")
    print(f"added latency p99: {rows['audited'][1] - rows['plain'][1]:+.3f} ms")
    pooled = (len(latencies["audited"]) / walls["audited"]) / (
        len(latencies["plain"]) / walls["plain"]
    )
    print(
        f"throughput ratio audited/plain: {pooled:.3f} pooled; per round median"
        f" {statistics.median(ratios):.3f}, min {min(ratios):.3f}, max {max(ratios):.3f}"
    )
    added_cpu = cpu["audited"] / len(latencies["audited"]) - cpu["plain"] / len(latencies["plain"])
    print(f"server CPU added per request: {added_cpu * 1e6:.0f} us")
    print(
        f"uploader (own process, nice {NICENESS}): {uploader_cpu / max(delivered, 1) * 1000:.2f}"
        " ms CPU per record"
    )
    print(
        f"records: {sent} requests, {delivered} in S3, {spooled} in the spool; S3 had every"
        f" record at most {max(catch_up):.1f} s after a run, shutdown flush {flush_seconds:.1f} s"
    )
    return 0 if delivered + spooled == sent else 1


def count_records(s3, bucket: str) -> int:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="logs/")
    return sum(len(page.get("Contents", ())) for page in pages)


def wait_for_empty_spool(spool: Path) -> float:
    """Wait for the uploader to deliver everything; returns how long that took."""
    started = time.perf_counter()
    time.sleep(BATCH_SECONDS * 2)  # the last batch reaches the spool
    while count_spooled(spool):
        time.sleep(0.2)
    return time.perf_counter() - started


def count_spooled(spool: Path) -> int:
    return len(spooled_request_ids(spool))


if __name__ == "__main__":
    sys.exit(main())
