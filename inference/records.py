"""Captured exchanges on disk, and what each becomes: the audit record and the raw bodies.

The middleware captures bytes and timings only. ``encode_exchange`` turns one exchange into
a JSON header line followed by the request and response bodies as they were on the wire
(unescaped); a spool file is one or more of these back to back, read with ``exchanges``.
The uploader turns each into documents with ``documents``, so all parsing happens out of
the serving process: the prompt and model from the request, the completion, usage and
error from a JSON response or from SSE chunks.
"""

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from centralllm.audit import contract

SPOOL_FORMAT = 1


def encode_exchange(meta: dict, request_body: bytes, response_body: bytes) -> bytes:
    header = {
        **meta,
        "format": SPOOL_FORMAT,
        "requestBytes": len(request_body),
        "responseBytes": len(response_body),
    }
    return json.dumps(header).encode() + b"\n" + request_body + response_body


def exchanges(data: bytes) -> Iterator[tuple[dict, bytes]]:
    """Each exchange of a spool file: its header and its encoded bytes."""
    start = 0
    while start < len(data):
        newline = data.index(b"\n", start)
        meta = json.loads(data[start:newline])
        if meta.get("format") != SPOOL_FORMAT:
            raise ValueError(f"unknown spool format {meta.get('format')!r}")
        end = newline + 1 + meta["requestBytes"] + meta["responseBytes"]
        yield meta, data[start:end]
        start = end


def header(encoded: bytes) -> dict:
    """The JSON header of one encoded exchange (request id, times, headers)."""
    return json.loads(encoded[: encoded.index(b"\n")])


def documents(encoded: bytes, deployment: dict) -> tuple[dict, dict]:
    """The audit record and the raw document of one encoded exchange."""
    line, _, bodies = encoded.partition(b"\n")
    meta = json.loads(line)
    split = meta["requestBytes"]
    request, request_kept = _json_or_text(bodies[:split].decode("utf-8", errors="replace"))
    response_text = bodies[split:].decode("utf-8", errors="replace")
    stream = (meta.get("contentType") or "").startswith("text/event-stream")
    if stream:
        events = _sse_events(response_text)
        response, answer = events, _answer_from_events(events)
    else:
        parsed, response = _json_or_text(response_text)
        answer = _answer_from_body(parsed)
    status = meta["status"] or 500
    error = meta.get("error") or answer["error"]
    if error is None and status >= 400:
        error = {"type": "http_error", "message": f"HTTP {status}"}
    body = request if isinstance(request, dict) else {}
    record = contract.build_record(
        request_id=meta["requestId"],
        created_at=datetime.fromtimestamp(meta["createdAt"], UTC),
        project=_header(meta, contract.SOURCE_HEADER),
        user=_header(meta, contract.USER_HEADER),
        request_type=_header(meta, contract.REQUEST_TYPE_HEADER),
        api_key_id=_header(meta, contract.API_KEY_ID_HEADER),
        method=meta["method"],
        path=meta["path"],
        model=_text(body.get("model")) or answer["model"],
        stream=stream,
        status=status,
        cancelled=meta["cancelled"],
        latency_ms=meta["latencyMs"],
        ttft_ms=meta["ttftMs"] if stream else None,
        usage=answer["usage"],
        error=error,
        deployment=deployment,
        prompt=_prompt(body),
        completion=answer["completion"],
        flags=(
            *meta.get("flags", ()),
            *(("truncated",) if meta["responseTruncated"] else ()),
        ),
    )
    raw = {
        "schemaVersion": contract.SCHEMA_VERSION,
        "requestId": meta["requestId"],
        "request": {
            "method": meta["method"],
            "path": meta["path"],
            "body": request_kept,
            "truncated": meta["requestTruncated"],
        },
        "response": {
            "status": status,
            "stream": stream,
            "body": response,
            "truncated": meta["responseTruncated"],
        },
    }
    return record, raw


def renamed(record: dict, raw: dict) -> tuple[dict, dict]:
    """The documents of an exchange whose request id already names another record: under a
    new id, flagged ``audit_conflict``, the raw document saying which id it claimed."""
    new_id = contract.new_request_id()
    flags = [*record["flags"], "audit_conflict"]
    record = {**record, "requestId": new_id, "flags": flags}
    record["rawKey"] = contract.raw_key(record)
    raw = {**raw, "requestId": new_id, "claimedRequestId": raw["requestId"]}
    return contract.validate_record(record), raw


def same_document(stored: bytes, ours: bytes) -> bool:
    """Whether an object already stored is ours, put before (a retry). A record spooled by a
    process that died and delivered by its successor differs only in ``deployment``."""
    if stored == ours:
        return True
    try:
        stored_document, our_document = json.loads(stored), json.loads(ours)
    except (ValueError, RecursionError):
        return False
    if not isinstance(stored_document, dict):
        return False
    stored_document.pop("deployment", None)
    our_document.pop("deployment", None)
    return stored_document == our_document


