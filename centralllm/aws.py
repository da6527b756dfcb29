"""The one place that builds boto3 clients.

The same code path serves the local AWS stand-in and real AWS: when ``AWS_ENDPOINT_URL``
is set every client talks to it (``AWS_ENDPOINT_URL_<SERVICE>`` sends one service elsewhere,
as DynamoDB goes to DynamoDB Local), otherwise boto3's default endpoint and credential chain
apply.
"""

import ipaddress
import os
from functools import lru_cache
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.config import Config

DEFAULT_REGION = "eu-central-1"


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def endpoint_url(service: str = "") -> str | None:
    """Where ``service`` is served: ``AWS_ENDPOINT_URL_<SERVICE>`` (boto3's convention, e.g.
    ``AWS_ENDPOINT_URL_DYNAMODB``), else ``AWS_ENDPOINT_URL``, else AWS's own endpoint (None)."""
    specific = f"AWS_ENDPOINT_URL_{service.upper().replace('-', '_')}" if service else ""
    return os.environ.get(specific) or os.environ.get("AWS_ENDPOINT_URL") or None


def is_stand_in() -> bool:
    """Whether clients talk to a local stand-in (moto) rather than AWS: real AWS needs no
    endpoint. Code that works around a stand-in's gaps asks this, and nothing else."""
    return endpoint_url() is not None


def serves_locally(service: str) -> bool:
    """Whether ``service`` is answered on this machine or beside it, never by AWS: its endpoint
    is a loopback address, or a bare host name (``localhost``, docker compose's ``local-aws``):
    AWS's own endpoints are always fully qualified names."""
    host = urlparse(endpoint_url(service) or "").hostname
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return "." not in host


def client(
    service: str,
    *,
    region_name: str | None = None,
    connect_timeout: float = 5,
    read_timeout: float = 60,
    max_attempts: int = 5,
) -> Any:
    """A boto3 client for ``service`` with adaptive retries.

    Clients are thread-safe and costly to build, so each combination is built once.
    """
    return _cached_client(
        service,
        region_name or region(),
        endpoint_url(service),
        connect_timeout,
        read_timeout,
        max_attempts,
    )


@lru_cache(maxsize=64)
def _cached_client(
    service: str,
    region_name: str,
    endpoint: str | None,
    connect_timeout: float,
    read_timeout: float,
    max_attempts: int,
) -> Any:
    config = Config(
        region_name=region_name,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"mode": "adaptive", "max_attempts": max_attempts},
    )
    # A session per client: boto3's default session is not thread-safe to build clients from.
    return boto3.session.Session().client(service, endpoint_url=endpoint, config=config)
