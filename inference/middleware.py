"""Audit every request to vLLM's OpenAI API, without slowing the stream down.

Loaded by ``vllm serve ... --middleware inference.middleware.AuditMiddleware``
(vLLM calls ``app.add_middleware(AuditMiddleware)``). Plain ASGI, no framework:

- ``/v1/*`` requests must carry the three ``REQUIRED_HEADERS``; one without gets a 400 in
  OpenAI's error format naming the header, and that rejection is audited too. A header
  longer than ``contract.HEADER_LIMITS`` allows gets a 400 as well (``header_too_long``); its
  record holds the value cut to the limit, so that the record stays valid.
  ``EXEMPT_PATHS`` (health, metrics, model list) pass untouched.
- The request body is read whole before the app sees it (vLLM reads it whole anyway), so
  the record holds the whole prompt: a body larger than ``AUDIT_MAX_BODY_BYTES`` is refused
  with a 413 in OpenAI's error format (``request_too_large``) and that refusal is audited,
  rather than served with a record that could not show what was asked (a padding field
  first would push the prompt out of a partial capture). The model's context (128k tokens,
  about half a megabyte of text) fits well within the default of 1 MiB.
- Every response message is forwarded the moment the app sends it (a tee, never a buffer);
  the middleware keeps references to the response body, up to ``AUDIT_MAX_BODY_BYTES``
  (the record then says it was cut), and timestamps. Everything else happens off the event
  loop: the writer thread spools the captured bytes to disk, and a separate uploader process
  parses them into the record (prompt, completion, usage, SSE chunks) and puts it to S3.
- The gateway's request id (``x-request-id``) and API key id (``x-api-key-id``) are trusted
  only when the request carries the gateway's secret (``contract.GATEWAY_SECRET_HEADER``,
  equal to ``AUDIT_GATEWAY_SECRET``): anyone inside the VPC can reach this port and send
  those headers. Without it the record gets a new id, no key id and the flag
  ``untrusted_source``. The secret header goes no further (not to vLLM, not to the record).
  The request id is the record's S3 key, is returned in ``x-request-id`` and is passed on
  to vLLM in ``x-request-id`` (vLLM's own request id, so its logs match).
- A key bound to projects (``inference.attribution``) may file only under them: a request
  whose ``x-llm-source`` is another project gets a 403 in OpenAI's error format
  (``attribution_refused``), audited as such.
- A client that goes away before the response is complete makes the record ``cancelled``.
- What clients got (status, time to first token) is counted for CloudWatch by
  ``inference.answers``, which holds nothing else of the request.
- The ASGI lifespan passes through to the app; on its shutdown the writer is flushed.
"""

import asyncio
import hmac
import json
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from centralllm.audit import contract
from inference import records
from inference.answers import AnswerMetrics
from inference.attribution import Attribution
from inference.writer import AuditWriter

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUIRED_HEADERS = contract.REQUIRED_HEADERS
# Only the gateway's header names a record: the id is the record's S3 key, so an id a client
# could choose (x-amzn-requestid, say) could overwrite another request's record.
REQUEST_ID_HEADER = contract.REQUEST_ID_HEADER.encode()
API_KEY_ID_HEADER = contract.API_KEY_ID_HEADER.encode()
SOURCE_HEADER = contract.SOURCE_HEADER.encode()
GATEWAY_SECRET_HEADER = contract.GATEWAY_SECRET_HEADER.encode()
EXEMPT_PATHS = frozenset({"/health", "/metrics", "/v1/models"})
AUDITED_PREFIX = "/v1/"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024

_HEADERS_READ = frozenset(
    name.encode()
    for name in (contract.REQUEST_ID_HEADER, *REQUIRED_HEADERS, contract.API_KEY_ID_HEADER)
)
# Not passed on to the app: the request id is set anew, the secret stays here.
_HEADERS_REPLACED = frozenset({REQUEST_ID_HEADER, GATEWAY_SECRET_HEADER})


def _rejection(header: str | None, code: str, message: str) -> bytes:
    error = {"message": message, "type": "invalid_request_error", "param": header, "code": code}
    return json.dumps({"error": error}).encode()


