"""The audit uploader: spool files in, records in S3 out. Started by ``AuditWriter``.

    python -m inference.uploader SPOOL_DIR --audit-bucket B --raw-bucket B [--concurrency 16]

Runs at low CPU priority so that serving always comes first; a backlog just waits on disk.
Reads spool files oldest first and hands their records to ``--concurrency`` threads: S3
answers a PUT in tens of milliseconds, so one PUT at a time delivers a few dozen records a
second. A record is two PUTs in order: the raw bodies to ``raw_key``, then the record to
``record_key`` (the record triggers the ingest, so what it points at must exist already).
Both are write-once (``If-None-Match: *``): an object already there is never replaced. If it
holds the same bytes, this is a retry of a PUT that did arrive, and the record counts as
stored; if it holds others, another exchange claimed the same request id, and this record is
stored under a new id with the flag ``audit_conflict`` (``records.renamed``): both stay.
A file is deleted once every record in it is stored. When a PUT fails, the records not yet
handed out wait for the next pass, the file is rewritten with the records not stored (none
stored is put again), and the uploader backs off exponentially. A record that cannot be
built or encoded is no S3 failure and retrying cannot help it: it is set aside in the spool's
``quarantine/`` directory with its reason (a ``.reason`` file beside it), counted, and never
holds up the records behind it.

Every ``--metrics-seconds`` it prints one CloudWatch embedded-metric line to stdout: the
backlog, and what was delivered and what failed since the line before (``inference.metrics``).
Its running totals are kept in the spool directory for the serving process's ``/metrics``.

It stops when its stdin reaches end of file (the writer closed it, or the serving process
died), after one last delivery pass of at most ``--flush-seconds``; SIGINT and SIGTERM, which
reach it with its server's process group, are ignored for that reason.
"""

import argparse
import json
import logging
import os
import select
import signal
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from centralllm import aws
from centralllm.audit import contract
from inference import metrics, records
from inference.s3 import ObjectExists, PutClient
from inference.writer import new_spool_name, spool_backlog, spooled_files, write_spool_file

log = logging.getLogger("inference.uploader")

NICENESS = 10
# How often an idle uploader looks at the spool.
POLL_SECONDS = 0.05
# Records handed to the threads per thread before the oldest file must be settled: enough
# to keep every thread busy, few enough that a failure leaves little work to skip.
QUEUED_PER_THREAD = 4


QUARANTINE_DIR = "quarantine"
STORED, QUARANTINED = "stored", "quarantined"


class _Skipped(Exception):
    """Not tried: a PUT failed earlier in this pass, so S3 is taken to be down."""


