"""How fast the audit uploader drains its spool when every S3 PUT takes ``--latency-ms``, what
it costs in CPU, and how fresh the records are under a steady load below that rate.

    .venv/bin/python bench/uploader.py [--records 3000] [--latency-ms 30] [--rate 100]

S3 is a stand-in on loopback, in a process of its own: a threaded HTTP server that answers
each PutObject with 200 and an ETag after ``--latency-ms`` and notes when each record (a
``logs/`` key) was stored and how often. The uploader reaches it through AWS_ENDPOINT_URL.

1. Drain: ``--records`` chat completions spooled ``--per-file`` to a file (what the writer
   makes at a few hundred requests per second) appear at once in the spool of an idle
   uploader (``python -m inference.uploader``); timed until the spool is empty, with the
   uploader's CPU over that time (/proc).
2. Steady load: ``--rate`` requests per second for ``--seconds`` through the middleware
   (the vLLM imitation under uvicorn, its writer and uploader, as in production). Freshness is
   from the client holding the response to the stand-in storing the record; the spool's
   backlog is sampled meanwhile.
"""

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.middleware_overhead import (
    child_pids,
    cpu_seconds,
    percentile,
    read_response,
    request_bytes,
    uvicorn,
)
from devtools import services
from inference.tests import fake_vllm
from inference.writer import BATCH_SECONDS, spool_backlog

HEADERS = {"x-llm-source": "bench", "x-llm-user": "bench", "x-llm-request-type": "chat"}
CHAT = {"model": "ministral-8b-instruct", "messages": [{"role": "user", "content": "ping"}]}


class StandIn(BaseHTTPRequestHandler):
    """S3's PutObject, slow by ``latency`` seconds; GET answers when each record was stored."""

    protocol_version = "HTTP/1.1"  # keep-alive, as S3
    latency = 0.03
    stored: dict[str, list[float]] = defaultdict(list)
    puts = [0]
    lock = threading.Lock()

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        time.sleep(self.latency)
        with self.lock:
            self.puts[0] += 1
            if "/logs/" in self.path:
                request_id = self.path.rsplit("/", 1)[1].removesuffix(".json")
                self.stored[request_id].append(time.time())
        self.send_response(200)
        self.send_header("ETag", f'"{hashlib.md5(body).hexdigest()}"')  # noqa: S324 - S3's
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        with self.lock:
            body = json.dumps({"puts": self.puts[0], "stored": self.stored}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def serve_stand_in(port: int, latency: float) -> None:
    StandIn.latency = latency
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 128  # every uploader thread connects at once
    ThreadingHTTPServer(("127.0.0.1", port), StandIn).serve_forever()


def stand_in_state(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - loopback
        return json.load(response)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=3000, help="spooled for the drain")
    parser.add_argument("--per-file", type=int, default=10, help="records per spool file")
    parser.add_argument("--latency-ms", type=float, default=30, help="S3's time per PUT")
    parser.add_argument("--concurrency", type=int, default=16, help="the uploader's PUTs")
    parser.add_argument("--rate", type=float, default=100, help="requests/s, steady load")
    parser.add_argument("--seconds", type=float, default=30, help="of steady load")
    options = parser.parse_args()

    port = services.free_port()
    stand_in = multiprocessing.Process(
        target=serve_stand_in, args=(port, options.latency_ms / 1000), daemon=True
    )
    stand_in.start()
    services.wait_for_port(port)
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        **services.local_aws_env(url),
        "AUDIT_UPLOAD_CONCURRENCY": str(options.concurrency),
        "AUDIT_METRICS_SECONDS": "3600",
    }
    print(f"S3 stand-in: each PUT answered after {options.latency_ms:g} ms")
    try:
        ok = drain(options, env, url)
        return 0 if steady(options, env, url) and ok else 1
    finally:
        stand_in.terminate()


