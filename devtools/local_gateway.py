"""The local stand-in of API Gateway: the platform's public API at ``/prod/v1/...`` on a laptop.

`make run` serves it (``GATEWAY_PORT``, 8002) in front of the model of ``SERVE_MODEL=1``, so
that a key made on the keys page can be tried as clients use it in production. Production
stays API Gateway; this does what the REST API that ``provisioning.resources.apigateway``
declares does, reading the environment's keys and usage plans from the local AWS:

- only ``/prod/v1/{proxy+}`` exists: any other path gets 403 Missing Authentication Token,
  and so does one with a "." or ".." segment (the model's routes outside /v1 are not audited);
- ``x-api-key`` must be an enabled key on a usage plan of the API's ``prod`` stage, or 403
  Forbidden. What the local AWS holds is read again after ``cache_seconds``, as API Gateway
  applies changes after a short delay; a key not known yet is looked up again at once, so a
  key made a moment ago works;
- the plan's throttle (rate and burst: a token bucket per key) and quota (requests per key
  and day, week or month) are counted in Redis, so every process agrees: 429 Too Many
  Requests, 429 Limit Exceeded;
- the request validator's three headers: 400 naming those missing or blank;
- the integration's mapping: a new ``x-request-id`` (replacing the client's), the key's id in
  ``x-api-key-id`` and the gateway's secret that vouches for both; the answer streams back
  as the model sends it (``responseTransferMode`` STREAM).

Without a model (``LOCAL_MODEL_URL`` unset), or with one that does not answer, a 503 says what
to do. Run it alone with ``python -m devtools.local_gateway --port 8002 [--suffix=-staging]``.
"""

import argparse
import asyncio
import hashlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

import httpx
import redis.asyncio as redis
import uvicorn
from botocore.exceptions import BotoCoreError, ClientError

from centralllm import aws
from centralllm.audit import contract, rollups
from provisioning.resources.apigateway import INTEGRATION_TIMEOUT_MS, STAGE
from provisioning.resources.base import error_code, resource_name

API_KEY_HEADER = "x-api-key"
PREFIX = f"/{STAGE}/v1/"
CACHE_SECONDS = 10.0
NO_MODEL = (
    "No model is served locally. Run `make vllm-env` once, then `SERVE_MODEL=1 make run`: "
    "the local API then forwards to the model it serves."
)
# Redis keys; every process of the local API counts in the same ones.
COUNTERS = "local-gateway"
QUOTA_KEEP_SECONDS = 32 * 24 * 3600  # longer than the longest quota period
# A token bucket per key: ``burst`` tokens at most, ``rate`` more each second, one a request.
# Redis's own clock, so processes on different clocks agree.
THROTTLE = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - at) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], 3600)
return allowed
"""
# Not passed on: hop-by-hop headers, the key's value, and what the integration sets itself.
_NOT_FORWARDED = frozenset(
    name.encode()
    for name in (
        "host",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "upgrade",
        API_KEY_HEADER,
        contract.REQUEST_ID_HEADER,
        contract.API_KEY_ID_HEADER,
        contract.GATEWAY_SECRET_HEADER,
    )
)
_NOT_RETURNED = frozenset(
    name.encode() for name in ("connection", "keep-alive", "transfer-encoding", "date", "server")
)


class Unavailable(Exception):
    """The local API cannot serve at all (nothing applied, the local AWS down); says why."""


@dataclass(frozen=True)
class Plan:
    id: str
    rate: float | None
    burst: int | None
    quota: int | None
    period: str


@dataclass(frozen=True)
class Key:
    id: str
    plan: Plan


@dataclass(frozen=True)
class Stage:
    """The ``prod`` stage as the local AWS had it at ``read_at``: its usable keys, by the
    digest of their values (the values themselves are not kept), and the gateway's secret."""

    keys: dict[str, Key]
    secret: str
    read_at: float


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def gateway_secret(suffix: str = "") -> str | None:
    """The gateway's secret of the environment with ``suffix`` (None before its first apply)."""
    client = aws.client("secretsmanager", connect_timeout=2, max_attempts=2)
    try:
        found = client.get_secret_value(SecretId=resource_name("GatewaySecret", suffix))
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise
    return found.get("SecretString")


