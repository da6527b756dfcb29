"""What an environment looks like: its resources as the runs last saw them in AWS (kept per
resource, whatever runs are deleted), and its live state in AWS (service, alarms, dead
letters), cached in Redis so that many viewers cost one set of AWS calls per cache period."""

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.utils import timezone

from provisioning import engine
from provisioning.models import Environment, Release, ResourceState, Run, days
from provisioning.resources import CATALOGUE
from provisioning.resources.base import DRIFTED, MISSING, UNKNOWN, Context, Resource
from provisioning.resources.cloudwatch import Alarm
from provisioning.resources.ecs import TaskDefinition
from provisioning.resources.s3 import object_lock
from provisioning.resources.sns import AlarmTopic
from provisioning.validation_runs import VALIDATE

# Every alarm of the catalogue, however its class is derived.
ALARMS = [cls for cls in CATALOGUE if issubclass(cls, Alarm)]
# The catalogue's order: each resource's dependencies come before it.
_POSITION = {cls.key: position for position, cls in enumerate(CATALOGUE)}
IN_SYNC, OUT_OF_SYNC, NOT_DEPLOYED = "in sync", "out of sync", "not deployed"


@dataclass
class Resources:
    """Every resource of an environment a run has seen, as it last saw it, and the titles of
    those it declares that no run has seen yet."""

    rows: list[ResourceState]
    unseen: list[str]

    @property
    def counts(self) -> dict[str, int]:
        """How many resources are present, missing, drifted, unknown."""
        return dict(Counter(row.state for row in self.rows).most_common())

    @property
    def last(self) -> ResourceState | None:
        """The resource seen last: when (and by which run, unless deleted) the state was news."""
        return max(self.rows, key=lambda row: row.seen_at, default=None)

    @property
    def outputs(self) -> list[ResourceState]:
        """The resources in AWS with outputs (names, ARNs, URLs)."""
        return [row for row in self.rows if row.outputs]

    @property
    def left(self) -> list[ResourceState]:
        """What a destroy would delete that is (or may be) in AWS."""
        return [row for row in self.rows if row.state != MISSING and not row.kept]

    @property
    def kept(self) -> list[ResourceState]:
        """What a destroy leaves in AWS on purpose: the audit data, what was not made here."""
        return [row for row in self.rows if row.state != MISSING and row.kept]

    @property
    def sync(self) -> str:
        """In a word: in sync, out of sync, not deployed (nothing left that a destroy would
        delete) or unknown (never looked at, not every resource seen, or a step failed
        half-way)."""
        states = {row.state for row in self.rows}
        if not states:
            return UNKNOWN
        if not self.left:
            return NOT_DEPLOYED
        if states & {MISSING, DRIFTED}:
            return OUT_OF_SYNC
        return UNKNOWN if UNKNOWN in states or self.unseen else IN_SYNC


def last_seen(environment: Environment) -> Resources:
    rows = sorted(
        environment.resources.select_related("run"),
        key=lambda row: _POSITION.get(row.key, len(_POSITION)),
    )
    seen = {row.key for row in rows}
    return Resources(rows, [cls.title for cls in _declared(environment) if cls.key not in seen])


def _declared(environment: Environment) -> list[type[Resource]]:
    try:
        return engine.ordered(environment.spec())
    except ValidationError:
        return []  # runs refuse it as well, until it is corrected


def last_validation(environment: Environment) -> Run | None:
    """The newest finished validation run: the platform checked end to end."""
    return (
        environment.runs.filter(kind=VALIDATE.key, status__in=Run.TERMINAL)
        .order_by("-finished_at", "-pk")
        .first()
    )


@dataclass(frozen=True)
class LiveImage:
    """What the environment's ECS service runs: the image its last rollout put live, or,
    never rolled out, the declared image its task definition was applied with."""

    image: str  # repository:tag
    digest: str  # "sha256:...", or "" when never rolled out (nothing was built here)
    since: datetime | None  # when it went live; None when never rolled out
    run: Run | None  # the rollout that put it live, or the run that saw the task definition

    @property
    def short_digest(self) -> str:
        """``sha256:ab12cd34…``: enough to tell images apart at a glance."""
        return f"{self.digest[:15]}…" if len(self.digest) > 15 else self.digest


