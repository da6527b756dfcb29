"""Exports of a search as CSV or JSON lines: streamed to the browser up to ``STREAM_MAX_ROWS``,
beyond that written by a background job to the environment's audit bucket under ``exports/``
with a manifest (environment, search, rows, sha256) beside it, and downloaded through a
presigned link.

Memory stays flat either way: rows go out page by page, and the job uploads in multipart
parts of ``PART_BYTES``. The job beats a heartbeat with every page; ``reap_all`` (RQ's cron,
and the exports page) fails an export whose worker died or whose job was lost, saying why.
"""

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import django_rq
from django.conf import settings
from django.db import transaction
from django.http import QueryDict
from django.utils import timezone
from rq import Worker, get_current_job
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from audit_explorer import search as audit_search
from audit_explorer.models import Export
from core.spreadsheets import csv_lines
from provisioning.models import Environment

log = logging.getLogger(__name__)

STREAM_MAX_ROWS = 100_000
PAGE_ITEMS = 1000  # per Query: DynamoDB returns at most 1 MB a page anyway
PART_BYTES = 8 * 1024 * 1024  # S3 wants parts of 5 MiB or more, the last one excepted
LINK_SECONDS = 900
QUEUE = "audit"
JOB_TIMEOUT = 6 * 3600
COLUMNS = (
    "createdAt",
    "id",
    "project",
    "user",
    "requestType",
    "apiKeyId",
    "model",
    "stream",
    "status",
    "outcome",
    "latencyMs",
    "ttftMs",
    "promptTokens",
    "completionTokens",
    "totalTokens",
    "errorType",
    "promptPreview",
)
FORMATS = {"csv": "text/csv", "jsonl": "application/x-ndjson"}


class Cancelled(Exception):
    """The export was cancelled while it ran."""


def rows_of(search: audit_search.Search, environment: Environment) -> Iterator[dict]:
    """Every item of the search, in large pages (the cursor stays bound to the search)."""
    return audit_search.pages(replace(search, limit=PAGE_ITEMS), environment=environment)


def lines(rows: Iterable[dict], kind: str) -> Iterator[str]:
    """The rows as CSV (with a header) or JSON lines, one line at a time."""
    if kind == "jsonl":
        for row in rows:
            yield json.dumps(row, default=str) + "\n"
        return
    yield from csv_lines(rows, COLUMNS)


def expected_rows(search: audit_search.Search, environment: Environment) -> int:
    """At most how many rows the export holds, from the rollups (filters only remove)."""
    found = audit_search.summary(search, environment=environment)
    return 1 if found is None else found["requests"]


def start(user, environment: Environment, query: str, kind: str, expected: int) -> Export:
    """A new background export of ``environment``'s records, queued once the transaction
    commits."""
    export = Export.objects.create(
        user=user, environment=environment, query=query, format=kind, expected_rows=expected
    )
    transaction.on_commit(
        lambda: django_rq.get_queue(QUEUE).enqueue(
            write, export.pk, job_id=export.job_id, job_timeout=JOB_TIMEOUT
        )
    )
    return export


def cancel(export: Export) -> bool:
    """Stop a queued or running export; the job notices at its next page."""
    return bool(
        Export.objects.filter(pk=export.pk, status__in=Export.ACTIVE).update(
            status=Export.Status.CANCELLED, finished_at=timezone.now()
        )
    )


def write(export_id: int) -> None:
    """The job: the search's rows to ``exports/`` in the environment's audit bucket, then the
    manifest."""
    now, job = timezone.now(), get_current_job()
    updated = Export.objects.filter(pk=export_id, status=Export.Status.QUEUED).update(
        status=Export.Status.RUNNING,
        started_at=now,
        heartbeat_at=now,
        worker_name=job.worker_name if job else "",
    )
    if not updated:
        return  # cancelled before it started
    export = Export.objects.select_related("environment").get(pk=export_id)
    environment = export.environment
    s3, bucket = environment.client("s3"), environment.resource_name("AuditBucket")
    key = export.object_key()
    upload = MultipartUpload(s3, bucket, key, FORMATS[export.format])
    try:
        search = audit_search.parse(QueryDict(export.query))
        rows = _counted(export, rows_of(search, environment))
        for line in lines(rows, export.format):
            upload.write(line.encode())
        upload.finish()
    except Exception as exc:
        upload.abort()
        if isinstance(exc, Cancelled):
            return
        log.exception("export %s failed", export_id)
        Export.objects.filter(pk=export_id).update(
            status=Export.Status.FAILED, error=str(exc)[:2000], finished_at=timezone.now()
        )
        return
    export.refresh_from_db(fields=["rows"])
    manifest = {
        "environment": environment.name,
        "search": QueryDict(export.query).dict(),
        "format": export.format,
        "rows": export.rows,
        "bytes": upload.size,
        "sha256": upload.sha256.hexdigest(),
        "bucket": bucket,
        "object": key,
        "createdBy": export.user.get_username(),
        "createdAt": export.created_at.isoformat(),
        "finishedAt": datetime.now(UTC).isoformat(),
    }
    s3.put_object(
        Bucket=bucket,
        Key=export.manifest_key(),
        Body=json.dumps(manifest, indent=2).encode(),
        ContentType="application/json",
    )
    Export.objects.filter(pk=export_id, status=Export.Status.RUNNING).update(
        status=Export.Status.DONE,
        key=key,
        sha256=manifest["sha256"],
        size=upload.size,
        finished_at=timezone.now(),
    )


