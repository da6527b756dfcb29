"""Which projects each API key may file its requests under, as the console last published them.

The console writes ``contract.ATTRIBUTION_KEY`` in the audit bucket whenever a key's
projects change (``console.attribution``): ``{"keys": {"<api key id>": ["project", ...]}}``.
Every serving process re-reads it every ``contract.ATTRIBUTION_SECONDS`` in a thread of its
own (a conditional GET: unchanged, S3 answers 304 with no body), so a change is enforced
within a minute without a restart, and the request path only looks a key up in a dict.

A key the object does not name is not bound: its requests file under whatever project they
say, as before bindings existed (the console flags such keys). When S3 cannot be read, the
last copy read stays in force, and it is kept in the spool directory so that a process
starting while S3 is unreachable enforces what its predecessor did.
"""

import json
import logging
import threading
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from centralllm import aws
from centralllm.audit import contract
from inference.writer import write_spool_file

log = logging.getLogger(__name__)

KEPT_COPY = "attribution.json"
# How long a starting process waits for its first read before serving: enforced from the
# first request when S3 answers, never held up long when it does not.
FIRST_READ_SECONDS = 5


class Attribution:
    def __init__(self, bucket: str, spool_dir: Path, *, every_seconds: float) -> None:
        self.bucket = bucket
        self.spool_dir = Path(spool_dir)
        self.every_seconds = every_seconds
        self._etag = ""
        self._allowed: dict[bytes, frozenset[bytes]] = {}
        self._stop = threading.Event()
        self._first_read = threading.Event()
        self._thread: threading.Thread | None = None
        kept = self.spool_dir / KEPT_COPY
        if kept.exists():
            self._load(kept.read_bytes())

    def allowed(self, api_key_id: bytes) -> frozenset[bytes] | None:
        """The projects (as header bytes) a key may file under; None for a key not bound."""
        return self._allowed.get(api_key_id)

    def start(self) -> None:
        """Re-read the bindings in a thread from now on, the first read waited for a moment."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="audit-attribution", daemon=True)
            self._thread.start()
            self._first_read.wait(FIRST_READ_SECONDS)

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._first_read.set()
            self._stop.wait(self.every_seconds)

    def refresh(self) -> bool:
        """Read the published bindings if they changed; False when S3 could not be read."""
        options = {"IfNoneMatch": self._etag} if self._etag else {}
        try:
            found = aws.client("s3").get_object(
                Bucket=self.bucket, Key=contract.ATTRIBUTION_KEY, **options
            )
            data = found["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("304", "NotModified"):
                return True
            if code == "NoSuchKey":  # nothing published yet: no key is bound
                if self._allowed or self._etag:  # once, not every 30 s to the disk
                    self._apply(b'{"keys": {}}', "")
                return True
            log.warning("attribution bindings not read (%s); the last ones stay in force", exc)
            return False
        except BotoCoreError as exc:
            log.warning("attribution bindings not read (%s); the last ones stay in force", exc)
            return False
        self._apply(data, found.get("ETag", ""))
        return True

    def _apply(self, data: bytes, etag: str) -> None:
        if not self._load(data):
            return
        self._etag = etag
        try:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            write_spool_file(self.spool_dir, KEPT_COPY, data)
        except OSError as exc:
            log.warning("attribution bindings not kept on disk: %s", exc)

    def _load(self, data: bytes) -> bool:
        try:
            keys = json.loads(data)["keys"]
            self._allowed = {
                key_id.encode(): frozenset(project.encode() for project in projects)
                for key_id, projects in keys.items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("attribution bindings unreadable (%s); the last ones stay in force", exc)
            return False
        return True
