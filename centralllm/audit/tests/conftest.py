"""Audit resources on the session's moto server, with unique names per test."""

import uuid
from datetime import UTC, datetime
from urllib.parse import quote_plus

import pytest

from centralllm import aws
from centralllm.audit.contract import build_record, dumps, record_key
from centralllm.audit.table import create_table_request


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def audit_table(monkeypatch) -> str:
    name = unique("audit")
    aws.client("dynamodb").create_table(**create_table_request(name))
    monkeypatch.setenv("TABLE_NAME", name)
    yield name
    aws.client("dynamodb").delete_table(TableName=name)


@pytest.fixture
def audit_bucket(monkeypatch) -> str:
    name = unique("central-llm-audit")
    aws.client("s3").create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": aws.region()}
    )
    monkeypatch.setenv("AUDIT_BUCKET", name)
    return name


def make_record(**overrides) -> dict:
    """A valid record as the serving middleware writes it; keyword arguments change fields."""
    fields = {
        "request_id": unique("req"),
        "created_at": datetime(2026, 11, 27, 5, 9, 9, 123000, tzinfo=UTC),
        "project": "smoke-test",
        "user": "qa",
        "request_type": "chat",
        "api_key_id": "key-1",
        "method": "POST",
        "path": "/v1/chat/completions",
        "model": "ministral-8b-instruct",
        "stream": False,
        "status": 200,
        "cancelled": False,
        "latency_ms": 123.4,
        "ttft_ms": None,
        "usage": {"prompt_tokens": 5, "completion_tokens": 16, "total_tokens": 21},
        "error": None,
        "deployment": {"imageTag": "abc123", "model": "ministral-8b-instruct", "host": "t1"},
        "prompt": "ping",
        "completion": "pong",
    }
    return build_record(**{**fields, **overrides})


def put_body(bucket: str, key: str, body: bytes) -> None:
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=body)


def put_record(bucket: str, record: dict) -> str:
    key = record_key(record)
    put_body(bucket, key, dumps(record))
    return key


def s3_event(bucket: str, key: str) -> dict:
    """An S3 ObjectCreated notification as Lambda receives it: the key URL-encoded."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {"key": quote_plus(key, safe="/")},
                },
            }
        ]
    }
