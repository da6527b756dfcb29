"""The local API's pieces on the session's real services: an environment's REST API stage,
usage plans and keys made in the local AWS (as an apply and the keys page make them), the
real audit middleware in front of the vLLM imitation, and the gateway itself."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from centralllm import aws
from devtools.local_gateway import LocalGateway
from inference.middleware import AuditMiddleware
from inference.tests import fake_vllm
from inference.tests.conftest import Buckets, new_writer, serve
from provisioning.resources.apigateway import STAGE
from provisioning.resources.base import resource_name
from provisioning.resources.secretsmanager import new_value


def make_stage(suffix: str) -> tuple[str, str]:
    """The environment's REST API and gateway secret, named as provisioning names them: the
    API's id and the secret's value."""
    api_id = aws.client("apigateway").create_rest_api(name=resource_name("RestApi", suffix))["id"]
    secret = new_value()
    aws.client("secretsmanager").create_secret(
        Name=resource_name("GatewaySecret", suffix), SecretString=secret
    )
    return api_id, secret


def add_plan(api_id: str, *, throttle: dict | None = None, quota: dict | None = None) -> str:
    """A usage plan of the API's stage with this throttle and quota (as the API takes them)."""
    limits = {"throttle": throttle} if throttle else {}
    if quota:
        limits["quota"] = quota
    plan = aws.client("apigateway").create_usage_plan(
        name=f"plan-of-{api_id}", apiStages=[{"apiId": api_id, "stage": STAGE}], **limits
    )
    return plan["id"]


def add_key(plan_id: str | None) -> tuple[str, str]:
    """An enabled key on the plan (on none for None): its id and value."""
    value = new_value()
    apigateway = aws.client("apigateway")
    key_id = apigateway.create_api_key(name="caller", enabled=True, value=value)["id"]
    if plan_id:
        apigateway.create_usage_plan_key(usagePlanId=plan_id, keyId=key_id, keyType="API_KEY")
    return key_id, value


@contextmanager
def audited_model(buckets: Buckets, secret: str, spool: Path, **middleware) -> Iterator[str]:
    """The vLLM imitation behind the real audit middleware, trusting ``secret`` as a serving
    host trusts its gateway's; records go to ``buckets`` within a fraction of a second."""
    writer = new_writer(buckets, spool, flush_seconds=0.2)
    app = AuditMiddleware(fake_vllm.app, writer=writer, gateway_secret=secret, **middleware)
    try:
        with serve(app) as url:
            yield url
    finally:
        writer.close()


@contextmanager
def gateway(suffix: str, upstream: str | None, cache_seconds: float = 0.5) -> Iterator[str]:
    """A local API in this process for the environment with ``suffix``: its stage's URL."""
    app = LocalGateway(
        redis_url=os.environ["REDIS_URL"],
        upstream=upstream,
        suffix=suffix,
        cache_seconds=cache_seconds,
    )
    with serve(app) as url:
        yield f"{url}/{STAGE}"
