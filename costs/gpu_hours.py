"""An environment's GPU instance-hours, hour by hour, from CloudWatch.

The GPU Auto Scaling group publishes ``GroupInServiceInstances`` to ``AWS/AutoScaling`` every
minute once its metrics collection is on (the engine turns it on: ``GpuGroup``). Its hourly
Average is the instance-hours of that hour: two instances for half an hour and one for the
other half average 1.5. An hour without a datapoint (the group absent, or collecting nothing)
counts no instance-hour and is named in ``unmeasured``. CloudWatch keeps hourly datapoints
for 455 days (Amazon CloudWatch User Guide, "Metrics retention").

Locally the same read serves: ``publish_local`` puts what the local AWS's group holds into
the local AWS's CloudWatch once a minute, as AWS would (see its limits there).
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from centralllm import aws
from centralllm.audit.rollups import hour_of
from provisioning.models import Environment

NAMESPACE = "AWS/AutoScaling"
METRIC = "GroupInServiceInstances"
HOUR_SECONDS = 3600


def group_name(environment: Environment) -> str:
    return environment.resource_name("AutoScalingGroup")


def _dimensions(environment: Environment) -> list[dict[str, str]]:
    return [{"Name": "AutoScalingGroupName", "Value": group_name(environment)}]


def instance_hours(
    environment: Environment, start: datetime, end: datetime, *, client: Any = None
) -> dict[str, Decimal]:
    """``{hour: instance-hours}`` (hours as the rollups name them, ``2026-11-27T05``) from
    the hour holding ``start`` to the one holding ``end``: GetMetricData, every page
    (``NextToken``); hours without a datapoint are left out."""
    client = client or environment.client("cloudwatch")
    query = {
        "Id": "inService",
        "MetricStat": {
            "Metric": {
                "Namespace": NAMESPACE,
                "MetricName": METRIC,
                "Dimensions": _dimensions(environment),
            },
            "Period": HOUR_SECONDS,
            "Stat": "Average",
        },
        "ReturnData": True,
    }
    # Whole hours: EndTime is exclusive, so the hour holding ``end`` ends the range.
    params = {
        "MetricDataQueries": [query],
        "StartTime": _hour_start(start),
        "EndTime": _hour_start(end) + timedelta(hours=1),
        "ScanBy": "TimestampAscending",
    }
    hours = {}
    while True:
        response = client.get_metric_data(**params)
        for result in response["MetricDataResults"]:
            for moment, value in zip(result["Timestamps"], result["Values"], strict=True):
                hours[hour_of(moment.astimezone(UTC).isoformat())] = Decimal(str(value))
        if not response.get("NextToken"):
            return hours
        params["NextToken"] = response["NextToken"]


def _hour_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def publish_local() -> int:
    """The stand-in for AWS's group metrics, for the local AWS only (RQ's cron, every
    minute): each local environment's GPU group's in-service instances, as the local AWS's
    group holds them now, put as a ``GroupInServiceInstances`` datapoint into its CloudWatch.
    Returns how many it put.

    Its limits: it knows only the minutes it ran (no scheduler, no datapoints: those hours
    are unmeasured); the local group's instances are what moto made of its desired capacity,
    never started or stopped by load; and real CloudWatch refuses ``AWS/`` namespaces to
    PutMetricData, so this never runs against AWS."""
    if not aws.serves_locally("cloudwatch"):
        return 0
    put = 0
    for environment in Environment.objects.filter(is_local=True):
        groups = environment.client("autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[group_name(environment)]
        )["AutoScalingGroups"]
        if not groups:
            continue
        in_service = sum(
            instance["LifecycleState"] == "InService" for instance in groups[0]["Instances"]
        )
        environment.client("cloudwatch").put_metric_data(
            Namespace=NAMESPACE,
            MetricData=[
                {
                    "MetricName": METRIC,
                    "Dimensions": _dimensions(environment),
                    "Timestamp": datetime.now(UTC),
                    "Value": in_service,
                    "Unit": "None",
                }
            ],
        )
        put += 1
    return put
