"""Get audit records off the request path and onto disk, then to S3, and never lose one.

Two stages, so that the serving process pays microseconds per request:

1. ``AuditWriter.submit`` (on the event loop) puts the captured exchange on a bounded queue
   and never blocks; a background thread gathers what arrives within ``BATCH_SECONDS`` and
   writes it to ``AUDIT_SPOOL_DIR`` as one file (to a temporary name, then renamed: a crash
   never leaves half a file). When the queue is full, the event loop writes the file itself
   rather than drop the record or wait.
2. An uploader process (``inference.uploader``, started by the writer, at low CPU
   priority) turns spool files into records and puts them to S3, deleting each file once both
   objects of each of its records are stored; when S3 fails it retries with backoff. Parsing
   bodies and signing puts would otherwise hold the serving process's GIL.
   If it dies (killed when memory runs out, say), the writer thread starts another.

The spool is a write-ahead log: a record is safe on disk before anything talks to S3, so an
S3 outage of any length loses nothing, and files left by a process that died are delivered
by the next one. A retried put cannot create a duplicate or overwrite anything: the S3 key is
the request id and every put is conditional (write-once, see ``inference.uploader``).

When the spool cannot be written (disk full, read-only), the records are held in memory, at
most ``AUDIT_MAX_HELD_RECORDS``, and the writer thread tries again every ``RETRY_SECONDS``.
A record that finds memory full too is lost, and never silently: each one is a JSON line on
stdout with its request id that CloudWatch counts as ``LostRecords`` (see
``inference.metrics``), and ``/metrics`` counts it in ``llm_audit_lost_records_total``.

On shutdown (ASGI lifespan shutdown, or atexit as a fallback) ``close`` drains the queue to
disk and gives the uploader ``AUDIT_FLUSH_SECONDS`` to deliver the spool; what is left stays
on disk for the next start. Mount the spool directory on the host so that it survives a task.

Settings (environment): AUDIT_BUCKET, RAW_BUCKET, AUDIT_SPOOL_DIR (default
/tmp/llm-audit-spool), AUDIT_QUEUE_SIZE (1024), AUDIT_MAX_HELD_RECORDS (10000),
AUDIT_FLUSH_SECONDS (20), AUDIT_RETRY_MAX_SECONDS (30), AUDIT_UPLOAD_CONCURRENCY (16),
AUDIT_METRICS_SECONDS (60), AUDIT_ENVIRONMENT (the CloudWatch dimension, "default").
Use one spool directory per serving process.
"""

import atexit
import logging
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol

from prometheus_client import REGISTRY

from centralllm.audit import contract
from inference import metrics, records

log = logging.getLogger(__name__)

DEFAULT_SPOOL_DIR = "/tmp/llm-audit-spool"  # noqa: S108 - the task's own scratch disk
SPOOL_SUFFIX = ".exchanges"
# The writer thread gathers what arrives within this time into one spool file: one write and
# one round of the GIL per batch rather than per request.
BATCH_SECONDS = 0.02
# How often an idle writer thread retries records held in memory and checks the uploader.
RETRY_SECONDS = 1.0


class Exchange(Protocol):
    def encoded(self) -> bytes:
        """The exchange as a spool entry (see inference.records)."""
        ...


