"""Hostile callers against the serving side of the audit trail, as property tests (issue 20).

Whatever a caller puts in the three ``x-llm-*`` headers (raw bytes, not UTF-8 included, from
empty to oversized, twice) and in the body (any Unicode with lone surrogates as JSON escapes,
NaN, JSON nested 100,000 deep, bytes that are no JSON, more than the capture limit, declared
or chunked), the middleware under a real uvicorn answers normally or refuses in OpenAI's error
format, and every request leaves exactly one record in S3 that the contract accepts and that
says what happened; the writer and the uploader process have drained the spool after every
batch, and quarantined nothing. The uploader on its own, fed spool entries no middleware
writes, stores each or sets it aside with its reason, and the spool ends empty.

Records are found by listing the bucket, never by request id: every body carries a probe that
the raw object keeps, and a request refused before its body is read is matched by what its
record says (status, path, project, user, request type).
"""

import json
import math
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from centralllm import aws
from centralllm.audit import contract
from inference import records
from inference.middleware import AuditMiddleware
from inference.tests import fake_vllm
from inference.tests.conftest import Buckets, create_buckets, new_uploader, new_writer, serve
from inference.uploader import QUARANTINE_DIR, Uploader
from inference.writer import new_spool_name, spooled_files, write_spool_file

# The capture limit of the server under test: small, so that bodies over it are cheap to send,
# and large enough that JSON nested 100,000 deep fits under it.
LIMIT = 128 * 1024
CHAT_PATH = "/v1/chat/completions"
MODEL = fake_vllm.MODEL
# Set by the strategies themselves (model, stream), or test hooks fake_vllm reads from a body
# (delays, gates): no generated field may have these names.
TEST_HOOKS = {"delay", "untracked", "chunk_delay", "chunks", "gate", "stream", "model"}
PROBE = re.compile(r"probe-[0-9a-f]{32}")

SETTINGS = settings(
    deadline=None,
    derandomize=True,  # the same examples on every run, as in CI
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---------------------------------------------------------------------------------------------
# What callers send.

SURROGATE = st.integers(0xD800, 0xDFFF).map(chr)
# Any code point, lone surrogates included (st.characters() leaves them out).
CHAR = st.one_of(st.characters(), SURROGATE)
TEXT = st.text(CHAR, max_size=30)
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
JSON = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
PART = st.fixed_dictionaries({"type": st.just("text"), "text": TEXT | JSON})
CONTENT = st.one_of(TEXT, TEXT, st.lists(PART, max_size=3), JSON)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system"]) | TEXT, "content": CONTENT}
)
CHAT_BODY = st.fixed_dictionaries(
    {
        "model": st.one_of(st.just(MODEL), TEXT, JSON),
        "messages": st.one_of(st.lists(MESSAGE, min_size=1, max_size=3), JSON),
    },
    optional={
        "stream": st.booleans(),
        "extra": st.dictionaries(TEXT.filter(lambda key: key not in TEST_HOOKS), JSON, max_size=3),
    },
).map(lambda body: {**{k: v for k, v in body.items() if k != "extra"}, **body.get("extra", {})})


@dataclass(frozen=True)
class Body:
    """A request body's shape; ``bytes_for(probe)`` makes it, carrying the probe."""

    kind: str
    value: object = None
    size: int = 0

    def bytes_for(self, probe: str) -> bytes:
        if self.kind == "chat":  # JSON's \\ud800 escapes: json.dumps writes lone surrogates so
            return json.dumps({"probe": probe, **self.value}).encode()
        if self.kind == "nan":
            return json.dumps({"probe": probe, **self.value, "temperature": math.nan}).encode()
        if self.kind == "json":  # valid JSON, but no object
            return json.dumps([probe, self.value]).encode()
        if self.kind == "bytes":
            return probe.encode() + self.value
        if self.kind == "deep":
            opener, leaf = self.value  # no leaf: never closed
            closer = {"[": "]", '{"a":': "}"}[opener] if leaf else ""
            deep = opener * self.size + leaf + closer * self.size
            return f'{{"probe": "{probe}", "deep": {deep}{"}" if leaf else ""}'.encode()
        if self.kind == "padded":  # a padding field first, the prompt after it
            base = json.dumps({"probe": probe, "padding": "", **self.value}).encode()
            padding = "x" * max(LIMIT + self.size - len(base), 0)
            return json.dumps({"probe": probe, "padding": padding, **self.value}).encode()
        raise AssertionError(self.kind)


