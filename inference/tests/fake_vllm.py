"""A plain ASGI app that answers like vLLM's OpenAI server, for tests and the benchmark.

Routes: /health, /v1/models, /v1/chat/completions (plain JSON, or SSE when ``"stream": true``),
/v1/fail (a 500 in vLLM's error format). It streams like Starlette's StreamingResponse for
ASGI 2.3 servers: it listens for ``http.disconnect`` while it sends, and stops when the
client is gone.

Test hooks in the request body: ``"delay"`` (seconds before answering, like a model),
``"untracked"`` (leave it out of ``SEEN``, for the benchmark's thousands of requests),
``"chunk_delay"`` (seconds between chunks), ``"chunks"``
(how many content chunks), ``"gate"`` (the name of a ``GATES`` event that must be set, by the
client once it holds the first chunk, before the remaining chunks are sent).
``SEEN`` records what each request looked like from inside, by its ``x-request-id``.
``spool_chats`` writes what the middleware would spool for plain chat completions of this app.
"""

import asyncio
import hashlib
import json
import threading
import time
from pathlib import Path

from inference import records, writer

MODEL = "ministral-8b-instruct"
REPLY_WORDS = ["The", " quick", " brown", " fox", " jumps"]
USAGE = {"prompt_tokens": 7, "completion_tokens": len(REPLY_WORDS), "total_tokens": 12}
# Settable by a client thread, awaited by the app: threading events with a bounded wait.
GATES: dict[str, threading.Event] = {}
GATE_TIMEOUT_SECONDS = 5
SEEN: dict[str, dict] = {}
LIFESPAN: list[str] = []


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    path = scope["path"]
    if path == "/health":
        await _respond(send, 200, b"", "text/plain")
    elif path == "/v1/models":
        models = {"object": "list", "data": [{"id": MODEL, "object": "model"}]}
        await _respond(send, 200, json.dumps(models).encode())
    elif path == "/v1/chat/completions":
        await _chat(scope, receive, send)
    elif path == "/v1/fail":
        await _read_body(receive)
        error = {
            "message": "engine died",
            "type": "InternalServerError",
            "param": None,
            "code": 500,
        }
        await _respond(send, 500, json.dumps({"error": error}).encode())
    else:
        await _respond(send, 404, b'{"detail":"Not Found"}')


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        LIFESPAN.append(message["type"])
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(send, status: int, body: bytes, content_type: str = "application/json"):
    headers = [(b"content-type", content_type.encode()), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _headers(scope) -> dict[str, str]:
    return {name.decode(): value.decode() for name, value in scope["headers"]}


async def _chat(scope, receive, send) -> None:
    raw = await _read_body(receive)
    body = json.loads(raw)
    headers = _headers(scope)
    seen = {"body_sha256": hashlib.sha256(raw).hexdigest(), "headers": headers}
    if not body.get("untracked"):
        SEEN[headers.get("x-request-id", "")] = seen
    if body.get("delay"):
        await asyncio.sleep(body["delay"])
    if not body.get("stream"):
        await _respond(send, 200, _completion(body.get("model", MODEL)))
        return
    streaming = asyncio.ensure_future(_stream(body, send, seen))
    disconnect = asyncio.ensure_future(_wait_for_disconnect(receive))
    done, _ = await asyncio.wait([streaming, disconnect], return_when=asyncio.FIRST_COMPLETED)
    for task in (streaming, disconnect):
        task.cancel()
    seen["disconnected"] = disconnect in done
    for task in done:
        task.result()


def _completion(model: str) -> bytes:
    answer = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(REPLY_WORDS)},
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }
    return json.dumps(answer).encode()


def spool_chats(
    spool_dir: Path,
    request_ids: list[str],
    created_at: float,
    headers: dict[str, str],
    bodies: dict[str, bytes] | None = None,
) -> None:
    """One spool file with a plain chat completion per request id, as the middleware writes;
    ``bodies`` gives some of them another request body."""
    chat = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "ping"}]})
    entries = []
    for request_id in request_ids:
        meta = {
            "requestId": request_id,
            "createdAt": created_at,
            "headers": headers,
            "method": "POST",
            "path": "/v1/chat/completions",
            "status": 200,
            "contentType": "application/json",
            "cancelled": False,
            "error": None,
            "latencyMs": 12.5,
            "ttftMs": None,
            "requestTruncated": False,
            "responseTruncated": False,
        }
        body = (bodies or {}).get(request_id, chat.encode())
        entries.append(records.encode_exchange(meta, body, _completion(MODEL)))
    name = writer.new_spool_name(created_at, len(entries))
    writer.write_spool_file(spool_dir, name, b"".join(entries))


async def _wait_for_disconnect(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _stream(body: dict, send, seen: dict) -> None:
    headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    model = body.get("model", MODEL)
    delay = float(body.get("chunk_delay", 0))
    words = (REPLY_WORDS * 100)[: int(body.get("chunks", len(REPLY_WORDS)))]
    deltas = [{"role": "assistant", "content": ""}] + [{"content": word} for word in words]
    gate = GATES.get(body.get("gate", ""))
    seen["sent"] = []
    for number, delta in enumerate(deltas):
        last = number == len(deltas) - 1
        chunk = {
            "id": "chatcmpl-2",
            "object": "chat.completion.chunk",
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": "stop" if last else None}],
            "usage": USAGE if last else None,
        }
        await send(_event(chunk))
        seen["sent"].append(time.perf_counter())
        if number == 0 and gate is not None:
            seen["gate_opened"] = await asyncio.to_thread(gate.wait, GATE_TIMEOUT_SECONDS)
        elif delay:
            await asyncio.sleep(delay)
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


def _event(chunk: dict) -> dict:
    data = b"data: " + json.dumps(chunk).encode() + b"\n\n"
    return {"type": "http.response.body", "body": data, "more_body": True}


def audited():
    """The app behind the audit middleware configured from the environment, as vLLM loads it:
    ``uvicorn --factory inference.tests.fake_vllm:audited``."""
    from inference.middleware import AuditMiddleware

    return AuditMiddleware(app)
