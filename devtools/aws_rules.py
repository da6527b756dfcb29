"""AWS as documented, put back into the local AWS's answers.

moto answers at once, reads back exactly what was written and skips AWS's cross-resource
checks; AWS does none of that. ``AwsRules`` sits between the engine's boto3 clients and the
local AWS (botocore's event hooks, so every call still goes over HTTP to moto or DynamoDB
Local) and makes their answers behave as AWS documents: resources in transitional states for
a while, reads that lag writes, first attempts refused until a dependency settles, refusals
the stand-in skips, throttling bursts and pages that are empty but not last. Each rule cites
where AWS documents it; ``fired`` counts each rule's effects, so a test can show that the
rules it relies on really met the code.

Time is virtual: a transition ends when enough *waiting* has happened, and waiting is
``rules.sleep`` (which every run context uses while the rules are on), so the tests run at
full speed and repeat exactly; ``scale`` also sleeps that fraction of each wait for real
(AWS-like latencies scaled down, for benchmarks). Durations are drawn from ``seed``.
"""

import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.config import Config

from centralllm import aws
from provisioning import engine
from provisioning.resources.base import Context

# What each rule stands for, with where AWS (or its users) document it.
RULES = {
    "throttling": "Bursts of throttling errors that the SDK retries: "
    "https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html, "
    "https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html",
    "nlb_provisioning": "A new load balancer is 'provisioning' for minutes before 'active': "
    "https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_LoadBalancerState.html "  # noqa: E501
    "(botocore's load_balancer_available waiter)",
    "vpc_link_pending": "CreateVpcLink 'typically takes 2-4 minutes' (PENDING, then AVAILABLE): "
    "https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-private-integration.html",
    "vpc_link_needs_active_nlb": "A VPC link to an NLB that is not active ends FAILED ('NLB is "
    "not in active state'): aws-cloudformation/cloudformation-coverage-roadmap#1951",
    "vpc_link_deleting": "A deleted VPC link stays DELETING for a while, and its load balancer "
    "cannot be deleted meanwhile (ResourceInUse): "
    "https://docs.aws.amazon.com/apigateway/latest/api/API_VpcLink.html",
    "elb_name_length": "Load balancer and target group names have at most 32 characters: "
    "https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateLoadBalancer.html",
    "ecs_service_linked_role": "A fresh account has no ECS service-linked role until "
    "CreateCluster or CreateServiceLinkedRole makes it; CreateCapacityProvider is refused "
    "before: https://docs.aws.amazon.com/AmazonECS/latest/developerguide/using-service-linked-roles.html, "  # noqa: E501
    "terraform-aws-modules/terraform-aws-ecs#26",
    "capacity_provider_deleting": "A deleted capacity provider reports updateStatus "
    "DELETE_IN_PROGRESS until it is gone: "
    "https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_CapacityProvider.html",
    "service_draining": "A deleted service is DRAINING until its tasks stop, then INACTIVE: "
    "https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_DeleteService.html",
    "asg_deleting": "A deleted Auto Scaling group stays 'Delete in progress' while its "
    "instances terminate: "
    "https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_AutoScalingGroup.html",
    "usage_plan_with_stages": "A usage plan with API stages cannot be deleted ('Cannot delete "
    "Usage Plan ... because there are API Stages associated with it'): aws/aws-sdk-js#3841",
    "foreign_bucket": "Bucket names are global: a name another account owns answers HeadBucket "
    "403 and CreateBucket BucketAlreadyExists: "
    "https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html",
    "s3_lifecycle_lag": "A new lifecycle configuration takes a few minutes to show: "
    "https://docs.aws.amazon.com/AmazonS3/latest/userguide/how-to-set-lifecycle-configuration-intro.html, "  # noqa: E501
    "hashicorp/terraform-provider-aws#41764",
    "s3_notification_lag": "Bucket configuration is eventually consistent: "
    "https://docs.aws.amazon.com/AmazonS3/latest/userguide/Welcome.html#ConsistencyModel",
    "s3_lambda_validation": "S3 validates a Lambda destination with the function's resource "
    "policy, which takes a while to settle ('Unable to validate the following destination "
    "configurations'): hashicorp/terraform-provider-aws#19088",
    "sqs_new_queue": "'After you create a queue, you must wait at least one second after the "
    "queue is created to be able to use the queue': "
    "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html",
    "iam_read_lag": "IAM is eventually consistent: a new role or instance profile may not be "
    "found at once: "
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency",
    "iam_not_assumable": "A new role or instance profile is refused by the services that use it "
    "for a few seconds (Lambda: 'cannot be assumed', CodeBuild: 'not authorized to perform "
    "sts:AssumeRole', Auto Scaling: 'Invalid IAM Instance Profile'): "
    "https://docs.aws.amazon.com/lambda/latest/dg/troubleshooting-deployment.html",
    "lambda_states": "A new function is Pending, an updated one InProgress, and changes "
    "meanwhile are refused (ResourceConflictException): "
    "https://docs.aws.amazon.com/lambda/latest/dg/functions-states.html",
    "table_transitions": "A table is CREATING, an index CREATING while it backfills, a deleted "
    "table DELETING: "
    "https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TableDescription.html",
    "empty_page": "A FilterLogEvents page can be empty while more follow: "
    "https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_FilterLogEvents.html",
}

