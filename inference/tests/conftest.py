import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from centralllm import aws
from centralllm.audit import contract
from devtools import services
from devtools.testing import create_bucket
from inference.middleware import AuditMiddleware
from inference.tests import fake_vllm
from inference.uploader import Uploader
from inference.writer import AuditWriter

HEADERS = {"x-llm-source": "smoke-test", "x-llm-user": "qa", "x-llm-request-type": "chat"}
# What API Gateway adds to every request it passes on (besides its request and key ids).
GATEWAY_SECRET = "gateway-secret-of-the-tests"
FROM_GATEWAY = {contract.GATEWAY_SECRET_HEADER: GATEWAY_SECRET}


@dataclass
class Buckets:
    audit: str
    raw: str

    def keys(self, bucket: str, prefix: str) -> list[str]:
        pages = (
            aws.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return [item["Key"] for page in pages for item in page.get("Contents", ())]

    def records(self) -> list[str]:
        return self.keys(self.audit, "logs/")

    def wait_for_records(self, count: int, timeout: float = 15) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(keys := self.records()) < count:
            assert time.monotonic() < deadline, f"{len(keys)} of {count} records arrived"
            time.sleep(0.05)
        return keys

    def record(self, request_id: str) -> dict:
        """The record of ``request_id``, waiting for it to arrive."""
        deadline = time.monotonic() + 15
        while True:
            keys = [key for key in self.records() if key.endswith(f"/{request_id}.json")]
            if keys:
                return self.read(self.audit, keys[0])
            assert time.monotonic() < deadline, f"no record for {request_id}"
            time.sleep(0.05)

    def read(self, bucket: str, key: str) -> dict:
        return json.loads(aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def create_buckets() -> Buckets:
    suffix = uuid.uuid4().hex[:12]
    buckets = Buckets(audit=f"audit-{suffix}", raw=f"raw-{suffix}")
    for name in (buckets.audit, buckets.raw):
        create_bucket(name)
    return buckets


@pytest.fixture
def buckets() -> Buckets:
    return create_buckets()


def new_writer(buckets: Buckets, spool_dir: Path, **options) -> AuditWriter:
    """A writer, and its uploader, for these buckets; S3 is retried within half a second."""
    options = {"retry_initial_seconds": 0.1, "retry_max_seconds": 0.5, **options}
    return AuditWriter(
        audit_bucket=buckets.audit, raw_bucket=buckets.raw, spool_dir=spool_dir, **options
    )


def new_uploader(buckets: Buckets, spool_dir: Path, **options) -> Uploader:
    """An uploader in this process, on a new spool; S3 is retried within half a second."""
    spool_dir.mkdir()
    options = {"retry_initial_seconds": 0.1, "retry_max_seconds": 0.5, **options}
    return Uploader(spool_dir, audit_bucket=buckets.audit, raw_bucket=buckets.raw, **options)


@pytest.fixture
def writer(buckets, tmp_path) -> Iterator[AuditWriter]:
    writer = new_writer(buckets, tmp_path / "spool", flush_seconds=5)
    yield writer
    writer.close()


@contextmanager
def serve(app) -> Iterator[str]:
    """``app`` under a real uvicorn on a free loopback port, in a thread; yields its URL."""
    port = services.free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture
def audited_url(writer) -> Iterator[str]:
    with serve(AuditMiddleware(fake_vllm.app, writer=writer, gateway_secret=GATEWAY_SECRET)) as url:
        yield url


def audit_metrics(url: str) -> dict[str, float]:
    """The audit's samples on ``url``/metrics."""
    families = text_string_to_metric_families(httpx.get(f"{url}/metrics").text)
    return {
        sample.name: sample.value
        for family in families
        for sample in family.samples
        if sample.name.startswith("llm_audit_")
    }


def wait_for_metrics(url: str, condition, what: str) -> dict[str, float]:
    """The audit's samples once ``condition`` holds for them."""
    deadline = time.monotonic() + 15
    while not condition(figures := audit_metrics(url)):
        assert time.monotonic() < deadline, f"/metrics never showed {what}: {figures}"
        time.sleep(0.1)
    return figures


# CloudWatch's units, as the embedded metric format's schema lists them.
UNITS = {
    *("Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes"),
    *("Gigabytes", "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits"),
    *("Percent", "Count", "Bytes/Second", "Kilobytes/Second", "Megabytes/Second"),
    *("Gigabytes/Second", "Terabytes/Second", "Bits/Second", "Kilobits/Second"),
    *("Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None"),
}


def emf_documents(output: str, event: str) -> list[dict]:
    """The embedded-metric-format documents of ``event`` among ``output``'s lines, each held to
    the specification (Specification: Embedded metric format, CloudWatch User Guide): a whole
    JSON object per line, ``_aws`` with a Timestamp in milliseconds and MetricDirectives, each
    a Namespace, dimension sets of at most 9 keys naming string members of the root, at most
    100 metrics naming members that are a number or an array of at most 100 numbers."""
    documents = []
    for line in output.splitlines():
        if not line.startswith("{"):
            continue
        document = json.loads(line)
        if document.get("event") != event:
            continue
        meta = document["_aws"]
        assert isinstance(meta["Timestamp"], int)
        assert abs(meta["Timestamp"] / 1000 - time.time()) < 600
        for directive in meta["CloudWatchMetrics"]:
            assert isinstance(directive["Namespace"], str) and 0 < len(directive["Namespace"]) < 256
            for keys in directive["Dimensions"]:
                assert len(keys) <= 9
                assert all(isinstance(document[key], str) for key in keys)
            assert 0 < len(directive["Metrics"]) <= 100
            for definition in directive["Metrics"]:
                assert set(definition) <= {"Name", "Unit"}
                assert definition.get("Unit", "None") in UNITS
                value = document[definition["Name"]]
                values = value if isinstance(value, list) else [value]
                assert 0 < len(values) <= 100
                assert all(type(number) in (int, float) for number in values)
        documents.append(document)
    return documents
