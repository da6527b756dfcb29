"""The local API (devtools.local_gateway) refuses and passes on as API Gateway does, over real
HTTP: started as `make run` starts it, reading keys and usage plans from the local AWS,
counting in the real Redis, in front of the real audit middleware and the vLLM imitation.

API Gateway's refusals, and where AWS documents them:
- INVALID_API_KEY 403, QUOTA_EXCEEDED 429, THROTTLED 429, BAD_REQUEST_PARAMETERS 400 and
  MISSING_AUTHENTICATION_TOKEN 403 ("when the client attempts to invoke an unsupported API
  method or resource"), each with the body ``{"message": $context.error.messageString}``:
  https://docs.aws.amazon.com/apigateway/latest/developerguide/supported-gateway-response-types.html
- a key opens a stage only while it is enabled and on a usage plan of that stage:
  https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-api-usage-plans.html,
  https://docs.aws.amazon.com/apigateway/latest/api/API_ApiKey.html ("enabled: Specifies
  whether the API Key can be used by callers")
- throttling is a token bucket per key of a usage plan (rate and burst), 429 Too Many Requests:
  https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-request-throttling.html
- the request validator refuses a required header that is missing or blank, with 400:
  https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-method-request-validation.html
"""

import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from centralllm import aws
from centralllm.audit import contract
from devtools import services
from devtools.tests.local_api import add_key, add_plan, audited_model, gateway, make_stage
from inference.tests import fake_vllm
from inference.tests.conftest import HEADERS, Buckets, create_buckets

CHAT = {"model": fake_vllm.MODEL, "messages": [{"role": "user", "content": "ping"}]}
FORBIDDEN = {"message": "Forbidden"}


class LocalApi:
    def __init__(self, url: str, model: str, suffix: str, api_id: str, buckets: Buckets) -> None:
        self.url, self.model, self.suffix, self.api_id = url, model, suffix, api_id
        self.buckets = buckets

    def chat(self, key: str | None, url: str = "", **headers: str) -> httpx.Response:
        sent = {**HEADERS, **({"x-api-key": key} if key else {}), **headers}
        return httpx.post(f"{url or self.url}/v1/chat/completions", json=CHAT, headers=sent)


@pytest.fixture(scope="module")
def local_api(tmp_path_factory) -> Iterator[LocalApi]:
    """`python -m devtools.local_gateway` as `make run` starts it, for an environment of its
    own, in front of the audited model; what the local AWS holds is read every half second."""
    suffix = f"-gw{uuid.uuid4().hex[:8]}"
    api_id, secret = make_stage(suffix)
    buckets = create_buckets()
    port = services.free_port()
    env = {**os.environ, "GATEWAY_CACHE_SECONDS": "0.5"}
    with audited_model(buckets, secret, tmp_path_factory.mktemp("spool")) as model:
        command = [sys.executable, "-m", "devtools.local_gateway", "--port", str(port)]
        process = services.Process(
            "gateway", [*command, f"--suffix={suffix}"], env={**env, "LOCAL_MODEL_URL": model}
        )
        try:
            services.wait_for_port(port)
            yield LocalApi(f"http://127.0.0.1:{port}/prod", model, suffix, api_id, buckets)
        finally:
            process.stop()


def status_within(call, wanted: int, seconds: float = 5) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while (response := call()).status_code != wanted:
        assert time.monotonic() < deadline, f"still {response.status_code}: {response.text}"
        time.sleep(0.1)
    return response