BODY = st.one_of(
    CHAT_BODY.map(lambda body: Body("chat", body)),
    CHAT_BODY.map(lambda body: Body("chat", body)),
    CHAT_BODY.map(lambda body: Body("nan", body)),
    JSON.map(lambda value: Body("json", value)),
    st.binary(max_size=64).map(lambda data: Body("bytes", data)),
    st.builds(
        Body,
        kind=st.just("deep"),
        # A leaf of 1 or a lone surrogate, or none (never closed); as deep as Python parses
        # and walks, and far deeper.
        value=st.tuples(st.sampled_from(["[", '{"a":']), st.sampled_from(["1", '"\\ud800"', ""])),
        # (Hypothesis raises the recursion limit while it runs a test, for every thread: a
        # depth near the limit parses in one place and not in another.)
        size=st.sampled_from([400, 600, 20_000, 100_000]),
    ),
    st.builds(
        Body,
        kind=st.just("padded"),
        value=CHAT_BODY,
        size=st.integers(1, 20_000),
    ),
)

# What HTTP carries in a header value: visible ASCII, obs-text (any byte from 0x80: not UTF-8
# as often as not), spaces and tabs inside. The server strips them around.
HEADER_BYTE = st.sampled_from([*range(0x21, 0x7F), *range(0x80, 0x100), 0x20, 0x09])
SENDABLE = frozenset([*range(0x21, 0x7F), *range(0x80, 0x100), 0x20, 0x09])


def _sendable(value: bytes) -> bytes:
    return bytes(byte for byte in value if byte in SENDABLE).strip(b" \t")


HEADER_VALUE = st.one_of(
    st.lists(HEADER_BYTE, max_size=24).map(bytes).map(_sendable),
    st.text(max_size=24).map(lambda text: _sendable(text.encode())),
    st.sampled_from(
        [
            b"\xa0",  # no-break space in latin-1: blank to Python's str.strip
            b"\x85",  # next line, the same
            b"a\xa0",
            b"-",
            b"rollup#project#x",
            b"user#",
            "\ud800".encode("utf-8", "surrogatepass"),
            b"\xef\xbb\xbf",
            b"%00",
            b"..",
        ]
    ),
    # Near each limit and far over it: one byte or several per character.
    st.builds(
        lambda unit, count: unit * count,
        st.sampled_from([b"a", b"\xff", "\u00e9".encode(), "\U0001f600".encode()]),
        st.sampled_from([31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 2_000]),
    ),
)


@dataclass(frozen=True)
class Hostile:
    headers: tuple[tuple[str, bytes], ...]
    body: Body
    chunked: bool
    path: str = CHAT_PATH


@st.composite
def hostile_requests(draw) -> Hostile:
    headers = []
    for header in contract.REQUIRED_HEADERS:
        times = draw(st.sampled_from((1, 1, 1, 1, 1, 1, 0, 2)))
        for _ in range(times):
            name = draw(st.sampled_from([header, header.upper(), header.title()]))
            headers.append((name, draw(HEADER_VALUE)))
    # API Gateway takes 10 KB of headers, uvicorn 16 KB: more is refused before any middleware.
    size = sum(len(value) for _, value in headers)
    if size > 8_000:
        headers = [(name, value[:2_000]) for name, value in headers]
    path = draw(
        st.one_of(
            st.just(CHAT_PATH),
            st.just(CHAT_PATH),
            st.just(CHAT_PATH),
            st.binary(min_size=1, max_size=12).map(lambda raw: "/v1/x-" + quote(raw, safe="")),
        )
    )
    return Hostile(tuple(headers), draw(BODY), draw(st.booleans()), path)


BATCHES = st.lists(hostile_requests(), min_size=1, max_size=6)


# ---------------------------------------------------------------------------------------------
# What they should get.


@dataclass
class Expected:
    status: int
    code: str | None = None  # the refusal's code, for refusals of the audit path
    param: str | None = None
    captured: bool = True  # whether the body was read (the raw object holds the probe)
    fields: dict = field(default_factory=dict)  # project, user, requestType as recorded


def recorded_header(value: bytes | None, limit: int) -> str | None:
    """A header as the record should hold it: the bytes as sent, one character each
    (ASGI's latin-1), cut to its limit at a character boundary, without spaces around."""
    if value is None:
        return None
    text = value.decode("latin-1").encode()[:limit].decode(errors="ignore")
    return text.strip() or None


