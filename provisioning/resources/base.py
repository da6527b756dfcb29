"""What every resource is built from: the declared environment, a run's context, the base class.

Plain Python (no Django), so resources can be exercised with botocore's Stubber alone.
"""

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from string import Template
from typing import Any, ClassVar, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from centralllm import aws
from centralllm.audit import contract

ROOT = Path(__file__).resolve().parent.parent.parent
PENDING = "(known after apply)"
READ_ONLY_PREFIXES = ("Describe", "Get", "List", "Head", "BatchGet")

# The deployment guide's resource names; every environment appends its suffix.
BASE_NAMES = {
    "AuditBucket": contract.DEFAULT_AUDIT_BUCKET,
    "RawBucket": contract.DEFAULT_RAW_BUCKET,
    "AuditTable": contract.DEFAULT_TABLE_NAME,
    "DlqName": "llm-audit-dlq",
    "LocalIngestQueue": "llm-audit-ingest-local",
    "EcrRepository": "mistral8b-vllm",
    "CodeBuildProject": "mistral8b-vllm-build",
    "TaskRole": "ecsTaskRole",
    "ExecutionRole": "ecsTaskExecutionRole",
    "InstanceRole": "ecsInstanceRole",
    "LambdaRole": "llm-audit-ingest-role",
    "CodeBuildRole": "codebuild-mistral8b-vllm-role",
    "LambdaFunction": "llm-audit-ingest",
    "RestApi": "central-llm-rest-api",
    "VpcLink": "central-llm-vpc-link",
    "UsagePlan": "central-llm-usage-plan",
    "ApiKey": "central-llm-generic-key",
    "Cluster": "central-llm-service-cluster",
    "Service": "central-llm-service",
    "TaskFamily": "central-llm-service",
    "LogGroup": "/ecs/central-llm-service",
    "LaunchTemplate": "central-llm-gpu",
    "AutoScalingGroup": "central-llm-gpu",
    "CapacityProvider": "central-llm-gpu",
    "LoadBalancer": "central-llm-nlb",
    "TargetGroup": "central-llm-vllm",
    "AlarmTopic": "central-llm-alarms",
    "GatewaySecret": "central-llm/gateway-secret",
}

# How long AWS lets each name be, so that a suffix AWS would refuse half-way through an apply
# is refused on the form and in pre-flight instead. Per kind of name: (who refuses, maximum).
_NAME_KINDS = {
    # https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
    "S3 bucket": ("S3", 63),
    # https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.NamingRulesDataTypes.html
    "DynamoDB table": ("DynamoDB", 255),
    # https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html
    "SQS queue": ("SQS", 80),
    # https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_CreateRepository.html
    "ECR repository": ("ECR", 256),
    # https://docs.aws.amazon.com/codebuild/latest/APIReference/API_CreateProject.html
    "CodeBuild project": ("CodeBuild", 255),
    # https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html (the instance
    # profile named after the instance role may have 128)
    "IAM role": ("IAM", 64),
    # https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html (a name, not an ARN)
    "Lambda function": ("Lambda", 64),
    # https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_CreateCluster.html, and
    # API_CreateService, API_RegisterTaskDefinition, API_CreateCapacityProvider beside it
    "ECS cluster": ("ECS", 255),
    "ECS service": ("ECS", 255),
    "task definition family": ("ECS", 255),
    "capacity provider": ("ECS", 255),
    # https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_CreateLogGroup.html
    "log group": ("CloudWatch Logs", 512),
    # https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateLaunchTemplate.html
    "launch template": ("EC2", 128),
    # https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_CreateAutoScalingGroup.html
    "Auto Scaling group": ("Auto Scaling", 255),
    # https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateLoadBalancer.html
    # and API_CreateTargetGroup.html
    "load balancer": ("ELB", 32),
    "target group": ("ELB", 32),
    # https://docs.aws.amazon.com/sns/latest/api/API_CreateTopic.html
    "SNS topic": ("SNS", 256),
    # https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_CreateSecret.html
    "Secrets Manager secret": ("Secrets Manager", 512),
}
# The kind of each name. API Gateway documents no maximum for its names (RestApi, VpcLink,
# UsagePlan, ApiKey: CreateRestApi, CreateVpcLink, CreateUsagePlan, CreateApiKey), so they
# are not listed.
_NAME_KIND_OF = {
    "AuditBucket": "S3 bucket",
    "RawBucket": "S3 bucket",
    "AuditTable": "DynamoDB table",
    "DlqName": "SQS queue",
    "LocalIngestQueue": "SQS queue",
    "EcrRepository": "ECR repository",
    "CodeBuildProject": "CodeBuild project",
    "TaskRole": "IAM role",
    "ExecutionRole": "IAM role",
    "InstanceRole": "IAM role",
    "LambdaRole": "IAM role",
    "CodeBuildRole": "IAM role",
    "LambdaFunction": "Lambda function",
    "Cluster": "ECS cluster",
    "Service": "ECS service",
    "TaskFamily": "task definition family",
    "LogGroup": "log group",
    "LaunchTemplate": "launch template",
    "AutoScalingGroup": "Auto Scaling group",
    "CapacityProvider": "capacity provider",
    "LoadBalancer": "load balancer",
    "TargetGroup": "target group",
    "AlarmTopic": "SNS topic",
    "GatewaySecret": "Secrets Manager secret",
}
# The documented maximum length of each name, by BASE_NAMES key.
NAME_LIMITS: dict[str, int] = {key: _NAME_KINDS[kind][1] for key, kind in _NAME_KIND_OF.items()}
# The longest suffix every name still fits with (16: the target group's).
MAX_SUFFIX_LENGTH = min(limit - len(BASE_NAMES[key]) for key, limit in NAME_LIMITS.items())


