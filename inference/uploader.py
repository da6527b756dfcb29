"""The audit uploader: spool files in, records in S3 out. Started by ``AuditWriter``.

    python -m inference.uploader SPOOL_DIR --audit-bucket B --raw-bucket B

Runs at low CPU priority so that serving always comes first; a backlog just waits on disk.
Delivers the oldest file first: the raw bodies to ``raw_key``, then the record to
``record_key`` (the record triggers the ingest, so what it points at must exist already),
then deletes the file. When S3 fails it backs off exponentially and tries again.
It stops when its stdin reaches end of file (the writer closed it, or the serving process
died), after one last delivery pass of at most ``--flush-seconds``; SIGINT and SIGTERM, which
reach it with its server's process group, are ignored for that reason.
"""

import argparse
import logging
import os
import select
import signal
import sys
import time
from pathlib import Path

from centralllm import aws
from centralllm.audit import contract
from inference import records
from inference.writer import new_spool_name, spooled_files, write_spool_file

log = logging.getLogger("inference.uploader")

NICENESS = 10
# How often an idle uploader looks at the spool.
POLL_SECONDS = 0.05


class Uploader:
    def __init__(
        self,
        spool_dir: Path,
        *,
        audit_bucket: str,
        raw_bucket: str,
        retry_initial_seconds: float,
        retry_max_seconds: float,
    ) -> None:
        self.spool_dir = spool_dir
        self.audit_bucket = audit_bucket
        self.raw_bucket = raw_bucket
        self.retry_initial_seconds = retry_initial_seconds
        self.retry_max_seconds = retry_max_seconds
        self.deployment = contract.deployment_from_env()
        self._retry_delay = retry_initial_seconds
        self._retry_at = 0.0  # monotonic time before which S3 is taken to be down

    def run(self, flush_seconds: float) -> None:
        while True:
            if not self._s3_down():
                self.deliver()
            if _stdin_closed(self._wait_seconds()):
                break
        deadline = time.monotonic() + flush_seconds
        while not self._s3_down() and not self.deliver(deadline):
            if time.monotonic() > deadline:
                break
        left = len(spooled_files(self.spool_dir))
        if left:
            log.warning("%d records stay in %s for the next start", left, self.spool_dir)

    def deliver(self, deadline: float | None = None) -> bool:
        """Deliver spooled records, oldest first; True when the spool was emptied."""
        for path in spooled_files(self.spool_dir):
            try:
                entries = [encoded for _, encoded in records.exchanges(path.read_bytes())]
            except FileNotFoundError:
                continue
            except Exception:
                # Retrying cannot help a file we cannot read: keep it aside for an operator.
                log.exception("unreadable spool file %s moved aside", path.name)
                path.rename(path.with_suffix(".unreadable"))
                continue
            for index, encoded in enumerate(entries):
                try:
                    self._deliver_one(encoded)
                except Exception as exc:
                    self._back_off(exc)
                    self._keep(path, entries[index:])
                    return False
                if deadline is not None and time.monotonic() > deadline:
                    self._keep(path, entries[index + 1 :])
                    return False
            path.unlink(missing_ok=True)
        if self._retry_delay != self.retry_initial_seconds:
            log.info("S3 answers again; the spool is delivered")
            self._retry_delay = self.retry_initial_seconds
        return True

    def _keep(self, path: Path, rest: list[bytes]) -> None:
        """Rewrite ``path`` with what is left, so that nothing delivered is ever put again."""
        if rest:
            write_spool_file(self.spool_dir, path.name, b"".join(rest))
        else:
            path.unlink(missing_ok=True)

    def _deliver_one(self, encoded: bytes) -> None:
        try:
            record, raw = records.documents(encoded, self.deployment)
        except Exception:
            log.exception("unreadable spool entry kept aside")
            write_spool_file(self.spool_dir, f"{new_spool_name()}.unreadable", encoded)
            return
        self._put(record, raw)

    def _put(self, record: dict, raw: dict) -> None:
        # Few attempts inside boto3: the spool and our backoff do the patient retrying.
        s3 = aws.client("s3", connect_timeout=2, read_timeout=10, max_attempts=2)
        s3.put_object(
            Bucket=self.raw_bucket,
            Key=contract.raw_key(record),
            Body=contract.dumps(raw),
            ContentType="application/json",
        )
        s3.put_object(
            Bucket=self.audit_bucket,
            Key=contract.record_key(record),
            Body=contract.dumps(record),
            ContentType="application/json",
        )

    def _back_off(self, exc: Exception) -> None:
        if self._retry_delay == self.retry_initial_seconds:
            log.warning("S3 put failed (%s); records wait in %s", exc, self.spool_dir)
        self._retry_at = time.monotonic() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, self.retry_max_seconds)

    def _s3_down(self) -> bool:
        return time.monotonic() < self._retry_at

    def _wait_seconds(self) -> float:
        return max(POLL_SECONDS, self._retry_at - time.monotonic())


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
    ).run(options.flush_seconds)


if __name__ == "__main__":
    main()