def read_stage(suffix: str = "") -> Stage:
    """The environment's REST API stage from the local AWS: which keys open it, on what plan."""
    read_at = time.monotonic()
    apigateway = aws.client("apigateway", connect_timeout=2, max_attempts=2)
    name = resource_name("RestApi", suffix)
    apis = apigateway.get_paginator("get_rest_apis").paginate()
    api = next((item for page in apis for item in page["items"] if item["name"] == name), None)
    secret = gateway_secret(suffix)
    if api is None or secret is None:
        raise Unavailable(
            f"The local AWS has no REST API {name} and gateway secret yet: apply the "
            'environment (make manage CMD="env apply local")'
        )
    plan_of: dict[str, Plan] = {}
    for page in apigateway.get_paginator("get_usage_plans").paginate():
        for item in page["items"]:
            stages = item.get("apiStages", [])
            if not any(s["apiId"] == api["id"] and s["stage"] == STAGE for s in stages):
                continue
            plan = Plan(
                id=item["id"],
                rate=item.get("throttle", {}).get("rateLimit"),
                burst=item.get("throttle", {}).get("burstLimit"),
                quota=item.get("quota", {}).get("limit"),
                period=item.get("quota", {}).get("period", "MONTH"),
            )
            keys = apigateway.get_paginator("get_usage_plan_keys").paginate(usagePlanId=plan.id)
            plan_of.update({key["id"]: plan for page in keys for key in page["items"]})
    keys = {
        _digest(item["value"]): Key(item["id"], plan_of[item["id"]])
        for page in apigateway.get_paginator("get_api_keys").paginate(includeValues=True)
        for item in page["items"]
        # A disabled key, or one on no plan of this stage, opens nothing: as if unknown.
        if item.get("enabled") and item["id"] in plan_of
    }
    return Stage(keys=keys, secret=secret, read_at=read_at)