_MISSING = {
    header.encode(): _rejection(
        header,
        "missing_header",
        f"Missing required header '{header}'. Every request to /v1 must send "
        f"{', '.join(REQUIRED_HEADERS)}.",
    )
    for header in REQUIRED_HEADERS
}
_TOO_LONG = {
    header: _rejection(
        header,
        "header_too_long",
        f"Header '{header}' is longer than its limit of {limit} bytes (UTF-8).",
    )
    for header, (_, limit) in contract.HEADER_LIMITS.items()
}
_LIMITS = {header.encode(): limit for header, (_, limit) in contract.HEADER_LIMITS.items()}


def _refused_attribution(project: bytes) -> bytes:
    return _rejection(
        contract.SOURCE_HEADER,
        "attribution_refused",
        f"This API key may not file requests under project "
        f"'{project.decode('latin-1')[:128]}': ask the key's owner to add the project to the "
        "key in the console, or use a key of that project.",
    )


class AuditMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        writer: AuditWriter | None = None,
        *,
        gateway_secret: str | None = None,
        attribution: Attribution | None = None,
        answers: AnswerMetrics | None = None,
    ) -> None:
        self.app = app
        self.writer = writer or AuditWriter.from_env()
        self.max_body_bytes = int(os.environ.get("AUDIT_MAX_BODY_BYTES") or DEFAULT_MAX_BODY_BYTES)
        if gateway_secret is None:
            gateway_secret = os.environ.get(contract.GATEWAY_SECRET_ENV, "")
        self.gateway_secret = gateway_secret.strip().encode()
        self.attribution = attribution or Attribution(
            self.writer.audit_bucket,
            self.writer.spool_dir,
            every_seconds=contract.ATTRIBUTION_SECONDS,
        )
        self.attribution.start()
        self.answers = answers or AnswerMetrics()
        self.answers.start()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path.startswith(AUDITED_PREFIX) and path not in EXEMPT_PATHS:
                await self._audited(scope, receive, send)
                return
        elif scope["type"] == "lifespan":
            await self.app(scope, receive, self._flush_on_shutdown(send))
            return
        await self.app(scope, receive, send)

    def _flush_on_shutdown(self, send: Send) -> Send:
        async def lifespan_send(message: Message) -> None:
            if message["type"].startswith("lifespan.shutdown."):
                self.attribution.stop()
                self.answers.stop()
                await asyncio.to_thread(self.writer.close)
            await send(message)

        return lifespan_send

    async def _audited(self, scope: Scope, receive: Receive, send: Send) -> None:
        exchange = AuditedExchange(scope, self.max_body_bytes, self.gateway_secret)
        request_id_header = (REQUEST_ID_HEADER, exchange.request_id.encode())
        # vLLM takes x-request-id as its own request id: its logs then match the record.
        headers = [header for header in scope["headers"] if header[0] not in _HEADERS_REPLACED]
        scope = {**scope, "headers": [*headers, request_id_header]}

        replayed = False

        async def receive_after_read() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                body = exchange.request_bytes()
                return {"type": "http.request", "body": body, "more_body": False}
            message = await receive()
            if message["type"] == "http.disconnect":
                exchange.disconnected()
            return message

        async def send_tee(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*_without_request_id(message.get("headers", ())), request_id_header]
                message = {**message, "headers": headers}
                exchange.response_started(message["status"], headers)
            elif message["type"] == "http.response.body":
                exchange.add_response_body(
                    message.get("body", b""), message.get("more_body", False)
                )
            try:
                await send(message)
            except OSError:
                exchange.disconnected()
                raise

        try:
            rejection = exchange.rejection(self.attribution) or await exchange.read_request(receive)
            if rejection:
                await _reject(send_tee, *rejection)
            else:
                await self.app(scope, receive_after_read, send_tee)
        except asyncio.CancelledError:
            exchange.disconnected()
            raise
        except Exception as exc:
            exchange.failed(exc)
            raise
        finally:
            exchange.finish()
            self.writer.submit(exchange)
            self.answers.add(*exchange.answer())


