"""AWS test resources on the session's moto server, with names no other test shares."""

import uuid

from centralllm import aws
from centralllm.audit.table import create_table_request


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_bucket(name: str) -> str:
    aws.client("s3").create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": aws.region()}
    )
    return name


def create_audit_table(name: str) -> str:
    """The audit table with its indexes, as the contract defines it."""
    aws.client("dynamodb").create_table(**create_table_request(name))
    return name