def resource_name(key: str, suffix: str) -> str:
    """What an environment with ``suffix`` names ``key`` of BASE_NAMES: the one naming rule of
    provisioning, the audit pages and the API keys."""
    return BASE_NAMES[key] + suffix


def names_too_long(suffix: str) -> list[str]:
    """The names ``suffix`` would make longer than AWS allows, each as a readable problem."""
    problems = []
    for key, kind in _NAME_KIND_OF.items():
        service, limit = _NAME_KINDS[kind]
        name = resource_name(key, suffix)
        if len(name) > limit:
            problems.append(
                f"{kind} name {name} is {len(name)} characters; {service} allows {limit}"
            )
    return problems


def suggested_suffix(suffix: str, account_id: str) -> str:
    """A suffix for names another account holds (S3 bucket names are global): the account
    id's last six digits, after the current suffix while every name still fits."""
    digits = f"-{account_id[-6:]}"
    return suffix + digits if not names_too_long(suffix + digits) else digits


class ProvisioningError(Exception):
    """A step could not be carried out; the message says why, for an operator."""


@dataclass(frozen=True)
class Spec:
    """The declared environment (built by ``Environment.spec()``)."""

    name: str
    # What the environment declares: the local variants of some resources (the default VPC, an
    # SQS queue in place of the Lambda trigger). How the AWS being talked to behaves is another
    # question, answered by ``aws.is_stand_in()``.
    is_local: bool
    region: str
    account_id: str
    suffix: str
    vpc_id: str
    subnet_ids: tuple[str, ...]
    security_group_id: str
    model_id: str
    served_model_name: str
    instance_type: str
    source_repository: str
    image_tag: str
    hf_token_secret_arn: str
    desired_count: int  # where the service starts; scaling then moves it within min..max
    min_tasks: int
    max_tasks: int
    target_requests_per_task: int  # the RequestsInFlight per task scaling holds
    scale_out_cooldown_seconds: int
    scale_in_cooldown_seconds: int
    throttle_burst_limit: int
    throttle_rate_limit: int
    quota_limit: int
    quota_period: str
    alarm_lambda_errors: int
    alarm_dlq_messages: int
    alarm_spool_oldest_seconds: int
    alarm_min_running_tasks: int
    alarm_email: str  # where the alarm topic e-mails; empty: nobody
    redaction_rules: str  # REDACTION_RULES of the ingest Lambda (centralllm.audit.redaction)
    audit_retention_days: int  # 0: kept for ever
    raw_retention_days: int
    preview_retention_days: int  # 0: as long as the item
    object_lock_mode: str  # S3 Object Lock on the audit bucket: "", GOVERNANCE or COMPLIANCE
    object_lock_days: int  # each new object's default retention, with a mode
    # What a rollout's deployment alarms roll back on (0: that alarm is not watched).
    rollout_ttft_p95_ms: int
    rollout_error_rate_percent: int
    # What the last rollout put live; empty until the first one.
    live_image_tag: str = ""
    # Temporary quota increases in force (api_access.models.QuotaIncrease), on top of the limit.
    quota_extra: int = 0


