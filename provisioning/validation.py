"""The deployment guide's validation checklist (section 10) as five checks, each with its
evidence: a chat completion through the environment's endpoint, its audit object in S3, the
ingest's log line, its DynamoDB item, and a steady ECS service.

Plain Python (no Django). The API key's value is fetched when the check runs and never kept,
shown or logged.
"""

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError

from centralllm.audit import contract, items
from provisioning.resources.base import Context, error_code

PASS, FAIL, SKIPPED = "pass", "fail", "skipped"
PROJECT = "smoke-test"
HEADERS = {
    contract.SOURCE_HEADER: PROJECT,
    contract.USER_HEADER: "console-validation",
    contract.REQUEST_TYPE_HEADER: "chat",
}
# (key, title) of the checks, in order; the run's steps.
CHECKS = [
    ("completion", "A chat completion through the endpoint"),
    ("audit_object", "Its audit object in S3"),
    ("ingest_log", "The ingest's log line for it"),
    ("audit_item", "Its DynamoDB item under project#smoke-test"),
    ("service", "The ECS service is steady"),
]


@dataclass(frozen=True)
class Outcome:
    status: str  # pass, fail or skipped
    evidence: str

    def __str__(self) -> str:
        return f"{self.status}: {self.evidence}"


class Validation:
    """The five checks against one environment. A local environment's completion goes through
    ``local_api_url``, the local stand-in of its API stage, with the environment's key, as an
    AWS one goes through API Gateway; ``model_url`` says whether a model answers behind it
    (None: none is served, so the completion is skipped)."""

    def __init__(
        self,
        ctx: Context,
        *,
        model_url: str | None,
        local_api_url: str | None = None,
        wait_seconds: float = 90,
        poll_seconds: float = 2,
    ) -> None:
        self.ctx = ctx
        self.model_url = model_url
        self.local_api_url = local_api_url
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds
        self.request_id: str | None = None
        self.sent_at: datetime | None = None

    def check(self, key: str) -> Outcome:
        if key in ("audit_object", "ingest_log", "audit_item") and self.request_id is None:
            return Outcome(SKIPPED, "did not run: there is no request to follow")
        try:
            return getattr(self, f"_{key}")()
        except (BotoCoreError, ClientError) as exc:
            return Outcome(FAIL, f"AWS answered {_error(exc)}")
        except _Unusable as exc:
            return Outcome(FAIL, str(exc))

    # 1 ------------------------------------------------------------------------------------
    def _completion(self) -> Outcome:
        spec = self.ctx.spec
        if spec.is_local and not self.model_url:
            return Outcome(SKIPPED, "no model is served locally (start it with SERVE_MODEL=1)")
        if spec.is_local and not self.local_api_url:
            return Outcome(FAIL, "no local API to call the model through (LOCAL_API_URL is unset)")
        stage = self.local_api_url.rstrip("/") if spec.is_local else self._stage_url()
        url = f"{stage}/v1/chat/completions"
        headers = {"x-api-key": self._api_key_value()}
        body = {
            "model": spec.served_model_name,
            "messages": [{"role": "user", "content": "Say OK."}],
            "max_tokens": 8,
        }
        if not url.startswith(("http://", "https://")):
            return Outcome(FAIL, f"{url} is not an http(s) URL")
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked just above
            url,
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json", **HEADERS, **headers},
        )
        self.sent_at = datetime.now(UTC)
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
                answer = json.load(response)
                request_id = response.headers.get(contract.REQUEST_ID_HEADER)
        except urllib.error.HTTPError as exc:
            return Outcome(FAIL, f"{url} answered HTTP {exc.code}: {exc.read()[:200]!r}")
        except (OSError, ValueError) as exc:
            return Outcome(FAIL, f"{url} did not answer: {exc}")
        elapsed = (time.monotonic() - started) * 1000
        if not request_id:
            return Outcome(FAIL, f"{url} answered without an {contract.REQUEST_ID_HEADER}")
        self.request_id = request_id
        text = (answer.get("choices") or [{}])[0].get("message", {}).get("content", "")
        return Outcome(PASS, f"request {request_id} answered in {elapsed:.0f} ms: {text[:80]!r}")

    def _stage_url(self) -> str:
        api = _named(self.ctx, "get_rest_apis", self.ctx.name("RestApi"))
        if api is None:
            raise _Missing(f"no REST API {self.ctx.name('RestApi')}")
        region = self.ctx.spec.region
        return f"https://{api['id']}.execute-api.{region}.amazonaws.com/prod"

    def _api_key_value(self) -> str:
        """This environment's key, and only if the gateway would accept it: enabled and on
        this environment's usage plan."""
        name, plan_name = self.ctx.name("ApiKey"), self.ctx.name("UsagePlan")
        # nameQuery is a prefix: central-llm-generic-key also finds ...-generic-key-staging.
        key = _named(self.ctx, "get_api_keys", name, nameQuery=name, includeValues=True)
        if key is None:
            raise _Missing(f"no API key {name}")
        if not key.get("enabled"):
            raise _Unusable(
                f"API key {name} ({key['id']}) is disabled: the gateway refuses it; apply the "
                "environment to enable it again"
            )
        plan = _named(self.ctx, "get_usage_plans", plan_name)
        if plan is None:
            raise _Missing(f"no usage plan {plan_name}")
        apigateway = self.ctx.client("apigateway")
        try:
            apigateway.get_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"])
        except ClientError as exc:
            if error_code(exc) != "NotFoundException":
                raise
            raise _Unusable(
                f"API key {name} ({key['id']}) is not on usage plan {plan_name} ({plan['id']}): "
                "the gateway refuses it; apply the environment to put it back"
            ) from None
        return key["value"]

    # 2 ------------------------------------------------------------------------------------
    def _audit_object(self) -> Outcome:
        bucket, s3 = self.ctx.name("AuditBucket"), self.ctx.client("s3")
        days = {self.sent_at, self.sent_at + timedelta(minutes=5)}  # a request near midnight
        keys = sorted({f"logs/{day:%Y/%m/%d}/{self.request_id}.json" for day in days})

        def found() -> Outcome | None:
            for key in keys:
                try:
                    head = s3.head_object(Bucket=bucket, Key=key)
                except ClientError as exc:
                    if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                        continue
                    raise
                return Outcome(PASS, f"s3://{bucket}/{key} ({head['ContentLength']} bytes)")
            return None

        return self._poll(found, f"no s3://{bucket}/{keys[0]}")

    # 3 ------------------------------------------------------------------------------------
    def _ingest_log(self) -> Outcome:
        group = f"/aws/lambda/{self.ctx.name('LambdaFunction')}"
        logs = self.ctx.client("logs")
        since = int((self.sent_at - timedelta(minutes=1)).timestamp() * 1000)

        def found() -> Outcome | None:
            # A page can be empty while later ones hold events: follow nextToken to the end.
            # https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_FilterLogEvents.html
            pages = logs.get_paginator("filter_log_events").paginate(
                logGroupName=group, startTime=since, filterPattern=f'"{self.request_id}"'
            )
            events = (event for page in pages for event in page["events"])
            try:
                event = next((e for e in events if self.request_id in e["message"]), None)
            except ClientError as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    return None
                raise
            if event is None:
                return None
            at = datetime.fromtimestamp(event["timestamp"] / 1000, UTC)
            where = f"{group} {event['logStreamName']} at {at:%H:%M:%S}"
            return Outcome(PASS, f"{where}: {event['message'][:160]}")

        return self._poll(found, f"no line naming {self.request_id} in {group}")

    # 4 ------------------------------------------------------------------------------------
    def _audit_item(self) -> Outcome:
        table = self.ctx.name("AuditTable")

        def found() -> Outcome | None:
            item = items.get_item(self.request_id, table=table)
            if item is None:
                return None
            if item.get("latencyPk") != items.project_key(PROJECT):
                return Outcome(FAIL, f"{table}: {self.request_id} is under {item['latencyPk']}")
            return Outcome(
                PASS,
                f"{table}: {item['id']} at {item['createdAt']} under {item['latencyPk']}, "
                f"status {item['status']}, {item['latencyMs']} ms",
            )

        return self._poll(found, f"no item {self.request_id} in {table}")

    # 5 ------------------------------------------------------------------------------------
    def _service(self) -> Outcome:
        found = self.ctx.client("ecs").describe_services(
            cluster=self.ctx.name("Cluster"), services=[self.ctx.name("Service")]
        )["services"]
        service = next((item for item in found if item.get("status") == "ACTIVE"), None)
        if service is None:
            return Outcome(FAIL, f"no ECS service {self.ctx.name('Service')}")
        deployments = service.get("deployments", [])
        running, desired = service.get("runningCount", 0), service.get("desiredCount", 0)
        states = [d.get("rolloutState", "?") for d in deployments]
        evidence = (
            f"{running} running of {desired} desired, {len(deployments)} deployment(s) "
            f"({', '.join(states)}), on {service['taskDefinition'].rpartition('/')[2]}"
        )
        steady = running == desired and len(deployments) == 1 and states[0] in ("COMPLETED", "?")
        return Outcome(PASS if steady else FAIL, evidence)

    def _poll(self, found: Callable[[], "Outcome | None"], missing: str) -> Outcome:
        """Records arrive a few seconds after the request: look until ``wait_seconds``."""
        deadline = time.monotonic() + self.wait_seconds
        while True:
            outcome = found()
            if outcome is not None:
                return outcome
            if time.monotonic() >= deadline:
                return Outcome(FAIL, f"{missing} after {self.wait_seconds:.0f}s")
            self.ctx.progress.checkpoint()
            self.ctx.sleep(self.poll_seconds)


def _named(ctx: Context, operation: str, name: str, **params: object) -> dict | None:
    """The first item called ``name`` of an API Gateway listing, through all its pages."""
    pages = ctx.client("apigateway").get_paginator(operation).paginate(**params)
    return next((item for page in pages for item in page["items"] if item["name"] == name), None)


class _Unusable(Exception):
    """What the check needs is there but cannot serve; the message says why, for an operator."""


class _Missing(ClientError):
    """A resource the check needs is not there (reported like AWS's own answer)."""

    def __init__(self, message: str) -> None:
        super().__init__({"Error": {"Code": "NotFound", "Message": message}}, "validation")


def _error(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return f"{error_code(exc)}: {exc.response['Error'].get('Message', '')}"
    return str(exc)
