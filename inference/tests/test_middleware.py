"""The audit middleware around an imitation of vLLM, under a real uvicorn, called over HTTP."""

import hashlib
import json
import threading
import uuid

import httpx
import pytest

from centralllm.audit import contract
from inference import records
from inference.middleware import REQUIRED_HEADERS, AuditedExchange, AuditMiddleware
from inference.tests import fake_vllm
from inference.tests.conftest import FROM_GATEWAY, GATEWAY_SECRET, HEADERS, serve

CHAT = {"model": "ministral-8b-instruct", "messages": [{"role": "user", "content": "ping"}]}


def test_plain_completion_is_passed_through_and_audited(audited_url, buckets):
    body = json.dumps({**CHAT, "max_tokens": 16}).encode()
    headers = {
        **HEADERS,
        **FROM_GATEWAY,
        "x-api-key-id": "key-42",
        "content-type": "application/json",
    }
    response = httpx.post(f"{audited_url}/v1/chat/completions", content=body, headers=headers)

    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "The quick brown fox jumps"
    request_id = response.headers["x-request-id"]
    seen = fake_vllm.SEEN[request_id]
    assert seen["body_sha256"] == hashlib.sha256(body).hexdigest()

    record = buckets.record(request_id)
    assert record["project"] == "smoke-test"
    assert record["user"] == "qa"
    assert record["requestType"] == "chat"
    assert record["apiKeyId"] == "key-42"
    assert record["model"] == "ministral-8b-instruct"
    assert record["path"] == "/v1/chat/completions"
    assert (record["status"], record["outcome"], record["stream"]) == (200, "ok", False)
    assert record["usage"] == {"promptTokens": 7, "completionTokens": 5, "totalTokens": 12}
    assert record["prompt"] == "user: ping"
    assert record["completion"] == "The quick brown fox jumps"
    assert record["latencyMs"] > 0
    assert record["ttftMs"] is None
    assert record["error"] is None
    assert record["flags"] == []
    assert contract.validate_record(record) == record

    raw = buckets.read(buckets.raw, record["rawKey"])
    assert raw["request"]["body"] == json.loads(body)
    assert raw["response"]["body"]["usage"]["total_tokens"] == 12


def test_stream_reaches_the_client_unbuffered_and_is_audited(audited_url, buckets):
    gate = uuid.uuid4().hex
    fake_vllm.GATES[gate] = threading.Event()
    body = {**CHAT, "stream": True, "gate": gate}
    url = f"{audited_url}/v1/chat/completions"
    with httpx.stream("POST", url, json=body, headers=HEADERS) as response:
        lines = response.iter_lines()
        first = next(line for line in lines if line)
        # The upstream holds every later chunk until the client has the first one: a buffering
        # middleware would make it wait out its gate.
        fake_vllm.GATES[gate].set()
        rest = [line for line in lines if line]
        request_id = response.headers["x-request-id"]

    assert json.loads(first.removeprefix("data: "))["choices"][0]["delta"]["role"] == "assistant"
    assert rest[-1] == "data: [DONE]"
    assert fake_vllm.SEEN[request_id]["gate_opened"] is True

    record = buckets.record(request_id)
    assert (record["status"], record["outcome"], record["stream"]) == (200, "ok", True)
    assert record["completion"] == "The quick brown fox jumps"
    assert record["usage"]["totalTokens"] == 12
    assert 0 < record["ttftMs"] <= record["latencyMs"]
    raw = buckets.read(buckets.raw, record["rawKey"])
    assert len(raw["response"]["body"]) == len(fake_vllm.REPLY_WORDS) + 1


@pytest.mark.parametrize("missing", REQUIRED_HEADERS)
def test_a_missing_header_is_rejected_and_audited(audited_url, buckets, missing):
    headers = {name: value for name, value in HEADERS.items() if name != missing}
    response = httpx.post(f"{audited_url}/v1/chat/completions", json=CHAT, headers=headers)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == missing
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "missing_header"
    assert missing in error["message"]
    request_id = response.headers["x-request-id"]
    assert request_id not in fake_vllm.SEEN

    record = buckets.record(request_id)
    assert (record["status"], record["outcome"]) == (400, "client_error")
    assert record["error"]["type"] == "missing_header"
    assert missing in record["error"]["message"]