def _from_gateway(headers: list, secret: bytes) -> bool:
    """Whether the request carries the gateway's secret (never, when none is configured)."""
    if not secret:
        return False
    for name, value in headers:
        if name == GATEWAY_SECRET_HEADER:
            return hmac.compare_digest(value.strip(), secret)
    return False


def _without_request_id(headers) -> list:
    # ASGI header names are lowercase (servers lowercase requests; Starlette, responses).
    return [header for header in headers if header[0] != REQUEST_ID_HEADER]


async def _reject(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class AuditedExchange:
    """One request and its response as seen on the wire, turned into a record later."""

    __slots__ = (
        "cancelled",
        "complete",
        "created_at",
        "declared_size",
        "exception",
        "finished_at",
        "first_body_at",
        "flags",
        "headers",
        "max_body_bytes",
        "method",
        "path",
        "request_body",
        "request_id",
        "request_size",
        "response_body",
        "response_headers",
        "response_size",
        "started_at",
        "status",
    )

    def __init__(self, scope: Scope, max_body_bytes: int, gateway_secret: bytes = b"") -> None:
        self.started_at = time.perf_counter()
        self.created_at = time.time()
        self.max_body_bytes = max_body_bytes
        self.method = scope["method"]
        self.path = scope["path"]
        self.headers = {name: value for name, value in scope["headers"] if name in _HEADERS_READ}
        self.declared_size = _content_length(scope["headers"])
        self.flags: list[str] = []
        if not _from_gateway(scope["headers"], gateway_secret):
            # Anyone could have sent these: an id chosen to overwrite another request's
            # record, a key id to pass for another key.
            self.headers.pop(REQUEST_ID_HEADER, None)
            self.headers.pop(API_KEY_ID_HEADER, None)
            self.flags.append("untrusted_source")
        self.request_id = self._gateway_request_id() or contract.new_request_id()
        self.request_body: list[bytes] = []
        self.request_size = 0
        self.response_body: list[bytes] = []
        self.response_size = 0
        self.response_headers: list = []
        self.status: int | None = None
        self.first_body_at: float | None = None
        self.finished_at: float | None = None
        self.complete = False
        self.cancelled = False
        self.exception: BaseException | None = None

    def _gateway_request_id(self) -> str | None:
        # ASGI header values are bytes as sent; latin-1 maps each byte to one character.
        value = self.headers.get(REQUEST_ID_HEADER, b"").strip().decode("latin-1")
        return value if contract.is_valid_request_id(value) else None

    def rejection(self, attribution: Attribution) -> tuple[int, bytes] | None:
        """The 400 for a required header that is missing or one that is too long; the 403
        for a project the request's API key may not file under."""
        for name, body in _MISSING.items():
            # Blank as the record reads it (str.strip, see records): HTTP carries a no-break
            # space (b"\xa0") or a next line (b"\x85") as a value, which names no one.
            if not self.headers.get(name, b"").decode("latin-1").strip():
                return 400, body
        # Decoded as the record will have them (see encoded), measured as the contract does.
        values = {name.decode(): value.decode("latin-1") for name, value in self.headers.items()}
        too_long = contract.overlong_header(values)
        if too_long:
            return 400, _TOO_LONG[too_long]
        allowed = attribution.allowed(self.headers.get(API_KEY_ID_HEADER, b"").strip())
        project = self.headers[SOURCE_HEADER].strip()
        if allowed is not None and project not in allowed:
            return 403, _refused_attribution(project)
        return None

    async def read_request(self, receive: Receive) -> tuple[int, bytes] | None:
        """Read the request body whole; the 413 when it is larger than the capture limit
        (said by its Content-Length before anything is read, or found while reading)."""
        if self.declared_size > self.max_body_bytes:
            self.request_size = self.declared_size
            return 413, _too_large(self.declared_size, self.max_body_bytes)
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected()
                return None
            self.add_request_body(message.get("body", b""))
            if self.request_size > self.max_body_bytes:
                return 413, _too_large(None, self.max_body_bytes)
            if not message.get("more_body", False):
                return None

    def request_bytes(self) -> bytes:
        return b"".join(self.request_body)

    # Bookkeeping on the event loop: references and timestamps only.

    def add_request_body(self, body: bytes) -> None:
        self.request_size = _capture(
            self.request_body, body, self.request_size, self.max_body_bytes
        )

    def response_started(self, status: int, headers: list) -> None:
        self.status = status
        self.response_headers = headers

    def add_response_body(self, body: bytes, more_body: bool) -> None:
        if body:
            if self.first_body_at is None:
                self.first_body_at = time.perf_counter()
            self.response_size = _capture(
                self.response_body, body, self.response_size, self.max_body_bytes
            )
        if not more_body:
            self.complete = True
            self.finished_at = time.perf_counter()

    def disconnected(self) -> None:
        if not self.complete and not self.cancelled:
            self.cancelled = True
            self.finished_at = time.perf_counter()

    def failed(self, exc: BaseException) -> None:
        self.exception = exc

    def finish(self) -> None:
        if self.finished_at is None:
            self.finished_at = time.perf_counter()

    def answer(self) -> tuple[int | None, float | None]:
        """What the client got, for the serving metrics: the status (None when it went away
        before any response; 500 when the app never answered, as the server then does) and
        the time to first token of a stream (a plain response's first bytes are its end)."""
        status = self.status
        if status is None:
            status = None if self.cancelled else 500
        streamed = self._content_type().startswith("text/event-stream")
        return status, self._ttft_ms() if streamed else None

    def _ttft_ms(self) -> float | None:
        if self.first_body_at is None:
            return None
        return (self.first_body_at - self.started_at) * 1000

    # In the writer thread.

    def encoded(self) -> bytes:
        """The exchange as a spool entry (see inference.records)."""
        error = None
        if self.exception is not None:
            error = {"type": type(self.exception).__name__, "message": str(self.exception)}
        elif self.cancelled:
            error = {"type": "cancelled", "message": "the client went away before the end"}
        meta = {
            "requestId": self.request_id,
            "createdAt": self.created_at,
            "headers": {
                name.decode(): _recorded(name, value) for name, value in self.headers.items()
            },
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "contentType": self._content_type(),
            "cancelled": self.cancelled,
            "error": error,
            "latencyMs": (self.finished_at - self.started_at) * 1000,
            "ttftMs": self._ttft_ms(),
            "requestTruncated": self.request_size > self.max_body_bytes,
            "responseTruncated": self.response_size > self.max_body_bytes,
            "flags": self.flags,
        }
        return records.encode_exchange(
            meta,
            b"".join(self.request_body),
            b"".join(self.response_body),
        )

    def _content_type(self) -> str:
        for name, value in self.response_headers:
            if name.lower() == b"content-type":
                return value.decode("latin-1").lower()
        return ""


def _content_length(headers: list) -> int:
    """The Content-Length a request declares; 0 when it declares none (chunked) or nonsense."""
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


def _too_large(size: int | None, limit: int) -> bytes:
    of = f" of {size} bytes" if size is not None else ""
    return _rejection(
        None,
        "request_too_large",
        f"The request body{of} is larger than {limit} bytes, the most the audit records whole: "
        "send a shorter request.",
    )


def _recorded(name: bytes, value: bytes) -> str:
    """A header value for the record: cut to its limit (at a character boundary), if it has
    one, so that a request refused for a long header still leaves a valid record."""
    text = value.decode("latin-1")
    limit = _LIMITS.get(name)
    return text if limit is None else text.encode()[:limit].decode(errors="ignore")


def _capture(chunks: list[bytes], body: bytes, size: int, limit: int) -> int:
    """Keep what of ``body`` fits under ``limit`` (a reference, or one copy of the part that
    fits, so that one huge chunk is not held whole until the writer runs); the new size."""
    room = limit - size
    if body and room > 0:
        chunks.append(body if len(body) <= room else body[:room])
    return size + len(body)