def test_keys_are_refused_as_api_gateway_refuses_them(local_api):
    plan = add_plan(local_api.api_id)
    _, value = add_key(plan)
    disabled, disabled_value = add_key(plan)
    deleted, deleted_value = add_key(plan)
    _, planless_value = add_key(None)
    for key in (value, disabled_value, deleted_value):
        assert local_api.chat(key).status_code == 200  # a key made a moment ago works at once

    apigateway = aws.client("apigateway")
    apigateway.update_api_key(
        apiKey=disabled, patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}]
    )
    apigateway.delete_api_key(apiKey=deleted)
    # Applied after a short delay, as API Gateway applies changes.
    status_within(lambda: local_api.chat(disabled_value), 403)
    status_within(lambda: local_api.chat(deleted_value), 403)

    for key in (None, "not-a-key-of-this-api", planless_value, disabled_value, deleted_value):
        refused = local_api.chat(key)
        assert (refused.status_code, refused.json()) == (403, FORBIDDEN), key
        assert refused.headers["x-amzn-requestid"]
    assert local_api.chat(value).status_code == 200


def test_only_the_proxy_resource_of_the_prod_stage_exists(local_api):
    _, value = add_key(add_plan(local_api.api_id))
    base = local_api.url.removesuffix("/prod")
    for path in ("/prod/v1", "/prod/v1/", "/staging/v1/chat/completions", "/v1/models"):
        answer = httpx.get(f"{base}{path}", headers={"x-api-key": value, **HEADERS})
        assert (answer.status_code, answer.json()) == (
            403,
            {"message": "Missing Authentication Token"},
        ), path


def test_a_path_cannot_leave_v1_for_the_models_unaudited_routes(local_api):
    """A ".." segment (sent encoded, as any client can) was resolved on the way to the model:
    /prod/v1/%2e%2e/%2e%2e/health reached its /health, and so could any route it serves
    outside /v1, where the audit middleware records nothing."""
    _, value = add_key(add_plan(local_api.api_id))
    for path in ("/v1/%2e%2e/%2e%2e/health", "/v1/chat/%2E%2E/%2e%2e/%2e%2e/health", "/v1/%2e/x"):
        answer = httpx.get(f"{local_api.url}{path}", headers={"x-api-key": value, **HEADERS})
        assert answer.headers["content-type"] == "application/json", path
        assert (answer.status_code, answer.json()) == (
            403,
            {"message": "Missing Authentication Token"},
        ), path


def test_the_plans_throttle_refuses_beyond_its_burst_until_its_rate_refills(local_api):
    plan = add_plan(local_api.api_id, throttle={"rateLimit": 1.0, "burstLimit": 2})
    _, value = add_key(plan)

    statuses = [local_api.chat(value) for _ in range(3)]

    assert [answer.status_code for answer in statuses] == [200, 200, 429]
    assert statuses[2].json() == {"message": "Too Many Requests"}
    time.sleep(1.1)  # one token more
    assert local_api.chat(value).status_code == 200


def test_the_quota_holds_across_processes_of_the_local_api(local_api):
    """Two processes, each with its own view of the keys, count in the same Redis."""
    plan = add_plan(local_api.api_id, quota={"limit": 3, "period": "DAY"})
    _, value = add_key(plan)
    _, other_value = add_key(add_plan(local_api.api_id, quota={"limit": 3, "period": "DAY"}))

    with gateway(local_api.suffix, local_api.model) as second:
        answers = [local_api.chat(value, url) for url in (local_api.url, second, local_api.url)]
        over = [local_api.chat(value, url) for url in (second, local_api.url)]

    assert [answer.status_code for answer in answers] == [200, 200, 200]
    for answer in over:
        assert (answer.status_code, answer.json()) == (429, {"message": "Limit Exceeded"})
    assert local_api.chat(other_value).status_code == 200  # per key, not per plan


def test_the_three_headers_are_required_and_refused_before_the_model(local_api):
    _, value = add_key(add_plan(local_api.api_id))
    headers = {**HEADERS, contract.REQUEST_TYPE_HEADER: ""}
    del headers[contract.USER_HEADER]

    refused = httpx.post(
        f"{local_api.url}/v1/chat/completions", json=CHAT, headers={"x-api-key": value, **headers}
    )

    assert refused.status_code == 400
    assert refused.json() == {
        "message": "Missing required request parameters: [x-llm-user, x-llm-request-type]"
    }
    assert refused.headers["x-amzn-requestid"] not in fake_vllm.SEEN