def _counted(export: Export, rows: Iterable[dict]) -> Iterator[dict]:
    """The rows, with progress and a heartbeat saved (and a cancel noticed) every page."""
    count = 0
    for row in rows:
        yield row
        count += 1
        if count % PAGE_ITEMS == 0:
            _progress(export.pk, count)
    _progress(export.pk, count)


def _progress(export_id: int, count: int) -> None:
    running = Export.objects.filter(pk=export_id, status=Export.Status.RUNNING)
    if not running.update(rows=count, heartbeat_at=timezone.now()):
        raise Cancelled  # or reaped meanwhile


def _timeout() -> timedelta:
    return timedelta(seconds=settings.RUN_HEARTBEAT_TIMEOUT_SECONDS)  # as for runs


def reap(export: Export) -> bool:
    """Fail ``export`` if its worker died (killed, out of memory) or its job was lost, saying
    why in its error; True when it did. Cheap while the export is alive: one look at its
    heartbeat, and Redis only when that is older than the timeout."""
    last = export.heartbeat_at or export.created_at
    if not export.is_active or timezone.now() - last < _timeout():
        return False
    reason = _why_stopped(export, last)
    if reason is None:
        return False
    ended = Export.objects.filter(pk=export.pk, status=export.status).update(
        status=Export.Status.FAILED, error=reason, finished_at=timezone.now()
    )
    export.refresh_from_db()
    return bool(ended)


def reap_all() -> int:
    """Reap every active export that needs it; returns how many were marked failed."""
    return sum(reap(export) for export in Export.objects.filter(status__in=Export.ACTIVE))


def _why_stopped(export: Export, last: datetime) -> str | None:
    """Why the export's job no longer runs; None while it waits in the queue or its worker
    still answers RQ."""
    try:
        job = Job.fetch(export.job_id, connection=django_rq.get_connection(QUEUE))
    except NoSuchJobError:
        return "Its job was lost from the queue (Redis restarted or was flushed): export again."
    status = job.get_status()
    if status in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED):
        return None
    if status == JobStatus.STARTED and _worker_on(export, job):
        return None
    why = "it was killed or ran out of memory"
    if status == JobStatus.FAILED:  # RQ's word, as when the work horse was killed
        result = job.latest_result()
        why = ((result and result.exc_string) or why).strip().splitlines()[-1].rstrip(" ;.")
    return (
        f"The worker ({export.worker_name or 'unknown'}) stopped at "
        f"{last.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC after {export.rows} rows: {why}. "
        "Nothing was kept: export again."
    )


def _worker_on(export: Export, job: Job) -> bool:
    """Whether the worker that took the export still answers RQ's heartbeat and runs it."""
    if not export.worker_name:
        return False
    key = Worker.redis_worker_namespace_prefix + export.worker_name
    worker = Worker.find_by_key(key, connection=job.connection)
    if worker is None or worker.get_current_job_id() != job.id:
        return False
    return bool(worker.last_heartbeat) and timezone.now() - worker.last_heartbeat < _timeout()


def download_url(export: Export, *, filename: str) -> str:
    """A presigned GET of the export's file, valid for ``LINK_SECONDS``."""
    environment = export.environment
    return environment.client("s3").generate_presigned_url(
        "get_object",
        Params={
            "Bucket": environment.resource_name("AuditBucket"),
            "Key": export.key,
            "ResponseContentDisposition": f'attachment; filename="{filename}"',
        },
        ExpiresIn=LINK_SECONDS,
    )


class MultipartUpload:
    """Bytes to one S3 object in parts of ``PART_BYTES``, hashed on the way; an object that
    stays under one part is a single PutObject."""

    def __init__(self, s3: Any, bucket: str, key: str, content_type: str) -> None:
        self.s3 = s3
        self.bucket, self.key, self.content_type = bucket, key, content_type
        self.buffer = bytearray()
        self.parts: list[dict] = []
        self.upload_id: str | None = None
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.buffer += data
        self.sha256.update(data)
        self.size += len(data)
        if len(self.buffer) >= PART_BYTES:
            self._send_part()

    def finish(self) -> None:
        if self.upload_id is None:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=bytes(self.buffer),
                ContentType=self.content_type,
            )
            return
        if self.buffer:
            self._send_part()
        self.s3.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts},
        )

    def abort(self) -> None:
        if self.upload_id is not None:
            self.s3.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
            )

    def _send_part(self) -> None:
        if self.upload_id is None:
            self.upload_id = self.s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self.content_type
            )["UploadId"]
        number = len(self.parts) + 1
        sent = self.s3.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=bytes(self.buffer),
        )
        self.parts.append({"PartNumber": number, "ETag": sent["ETag"]})
        self.buffer.clear()