# A resource in AWS as a run saw or left it: there, not there, there but differing from the
# declaration, or not known (a step failed half-way through changing it).
PRESENT, MISSING, DRIFTED, UNKNOWN = "present", "missing", "drifted", "unknown"
RESOURCE_STATES = (PRESENT, MISSING, DRIFTED, UNKNOWN)


@dataclass(frozen=True)
class Seen:
    """One resource as a run saw it in AWS, or left it there."""

    key: str
    title: str
    state: str  # one of RESOURCE_STATES
    outputs: dict = field(default_factory=dict)  # its names, ARNs, URLs, while it exists
    differences: dict = field(default_factory=dict)  # field: (in AWS, declared), if drifted
    kept: bool = False  # a destroy leaves it in place: not made here, or it holds audit data


class Progress:
    """Receives a run's progress. These do nothing: override what you show (a command, a job)."""

    def looked_up(self, step: str, title: str, found: bool) -> None:
        """A resource was read (plan, drift, and the first pass of destroy)."""

    def observed(self, seen: Seen) -> None:
        """What a resource is in AWS now, as a plan or drift saw it or an apply or destroy
        left it."""

    def checkpoint(self) -> None:
        """A long wait polls again: a run may stop here (it raises when cancelled)."""

    def started(self, step: str, title: str) -> None:
        pass

    def message(self, step: str, text: str) -> None:
        pass

    def finished(self, step: str, outcome: str) -> None:
        pass

    def failed(self, step: str, error: str) -> None:
        pass


class Pending(dict):
    """Outputs of a resource that does not exist yet: every value is known only after apply."""

    def __missing__(self, key: str) -> str:
        return PENDING


def is_read_only(operation: str) -> bool:
    return operation.startswith(READ_ONLY_PREFIXES)