def live_image(environment: Environment) -> LiveImage | None:
    """From the live release, else the resource state (two queries at most); None when no
    task definition is in AWS."""
    repository = environment.resource_name("EcrRepository")
    release = environment.releases.filter(outcome=Release.Outcome.LIVE).select_related("run")
    if found := release.first():
        return LiveImage(
            f"{repository}:{found.image_tag}",
            found.image_digest,
            found.finished_at or found.started_at,
            found.run,
        )
    applied = environment.resources.filter(key=TaskDefinition.key).exclude(state=MISSING)
    if row := applied.select_related("run").first():
        return LiveImage(f"{repository}:{environment.image_tag}", "", None, row.run)
    return None


def output(environment: Environment, key: str, name: str) -> Any:
    """One output of the resource ``key`` while it is in AWS (None: not there, or not seen)."""
    row = environment.resources.filter(key=key).first()
    return row.outputs.get(name) if row else None


def endpoint_url(rows: list[ResourceState]) -> str | None:
    """Where clients call the platform: the API Gateway stage's URL."""
    return next((row.outputs.get("url") for row in rows if row.key == "apigateway.stage"), None)


def live(environment: Environment) -> dict[str, Any]:
    """The environment's state in AWS, at most ``AWS_STATE_CACHE_SECONDS`` old."""
    key = f"environment-state:{environment.pk}:{environment.updated_at.timestamp()}"
    return cached(key, lambda: _read_and_keep(environment))


LAST_KNOWN_SECONDS = 7 * 24 * 3600


def _read_and_keep(environment: Environment) -> dict[str, Any]:
    state = read_live(environment)
    cache.set(f"environment-state-last:{environment.pk}", state, LAST_KNOWN_SECONDS)
    return state


def last_known(environment: Environment) -> dict[str, Any] | None:
    """The state ``live`` read last, however old (its ``read_at`` says), or None when none was
    read in ``LAST_KNOWN_SECONDS``: what /metrics exports without reading AWS itself."""
    return cache.get(f"environment-state-last:{environment.pk}")