# Typical durations (seconds, low and high) from the sources above.
DURATIONS = {
    "nlb_provisioning": (120, 240),
    "vpc_link_pending": (120, 240),
    "vpc_link_failing": (30, 90),
    "vpc_link_deleting": (30, 90),
    "capacity_provider_deleting": (30, 120),
    "service_draining": (30, 120),
    "asg_deleting": (60, 300),
    "s3_lifecycle_lag": (10, 120),
    "s3_notification_lag": (2, 20),
    "s3_lambda_validation": (5, 20),
    "sqs_new_queue": (1, 1),
    "iam_read_lag": (1, 4),
    "iam_not_assumable": (5, 12),
    "lambda_pending": (2, 15),
    "lambda_updating": (2, 10),
    "table_creating": (5, 30),
    "index_creating": (30, 120),
    "table_deleting": (5, 20),
}

ELB_NAME_LIMIT = 32
ECS_SERVICE_LINKED_ROLE = "AWSServiceRoleForECS"
SERVICE_LINKED_ROLE_PATH = "/aws-service-role/ecs.amazonaws.com/"
# The deployment guide's production bucket names: owned by the old account, not ours.
FOREIGN_BUCKETS = ("central-llm-audit", "central-llm-audit-raw")
# (service, code, HTTP status) of a throttling answer, by protocol.
_THROTTLES = {
    "json": ("ThrottlingException", 400),
    "query": ("Throttling", 400),
    "rest-json": ("TooManyRequestsException", 429),
    "rest-xml": ("SlowDown", 503),
    "ec2": ("RequestLimitExceeded", 503),
}
_KEY = "aws_rules"
_EMPTY_PAGE_TOKEN = "aws-rules-empty-page"  # noqa: S105 - a page token
Hook = Callable[..., "Answer | None"]


@dataclass
class Answer:
    """What a rule answers in AWS's place: a parsed success, or an error."""

    parsed: dict
    status: int = 200

    @classmethod
    def error(cls, code: str, message: str, status: int = 400) -> "Answer":
        return cls({"Error": {"Code": code, "Message": message}}, status)