class Context:
    """One engine run: the environment, the clients, outputs so far, and a count of AWS calls."""

    # How runs wait when not told otherwise; devtools.aws_rules puts its virtual clock here.
    default_sleep: Callable[[float], None] = time.sleep

    def __init__(
        self,
        spec: Spec,
        progress: Progress | None = None,
        *,
        sleep: Callable[[float], None] | None = None,
        client_options: dict[str, float] | None = None,
    ) -> None:
        self.spec = spec
        # ``aws.client``'s timeouts and attempts, for callers that must give up sooner than a
        # run (a check asked from a page).
        self.client_options = client_options or {}
        self.progress = progress or Progress()
        self.sleep = sleep or Context.default_sleep
        self.step = ""
        self.outputs: dict[str, dict] = {}
        self.calls: Counter = Counter()
        self._clients: dict[str, Any] = {}
        self._hook_id = f"provisioning-calls-{id(self)}"
        self._thread = threading.get_ident()

    def client(self, service: str) -> Any:
        if service not in self._clients:
            client = aws.client(service, region_name=self.spec.region, **self.client_options)
            client.meta.events.register("before-call", self._count, unique_id=self._hook_id)
            self._clients[service] = client
        return self._clients[service]

    def _count(self, model: Any, **kwargs: Any) -> None:
        # Clients are shared process-wide: count only this run's thread.
        if threading.get_ident() == self._thread:
            self.calls["read" if is_read_only(model.name) else "mutating"] += 1

    def close(self) -> None:
        for client in self._clients.values():
            client.meta.events.unregister("before-call", unique_id=self._hook_id)
        self._clients.clear()

    # ``with Context(spec) as ctx:`` closes it however the block ends.
    def __enter__(self) -> "Context":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def say(self, text: str) -> None:
        self.progress.message(self.step, text)

    @cached_property
    def account_id(self) -> str:
        try:
            account = self.client("sts").get_caller_identity()["Account"]
        except (BotoCoreError, ClientError) as exc:
            raise ProvisioningError(f"AWS did not say which account this is: {exc}") from exc
        if self.spec.account_id and account != self.spec.account_id:
            raise ProvisioningError(
                f"The AWS credentials are for account {account}, but environment "
                f"{self.spec.name} is declared in account {self.spec.account_id}."
            )
        return account

    def name(self, key: str) -> str:
        return resource_name(key, self.spec.suffix)

    @cached_property
    def placeholders(self) -> dict[str, str]:
        """Values for the ``${...}`` placeholders of the policy and template files."""
        spec = self.spec
        values = {key: self.name(key) for key in BASE_NAMES}
        repository_host = f"{self.account_id}.dkr.ecr.{spec.region}.amazonaws.com"
        values.update(
            AccountId=self.account_id,
            Region=spec.region,
            ImageUri=f"{repository_host}/{values['EcrRepository']}:"
            f"{spec.live_image_tag or spec.image_tag}",
            TaskRoleArn=self.role_arn(values["TaskRole"]),
            ExecutionRoleArn=self.role_arn(values["ExecutionRole"]),
            ModelId=spec.model_id,
            ServedModelName=spec.served_model_name,
            HfTokenSecretArn=spec.hf_token_secret_arn,
            # The environment's own secret has an ARN only once it exists: what renders it
            # passes the ARN (``render``'s keywords); a file checked before then shows this.
            GatewaySecretArn=PENDING,
            EnvironmentName=spec.name,
        )
        return values

    def role_arn(self, role_name: str) -> str:
        return f"arn:aws:iam::{self.account_id}:role/{role_name}"

    def render(self, relative_path: str, **values: str) -> str:
        """A repository file with its placeholders filled in (``values`` before the context's
        own); a missing file is a clear error."""
        path = ROOT / relative_path
        if not path.exists():
            raise ProvisioningError(f"{relative_path} is missing from the repository.")
        try:
            return Template(path.read_text()).substitute({**self.placeholders, **values})
        except (KeyError, ValueError) as exc:
            raise ProvisioningError(f"{relative_path} has an unknown placeholder: {exc}") from exc

    def render_json(self, relative_path: str, **values: str) -> Any:
        text = self.render(relative_path, **values)
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProvisioningError(f"{relative_path} is not valid JSON: {exc}") from exc


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


T = TypeVar("T")


def role_not_ready(exc: ClientError) -> bool:
    """A role or instance profile just created is not usable for a few seconds: IAM is
    eventually consistent, and services answer that they cannot assume or find it, or (Lambda,
    checking its dead-letter queue) that the role lacks the permissions its new policy grants."""
    message = exc.response.get("Error", {}).get("Message", "").lower()
    return error_code(exc) in _INVALID_INPUT and any(
        hint in message for hint in ("assume", "profile", "does not have permissions")
    )


_INVALID_INPUT = (
    "InvalidParameterValueException",  # Lambda
    "InvalidInputException",  # CodeBuild
    "InvalidParameterException",  # ECS (its service-linked role)
    "ValidationError",  # Auto Scaling (the instance profile)
)


def retrying(
    ctx: Context,
    call: Callable[[], T],
    *,
    retry_if: Callable[[ClientError], bool],
    why: str,
    attempts: int = 8,
    first_delay: float = 2,
) -> T:
    """``call()``, retried with backoff (about two minutes in all) while ``retry_if(error)``."""
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except ClientError as exc:
            if not retry_if(exc) or attempt == attempts:
                raise
            ctx.say(f"{why}; retrying in {delay:.0f}s ({exc.response['Error'].get('Message', '')})")
            ctx.sleep(delay)
            delay = min(delay * 2, 30)
    raise AssertionError("unreachable")