def drain(options: argparse.Namespace, env: dict, url: str) -> bool:
    work = Path(tempfile.mkdtemp(prefix="bench-uploader-"))
    staging, spool = work / "staging", work / "spool"
    staging.mkdir()
    spool.mkdir()
    request_ids = [f"drain-{uuid.uuid4()}" for _ in range(options.records)]
    created_at = time.time()
    for start in range(0, len(request_ids), options.per_file):
        chunk = request_ids[start : start + options.per_file]
        fake_vllm.spool_chats(staging, chunk, created_at + start * 1e-6, HEADERS)
    files = len(list(staging.iterdir()))
    command = [sys.executable, "-m", "inference.uploader", str(spool)]
    command += ["--audit-bucket", "audit", "--raw-bucket", "raw"]
    command += ["--concurrency", str(options.concurrency)]
    uploader = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
    time.sleep(3)  # imports done: idle, polling the empty spool
    before = cpu_seconds(uploader.pid)
    started = time.perf_counter()
    for path in sorted(staging.iterdir()):
        path.rename(spool / path.name)
    while spool_backlog(spool)[0]:
        time.sleep(0.01)
    seconds = time.perf_counter() - started
    cpu = cpu_seconds(uploader.pid) - before
    uploader.stdin.close()
    uploader.wait(60)
    state = stand_in_state(url)
    stored = [state["stored"].get(request_id, []) for request_id in request_ids]
    twice = sum(len(times) > 1 for times in stored)
    print(
        f"drain: {options.records} records in {files} files,"
        f" {options.concurrency} PUTs in flight: {seconds:.1f} s,"
        f" {options.records / seconds:.0f} records/s; uploader CPU"
        f" {cpu / options.records * 1000:.2f} ms/record; {state['puts']} PUTs,"
        f" {sum(map(bool, stored))} records stored, {twice} stored twice"
    )
    return all(stored) and not twice


async def paced_load(port: int, rate: float, seconds: float) -> dict[str, float]:
    """``rate`` requests per second, whatever the answers take; when each response was
    complete, by request id."""
    request = request_bytes(CHAT)
    connections: asyncio.Queue = asyncio.Queue()
    answered: dict[str, float] = {}

    async def one() -> None:
        if connections.empty():
            connections.put_nowait(await asyncio.open_connection("127.0.0.1", port))
        reader, writer = await connections.get()
        writer.write(request)
        status, headers = await read_response(reader)
        answered[headers[b"x-request-id"].decode()] = time.time()
        if not status.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"unexpected answer: {status[:40]!r}")
        connections.put_nowait((reader, writer))

    started = time.monotonic()
    tasks = []
    for number in range(int(rate * seconds)):
        await asyncio.sleep(max(0.0, started + number / rate - time.monotonic()))
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    while not connections.empty():
        connections.get_nowait()[1].close()
    return answered


def steady(options: argparse.Namespace, env: dict, url: str) -> bool:
    spool = Path(tempfile.mkdtemp(prefix="bench-uploader-spool-"))
    env = {**env, "AUDIT_BUCKET": "audit", "RAW_BUCKET": "raw", "AUDIT_SPOOL_DIR": str(spool)}
    samples: list[tuple[int, float]] = []
    stop = threading.Event()

    def sample_backlog() -> None:
        while not stop.wait(0.25):
            samples.append(spool_backlog(spool))

    with uvicorn("inference.tests.fake_vllm:audited", env, factory=True) as (port, server):
        (uploader,) = child_pids(server.pid)
        asyncio.run(paced_load(port, options.rate, 2))  # warm: connections, imports
        before = cpu_seconds(uploader)
        threading.Thread(target=sample_backlog, daemon=True).start()
        answered = asyncio.run(paced_load(port, options.rate, options.seconds))
        time.sleep(BATCH_SECONDS * 2)
        while spool_backlog(spool)[0]:
            time.sleep(0.05)
        stop.set()
        cpu = cpu_seconds(uploader) - before
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    stored = stand_in_state(url)["stored"]
    times = [stored[request_id] for request_id in answered if request_id in stored]
    lags = [
        stored[request_id][0] - at for request_id, at in answered.items() if request_id in stored
    ]
    print(
        f"steady: {options.rate:g} requests/s for {options.seconds:g} s through the middleware:"
        f" {len(answered)} answered, {len(times)} records stored,"
        f" {sum(len(each) > 1 for each in times)} stored twice"
    )
    print(
        f"  response to record in S3: p50 {percentile(lags, 0.5) * 1000:.0f} ms,"
        f" p99 {percentile(lags, 0.99) * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms"
    )
    print(
        f"  spool backlog: at most {max(count for count, _ in samples)} records,"
        f" oldest at most {max(age for _, age in samples):.2f} s"
    )
    print(f"  uploader CPU: {cpu / len(lags) * 1000:.2f} ms/record (idle polling included)")
    return len(lags) == len(answered)


if __name__ == "__main__":
    sys.exit(main())
