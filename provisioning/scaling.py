"""The environment page's scaling section: what Application Auto Scaling holds the service
to, the tasks and GPU instances over the last hours beside the queue they follow, and the
scaling activities with AWS's reasons.

Read from AWS with quick clients, cached like the rest of the page (``state.cached``); each
part that AWS does not answer shows its error in the section instead.
"""

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.core.exceptions import ValidationError
from django.utils import timezone

from centralllm import aws, serving
from provisioning import sections, state
from provisioning.models import Environment
from provisioning.resources.applicationautoscaling import (
    DIMENSION,
    NAMESPACE,
    ScalableTarget,
    ScalingPolicy,
    resource_id,
)
from provisioning.resources.base import Context

HOURS = 6
SERIES = {
    "tasks": "Running tasks",
    "instances": "GPU instances in service",
    "queue": "Requests in flight per task",
}
PERIOD_SECONDS = 300
ACTIVITIES = 10
QUICK_CLIENTS = {"connect_timeout": 3, "read_timeout": 5, "max_attempts": 2}
# What the local AWS (moto) does not do, said on the page beside what it shows.
STAND_IN_LIMITS = (
    "The local AWS keeps the scaling target and policy but evaluates no policy (its alarms "
    "never fire, so the task count never moves), publishes no Container Insights or Auto "
    "Scaling group metrics, and does not implement DescribeScalingActivities."
)


def section(environment: Environment) -> dict[str, Any]:
    """The section's context: the scaling state, at most a cache period old."""
    key = f"environment-scaling:{environment.pk}:{environment.updated_at.timestamp()}"
    return {"scaling": state.cached(key, lambda: read(environment))}


SECTION = sections.Section("provisioning/_scaling.html", section)


def read(environment: Environment) -> dict[str, Any]:
    try:
        spec = environment.spec()
    except ValidationError as exc:
        return {"error": f"The environment's declaration is not valid: {exc.messages[0]}"}
    with Context(spec, client_options=QUICK_CLIENTS) as ctx:
        return {
            "read_at": timezone.now(),
            "stand_in": STAND_IN_LIMITS if aws.is_stand_in() else "",
            "target": _guarded(lambda: _target(ctx)),
            "charts": _guarded(lambda: _charts(ctx)),
            "activities": _guarded(lambda: _activities(ctx)),
        }


def _guarded(read: Callable[[], dict]) -> dict:
    try:
        return read()
    except (BotoCoreError, ClientError) as exc:
        # An HTML error page (the stand-in's 500) is no message: what precedes it says enough.
        return {"error": str(exc).partition("<!")[0].strip().rstrip(":")[:300]}


def _target(ctx: Context) -> dict:
    """The target and policy as AWS has them (not as declared: drift is the plan's)."""
    target = ScalableTarget(ctx).read()
    if target is None:
        return {"exists": False}
    policy = ScalingPolicy(ctx).read()
    configuration = (policy or {}).get("configuration", {})
    return {
        "exists": True,
        "min": target["min"],
        "max": target["max"],
        "suspended": any((target.get("suspended") or {}).values()),
        "policy": policy is not None,
        "target_value": configuration.get("TargetValue"),
        "scale_out_cooldown": configuration.get("ScaleOutCooldown"),
        "scale_in_cooldown": configuration.get("ScaleInCooldown"),
    }


def _queries(ctx: Context) -> list[dict]:
    """Running tasks (Container Insights, on for the cluster), the group's instances in
    service (its metrics collection, enabled by the group), and the hosts' queue per task."""
    metrics = {
        "tasks": (
            "ECS/ContainerInsights",
            "RunningTaskCount",
            [
                {"Name": "ClusterName", "Value": ctx.name("Cluster")},
                {"Name": "ServiceName", "Value": ctx.name("Service")},
            ],
        ),
        "instances": (
            "AWS/AutoScaling",
            "GroupInServiceInstances",
            [{"Name": "AutoScalingGroupName", "Value": ctx.name("AutoScalingGroup")}],
        ),
        "queue": (
            serving.NAMESPACE,
            serving.REQUESTS_IN_FLIGHT,
            serving.dimensions(ctx.spec.name),
        ),
    }
    return [
        {
            "Id": key,
            "MetricStat": {
                "Metric": {"Namespace": namespace, "MetricName": name, "Dimensions": dimensions},
                "Period": PERIOD_SECONDS,
                "Stat": "Average",
            },
        }
        for key, (namespace, name, dimensions) in metrics.items()
    ]


def _charts(ctx: Context) -> dict:
    """The last ``HOURS`` in ``PERIOD_SECONDS`` steps, one series per metric (a step with no
    datapoint is None, drawn as a gap: no datapoint is not 0 tasks), with the latest
    datapoint; at most three pages of GetMetricData."""
    end = timezone.now()
    start = end - timedelta(hours=HOURS)
    steps = HOURS * 3600 // PERIOD_SECONDS
    found: dict[str, dict[datetime, float]] = {}
    asked: dict[str, Any] = {
        "MetricDataQueries": _queries(ctx),
        "StartTime": start,
        "EndTime": end,
        "ScanBy": "TimestampAscending",
    }
    cloudwatch = ctx.client("cloudwatch")
    for _page in range(3):
        answer = cloudwatch.get_metric_data(**asked)
        for result in answer["MetricDataResults"]:
            points = found.setdefault(result["Id"], {})
            points.update(zip(result["Timestamps"], result["Values"], strict=True))
        if not answer.get("NextToken"):
            break
        asked["NextToken"] = answer["NextToken"]
    series = {}
    for key, what in SERIES.items():
        points = found.get(key, {})
        values: list[float | None] = [None] * steps
        for moment, value in points.items():
            step = int((moment - start).total_seconds() // PERIOD_SECONDS)
            values[min(max(step, 0), steps - 1)] = value
        latest = points[max(points)] if points else None
        label = f"{what} over the last {HOURS} h, averaged every {PERIOD_SECONDS // 60} min"
        series[key] = {"values": values, "latest": latest, "empty": not points, "label": label}
    return {"hours": HOURS, "period": PERIOD_SECONDS, **series}


def _activities(ctx: Context) -> dict:
    """The last scaling activities, newest first, with AWS's cause and status message (one
    page: the page shows the last ``ACTIVITIES``)."""
    found = ctx.client("application-autoscaling").describe_scaling_activities(
        ServiceNamespace=NAMESPACE,
        ResourceId=resource_id(ctx.name("Cluster"), ctx.name("Service")),
        ScalableDimension=DIMENSION,
        MaxResults=ACTIVITIES,
    )["ScalingActivities"]
    return {
        "list": [
            {
                "started": activity["StartTime"],
                "ended": activity.get("EndTime"),
                "status": activity["StatusCode"],
                "description": activity.get("Description", ""),
                "cause": activity.get("Cause", ""),
                "message": activity.get("StatusMessage", ""),
            }
            for activity in found
        ]
    }