def cached(key: str, read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``read()``'s answer, at most ``AWS_STATE_CACHE_SECONDS`` old. One viewer reads AWS
    while the others wait for its answer, so a cache period costs one set of calls."""
    state = cache.get(key)
    if state is not None:
        return state
    if cache.add(f"{key}:reading", 1, timeout=30):
        try:
            state = read()
            cache.set(key, state, settings.AWS_STATE_CACHE_SECONDS)
        finally:
            cache.delete(f"{key}:reading")
        return state
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(0.1)
        state = cache.get(key)
        if state is not None:
            return state
    return {"read_at": timezone.now(), "error": "AWS is slow to answer: reload in a moment."}


def read_live(environment: Environment) -> dict[str, Any]:
    with Context(environment.spec()) as ctx:
        return {
            "read_at": timezone.now(),
            "service": _guarded(lambda: _service(ctx)),
            "alarms": _guarded(lambda: _alarms(ctx)),
            "notifications": _guarded(lambda: _notifications(ctx)),
            "dlq": _guarded(lambda: _dlq(ctx)),
            "lambda_errors": _guarded(lambda: _lambda_errors(ctx)),
            "object_lock": _guarded(lambda: _object_lock(ctx)),
        }


def healthy(state: dict[str, Any]) -> bool | None:
    """Tasks at the desired count, no alarm firing, nothing dead-lettered (None: unknown)."""
    parts = [state.get(name) or {} for name in ("service", "alarms", "dlq")]
    if state.get("error") or any("error" in part for part in parts):
        return None
    service, alarms, dlq = parts
    if not service.get("exists"):
        return None
    return (
        service["running"] >= service["desired"]
        and not any(alarm["state"] == "ALARM" for alarm in alarms.get("list", []))
        and dlq.get("messages", 0) == 0
    )


def _guarded(read) -> dict:
    try:
        return read()
    except (BotoCoreError, ClientError) as exc:
        return {"error": str(exc)}


def _service(ctx: Context) -> dict:
    try:
        found = ctx.client("ecs").describe_services(
            cluster=ctx.name("Cluster"), services=[ctx.name("Service")]
        )["services"]
    except ClientError as exc:
        # Before the first apply there is no cluster: nothing is wrong, nothing runs yet.
        if exc.response["Error"].get("Code") != "ClusterNotFoundException":
            raise
        found = []
    service = next((s for s in found if s.get("status") == "ACTIVE"), None)
    if service is None:
        return {"exists": False}
    return {
        "exists": True,
        "running": service.get("runningCount", 0),
        "pending": service.get("pendingCount", 0),
        "desired": service.get("desiredCount", 0),
        "deployments": [
            {
                "status": deployment.get("status"),
                "rollout": deployment.get("rolloutState", ""),
                "task_definition": deployment.get("taskDefinition", "").rpartition("/")[2],
                "running": deployment.get("runningCount", 0),
                "desired": deployment.get("desiredCount", 0),
            }
            for deployment in service.get("deployments", [])
        ],
        "events": [
            {"at": event["createdAt"], "message": event["message"]}
            for event in service.get("events", [])[:5]
        ],
    }


def _alarms(ctx: Context) -> dict:
    names = [cls.alarm_name + ctx.spec.suffix for cls in ALARMS]
    found = ctx.client("cloudwatch").describe_alarms(AlarmNames=names)["MetricAlarms"]
    return {
        "list": [
            {"name": alarm["AlarmName"], "state": alarm["StateValue"]}
            for alarm in sorted(found, key=lambda alarm: alarm["AlarmName"])
        ]
    }


def _notifications(ctx: Context) -> dict:
    """Where the alarms go: the topic and who is subscribed, confirmed or not yet."""
    topic = AlarmTopic(ctx)
    current = topic.read()
    if current is None:
        return {"topic": topic.name, "exists": False}
    return {
        "topic": topic.name,
        "exists": True,
        "subscriptions": [
            {
                "kind": "e-mail" if item["protocol"] == "email" else item["protocol"],
                "endpoint": item["endpoint"],
                "pending": item["pending"],
            }
            for item in current["subscriptions"]
        ],
    }


def _dlq(ctx: Context) -> dict:
    sqs = ctx.client("sqs")
    try:
        url = sqs.get_queue_url(QueueName=ctx.name("DlqName"))["QueueUrl"]
    except ClientError as exc:
        if "NonExistentQueue" in str(exc):
            return {"exists": False, "messages": 0}
        raise
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return {"exists": True, "messages": int(attributes["ApproximateNumberOfMessages"])}


def _object_lock(ctx: Context) -> dict:
    """The audit bucket's S3 Object Lock as S3 has it, in words."""
    bucket = ctx.name("AuditBucket")
    try:
        lock = object_lock(ctx.client("s3"), bucket)
    except ClientError as exc:
        if exc.response["Error"].get("Code") not in ("NoSuchBucket", "404"):
            raise
        return {"state": "no audit bucket yet"}
    if lock["mode"]:
        return {"state": f"{lock['mode'].lower()}, {days(lock['days'])}"}
    if lock["enabled"]:
        return {"state": "enabled without a default retention: S3 cannot turn it off"}
    return {"state": "off"}


def _lambda_errors(ctx: Context) -> dict:
    end = timezone.now()
    points = ctx.client("cloudwatch").get_metric_statistics(
        Namespace="AWS/Lambda",
        MetricName="Errors",
        Dimensions=[{"Name": "FunctionName", "Value": ctx.name("LambdaFunction")}],
        StartTime=end - timedelta(hours=1),
        EndTime=end,
        Period=3600,
        Statistics=["Sum"],
    )["Datapoints"]
    return {"last_hour": int(sum(point["Sum"] for point in points))}