class LocalGateway:
    """The ASGI app: ``suffix`` names the environment's API (``''`` is ``local``'s), ``upstream``
    is where the model answers (None: none is served)."""

    def __init__(
        self,
        *,
        redis_url: str,
        upstream: str | None,
        suffix: str = "",
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self.suffix = suffix
        self.upstream = upstream.rstrip("/") if upstream else None
        self.cache_seconds = cache_seconds
        self.redis = redis.Redis.from_url(redis_url)
        self.throttle = self.redis.register_script(THROTTLE)
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(INTEGRATION_TIMEOUT_MS / 1000, connect=5)
        )
        self._stage: Stage | None = None
        self._reading = asyncio.Lock()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        request_id = str(uuid.uuid4())  # API Gateway's context.requestId
        try:
            await self._serve(scope, receive, send, request_id)
        except Unavailable as exc:
            await _answer(send, request_id, 503, str(exc))
        except (BotoCoreError, ClientError) as exc:
            await _answer(send, request_id, 503, f"The local AWS did not answer: {exc}")
        except redis.RedisError as exc:
            await _answer(
                send, request_id, 503, f"Redis did not answer, so nothing is counted: {exc}"
            )

    async def _serve(self, scope, receive, send, request_id: str) -> None:
        # https://docs.aws.amazon.com/apigateway/latest/developerguide/supported-gateway-response-types.html
        proxy = _proxy_path(scope["path"])
        if proxy is None:
            await _answer(send, request_id, 403, "Missing Authentication Token")
            return
        headers = {name.decode(): value.decode("latin-1") for name, value in scope["headers"]}
        stage, key = await self._key(headers.get(API_KEY_HEADER, ""))
        if key is None:
            await _answer(send, request_id, 403, "Forbidden")
        elif not await self._within_throttle(key):
            await _answer(send, request_id, 429, "Too Many Requests")
        elif not await self._within_quota(key):
            await _answer(send, request_id, 429, "Limit Exceeded")
        elif missing := [h for h in contract.REQUIRED_HEADERS if not headers.get(h, "").strip()]:
            message = f"Missing required request parameters: [{', '.join(missing)}]"
            await _answer(send, request_id, 400, message)
        elif self.upstream is None:
            await _answer(send, request_id, 503, NO_MODEL)
        else:
            injected = {
                contract.REQUEST_ID_HEADER: request_id,
                contract.API_KEY_ID_HEADER: key.id,
                contract.GATEWAY_SECRET_HEADER: stage.secret,
            }
            await self._forward(scope, receive, send, request_id, proxy, injected)

    async def _key(self, value: str) -> tuple[Stage, Key | None]:
        now = time.monotonic()
        stage = await self._read(fresher_than=now - self.cache_seconds)
        if value and _digest(value) not in stage.keys:
            # Unknown: perhaps made since; requests that miss meanwhile share the next read.
            stage = await self._read(fresher_than=now)
        return stage, stage.keys.get(_digest(value)) if value else None

    async def _read(self, *, fresher_than: float) -> Stage:
        """The stage read no earlier than ``fresher_than``: one read at a time."""
        async with self._reading:
            if self._stage is None or self._stage.read_at < fresher_than:
                self._stage = await asyncio.to_thread(read_stage, self.suffix)
            return self._stage

    async def _within_throttle(self, key: Key) -> bool:
        if key.plan.rate is None or key.plan.burst is None:
            return True
        name = f"{COUNTERS}:throttle:{key.plan.id}:{key.id}"
        return bool(await self.throttle(keys=[name], args=[key.plan.rate, key.plan.burst]))

    async def _within_quota(self, key: Key) -> bool:
        if key.plan.quota is None:
            return True
        period = rollups.period_of(datetime.now(UTC), key.plan.period)
        name = f"{COUNTERS}:quota:{key.plan.id}:{key.id}:{period}"
        async with self.redis.pipeline(transaction=True) as pipe:
            count, _ = await pipe.incr(name).expire(name, QUOTA_KEEP_SECONDS).execute()
        return count <= key.plan.quota

    async def _forward(
        self, scope, receive, send, request_id: str, proxy: str, injected: dict
    ) -> None:
        """The request to the model at ``/v1/<proxy>``, and its answer back, each as it comes."""
        # Quoted: a '?' or '#' the client sent encoded stays in the path.
        url = f"{self.upstream}/v1/{quote(proxy)}"
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        headers = [item for item in scope["headers"] if item[0] not in _NOT_FORWARDED]
        headers += [(name.encode(), value.encode()) for name, value in injected.items()]
        # Sent with the client's Content-Length, or chunked as the client sent it.
        body = _request_body(receive)
        request = self.http.build_request(scope["method"], url, headers=headers, content=body)
        try:
            response = await self.http.send(request, stream=True)
        except httpx.HTTPError as exc:
            message = (
                f"The model at {self.upstream} does not answer ({exc or type(exc).__name__}): "
                "it takes a minute or two to load after `SERVE_MODEL=1 make run` starts."
            )
            await _answer(send, request_id, 503, message)
            return
        try:
            returned = [
                (name.lower(), value)
                for name, value in response.headers.raw
                if name.lower() not in _NOT_RETURNED
            ]
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [*returned, (b"x-amzn-requestid", request_id.encode())],
                }
            )
            relay = asyncio.ensure_future(_relay(response, send))
            gone = asyncio.ensure_future(_disconnected(receive))
            await asyncio.wait([relay, gone], return_when=asyncio.FIRST_COMPLETED)
            # A client that went away stops the model's answer too, as it would in AWS.
            for task in (relay, gone):
                task.cancel()
            if relay.done() and not relay.cancelled():
                relay.result()  # what broke the relay, other than the model
        finally:
            await response.aclose()

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.http.aclose()
                await self.redis.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _proxy_path(path: str) -> str | None:
    """What ``path`` (decoded, as the client sent it) asks of the model under ``/v1/``: the
    ``{proxy+}`` part; None for a path outside it. A "." or ".." segment (also sent as
    "%2e%2e") counts as outside: resolved, it could reach the model's routes beyond /v1,
    which the audit middleware does not record."""
    proxy = path.removeprefix(PREFIX)
    if proxy == path or not proxy or {".", ".."} & set(proxy.split("/")):
        return None
    return proxy


async def _relay(response: httpx.Response, send) -> None:
    try:
        async for chunk in response.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except httpx.HTTPError:
        pass  # the model broke off: the client gets what came, as from API Gateway
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _request_body(receive) -> AsyncIterator[bytes]:
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
        yield message.get("body", b"")


async def _disconnected(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _answer(send, request_id: str, status: int, message: str) -> None:
    """A gateway response: API Gateway's JSON body, with its request id."""
    body = json.dumps({"message": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"x-amzn-requestid", request_id.encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.local_gateway", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GATEWAY_PORT", "8002")))
    parser.add_argument("--suffix", default="", help="the environment's suffix ('' for local)")
    args = parser.parse_args(argv)
    gateway = LocalGateway(
        redis_url=os.environ["REDIS_URL"],
        upstream=os.environ.get("LOCAL_MODEL_URL") or None,
        suffix=args.suffix,
        cache_seconds=float(os.environ.get("GATEWAY_CACHE_SECONDS", CACHE_SECONDS)),
    )
    print(f"Local API: http://{args.host}:{args.port}{PREFIX} (API Gateway stand-in)", flush=True)
    uvicorn.run(gateway, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