@pytest.mark.parametrize("header", contract.HEADER_LIMITS)
def test_an_overlong_header_is_rejected_and_audited_cut_to_its_limit(audited_url, buckets, header):
    field, limit = contract.HEADER_LIMITS[header]
    value = "v" * (limit + 1)
    headers = {**HEADERS, **FROM_GATEWAY, header: value}
    response = httpx.post(f"{audited_url}/v1/chat/completions", json=CHAT, headers=headers)

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "header_too_long",
        header,
    )
    assert f"{limit} bytes" in error["message"]
    request_id = response.headers["x-request-id"]
    assert request_id not in fake_vllm.SEEN

    record = contract.validate_record(buckets.record(request_id))
    assert record[field] == value[:limit]
    assert (record["status"], record["outcome"]) == (400, "client_error")
    assert record["error"]["type"] == "header_too_long"


def test_a_header_is_cut_at_a_character_boundary():
    limit = contract.HEADER_LIMITS["x-llm-user"][1]
    # "a" then characters of two bytes each once encoded: the limit falls inside one.
    value = "a" + "ü" * limit
    headers = [(b"x-llm-user", value.encode("latin-1"))]
    scope = {"method": "POST", "path": "/v1/chat/completions", "headers": headers}
    exchange = AuditedExchange(scope, max_body_bytes=1024)
    exchange.finish()
    recorded = records.header(exchange.encoded())["headers"]["x-llm-user"]
    assert recorded == value[: 1 + (limit - 1) // 2]
    assert len(recorded.encode()) == limit - 1


def test_health_and_model_list_need_no_headers(audited_url, buckets):
    assert httpx.get(f"{audited_url}/health").status_code == 200
    models = httpx.get(f"{audited_url}/v1/models")
    assert models.json()["data"][0]["id"] == "ministral-8b-instruct"
    assert "x-request-id" not in models.headers


def test_upstream_error_is_passed_through_and_audited(audited_url, buckets):
    response = httpx.post(f"{audited_url}/v1/fail", json=CHAT, headers=HEADERS)

    assert response.status_code == 500
    assert response.json()["error"]["message"] == "engine died"
    record = buckets.record(response.headers["x-request-id"])
    assert (record["status"], record["outcome"]) == (500, "server_error")
    assert record["error"] == {"type": "InternalServerError", "message": "engine died"}


def test_client_disconnect_mid_stream_is_cancelled(audited_url, buckets):
    body = {**CHAT, "stream": True, "chunks": 400, "chunk_delay": 0.02}
    url = f"{audited_url}/v1/chat/completions"
    with httpx.stream("POST", url, json=body, headers=HEADERS) as response:
        received = [line for _, line in zip(range(6), response.iter_lines(), strict=False)]
        request_id = response.headers["x-request-id"]
    assert len(received) == 6

    record = buckets.record(request_id)
    assert (record["status"], record["outcome"]) == (200, "cancelled")
    assert record["completion"].startswith("The quick")
    assert len(record["completion"].split()) < 400
    assert fake_vllm.SEEN[request_id]["disconnected"] is True


def test_the_gateway_request_id_is_used(audited_url, buckets):
    gateway_id = f"gw-{uuid.uuid4()}"
    # x-amzn-requestid reaches vLLM as the client sent it: it must not choose the record's key.
    headers = {
        **HEADERS,
        **FROM_GATEWAY,
        "x-request-id": gateway_id,
        "x-amzn-requestid": "chosen-by-client",
    }
    response = httpx.post(f"{audited_url}/v1/chat/completions", json=CHAT, headers=headers)

    assert response.headers["x-request-id"] == gateway_id
    # The secret goes no further than the middleware.
    assert contract.GATEWAY_SECRET_HEADER not in fake_vllm.SEEN[gateway_id]["headers"]
    record = buckets.record(gateway_id)
    assert (record["requestId"], record["flags"]) == (gateway_id, [])
    assert GATEWAY_SECRET not in json.dumps(record)


@pytest.mark.parametrize("secret", [None, "a-guess", GATEWAY_SECRET + "x"])
def test_ids_sent_without_the_gateway_secret_are_not_trusted(audited_url, buckets, secret):
    """Issue 20: a caller inside the VPC that reaches the middleware without the gateway sent
    a victim's x-request-id and replaced the victim's audit and raw objects."""
    victim_id = f"gw-{uuid.uuid4()}"
    victim = {**HEADERS, **FROM_GATEWAY, "x-request-id": victim_id, "x-api-key-id": "key-1"}
    httpx.post(f"{audited_url}/v1/chat/completions", json=CHAT, headers=victim)
    victim_record = buckets.record(victim_id)

    forged = {
        "x-llm-source": "victims-project",
        "x-llm-user": "victim",
        "x-llm-request-type": "chat",
        "x-request-id": victim_id,
        "x-api-key-id": "key-1",
    }
    if secret is not None:
        forged[contract.GATEWAY_SECRET_HEADER] = secret
    chat = {**CHAT, "messages": [{"role": "user", "content": "forged"}]}
    response = httpx.post(f"{audited_url}/v1/chat/completions", json=chat, headers=forged)

    own_id = response.headers["x-request-id"]
    assert own_id != victim_id
    record = buckets.record(own_id)
    assert (record["apiKeyId"], record["flags"]) == (None, ["untrusted_source"])
    assert record["prompt"] == "user: forged"
    assert buckets.record(victim_id) == victim_record


@pytest.mark.parametrize("unusable", ["../../logs/someone-else", "rollup#project#smoke-test"])
def test_an_unusable_request_id_is_replaced(audited_url, buckets, unusable):
    headers = {**HEADERS, "x-request-id": unusable}
    response = httpx.post(f"{audited_url}/v1/chat/completions", json=CHAT, headers=headers)

    request_id = response.headers["x-request-id"]
    assert "/" not in request_id
    assert contract.is_valid_request_id(request_id)
    assert buckets.record(request_id)["status"] == 200


def test_lifespan_reaches_the_app(writer):
    fake_vllm.LIFESPAN.clear()
    with serve(AuditMiddleware(fake_vllm.app, writer=writer)):
        assert fake_vllm.LIFESPAN == ["lifespan.startup"]
    assert fake_vllm.LIFESPAN == ["lifespan.startup", "lifespan.shutdown"]


def test_a_response_is_cut_at_the_limit_and_says_so(writer, buckets, monkeypatch):
    body = json.dumps(CHAT).encode()
    monkeypatch.setenv("AUDIT_MAX_BODY_BYTES", str(len(body)))
    with serve(AuditMiddleware(fake_vllm.app, writer=writer)) as url:
        response = httpx.post(f"{url}/v1/chat/completions", content=body, headers=HEADERS)
    request_id = response.headers["x-request-id"]
    assert fake_vllm.SEEN[request_id]["body_sha256"] == hashlib.sha256(body).hexdigest()

    record = buckets.record(request_id)
    assert record["prompt"] == "user: ping"
    assert record["flags"] == ["truncated", "untrusted_source"]
    raw = buckets.read(buckets.raw, record["rawKey"])
    assert raw["request"]["truncated"] is False
    assert raw["response"]["truncated"] is True
    assert raw["response"]["body"] == response.content[: len(body)].decode()


def test_a_request_over_the_capture_limit_is_refused_and_audited(writer, buckets, monkeypatch):
    """A padding field first, the prompt after it: once served, with a record holding no
    prompt and a raw object without it (issue 20, item 2). Refused now, declared or not."""
    monkeypatch.setenv("AUDIT_MAX_BODY_BYTES", "1024")
    body = json.dumps({"padding": "x" * 2000, **CHAT}).encode()
    url_path = "/v1/chat/completions"
    with serve(AuditMiddleware(fake_vllm.app, writer=writer)) as url:
        declared = httpx.post(f"{url}{url_path}", content=body, headers=HEADERS)
        chunked = httpx.post(
            f"{url}{url_path}", content=iter([body[:600], body[600:]]), headers=HEADERS
        )
    assert "content-length" not in chunked.request.headers
    for response in (declared, chunked):
        assert response.status_code == 413
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("invalid_request_error", "request_too_large")
        assert "larger than 1024 bytes, the most the audit records whole" in error["message"]
        request_id = response.headers["x-request-id"]
        assert request_id not in fake_vllm.SEEN  # the model never saw it
        record = buckets.record(request_id)
        assert (record["status"], record["outcome"]) == (413, "client_error")
        assert "larger than 1024 bytes" in record["error"]["message"]
        raw = buckets.read(buckets.raw, record["rawKey"])
        assert raw["request"]["truncated"] is True
    assert f"of {len(body)} bytes" in declared.json()["error"]["message"]