class Uploader:
    def __init__(
        self,
        spool_dir: Path,
        *,
        audit_bucket: str,
        raw_bucket: str,
        retry_initial_seconds: float,
        retry_max_seconds: float,
        concurrency: int = 16,
        metrics_seconds: float = 60,
    ) -> None:
        self.spool_dir = spool_dir
        self.audit_bucket = audit_bucket
        self.raw_bucket = raw_bucket
        self.retry_initial_seconds = retry_initial_seconds
        self.retry_max_seconds = retry_max_seconds
        self.metrics_seconds = metrics_seconds
        self.deployment = contract.deployment_from_env()
        self._s3 = PutClient()
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="audit-put")
        self._most_queued = concurrency * QUEUED_PER_THREAD
        self._retry_delay = retry_initial_seconds
        self._retry_at = 0.0  # monotonic time before which S3 is taken to be down
        self._error: Exception | None = None  # the last failed PUT's, for the log
        # Continued from the last run's: /metrics shows them as counters that never go down.
        self.counters = metrics.read_counters(spool_dir)
        self._saved = dict(self.counters)
        self._reported = dict(self.counters)
        self._report_at = time.monotonic() + metrics_seconds

    def run(self, flush_seconds: float) -> None:
        while True:
            delivered = self.counters["delivered"]
            if not self._s3_down():
                self.deliver()
            self._report_when_due()
            # Straight on after a pass that delivered: more files came meanwhile, most likely.
            busy = self.counters["delivered"] > delivered
            if _stdin_closed(0 if busy else self._wait_seconds()):
                break
        deadline = time.monotonic() + flush_seconds
        while not self._s3_down() and not self.deliver(deadline):
            if time.monotonic() > deadline:
                break
        self.report()
        left, _ = spool_backlog(self.spool_dir)
        if left:
            log.warning("%d records stay in %s for the next start", left, self.spool_dir)

    def deliver(self, deadline: float | None = None) -> bool:
        """Deliver spooled records, oldest first; True when the spool was emptied."""
        failed = threading.Event()
        handed_out: deque[tuple[Path, list[bytes], list[Future]]] = deque()
        queued = 0
        try:
            paths = spooled_files(self.spool_dir)
        except OSError as exc:  # the spool directory is gone or broken; the writer says why
            self._back_off(exc)
            return False
        complete = True
        for path in paths:
            if failed.is_set() or (deadline is not None and time.monotonic() > deadline):
                complete = False
                break
            entries = self._read(path)
            if not entries:
                continue
            futures = [self._pool.submit(self._deliver_one, entry, failed) for entry in entries]
            handed_out.append((path, entries, futures))
            queued += len(entries)
            while queued > self._most_queued:
                queued -= self._settle(*handed_out.popleft())
            self._report_when_due()
        while handed_out:
            self._settle(*handed_out.popleft())
        self._save_counters()
        if failed.is_set():
            self._back_off(self._error)
            return False
        if self._retry_delay != self.retry_initial_seconds:
            log.info("S3 answers again; the spool is delivered")
            self._retry_delay = self.retry_initial_seconds
        return complete

    def _read(self, path: Path) -> list[bytes]:
        try:
            return [encoded for _, encoded in records.exchanges(path.read_bytes())]
        except FileNotFoundError:
            return []
        except Exception:
            # Retrying cannot help a file we cannot read: keep it aside for an operator.
            log.exception("unreadable spool file %s moved aside", path.name)
            path.rename(path.with_suffix(".unreadable"))
            return []

    def _settle(self, path: Path, entries: list[bytes], futures: list[Future]) -> int:
        """Wait for a file's records; delete it, or keep in it those not stored."""
        rest = []
        for entry, future in zip(entries, futures, strict=True):
            error = future.exception()
            if error is not None:
                rest.append(entry)
                self.counters["failures"] += not isinstance(error, _Skipped)
            elif future.result() == QUARANTINED:
                self.counters["quarantined"] += 1
            else:
                self.counters["delivered"] += 1
        if len(rest) == len(entries):
            return len(entries)  # nothing stored: the file stays as it is
        try:
            if rest:
                name = new_spool_name(records.header(rest[0])["createdAt"], len(rest))
                write_spool_file(self.spool_dir, name, b"".join(rest))
            path.unlink(missing_ok=True)
        except OSError:
            log.exception("could not update spool file %s; its records may be put twice", path)
        return len(entries)

    def _deliver_one(self, encoded: bytes, failed: threading.Event) -> str:
        if failed.is_set():
            raise _Skipped
        try:
            record, raw = records.documents(encoded, self.deployment)
            puts = self._puts(record, raw)
        except Exception as exc:
            # Retrying cannot help a record that cannot be built or encoded, and it must not
            # hold up the records behind it: set aside with its reason, for an operator.
            self._quarantine(encoded, exc)
            return QUARANTINED
        try:
            if not self._put_once(puts):
                claimed = record["requestId"]
                record, raw = records.renamed(record, raw)
                log.error(
                    "audit_conflict: request id %r already names another record; "
                    "this one is stored as %r",
                    claimed,
                    record["requestId"],
                )
                self._put_once(self._puts(record, raw))
        except Exception as exc:
            self._error = exc
            failed.set()
            raise
        return STORED

    def _puts(self, record: dict, raw: dict) -> list[tuple[str, str, bytes]]:
        # Raw bodies first: the record triggers the ingest, which may read them.
        return [
            (self.raw_bucket, contract.raw_key(record), contract.dumps(raw)),
            (self.audit_bucket, contract.record_key(record), contract.dumps(record)),
        ]

    def _put_once(self, puts: list[tuple[str, str, bytes]]) -> bool:
        """Store each object unless its key is taken; False when one holds other bytes."""
        for bucket, key, body in puts:
            try:
                self._s3.put(bucket, key, body, "application/json")
            except ObjectExists:
                found = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
                if not records.same_document(found, body):
                    return False
        return True

    def _quarantine(self, encoded: bytes, exc: Exception) -> None:
        log.error("audit record quarantined (%s: %s)", type(exc).__name__, exc)
        quarantine = self.spool_dir / QUARANTINE_DIR
        quarantine.mkdir(exist_ok=True)
        name = new_spool_name(time.time(), 1)
        write_spool_file(quarantine, f"{name}.reason", f"{type(exc).__name__}: {exc}\n".encode())
        write_spool_file(quarantine, name, encoded)

    def _save_counters(self) -> None:
        if self.counters == self._saved:
            return
        try:
            data = json.dumps(self.counters).encode()
            write_spool_file(self.spool_dir, metrics.COUNTERS_FILE, data)
        except OSError:
            return  # the disk is in trouble; the writer reports that, the totals can wait
        self._saved = dict(self.counters)

    def _report_when_due(self) -> None:
        if time.monotonic() >= self._report_at:
            self.report()

    def report(self) -> None:
        """Print the backlog and what changed since the last report, for CloudWatch."""
        spooled, oldest = spool_backlog(self.spool_dir)
        since = {name: self.counters[name] - self._reported[name] for name in self.counters}
        line = metrics.emf_line(
            metrics.NAMESPACE,
            {
                "SpoolRecords": (spooled, "Count"),
                "SpoolOldestUnsentSeconds": (round(oldest, 3), "Seconds"),
                "DeliveredRecords": (since["delivered"], "Count"),
                "DeliveryFailures": (since["failures"], "Count"),
                "QuarantinedRecords": (since["quarantined"], "Count"),
            },
            event="audit_backlog",
        )
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        self._reported = dict(self.counters)
        self._report_at = time.monotonic() + self.metrics_seconds

    def _back_off(self, exc: Exception | None) -> None:
        if self._retry_delay == self.retry_initial_seconds:
            log.warning("S3 put failed (%s); records wait in %s", exc, self.spool_dir)
        self._retry_at = time.monotonic() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, self.retry_max_seconds)

    def _s3_down(self) -> bool:
        return time.monotonic() < self._retry_at

    def _wait_seconds(self) -> float:
        until = min(self._retry_at, self._report_at)
        return max(POLL_SECONDS, until - time.monotonic())


