"""Audit records and S3 events for tests (the audit_bucket and audit_table fixtures are in the
root conftest)."""

from datetime import UTC, datetime
from urllib.parse import quote_plus

from centralllm import aws
from centralllm.audit.contract import build_record, dumps, record_key
from devtools.testing import unique


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