def wait_until(
    ctx: Context,
    done: Callable[[], bool],
    *,
    what: str,
    usually: str = "",
    poll_seconds: float = 15,
    timeout_seconds: float = 1800,
) -> None:
    """Poll ``done()`` until true, saying what is awaited, for how long so far and how long it
    usually takes (AWS's documented figure). At the timeout the run stops with an explanation;
    what was done stays done, so a plain apply resumes from there."""
    typical = f"usually {usually}" if usually else ""
    waited = 0.0
    while not done():
        if waited >= timeout_seconds:
            raise ProvisioningError(
                f"gave up waiting for {what} after {duration(waited)}"
                + (f" ({typical})" if typical else "")
                + ": nothing is lost, apply again to resume from here"
            )
        ctx.say(f"waiting for {what}: {duration(waited)}" + (f"; {typical}" if typical else ""))
        ctx.progress.checkpoint()
        ctx.sleep(poll_seconds)
        waited += poll_seconds


def duration(seconds: float) -> str:
    """``100`` as "1 min 40 s": how long a wait has lasted, for an operator."""
    minutes, rest = divmod(round(seconds), 60)
    if not minutes:
        return f"{rest} s"
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def ignoring(call: Callable[[], T], *codes: str) -> T | None:
    """``call()``, treating the given error codes (e.g. not found) as None."""
    try:
        return call()
    except ClientError as exc:
        if error_code(exc) in codes:
            return None
        raise


class Resource:
    """One AWS resource, declared once.

    ``read`` returns the current state (None when absent) in the same shape as ``desired``;
    fields AWS does not report are left out of ``read`` and so never count as drift.
    ``create`` makes the resource exist; the engine then reads it back and calls ``update``
    with the fields that still differ, so ``create`` may leave settings to ``update``.
    """

    key: ClassVar[str]
    title: ClassVar[str]
    service: ClassVar[str]
    depends_on: ClassVar[tuple[str, ...]] = ()
    holds_data: ClassVar[bool] = False  # destroy keeps it unless data deletion is confirmed
    managed: ClassVar[bool] = True  # False: used here but owned elsewhere, never deleted
    # False: what depends on it can still be looked up while it is absent, because it only
    # declares this resource's outputs (shown as known after apply). An environment made
    # before the resource existed then plans, and destroys, its dependents as they are.
    blocks_lookups: ClassVar[bool] = True
    kept_because: ClassVar[str] = "not created here"  # why destroy leaves it in place
    # How long AWS may take to show a write in its reads, and what it documents as usual.
    settle_seconds: ClassVar[float] = 120
    settles_in: ClassVar[str] = "a few seconds"
    # How long creating it usually takes on AWS (its documented waits), for the plan.
    typical_create_seconds: ClassVar[int] = 2
    base_name: ClassVar[str] = ""  # a key of BASE_NAMES

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.spec = ctx.spec

    @classmethod
    def wanted(cls, spec: Spec) -> bool:
        return True

    @classmethod
    def files(cls) -> tuple[str, ...]:
        """Repository files this resource renders (checked before apply changes anything)."""
        return ()

    @property
    def client(self) -> Any:
        return self.ctx.client(self.service)

    @property
    def name(self) -> str:
        return self.ctx.name(self.base_name)

    def output(self, key: str) -> dict:
        return self.ctx.outputs[key]

    def desired(self) -> dict:
        raise NotImplementedError

    def read(self) -> dict | None:
        raise NotImplementedError

    def create(self, desired: dict) -> None:
        raise NotImplementedError

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        raise ProvisioningError(
            f"{', '.join(fields)} cannot be changed in place: delete the resource, then apply"
        )

    def delete(self, current: dict) -> None:
        raise NotImplementedError

    def owns(self, current: dict) -> bool:
        """Whether destroy may delete what was found: not what this console did not create."""
        return self.managed

    def outputs(self, current: dict) -> dict:
        return {}


def projected(current: Any, template: Any) -> Any:
    """``current`` cut down to the shape of ``template``: the fields AWS adds are dropped.

    Lets a registered document (a task definition) be compared with the file it came from.
    """
    if isinstance(template, dict) and isinstance(current, dict):
        return {
            key: projected(current[key], value) for key, value in template.items() if key in current
        }
    if isinstance(template, list) and isinstance(current, list) and len(template) == len(current):
        return [projected(item, shape) for item, shape in zip(current, template, strict=True)]
    return current


def in_declared_order(found: Iterable[str], declared: list[str]) -> list[str]:
    """Names found, the declared ones in declared order, then any others sorted."""
    found = set(found)
    return [name for name in declared if name in found] + sorted(found - set(declared))