def expected(request: Hostile, body: bytes) -> Expected:
    values: dict[str, bytes] = {}
    for name, value in request.headers:
        values[name.lower()] = value  # the last one counts
    fields = {
        name: recorded_header(values.get(header), limit)
        for header, (name, limit) in contract.HEADER_LIMITS.items()
        if header in contract.REQUIRED_HEADERS
    }
    for header in contract.REQUIRED_HEADERS:
        if not values.get(header, b"").decode("latin-1").strip():
            return Expected(400, "missing_header", header, captured=False, fields=fields)
    texts = {header: value.decode("latin-1") for header, value in values.items()}
    too_long = contract.overlong_header(texts)
    if too_long:
        return Expected(400, "header_too_long", too_long, captured=False, fields=fields)
    if len(body) > LIMIT:
        # Refused on its Content-Length before a byte is read; chunked, once over the limit.
        return Expected(413, "request_too_large", captured=request.chunked, fields=fields)
    if request.path != CHAT_PATH:
        return Expected(404, fields=fields)
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        parsed = None
    return Expected(200 if isinstance(parsed, dict) else 400, fields=fields)


# ---------------------------------------------------------------------------------------------
# The server: the fake vLLM behind vLLM's own request parsing, behind the audit middleware.


async def vllm_like(scope, receive, send) -> None:
    """fake_vllm as vLLM's OpenAI server fronts its engine: a chat body that is no JSON
    object gets vLLM's 400 in OpenAI's error format, and the engine reads only the headers it
    needs (fake_vllm decodes them as UTF-8, which a caller's bytes need not be)."""
    if scope["type"] != "http" or scope["path"] != CHAT_PATH:
        await fake_vllm.app(scope, receive, send)
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = b"".join(chunks)
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        parsed = None
    if not isinstance(parsed, dict):
        error = {
            "message": "The request body is not a JSON object.",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        }
        answer = json.dumps({"error": error}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]
        await send({"type": "http.response.start", "status": 400, "headers": headers})
        await send({"type": "http.response.body", "body": answer})
        return
    replayed = False

    async def replay():
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    headers = [(n, v) for n, v in scope["headers"] if n in (b"x-request-id", b"content-type")]
    await fake_vllm.app({**scope, "headers": headers}, replay, send)


@dataclass
class Stack:
    url: str
    client: httpx.Client
    buckets: Buckets
    spool: Path
    keys: set[str] = field(default_factory=set, repr=False)  # the records seen so far
    quarantined: set[str] = field(default_factory=set, repr=False)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    buckets = create_buckets()
    spool = tmp_path_factory.mktemp("hostile") / "spool"
    writer = new_writer(buckets, spool, flush_seconds=5)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUDIT_MAX_BODY_BYTES", str(LIMIT))
        middleware = AuditMiddleware(vllm_like, writer=writer)
    try:
        with serve(middleware) as url, httpx.Client(base_url=url, timeout=30) as client:
            yield Stack(url, client, buckets, spool)
    finally:
        writer.close()


