"""API keys bound to projects: the middleware refuses what a key may not file, re-reading the
bindings the console publishes, over real HTTP to the local S3."""

import json
import time

import httpx
import pytest

from centralllm import aws
from centralllm.audit import contract
from inference.attribution import KEPT_COPY, Attribution
from inference.middleware import AuditMiddleware
from inference.tests import fake_vllm
from inference.tests.conftest import FROM_GATEWAY, GATEWAY_SECRET, HEADERS, serve

CHAT = {"model": "ministral-8b-instruct", "messages": [{"role": "user", "content": "ping"}]}


def publish(bucket: str, keys: dict[str, list[str]]) -> None:
    body = json.dumps({"keys": keys}).encode()
    aws.client("s3").put_object(Bucket=bucket, Key=contract.ATTRIBUTION_KEY, Body=body)


def ask(url: str, key_id: str, project: str) -> httpx.Response:
    headers = {**HEADERS, **FROM_GATEWAY, "x-api-key-id": key_id, "x-llm-source": project}
    return httpx.post(f"{url}/v1/chat/completions", json=CHAT, headers=headers)


@pytest.fixture
def attribution(buckets, tmp_path):
    attribution = Attribution(buckets.audit, tmp_path / "spool", every_seconds=0.05)
    yield attribution
    attribution.stop()


def test_a_key_files_only_under_its_projects(writer, buckets, attribution):
    """Issue 20: any key could file its traffic, cost and errors under any project."""
    publish(buckets.audit, {"key-a": ["alpha", "shared"]})
    assert attribution.refresh()
    middleware = AuditMiddleware(
        fake_vllm.app, writer=writer, gateway_secret=GATEWAY_SECRET, attribution=attribution
    )
    with serve(middleware) as url:
        allowed = ask(url, "key-a", "shared")
        refused = ask(url, "key-a", "beta")
        unbound = ask(url, "key-b", "beta")

    assert (allowed.status_code, unbound.status_code) == (200, 200)
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert (error["code"], error["param"]) == ("attribution_refused", "x-llm-source")
    assert "'beta'" in error["message"]
    request_id = refused.headers["x-request-id"]
    assert request_id not in fake_vllm.SEEN  # the model never saw it
    record = buckets.record(request_id)
    assert (record["status"], record["project"], record["apiKeyId"]) == (403, "beta", "key-a")
    assert record["error"]["type"] == "attribution_refused"


def test_a_new_binding_is_enforced_without_a_restart(writer, buckets, attribution):
    middleware = AuditMiddleware(
        fake_vllm.app, writer=writer, gateway_secret=GATEWAY_SECRET, attribution=attribution
    )
    with serve(middleware) as url:
        assert ask(url, "key-a", "beta").status_code == 200  # nothing published: not bound
        publish(buckets.audit, {"key-a": ["alpha"]})
        deadline = time.monotonic() + 10
        while (status := ask(url, "key-a", "beta").status_code) == 200:
            assert time.monotonic() < deadline, "the binding was never enforced"
            time.sleep(0.05)
        assert status == 403
        publish(buckets.audit, {"key-a": ["alpha", "beta"]})
        while ask(url, "key-a", "beta").status_code == 403:
            assert time.monotonic() < deadline, "the widened binding was never read"
            time.sleep(0.05)


def test_the_last_bindings_stay_in_force_when_s3_cannot_be_read(buckets, tmp_path):
    spool = tmp_path / "spool"
    publish(buckets.audit, {"key-a": ["alpha"]})
    assert Attribution(buckets.audit, spool, every_seconds=60).refresh()
    assert (spool / KEPT_COPY).exists()

    # A process starting while S3 is unreachable (a bucket it may not read, here).
    restarted = Attribution("no-such-bucket-anywhere", spool, every_seconds=60)
    assert not restarted.refresh()
    assert restarted.allowed(b"key-a") == {b"alpha"}
    assert restarted.allowed(b"key-b") is None


def test_an_unreadable_publication_leaves_the_last_bindings(buckets, tmp_path):
    attribution = Attribution(buckets.audit, tmp_path / "spool", every_seconds=60)
    publish(buckets.audit, {"key-a": ["alpha"]})
    attribution.refresh()
    aws.client("s3").put_object(
        Bucket=buckets.audit, Key=contract.ATTRIBUTION_KEY, Body=b'{"keys": ["not", "a", "map"]}'
    )
    attribution.refresh()
    assert attribution.allowed(b"key-a") == {b"alpha"}