def _stdin_closed(timeout: float) -> bool:
    """Wait up to ``timeout`` for stdin; True once it has reached end of file."""
    readable, _, _ = select.select([sys.stdin.buffer], [], [], timeout)
    return bool(readable) and not os.read(sys.stdin.fileno(), 4096)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spool_dir", type=Path)
    parser.add_argument("--audit-bucket", required=True)
    parser.add_argument("--raw-bucket", required=True)
    parser.add_argument("--flush-seconds", type=float, default=20)
    parser.add_argument("--retry-initial-seconds", type=float, default=1)
    parser.add_argument("--retry-max-seconds", type=float, default=30)
    parser.add_argument("--concurrency", type=int, default=16, help="PUTs in flight")
    parser.add_argument("--metrics-seconds", type=float, default=60)
    options = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="audit-uploader: %(message)s")
    # Ctrl-C or a SIGTERM to the process group must not cut the flush short: the server
    # closes our stdin once it has spooled its queue, and that is when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.nice(NICENESS)
    Uploader(
        options.spool_dir,
        audit_bucket=options.audit_bucket,
        raw_bucket=options.raw_bucket,
        retry_initial_seconds=options.retry_initial_seconds,
        retry_max_seconds=options.retry_max_seconds,
        concurrency=options.concurrency,
        metrics_seconds=options.metrics_seconds,
    ).run(options.flush_seconds)


if __name__ == "__main__":
    main()