def send(client: httpx.Client, request: Hostile, body: bytes) -> httpx.Response:
    content = iter([body[: len(body) // 2], body[len(body) // 2 :]]) if request.chunked else body
    headers = [(name.encode(), value) for name, value in request.headers]
    return client.post(request.path, content=content, headers=headers)


def quarantine_entries(spool: Path) -> set[str]:
    quarantine = spool / QUARANTINE_DIR
    return {path.name for path in quarantine.iterdir()} if quarantine.exists() else set()


def delivered(stack: Stack, count: int) -> list[str]:
    """The keys of ``count`` new records, once the spool is empty again; nothing quarantined."""
    deadline = time.monotonic() + 60
    keys = []
    while True:
        quarantined = quarantine_entries(stack.spool) - stack.quarantined
        stack.quarantined |= quarantined
        assert not quarantined, read_quarantine(stack.spool, quarantined)
        # The bucket is listed only once the spool looks empty: a listing costs the local S3
        # more than a PUT, and the uploader runs at a low priority.
        if not spooled_files(stack.spool):
            keys = [key for key in stack.buckets.records() if key not in stack.keys]
            if len(keys) >= count:
                stack.keys.update(keys)
                return keys
        assert time.monotonic() < deadline, f"{len(keys)} of {count} records arrived"
        time.sleep(0.05)


def read_quarantine(spool: Path, names: set[str]) -> str:
    """The reasons of quarantined entries."""
    reasons = [spool / QUARANTINE_DIR / name for name in names if name.endswith(".reason")]
    return "; ".join(path.read_text().strip() for path in reasons)


def nesting(value) -> int:
    """How deep JSON nests (a scalar 0), walked without recursion."""
    deepest, pending = 0, [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth + 1)
            children = item.values() if isinstance(item, dict) else item
            pending += [(child, depth + 1) for child in children]
    return deepest


def strict_json(data: bytes):
    """JSON as RFC 8259 has it: no NaN or Infinity, which other readers refuse."""

    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(data, parse_constant=refuse)


def read(bucket: str, key: str):
    return strict_json(aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


_LONE = re.compile("[\ud800-\udfff]")


def replaced(value):
    """``value`` as an audit object can hold it: lone surrogates become U+FFFD."""
    if isinstance(value, str):
        return _LONE.sub("\ufffd", value)
    if isinstance(value, list):
        return [replaced(item) for item in value]
    if isinstance(value, dict):
        return {replaced(key): replaced(item) for key, item in value.items()}
    return value


def strings_in_messages(messages) -> list[str]:
    """The texts a caller put in chat messages, as the model reads them."""
    texts = []
    for message in messages if isinstance(messages, list) else ():
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [
                part["text"]
                for part in content
                if isinstance(part, dict) and isinstance(part.get("text"), str)
            ]
    return texts


def check_response(response: httpx.Response, want: Expected) -> None:
    assert response.status_code == want.status, response.text[:300]
    if want.code is not None:  # refused by the audit: OpenAI's error format, naming why
        assert response.json() == {
            "error": {
                "message": response.json()["error"]["message"],
                "type": "invalid_request_error",
                "param": want.param,
                "code": want.code,
            }
        }
    elif want.status == 400:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    elif want.status == 200:
        if response.headers["content-type"].startswith("text/event-stream"):
            assert response.text.rstrip().endswith("data: [DONE]")
        else:
            assert response.json()["choices"][0]["message"]["content"]


def run_batch(stack: Stack, batch: list[Hostile]) -> None:
    sent = []
    for request in batch:
        probe = f"probe-{uuid.uuid4().hex}"
        body = request.body.bytes_for(probe)
        want = expected(request, body)
        response = send(stack.client, request, body)
        check_response(response, want)
        sent.append((request, probe, body, want, response))

    keys = delivered(stack, len(batch))
    found = {}
    signatures = Counter()
    for key in keys:
        record = read(stack.buckets.audit, key)
        assert contract.validate_record(record) == record
        raw = read(stack.buckets.raw, record["rawKey"])
        probes = PROBE.findall(json.dumps(raw["request"]["body"]))
        probe = probes[0] if probes else None
        found[probe] = record, raw
        fields = (record["project"], record["user"], record["requestType"])
        signatures[(record["status"], record["path"], *fields, probe)] += 1
    wanted = Counter(
        (
            want.status,
            unquote(request.path),
            *want.fields.values(),
            probe if want.captured else None,
        )
        for request, probe, _, want, _ in sent
    )
    assert signatures == wanted, "every request, and only those, has its record"

    for request, probe, body, want, response in sent:
        if not want.captured:
            continue
        record, raw = found[probe]
        check_record(request, body, want, response, record, raw)


def check_record(request, body, want, response, record, raw) -> None:
    assert record["outcome"] == contract.outcome_for(want.status)
    assert (record["method"], record["path"]) == ("POST", unquote(request.path))
    if want.status >= 400:
        if want.code is not None or want.status == 400:
            assert record["error"]["message"] == response.json()["error"]["message"]
    else:
        assert record["error"] is None
    if want.status == 413:
        assert raw["request"]["truncated"] is True
        return
    assert raw["request"]["truncated"] is False
    text = body.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        parsed = None
    if parsed is None or nesting(parsed) > records.MAX_JSON_DEPTH:
        # No JSON, or too deep to take as JSON: kept as the text it was, nothing cut.
        assert raw["request"]["body"] == text
        return
    if request.body.kind == "nan":
        # Not JSON by RFC 8259: kept whole as text, so that the raw object stays JSON.
        assert raw["request"]["body"] == replaced(body.decode())
    else:
        assert raw["request"]["body"] == replaced(parsed)
    if want.status != 200:
        return
    # Nothing hides: every text the model read is in the record's prompt.
    for text in strings_in_messages(parsed.get("messages")):
        assert replaced(text) in record["prompt"]
    if isinstance(parsed.get("model"), str) and parsed["model"]:
        assert record["model"] == replaced(parsed["model"])
    assert record["stream"] is (parsed.get("stream") is True)


@settings(SETTINGS, max_examples=40)
@given(batch=BATCHES)
# What earlier runs found. A header Python's str.strip takes for blank, though HTTP carries it
# as a value (a no-break space): served, with a record naming no project.
@example(
    batch=[
        Hostile(
            (("x-llm-source", b"\xa0"), ("x-llm-user", b"\x85"), ("x-llm-request-type", b"c")),
            Body("chat", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}),
            chunked=False,
        )
    ]
)
# A text part that is no text (the record could not be built); JSON 600 deep around a lone
# surrogate (parsed, but replacing the surrogate recursed past Python's limit) and 100,000
# deep (not even parsed); NaN (stored as it came, the raw object was no JSON): each record
# was quarantined, or stored unreadable to others, while the model answered.
@example(
    batch=[
        Hostile(
            (("x-llm-source", b"p"), ("x-llm-user", b"u"), ("x-llm-request-type", b"chat")),
            Body(
                "chat",
                {
                    "model": MODEL,
                    "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}],
                    "\udc80": "\ud800",
                },
            ),
            chunked=False,
        ),
        Hostile(
            (("x-llm-source", b"p"), ("x-llm-user", b"u"), ("x-llm-request-type", b"chat")),
            Body("deep", ("[", '"\\ud800"'), 600),
            chunked=True,
        ),
        Hostile(
            (("x-llm-source", b"p"), ("x-llm-user", b"u"), ("x-llm-request-type", b"chat")),
            Body("deep", ("[", ""), 100_000),
            chunked=False,
        ),
        Hostile(
            (("x-llm-source", b"p"), ("x-llm-user", b"u"), ("x-llm-request-type", b"chat")),
            Body("nan", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}),
            chunked=False,
        ),
    ]
)
def test_every_hostile_request_is_answered_or_refused_and_recorded(stack, batch):
    run_batch(stack, batch)


def test_thousands_of_distinct_users_each_leave_their_record(stack):
    """1,000 requests from 1,000 users with names no two alike (bytes of every kind) from 8
    clients at once: the spool drains, 1,000 records arrive, and those read each hold a user
    that was sent, none twice."""
    rng = random.Random(20)  # noqa: S311 - repeatable names, not secrets
    users = [
        b"u%d-" % number + _sendable(bytes(rng.randrange(0x21, 0x100) for _ in range(40)))
        for number in range(1_000)
    ]
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}).encode()

    def ask(chunk: list[bytes]) -> list[int]:
        with httpx.Client(base_url=stack.url, timeout=30) as client:
            return [
                client.post(
                    CHAT_PATH,
                    content=body,
                    headers=[
                        (b"x-llm-source", b"crowd"),
                        (b"x-llm-user", user),
                        (b"x-llm-request-type", b"chat"),
                    ],
                ).status_code
                for user in chunk
            ]

    with ThreadPoolExecutor(8) as pool:
        statuses = [s for part in pool.map(ask, [users[i::8] for i in range(8)]) for s in part]
    assert statuses == [200] * len(users)

    keys = delivered(stack, len(users))
    assert len(keys) == len(users)
    # Each of a fifth of them, picked at random, holds a user of its own: reading all 1,000
    # costs the local S3 more than delivering them.
    with ThreadPoolExecutor(4) as pool:
        sample = rng.sample(sorted(keys), len(keys) // 5)
        found = list(pool.map(lambda key: read(stack.buckets.audit, key)["user"], sample))
    sent = {recorded_header(user, 256) for user in users}
    assert len(sent) == len(users)
    assert len(set(found)) == len(found)
    assert set(found) <= sent


# ---------------------------------------------------------------------------------------------
# The uploader alone, on spool entries no middleware writes.


@st.composite
def response_bodies(draw) -> tuple[str, bytes]:
    """A response as vLLM sends one (a model echoing what it was asked can say anything),
    whole or cut anywhere (the capture limit), or bytes that are nothing."""
    kind = draw(st.sampled_from(["json", "sse", "bytes"]))
    model = draw(st.one_of(st.just(MODEL), TEXT))
    if kind == "json":
        content = "application/json"
        answer = {
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": draw(TEXT)}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
        }
        data = json.dumps(answer).encode()
    elif kind == "sse":
        content = "text/event-stream; charset=utf-8"
        chunks = [
            {"model": model, "choices": [{"index": 0, "delta": {"content": text}}]}
            for text in draw(st.lists(TEXT, max_size=4))
        ]
        data = b"".join(b"data: " + json.dumps(chunk).encode() + b"\n\n" for chunk in chunks)
        data += b"data: [DONE]\n\n"
    else:
        content = draw(st.sampled_from(["application/json", "text/event-stream", "", "text/html"]))
        data = draw(st.binary(max_size=200))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return content, data


@st.composite
def spool_entries(draw) -> tuple[str, bool, bytes]:
    """A request id, whether the middleware could have written it, and the spool entry."""
    request_id = str(uuid.uuid4())
    shaped = draw(st.booleans())
    probe = f"probe-{uuid.uuid4().hex}"
    body = draw(BODY.filter(lambda body: body.kind != "padded")).bytes_for(probe)
    content_type, response = draw(response_bodies())
    if shaped:  # as the middleware writes it: header values one character per byte, cut
        headers = {
            header: recorded_header(draw(HEADER_VALUE), limit) or "x"
            for header, (_, limit) in contract.HEADER_LIMITS.items()
            if header in contract.REQUIRED_HEADERS
        }
        status = draw(st.one_of(st.none(), st.integers(100, 599)))
        error = draw(st.one_of(st.none(), st.fixed_dictionaries({"type": TEXT, "message": TEXT})))
        latency = draw(st.floats(0, 1e7))
        created_at = time.time()
    else:  # anything at all in the header's fields
        names = st.sampled_from([*contract.REQUIRED_HEADERS, contract.API_KEY_ID_HEADER])
        headers = draw(st.dictionaries(names, TEXT | st.text(CHAR, min_size=60, max_size=300)))
        status = draw(st.one_of(st.none(), st.integers(-10, 10_000)))
        error = draw(JSON)
        latency = draw(st.floats(allow_nan=False))
        created_at = draw(st.sampled_from([time.time(), 0.0, -1.0, 1e12]))
    meta = {
        "requestId": request_id,
        "createdAt": created_at,
        "headers": headers,
        "method": "POST",
        "path": draw(st.sampled_from([CHAT_PATH, "/v1/completions"])) if shaped else draw(TEXT),
        "status": status,
        "contentType": content_type,
        "cancelled": draw(st.booleans()),
        "error": error,
        "latencyMs": latency,
        "ttftMs": draw(st.one_of(st.none(), st.floats(0, 1e6))),
        "requestTruncated": draw(st.booleans()),
        "responseTruncated": draw(st.booleans()),
    }
    return request_id, shaped, records.encode_exchange(meta, body, response)


@dataclass
class LoneUploader:
    buckets: Buckets
    spool: Path
    uploader: Uploader
    keys: set[str] = field(default_factory=set, repr=False)


@pytest.fixture(scope="module")
def lone_uploader(tmp_path_factory) -> LoneUploader:
    buckets = create_buckets()
    spool = tmp_path_factory.mktemp("uploader") / "spool"
    return LoneUploader(buckets, spool, new_uploader(buckets, spool, concurrency=4))


@settings(SETTINGS, max_examples=30)
@given(entries=st.lists(spool_entries(), min_size=1, max_size=5), files=st.integers(1, 3))
def test_the_uploader_stores_or_quarantines_every_entry_and_the_spool_empties(
    lone_uploader, entries, files
):
    spool, buckets = lone_uploader.spool, lone_uploader.buckets
    quarantined_before = quarantine_entries(spool)
    for number in range(files):
        part = [entry for index, (_, _, entry) in enumerate(entries) if index % files == number]
        if part:
            name = new_spool_name(time.time(), len(part))
            write_spool_file(spool, name, b"".join(part))

    assert lone_uploader.uploader.deliver(), "the spool was not emptied in one pass"
    assert not spooled_files(spool)
    assert not list(spool.glob("*.unreadable"))

    new_keys = [key for key in buckets.records() if key not in lone_uploader.keys]
    lone_uploader.keys.update(new_keys)
    stored = {}
    for key in new_keys:
        record = read(buckets.audit, key)
        assert contract.validate_record(record) == record
        read(buckets.raw, record["rawKey"])  # there, and JSON
        stored[record["requestId"]] = record
    quarantined = quarantine_entries(spool) - quarantined_before
    reasons = [name for name in quarantined if name.endswith(".reason")]
    assert len(quarantined) == 2 * len(reasons)
    for name in reasons:
        assert (spool / QUARANTINE_DIR / name).read_text().strip()
    assert len(stored) + len(reasons) == len(entries)
    for request_id, shaped, _ in entries:
        if shaped:  # what a middleware wrote always reaches S3
            assert request_id in stored, read_quarantine(spool, quarantined)