def test_the_model_gets_the_gateways_request_id_and_key_id_and_files_the_call_under_the_key(
    local_api,
):
    key_id, value = add_key(add_plan(local_api.api_id))

    answer = local_api.chat(
        value, **{contract.REQUEST_ID_HEADER: "chosen-by-me", contract.API_KEY_ID_HEADER: "k-1"}
    )

    assert answer.status_code == 200
    request_id = answer.headers["x-amzn-requestid"]
    assert answer.headers[contract.REQUEST_ID_HEADER] == request_id
    seen = fake_vllm.SEEN[request_id]["headers"]
    assert seen[contract.API_KEY_ID_HEADER] == key_id
    assert "x-api-key" not in seen and contract.GATEWAY_SECRET_HEADER not in seen
    # The middleware trusted them: the gateway sent the environment's secret.
    record = local_api.buckets.record(request_id)
    assert (record["requestId"], record["apiKeyId"]) == (request_id, key_id)
    assert record["flags"] == [] and record["project"] == HEADERS["x-llm-source"]


def test_the_gateways_headers_are_replaced_whatever_their_case_or_number(local_api):
    """A client's own request id, key id or secret, in any case and more than once, never
    reaches the middleware: a forged secret first would make the record untrusted."""
    key_id, value = add_key(add_plan(local_api.api_id))
    forged = [
        ("X-LLM-Gateway-Secret", "forged"),
        ("X-Request-ID", "chosen-by-me"),
        ("x-request-id", "chosen-again"),
        ("X-Api-Key-Id", "k-1"),
        ("x-api-key-id", "k-2"),
    ]
    sent = [("x-api-key", value), *HEADERS.items(), *forged]

    answer = httpx.post(f"{local_api.url}/v1/chat/completions", json=CHAT, headers=sent)

    assert answer.status_code == 200
    request_id = answer.headers["x-amzn-requestid"]
    record = local_api.buckets.record(request_id)
    assert (record["requestId"], record["apiKeyId"], record["flags"]) == (request_id, key_id, [])


def test_without_a_model_the_local_api_says_how_to_serve_one(local_api):
    _, value = add_key(add_plan(local_api.api_id))

    with gateway(local_api.suffix, None) as unserved:
        answer = local_api.chat(value, unserved)
    with gateway(local_api.suffix, f"http://127.0.0.1:{services.free_port()}") as stopped:
        stopped_answer = local_api.chat(value, stopped)

    assert answer.status_code == 503
    assert "make vllm-env" in answer.json()["message"]
    assert "SERVE_MODEL=1 make run" in answer.json()["message"]
    assert stopped_answer.status_code == 503
    assert "does not answer" in stopped_answer.json()["message"]


def test_a_streamed_answer_passes_through_as_it_comes(local_api):
    """The model sends its first chunk, then waits until the client holds it: a gateway that
    buffered the stream would hold that chunk back and the model would wait in vain."""
    _, value = add_key(add_plan(local_api.api_id))
    name = f"gate-{uuid.uuid4().hex}"
    gate = fake_vllm.GATES[name] = threading.Event()
    body = {**CHAT, "stream": True, "gate": name, "chunks": 3}
    headers = {"x-api-key": value, **HEADERS}

    with httpx.stream(
        "POST", f"{local_api.url}/v1/chat/completions", json=body, headers=headers
    ) as answer:
        lines = answer.iter_lines()
        first = next(line for line in lines if line)
        gate.set()
        rest = [line for line in lines if line]
        request_id = answer.headers[contract.REQUEST_ID_HEADER]

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert first.startswith("data: ") and '"role": "assistant"' in first
    assert fake_vllm.SEEN[request_id]["gate_opened"] is True
    assert len(rest) == 4 and rest[-1] == "data: [DONE]"