def _header(meta: dict, name: str) -> str | None:
    return meta["headers"].get(name, "").strip() or None


def _json_or_text(text: str) -> tuple[Any, Any]:
    """A body as read and as the raw document keeps it (see ``_json``); the text, twice, when
    it is no JSON."""
    if not text:
        return None, None
    parsed = _json(text)
    return (text, text) if parsed is None else parsed


def _json(text: str) -> tuple[Any, Any] | None:
    """The JSON in ``text`` as read, and as the raw document keeps it: the same, or the text
    when the JSON holds NaN or Infinity (RFC 8259's JSON has neither, and other readers refuse
    them). None when it is no JSON, or nested deeper than ``MAX_JSON_DEPTH``: a caller decides
    what a body holds (100 KB of ``[`` nest 100,000 deep), and parsing, encoding and the
    surrogate replacement all recurse."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    shape = _shape(value)
    if shape == "deep":
        return None
    return value, text if shape == "not finite" else value


# Far deeper than any request to the model (a chat nests 4 levels, a tool's schema a few more),
# far shallower than Python's recursion limit.
MAX_JSON_DEPTH = 100


def _shape(value: Any) -> str | None:
    """What keeps parsed JSON out of a raw document as it is: "deep" (nested deeper than
    MAX_JSON_DEPTH) or "not finite" (NaN or Infinity); None. Walked without recursion."""
    finite = True
    pending = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                return "deep"
            children = item.values() if isinstance(item, dict) else item
            pending += [(child, depth + 1) for child in children]
        elif isinstance(item, float) and not math.isfinite(item):
            finite = False
    return None if finite else "not finite"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _sse_events(text: str) -> list:
    """The JSON payloads of ``data:`` lines, as the raw document keeps them (``_json``);
    ``[DONE]`` and anything unparsable are left out."""
    events = []
    for line in text.splitlines():
        if line.startswith("data:"):
            payload = line[5:].strip()
            if payload and payload != "[DONE]" and (parsed := _json(payload)) is not None:
                events.append(parsed[1])
    return events


def _content(value: Any) -> str:
    """Text of an OpenAI content field: a string, or a list of parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        # A part's text is whatever the caller sent: only strings are text.
        return "".join(
            part["text"]
            for part in value
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _answer(model: Any, usage: Any, error: Any, texts: dict[int, list[str]]) -> dict:
    completion = "\n\n".join("".join(texts[index]) for index in sorted(texts)) if texts else None
    if isinstance(error, dict):
        # The code says most (``attribution_refused`` rather than ``invalid_request_error``).
        kind = _text(error.get("code")) or _text(error.get("type")) or "error"
        error = {"type": kind, "message": str(error.get("message"))}
    else:
        error = None
    return {
        "model": _text(model),
        "usage": usage if isinstance(usage, dict) else None,
        "error": error,
        "completion": completion,
    }


def _answer_from_body(body: Any) -> dict:
    """Completion, usage, model and error of a plain JSON response."""
    if not isinstance(body, dict):
        return _answer(None, None, None, {})
    texts: dict[int, list[str]] = {}
    for choice in body.get("choices") or ():
        if isinstance(choice, dict):
            message = choice.get("message") or {}
            text = _content(message.get("content")) if message else _content(choice.get("text"))
            texts.setdefault(choice.get("index") or 0, []).append(text)
    # vLLM answers errors as {"error": {...}}, older releases as {"object": "error", ...}.
    error = (
        body.get("error") if "error" in body else body if body.get("object") == "error" else None
    )
    return _answer(body.get("model"), body.get("usage"), error, texts)


def _answer_from_events(events: list) -> dict:
    """The same from SSE chunks: deltas joined per choice; usage is the last one sent."""
    model = usage = error = None
    texts: dict[int, list[str]] = {}
    for event in events:
        if not isinstance(event, dict):
            continue
        model = model or event.get("model")
        usage = event.get("usage") or usage
        error = event.get("error") or error
        for choice in event.get("choices") or ():
            if isinstance(choice, dict):
                delta = choice.get("delta")
                text = _content(delta.get("content")) if delta else _content(choice.get("text"))
                texts.setdefault(choice.get("index") or 0, []).append(text)
    return _answer(model, usage, error, texts)


def _prompt(body: dict) -> str | None:
    """The prompt as text: chat messages as ``role: content`` lines, or the completion prompt."""
    messages = body.get("messages")
    if isinstance(messages, list):
        return "\n".join(
            f"{message.get('role')}: {_content(message.get('content'))}"
            for message in messages
            if isinstance(message, dict)
        )
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        return "\n".join(part if isinstance(part, str) else json.dumps(part) for part in prompt)
    return None