class AuditWriter:
    def __init__(
        self,
        *,
        audit_bucket: str,
        raw_bucket: str,
        spool_dir: str | Path = DEFAULT_SPOOL_DIR,
        max_queue: int = 1024,
        max_held: int = 10_000,
        flush_seconds: float = 20,
        retry_initial_seconds: float = 1,
        retry_max_seconds: float = 30,
        upload_concurrency: int = 16,
        metrics_seconds: float = 60,
    ) -> None:
        self.audit_bucket = audit_bucket
        self.spool_dir = Path(spool_dir)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.flush_seconds = flush_seconds
        self.max_queue = max_queue
        self.max_held = max_held
        # SimpleQueue is C and cheap to put to; the bound is kept by submit().
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        # Orders submit() against close(): nothing is queued after close's end marker.
        self._lock = threading.Lock()
        self._closed = False
        # Spool entries the disk refused, oldest first, and how many records were lost.
        self._held: list[bytes] = []
        self._held_lock = threading.Lock()
        self._failing = False  # the last spool write failed: said once, not once a second
        self.lost = 0
        self._collector = metrics.AuditCollector(self)
        REGISTRY.register(self._collector)
        # The uploader stops when its stdin closes: on close(), or when this process dies.
        self._uploader_command = [
            *(sys.executable, "-m", "inference.uploader", str(self.spool_dir)),
            *("--audit-bucket", audit_bucket, "--raw-bucket", raw_bucket),
            *("--flush-seconds", str(flush_seconds)),
            *("--retry-initial-seconds", str(retry_initial_seconds)),
            *("--retry-max-seconds", str(retry_max_seconds)),
            *("--concurrency", str(upload_concurrency)),
            *("--metrics-seconds", str(metrics_seconds)),
        ]
        self._uploader = self._start_uploader()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()
        # Fallback for servers that never send the ASGI lifespan shutdown.
        atexit.register(self.close)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "AuditWriter":
        return cls(
            audit_bucket=contract.audit_bucket(environ),
            raw_bucket=contract.raw_bucket(environ),
            spool_dir=environ.get("AUDIT_SPOOL_DIR") or DEFAULT_SPOOL_DIR,
            max_queue=int(environ.get("AUDIT_QUEUE_SIZE") or 1024),
            max_held=int(environ.get("AUDIT_MAX_HELD_RECORDS") or 10_000),
            flush_seconds=float(environ.get("AUDIT_FLUSH_SECONDS") or 20),
            retry_max_seconds=float(environ.get("AUDIT_RETRY_MAX_SECONDS") or 30),
            upload_concurrency=int(environ.get("AUDIT_UPLOAD_CONCURRENCY") or 16),
            metrics_seconds=float(environ.get("AUDIT_METRICS_SECONDS") or 60),
        )

    def submit(self, exchange: Exchange) -> None:
        """Queue an exchange for the spool. Never blocks: when the queue is full, spool it now."""
        with self._lock:
            if self._queue.qsize() < self.max_queue and not self._closed:
                self._queue.put(exchange)
                return
        self._spool(_encoded([exchange]))

    def backlog(self) -> tuple[int, int, float]:
        """Records in the spool, records held in memory, and the age of the oldest of them."""
        spooled, oldest = spool_backlog(self.spool_dir)
        with self._held_lock:
            held = len(self._held)
            first = self._held[0] if held else None
        if first is not None:
            oldest = max(oldest, time.time() - records.header(first)["createdAt"])
        return spooled, held, oldest

    def close(self) -> None:
        """Spool what is queued, let the uploader deliver the spool (bounded), stop both."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join()
        self._lose(self._take_held(), "the spool could not be written before shutdown")
        REGISTRY.unregister(self._collector)
        self._uploader.stdin.close()
        try:
            self._uploader.wait(self.flush_seconds + 5)
        except subprocess.TimeoutExpired:
            log.error("audit: the uploader did not stop; records stay in %s", self.spool_dir)
            self._uploader.kill()
            self._uploader.wait()

    def _run(self) -> None:
        while True:
            try:
                batch = [self._queue.get(timeout=RETRY_SECONDS)]
            except queue.Empty:
                batch = []
            else:
                time.sleep(BATCH_SECONDS)
                while not self._queue.empty():
                    batch.append(self._queue.get())
            self._spool(self._take_held() + _encoded(item for item in batch if item is not None))
            if None in batch:
                return
            if self._uploader.poll() is not None:
                # Killed (out of memory?) or crashed: without it the spool only grows.
                log.error(
                    "audit: the uploader exited (%s); starting it again", self._uploader.returncode
                )
                self._uploader = self._start_uploader()

    def _start_uploader(self) -> subprocess.Popen:
        return subprocess.Popen(self._uploader_command, stdin=subprocess.PIPE, env=_uploader_env())

    def _spool(self, entries: list[bytes]) -> None:
        """Write ``entries`` as one spool file; if the disk refuses, hold them in memory."""
        if not entries:
            return
        name = new_spool_name(records.header(entries[0])["createdAt"], len(entries))
        try:
            write_spool_file(self.spool_dir, name, b"".join(entries))
        except OSError as exc:
            self._hold(entries, exc)
            return
        with self._held_lock:
            recovered, self._failing = self._failing, False
        if recovered:
            log.warning("audit: the spool at %s can be written again", self.spool_dir)

    def _hold(self, entries: list[bytes], exc: OSError) -> None:
        with self._held_lock:
            if not self._failing:
                self._failing = True
                log.error(
                    "audit: cannot spool to %s (%s); holding up to %d records in memory",
                    *(self.spool_dir, exc, self.max_held),
                )
            room = max(self.max_held - len(self._held), 0)
            self._held += entries[:room]
        self._lose(entries[room:], f"the spool cannot be written ({exc}) and memory is full")

    def _take_held(self) -> list[bytes]:
        with self._held_lock:
            held, self._held = self._held, []
        return held

    def _lose(self, entries: list[bytes], reason: str) -> None:
        """Say so, one line per request id; CloudWatch counts each line in LostRecords."""
        with self._held_lock:
            self.lost += len(entries)
        for entry in entries:
            line = metrics.emf_line(
                metrics.NAMESPACE,
                {"LostRecords": (1, "Count")},
                event="audit_record_lost",
                requestId=records.header(entry)["requestId"],
                reason=reason,
            )
            sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _encoded(batch: Iterable[Exchange]) -> list[bytes]:
    entries = []
    for exchange in batch:
        try:
            entries.append(exchange.encoded())
        except Exception:
            log.exception("audit: could not encode the record of a request")
    return entries


def _uploader_env() -> dict[str, str]:
    """This environment, with the directory holding ``inference`` (and ``centralllm`` beside
    it) first on PYTHONPATH: the uploader must import the very code the server found, however
    the server found it."""
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def new_spool_name(created_at: float, count: int) -> str:
    """Unique; sorts by the time of the oldest request in the file, and says how many records
    it holds (what ``spool_backlog`` reads)."""
    return f"{int(created_at * 1e9):020d}-{uuid.uuid4().hex[:12]}-{count}{SPOOL_SUFFIX}"


def write_spool_file(spool_dir: Path, name: str, data: bytes) -> None:
    """Write to a dot-name (never listed as spooled), then rename: never half a file."""
    temporary = spool_dir / f".{name}.{threading.get_ident()}.tmp"
    temporary.write_bytes(data)
    os.replace(temporary, spool_dir / name)


def spooled_files(spool_dir: Path) -> list[Path]:
    """Spool files, oldest first."""
    names = sorted(
        entry.name
        for entry in os.scandir(spool_dir)
        if entry.name.endswith(SPOOL_SUFFIX) and not entry.name.startswith(".")
    )
    return [spool_dir / name for name in names]


def spool_backlog(spool_dir: Path) -> tuple[int, float]:
    """Records in the spool and the age of the oldest in seconds, from the file names alone."""
    try:
        paths = spooled_files(spool_dir)
    except OSError:
        return 0, 0.0  # the spool is gone or broken; the writer's log says why
    count = 0
    for path in paths:
        fields = path.name.removesuffix(SPOOL_SUFFIX).split("-")
        # A file spooled before the count was in the name holds one record, near enough.
        count += int(fields[2]) if len(fields) == 3 else 1
    oldest = time.time() - int(paths[0].name[:20]) / 1e9 if paths else 0.0
    return count, max(oldest, 0.0)


def spooled_request_ids(spool_dir: Path) -> list[str]:
    """The request ids waiting in the spool (for tests, benchmarks and operators)."""
    request_ids = []
    for path in spooled_files(spool_dir):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue  # delivered meanwhile
        request_ids += [meta["requestId"] for meta, _ in records.exchanges(data)]
    return request_ids