class _Raw:
    """A streamed body, as urllib3 would hand it to botocore."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield self.body


class AwsRules:
    """``with AwsRules(region) as rules:`` every engine run in ``region`` meets AWS as
    documented; ``rules.fired`` counts what each rule did."""

    def __init__(
        self,
        region: str = aws.DEFAULT_REGION,
        *,
        seed: int = 0,
        scale: float = 0.0,
        throttle_rate: float = 0.05,
        foreign_buckets: tuple[str, ...] = FOREIGN_BUCKETS,
    ) -> None:
        self.region = region
        self.random = random.Random(seed)  # noqa: S311 - repeatable timings
        self.scale = scale
        self.throttle_rate = throttle_rate
        self.foreign_buckets = set(foreign_buckets)
        self.now = 0.0
        self.fired: Counter = Counter()
        self.calls: Counter = Counter()
        self.settles: dict[tuple[str, str], float] = {}  # (what, id) -> when it settles
        self.kept: dict[tuple[str, str], Any] = {}  # what a lagging read still answers
        self.deferred: list[tuple[float, str, Callable[[], None]]] = []
        self.ecs_service_linked_role_at: float | None = None  # a fresh account has none
        self._lock = threading.RLock()
        self._raw: dict[str, Any] = {}
        self._before: dict[str, Hook] = {}
        self._after: dict[str, Callable[..., None]] = {}
        for name in dir(self):
            if name.startswith(("_before_", "_after_")):
                when, _, operation = name[1:].partition("_")
                service, _, operation = operation.partition("__")
                table = self._before if when == "before" else self._after
                table[f"{service}.{operation}"] = getattr(self, name)

    # The clock ------------------------------------------------------------------------------
    def sleep(self, seconds: float) -> None:
        """A run waits: virtual time passes (and ``scale`` of it for real)."""
        with self._lock:
            self.now += seconds
        if self.scale:
            time.sleep(seconds * self.scale)

    def _draw(self, what: str) -> float:
        low, high = DURATIONS[what]
        return self.random.uniform(low, high)

    def _settle_later(self, what: str, ident: str, duration: str | None = None) -> float:
        at = self.now + self._draw(duration or what)
        self.settles[(what, ident)] = at
        return at

    def _pending(self, what: str, ident: str) -> bool:
        at = self.settles.get((what, ident))
        return at is not None and self.now < at

    def _defer(self, what: str, ident: str, action: Callable[[], None]) -> None:
        """``action`` happens in the local AWS once the transition ``what`` is over."""
        at = self._settle_later(what, ident)
        self.deferred.append((at, ident, action))

    def _run_due(self) -> None:
        due = [item for item in self.deferred if item[0] <= self.now]
        self.deferred = [item for item in self.deferred if item[0] > self.now]
        for _at, _ident, action in sorted(due, key=lambda item: item[0]):
            action()

    def deferred_ids(self) -> set[str]:
        """What AWS is still deleting (the deletion happens once its time has passed)."""
        return {ident for _at, ident, _action in self.deferred}

    def raw(self, service: str) -> Any:
        """A client of the local AWS that the rules do not touch (what is really there)."""
        if service not in self._raw:
            self._raw[service] = boto3.session.Session().client(
                service,
                region_name=self.region,
                endpoint_url=aws.endpoint_url(service),
                config=Config(retries={"mode": "standard", "max_attempts": 3}),
            )
        return self._raw[service]

    # Wiring ---------------------------------------------------------------------------------
    def __enter__(self) -> "AwsRules":
        self._previous_sleep = Context.default_sleep
        Context.default_sleep = self.sleep
        self._clients = [aws.client(service, region_name=self.region) for service in SERVICES]
        unique = f"aws-rules-{id(self)}"
        for client in self._clients:
            events = client.meta.events
            events.register("before-parameter-build", self._decide, unique_id=unique + "-p")
            events.register_first("before-call", self._answer, unique_id=unique + "-c")
            events.register_first("before-send", self._throttle, unique_id=unique + "-s")
            events.register("after-call", self._observe, unique_id=unique + "-a")
        return self

    def __exit__(self, *exc_info: object) -> None:
        Context.default_sleep = self._previous_sleep
        unique = f"aws-rules-{id(self)}"
        for client in self._clients:
            events = client.meta.events
            events.unregister("before-parameter-build", unique_id=unique + "-p")
            events.unregister("before-call", unique_id=unique + "-c")
            events.unregister("before-send", unique_id=unique + "-s")
            events.unregister("after-call", unique_id=unique + "-a")

    def _decide(self, params: dict, model: Any, context: dict, **kwargs: Any) -> None:
        name = f"{model.service_model.endpoint_prefix}.{model.name}"
        with self._lock:
            self.calls[name] += 1
            self._run_due()
            rule = self._before.get(_hook_name(model))
            answer = rule(params) if rule else None
            protocol = model.service_model.protocol
            state = {"params": dict(params), "answer": answer, "throttles": 0, "protocol": protocol}
            if answer is None and self._throttled(model):
                state["throttles"] = self.random.choice((1, 2))
            context[_KEY] = state

    def _throttled(self, model: Any) -> bool:
        protocol = model.service_model.protocol
        busy = not engine.is_read_only(model.name) or model.service_model.service_name in (
            "apigateway",
        )
        return protocol in _THROTTLES and busy and self.random.random() < self.throttle_rate

    def _answer(self, model: Any, context: dict, **kwargs: Any) -> tuple | None:
        answer = context.get(_KEY, {}).get("answer")
        if answer is None:
            return None
        parsed = {**answer.parsed, "ResponseMetadata": {"HTTPStatusCode": answer.status}}
        return AWSResponse("http://aws-rules", answer.status, {}, _Raw(b"")), parsed

    def _throttle(self, request: Any, **kwargs: Any) -> AWSResponse | None:
        state = (request.context or {}).get(_KEY)
        if not state or state["throttles"] <= 0:
            return None
        state["throttles"] -= 1
        self._fire("throttling")
        return throttling_response(state["protocol"])

    def _observe(self, http_response: Any, parsed: dict, model: Any, context: dict, **kw) -> None:
        state = context.get(_KEY)
        if state is None or state["answer"] is not None or http_response.status_code >= 300:
            return
        rule = self._after.get(_hook_name(model))
        if rule:
            with self._lock:
                rule(state["params"], parsed)

    def _fire(self, rule: str) -> None:
        self.fired[rule] += 1

    # ELB ------------------------------------------------------------------------------------
    def _before_elasticloadbalancing__CreateLoadBalancer(self, params: dict) -> Answer | None:
        return self._elb_name(params["Name"], "LoadBalancer")

    def _before_elasticloadbalancing__CreateTargetGroup(self, params: dict) -> Answer | None:
        return self._elb_name(params["Name"], "TargetGroup")

    def _elb_name(self, name: str, kind: str) -> Answer | None:
        if len(name) <= ELB_NAME_LIMIT:
            return None
        self._fire("elb_name_length")
        return Answer.error(
            "ValidationError", f"{kind} name cannot be longer than '{ELB_NAME_LIMIT}' characters"
        )

    def _after_elasticloadbalancing__CreateLoadBalancer(self, params: dict, parsed: dict) -> None:
        for balancer in parsed.get("LoadBalancers", []):
            self._settle_later("nlb_provisioning", balancer["LoadBalancerArn"])
            balancer["State"] = {"Code": "provisioning"}

    def _after_elasticloadbalancing__DescribeLoadBalancers(self, params: dict, parsed: dict):
        for balancer in parsed.get("LoadBalancers", []):
            if self._pending("nlb_provisioning", balancer["LoadBalancerArn"]):
                self._fire("nlb_provisioning")
                balancer["State"] = {"Code": "provisioning"}

    def _before_elasticloadbalancing__DeleteLoadBalancer(self, params: dict) -> Answer | None:
        arn = params["LoadBalancerArn"]
        links = self.raw("apigateway").get_vpc_links(limit=500)["items"]
        if any(arn in link.get("targetArns", []) for link in links):
            self._fire("vpc_link_deleting")
            return Answer.error(
                "ResourceInUse",
                f"Load balancer '{arn}' cannot be deleted because it is currently associated "
                "with another service",
            )
        return None

    # API Gateway ----------------------------------------------------------------------------
    def _after_apigateway__CreateVpcLink(self, params: dict, parsed: dict) -> None:
        provisioning = [
            arn for arn in params["targetArns"] if self._pending("nlb_provisioning", arn)
        ]
        if provisioning:
            self._fire("vpc_link_needs_active_nlb")
            self._settle_later("vpc_link_failed", parsed["id"], "vpc_link_failing")
        else:
            self._settle_later("vpc_link_pending", parsed["id"])
        parsed["status"] = "PENDING"

    def _vpc_link_status(self, link: dict) -> None:
        ident = link["id"]
        if ident in self.deferred_ids():
            self._fire("vpc_link_deleting")
            link["status"] = "DELETING"
        elif ("vpc_link_failed", ident) in self.settles:
            self._fire("vpc_link_needs_active_nlb")
            failed = not self._pending("vpc_link_failed", ident)
            link["status"] = "FAILED" if failed else "PENDING"
            if failed:
                link["statusMessage"] = (
                    "NLB is not in active state. If you recently created this NLB, please wait "
                    "for it to become active"
                )
        elif self._pending("vpc_link_pending", ident):
            self._fire("vpc_link_pending")
            link["status"] = "PENDING"

    def _after_apigateway__GetVpcLink(self, params: dict, parsed: dict) -> None:
        self._vpc_link_status(parsed)

    def _after_apigateway__GetVpcLinks(self, params: dict, parsed: dict) -> None:
        for link in parsed.get("items", []):
            self._vpc_link_status(link)

    def _before_apigateway__DeleteVpcLink(self, params: dict) -> Answer | None:
        ident = params["vpcLinkId"]
        if ident in self.deferred_ids():
            return Answer({}, 202)
        self._defer(
            "vpc_link_deleting",
            ident,
            lambda: self.raw("apigateway").delete_vpc_link(vpcLinkId=ident),
        )
        return Answer({}, 202)

    def _before_apigateway__DeleteUsagePlan(self, params: dict) -> Answer | None:
        plan = self.raw("apigateway").get_usage_plan(usagePlanId=params["usagePlanId"])
        stages = [f"{stage['apiId']}:{stage['stage']}" for stage in plan.get("apiStages", [])]
        if not stages:
            return None
        self._fire("usage_plan_with_stages")
        return Answer.error(
            "BadRequestException",
            f"Cannot delete Usage Plan {params['usagePlanId']} because there are API Stages "
            f"associated with it: {', '.join(stages)}",
        )

    # ECS ------------------------------------------------------------------------------------
    def _has_service_linked_role(self) -> bool:
        return self.ecs_service_linked_role_at is not None

    def _ecs_sees_service_linked_role(self) -> bool:
        # Made a moment ago, it is not yet visible to ECS (IAM is eventually consistent).
        return self._has_service_linked_role() and not self._pending(
            "iam_not_assumable", ECS_SERVICE_LINKED_ROLE
        )

    def _make_service_linked_role(self) -> None:
        if self._has_service_linked_role():
            return
        self.ecs_service_linked_role_at = self.now
        self._settle_later("iam_not_assumable", ECS_SERVICE_LINKED_ROLE)
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "ecs.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
        try:
            self.raw("iam").create_role(
                RoleName=ECS_SERVICE_LINKED_ROLE,
                Path=SERVICE_LINKED_ROLE_PATH,
                AssumeRolePolicyDocument=json.dumps(trust),
            )
        except self.raw("iam").exceptions.EntityAlreadyExistsException:
            pass  # made by an earlier account of the shared local AWS

    def _before_iam__CreateServiceLinkedRole(self, params: dict) -> Answer | None:
        if params.get("AWSServiceName") != "ecs.amazonaws.com":
            return None
        if self._has_service_linked_role():
            return Answer.error(
                "InvalidInput",
                f"Service role name {ECS_SERVICE_LINKED_ROLE} has been taken in this account, "
                "please try a different suffix.",
            )
        self._make_service_linked_role()
        role = self.raw("iam").get_role(RoleName=ECS_SERVICE_LINKED_ROLE)["Role"]
        # As AWS sends it, before botocore decodes the trust policy.
        return Answer({"Role": {**role, "AssumeRolePolicyDocument": "%7B%7D"}})

    def _before_iam__GetRole(self, params: dict) -> Answer | None:
        if params["RoleName"] == ECS_SERVICE_LINKED_ROLE and not self._has_service_linked_role():
            return Answer.error(
                "NoSuchEntity",
                f"The role with name {ECS_SERVICE_LINKED_ROLE} cannot be found.",
                404,
            )
        return self._iam_lag("role", params["RoleName"])

    def _after_iam__ListRoles(self, params: dict, parsed: dict) -> None:
        if self._has_service_linked_role():
            return
        roles = parsed.get("Roles", [])
        parsed["Roles"] = [role for role in roles if role["Path"] != SERVICE_LINKED_ROLE_PATH]
        if len(parsed["Roles"]) < len(roles):
            self._fire("ecs_service_linked_role")

    def _before_ecs__CreateCapacityProvider(self, params: dict) -> Answer | None:
        if self._ecs_sees_service_linked_role():
            return None
        self._fire("ecs_service_linked_role")
        return Answer.error(
            "ClientException",
            "ECS Service Linked Role does not exist. Please create a Service linked role for "
            "ECS and try again.",
        )

    def _after_ecs__CreateCluster(self, params: dict, parsed: dict) -> None:
        self._make_service_linked_role()  # CreateCluster makes it as a side effect

    def _before_ecs__DeleteCapacityProvider(self, params: dict) -> Answer | None:
        name = params["capacityProvider"].rpartition("/")[2]
        found = self.raw("ecs").describe_capacity_providers(capacityProviders=[name])
        if not found["capacityProviders"]:
            return None
        provider = found["capacityProviders"][0]
        if name not in self.deferred_ids():
            self._defer(
                "capacity_provider_deleting",
                name,
                lambda: self.raw("ecs").delete_capacity_provider(capacityProvider=name),
            )
        return Answer({"capacityProvider": {**provider, "updateStatus": "DELETE_IN_PROGRESS"}})

    def _after_ecs__DescribeCapacityProviders(self, params: dict, parsed: dict) -> None:
        for provider in parsed.get("capacityProviders", []):
            if provider["name"] in self.deferred_ids():
                self._fire("capacity_provider_deleting")
                provider["updateStatus"] = "DELETE_IN_PROGRESS"

    def _after_ecs__DeleteService(self, params: dict, parsed: dict) -> None:
        self._settle_later("service_draining", params["service"])

    def _after_ecs__DescribeServices(self, params: dict, parsed: dict) -> None:
        for service in parsed.get("services", []):
            if self._pending("service_draining", service["serviceName"]):
                self._fire("service_draining")
                service["status"] = "DRAINING"

    # Auto Scaling ---------------------------------------------------------------------------
    def _before_autoscaling__DeleteAutoScalingGroup(self, params: dict) -> Answer | None:
        name = params["AutoScalingGroupName"]
        if name not in self.deferred_ids():
            self._defer(
                "asg_deleting",
                name,
                lambda: self.raw("autoscaling").delete_auto_scaling_group(
                    AutoScalingGroupName=name, ForceDelete=True
                ),
            )
        return Answer({})

    def _after_autoscaling__DescribeAutoScalingGroups(self, params: dict, parsed: dict) -> None:
        for group in parsed.get("AutoScalingGroups", []):
            if group["AutoScalingGroupName"] in self.deferred_ids():
                self._fire("asg_deleting")
                group["Status"] = "Delete in progress"

    def _before_autoscaling__CreateAutoScalingGroup(self, params: dict) -> Answer | None:
        template_name = params.get("LaunchTemplate", {}).get("LaunchTemplateName", "")
        template = self.raw("ec2").describe_launch_template_versions(
            LaunchTemplateName=template_name, Versions=["$Latest"]
        )["LaunchTemplateVersions"]
        arn = (
            template[0]["LaunchTemplateData"].get("IamInstanceProfile", {}).get("Arn", "")
            if template
            else ""
        )
        if self._pending("iam_not_assumable", arn.rpartition("/")[2]):
            self._fire("iam_not_assumable")
            return Answer.error("ValidationError", f"Invalid IAM Instance Profile ARN: {arn}")
        return None

    # S3 -------------------------------------------------------------------------------------
    def _before_s3__HeadBucket(self, params: dict) -> Answer | None:
        if params["Bucket"] in self.foreign_buckets:
            self._fire("foreign_bucket")
            return Answer.error("403", "Forbidden", 403)
        return None

    def _before_s3__CreateBucket(self, params: dict) -> Answer | None:
        if params["Bucket"] in self.foreign_buckets:
            self._fire("foreign_bucket")
            return Answer.error(
                "BucketAlreadyExists",
                "The requested bucket name is not available. The bucket namespace is shared by "
                "all users of the system. Please select a different name and try again.",
                409,
            )
        return None

    def _lagging_put(self, what: str, bucket: str, read: Callable[[], Any]) -> None:
        if (what, bucket) not in self.kept or not self._pending(what, bucket):
            self.kept[(what, bucket)] = read()
        self._settle_later(what, bucket)

    def _lagging_read(self, what: str, bucket: str) -> Any:
        if self._pending(what, bucket):
            self._fire(what)
            return self.kept[(what, bucket)]
        return None

    def _before_s3__PutBucketLifecycleConfiguration(self, params: dict) -> Answer | None:
        bucket = params["Bucket"]
        s3 = self.raw("s3")

        def before() -> Answer:
            try:
                found = s3.get_bucket_lifecycle_configuration(Bucket=bucket)
                return Answer({"Rules": found["Rules"]})
            except s3.exceptions.ClientError:
                return Answer.error(
                    "NoSuchLifecycleConfiguration",
                    "The lifecycle configuration does not exist",
                    404,
                )

        self._lagging_put("s3_lifecycle_lag", bucket, before)
        return None

    def _before_s3__GetBucketLifecycleConfiguration(self, params: dict) -> Answer | None:
        return self._lagging_read("s3_lifecycle_lag", params["Bucket"])

    def _before_s3__PutBucketNotificationConfiguration(self, params: dict) -> Answer | None:
        bucket, config = params["Bucket"], params["NotificationConfiguration"]
        for target in config.get("LambdaFunctionConfigurations", []):
            function = target["LambdaFunctionArn"].split(":")[6]
            if not self._permitted(function, bucket):
                self._fire("s3_lambda_validation")
                return Answer.error(
                    "InvalidArgument",
                    "Unable to validate the following destination configurations",
                )
        s3 = self.raw("s3")

        def before() -> Answer:
            found = s3.get_bucket_notification_configuration(Bucket=bucket)
            return Answer({key: value for key, value in found.items() if key != "ResponseMetadata"})

        self._lagging_put("s3_notification_lag", bucket, before)
        return None

    def _permitted(self, function: str, bucket: str) -> bool:
        """Whether S3 would see a settled permission for ``bucket`` on ``function``."""
        if self._pending("s3_lambda_validation", function):
            return False
        try:
            policy = self.raw("lambda").get_policy(FunctionName=function)["Policy"]
        except self.raw("lambda").exceptions.ResourceNotFoundException:
            return False
        return f"arn:aws:s3:::{bucket}" in policy

    def _after_lambda__AddPermission(self, params: dict, parsed: dict) -> None:
        self._settle_later("s3_lambda_validation", params["FunctionName"])

    def _before_s3__GetBucketNotificationConfiguration(self, params: dict) -> Answer | None:
        return self._lagging_read("s3_notification_lag", params["Bucket"])

    # SQS ------------------------------------------------------------------------------------
    def _after_sqs__CreateQueue(self, params: dict, parsed: dict) -> None:
        self._settle_later("sqs_new_queue", params["QueueName"])

    def _before_sqs__GetQueueUrl(self, params: dict) -> Answer | None:
        if self._pending("sqs_new_queue", params["QueueName"]):
            self._fire("sqs_new_queue")
            return Answer.error(
                "AWS.SimpleQueueService.NonExistentQueue",
                "The specified queue does not exist.",
            )
        return None

    # IAM ------------------------------------------------------------------------------------
    def _after_iam__CreateRole(self, params: dict, parsed: dict) -> None:
        self._new_identity("role", params["RoleName"])

    def _after_iam__CreateInstanceProfile(self, params: dict, parsed: dict) -> None:
        self._new_identity("profile", params["InstanceProfileName"])

    def _after_iam__AddRoleToInstanceProfile(self, params: dict, parsed: dict) -> None:
        self._settle_later("iam_not_assumable", params["InstanceProfileName"])

    def _new_identity(self, kind: str, name: str) -> None:
        self._settle_later("iam_read_lag", f"{kind}:{name}")
        self._settle_later("iam_not_assumable", name)

    def _iam_lag(self, kind: str, name: str) -> Answer | None:
        if self._pending("iam_read_lag", f"{kind}:{name}"):
            self._fire("iam_read_lag")
            message = f"The {kind} with name {name} cannot be found."
            return Answer.error("NoSuchEntity", message, 404)
        return None

    def _before_iam__GetInstanceProfile(self, params: dict) -> Answer | None:
        return self._iam_lag("profile", params["InstanceProfileName"])

    def _not_assumable(self, role_arn: str) -> bool:
        if self._pending("iam_not_assumable", role_arn.rpartition("/")[2]):
            self._fire("iam_not_assumable")
            return True
        return False

    def _before_codebuild__CreateProject(self, params: dict) -> Answer | None:
        role = params.get("serviceRole", "")
        if self._not_assumable(role):
            return Answer.error(
                "InvalidInputException",
                f"CodeBuild is not authorized to perform: sts:AssumeRole on {role}",
            )
        return None

    # Lambda ---------------------------------------------------------------------------------
    def _before_lambda__CreateFunction(self, params: dict) -> Answer | None:
        if self._not_assumable(params["Role"]):
            return Answer.error(
                "InvalidParameterValueException",
                "The role defined for the function cannot be assumed by Lambda.",
            )
        return None

    def _after_lambda__CreateFunction(self, params: dict, parsed: dict) -> None:
        self._settle_later("lambda_pending", params["FunctionName"])
        parsed["State"] = "Pending"

    def _lambda_busy(self, params: dict) -> Answer | None:
        name = params["FunctionName"]
        if self._pending("lambda_pending", name) or self._pending("lambda_updating", name):
            self._fire("lambda_states")
            return Answer.error(
                "ResourceConflictException",
                "The operation cannot be performed at this time. An update is in progress for "
                f"resource: {name}",
                409,
            )
        return None

    def _before_lambda__UpdateFunctionCode(self, params: dict) -> Answer | None:
        return self._lambda_busy(params)

    def _before_lambda__UpdateFunctionConfiguration(self, params: dict) -> Answer | None:
        busy = self._lambda_busy(params)
        if busy is None and "Role" in params:
            return self._before_lambda__CreateFunction(params)  # the same check of its role
        return busy

    def _after_lambda__UpdateFunctionCode(self, params: dict, parsed: dict) -> None:
        self._settle_later("lambda_updating", params["FunctionName"])
        parsed["LastUpdateStatus"] = "InProgress"

    _after_lambda__UpdateFunctionConfiguration = _after_lambda__UpdateFunctionCode

    def _after_lambda__GetFunctionConfiguration(self, params: dict, parsed: dict) -> None:
        name = params["FunctionName"]
        if self._pending("lambda_pending", name):
            self._fire("lambda_states")
            parsed["State"] = "Pending"
            parsed["LastUpdateStatus"] = "InProgress"
        elif self._pending("lambda_updating", name):
            self._fire("lambda_states")
            parsed["LastUpdateStatus"] = "InProgress"

    # DynamoDB -------------------------------------------------------------------------------
    def _after_dynamodb__CreateTable(self, params: dict, parsed: dict) -> None:
        self._settle_later("table_creating", params["TableName"])

    def _after_dynamodb__UpdateTable(self, params: dict, parsed: dict) -> None:
        for update in params.get("GlobalSecondaryIndexUpdates", []):
            if "Create" in update:
                index = update["Create"]["IndexName"]
                self._settle_later("index_creating", f"{params['TableName']}/{index}")

    def _before_dynamodb__DeleteTable(self, params: dict) -> Answer | None:
        name = params["TableName"]
        found = self.raw("dynamodb").describe_table(TableName=name)["Table"]
        if name not in self.deferred_ids():
            self._defer(
                "table_deleting", name, lambda: self.raw("dynamodb").delete_table(TableName=name)
            )
        return Answer({"TableDescription": {**found, "TableStatus": "DELETING"}})

    def _before_dynamodb__CreateTable(self, params: dict) -> Answer | None:
        if params["TableName"] in self.deferred_ids():
            self._fire("table_transitions")
            return Answer.error(
                "ResourceInUseException", f"Table already exists: {params['TableName']}"
            )
        return None

    def _after_dynamodb__DescribeTable(self, params: dict, parsed: dict) -> None:
        table = parsed.get("Table", {})
        name = params["TableName"]
        if name in self.deferred_ids():
            self._fire("table_transitions")
            table["TableStatus"] = "DELETING"
        elif self._pending("table_creating", name):
            self._fire("table_transitions")
            table["TableStatus"] = "CREATING"
            for index in table.get("GlobalSecondaryIndexes", []):
                index["IndexStatus"] = "CREATING"
        for index in table.get("GlobalSecondaryIndexes", []):
            if self._pending("index_creating", f"{name}/{index['IndexName']}"):
                self._fire("table_transitions")
                table["TableStatus"] = "UPDATING"
                index["IndexStatus"] = "CREATING"
                index["Backfilling"] = True

    # CloudWatch Logs ------------------------------------------------------------------------
    def _before_logs__FilterLogEvents(self, params: dict) -> Answer | None:
        if params.get("nextToken") == _EMPTY_PAGE_TOKEN:
            del params["nextToken"]  # the real first page follows the empty one
            return None
        if "nextToken" in params:
            return None
        self._fire("empty_page")
        return Answer({"events": [], "searchedLogStreams": [], "nextToken": _EMPTY_PAGE_TOKEN})


def _hook_name(model: Any) -> str:
    return f"{model.service_model.endpoint_prefix}.{model.name}"


def throttling_response(protocol: str) -> AWSResponse:
    code, status = _THROTTLES[protocol]
    message = "Rate exceeded"
    request_id = str(uuid.uuid4())
    headers = {"x-amzn-RequestId": request_id}
    if protocol == "json":
        body = json.dumps({"__type": code, "message": message})
        headers["Content-Type"] = "application/x-amz-json-1.1"
    elif protocol == "rest-json":
        body = json.dumps({"message": message})
        headers["x-amzn-ErrorType"] = code
        headers["Content-Type"] = "application/json"
    elif protocol == "query":
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}"
            f"</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
    elif protocol == "ec2":
        body = (
            f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error>"
            f"</Errors><RequestID>{request_id}</RequestID></Response>"
        )
    else:
        body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return AWSResponse("http://aws-rules", status, headers, _Raw(body.encode()))


SERVICES = sorted(set(engine.SERVICES) | {"service-quotas", "secretsmanager"})
