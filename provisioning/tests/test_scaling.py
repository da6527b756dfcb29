"""Scaling against the local AWS (apply, drift, destroy of the target and policy; the
environment page's section) and, where the local AWS lacks it, against AWS's documented
answers (test_scaling_documented.py has the engine's side of those)."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.stub import Stubber
from django.urls import reverse

from centralllm import aws
from devtools.aws_rules import throttling_response
from provisioning import engine, scaling
from provisioning.models import Environment
from provisioning.resources.applicationautoscaling import (
    DIMENSION,
    POLICY_NAME,
    ScalableTarget,
    resource_id,
)
from provisioning.resources.autoscaling import GROUP_METRICS

pytestmark = pytest.mark.django_db
PAGE_REGION = "mx-central-1"  # no other test file uses it: clients are shared process-wide


@contextmanager
def throttled(client: Any) -> Iterator[list[str]]:
    """Every call's first attempt refused as AWS throttles (400 ThrottlingException, "Rate
    exceeded": https://docs.aws.amazon.com/autoscaling/application/APIReference/CommonErrors.html);
    the SDK retries it (https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html).
    Yields the operations refused."""
    refused: list[str] = []

    def throttle(request: Any, event_name: str, **kwargs: Any) -> Any:
        if request.context.get("retries", {}).get("attempt", 1) > 1:
            return None
        refused.append(event_name.rpartition(".")[2])
        return throttling_response("json")

    client.meta.events.register_first("before-send", throttle, unique_id="scaling-throttle")
    try:
        yield refused
    finally:
        client.meta.events.unregister("before-send", unique_id="scaling-throttle")


def scalable_targets(scaling_client, rid: str) -> list[dict]:
    return scaling_client.describe_scalable_targets(
        ServiceNamespace="ecs", ResourceIds=[rid], ScalableDimension=DIMENSION
    )["ScalableTargets"]


@pytest.mark.slow
def test_apply_makes_the_target_and_policy_drift_sees_a_changed_min_max_destroy_removes_them(
    environment, client, viewer
):
    spec = environment.spec()
    suffix = spec.suffix
    cluster, service = f"central-llm-service-cluster{suffix}", f"central-llm-service{suffix}"
    rid = resource_id(cluster, service)
    autoscaling = aws.client("application-autoscaling", region_name=spec.region)
    engine.apply(spec)

    [target] = scalable_targets(autoscaling, rid)
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 4)
    [policy] = autoscaling.describe_scaling_policies(ServiceNamespace="ecs", ResourceId=rid)[
        "ScalingPolicies"
    ]
    assert policy["PolicyName"] == POLICY_NAME
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["CustomizedMetricSpecification"] == {
        "MetricName": "RequestsInFlight",
        "Namespace": "CentralLLM/Serving",
        "Dimensions": [{"Name": "Environment", "Value": spec.name}],
        "Statistic": "Average",
    }
    assert (tracking["TargetValue"], tracking["ScaleInCooldown"]) == (16.0, 300)
    group = aws.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[f"central-llm-gpu{suffix}"]
    )["AutoScalingGroups"][0]
    assert {item["Metric"] for item in group["EnabledMetrics"]} >= set(GROUP_METRICS)
    assert group["MaxSize"] == 8  # a rollout at the max tasks starts as many again

    # Behind our back: the target's range changed; the service scaled to 3 (its to move).
    autoscaling.register_scalable_target(
        ServiceNamespace="ecs",
        ResourceId=rid,
        ScalableDimension=DIMENSION,
        MinCapacity=2,
        MaxCapacity=6,
    )
    aws.client("ecs").update_service(cluster=cluster, service=service, desiredCount=3)
    drifted = {change.key: change for change in engine.drift(spec)}
    assert set(drifted) == {ScalableTarget.key}
    assert drifted[ScalableTarget.key].fields == {"min": (2, 1), "max": (6, 4)}

    with throttled(autoscaling) as refused:
        repaired = engine.apply_one(spec, ScalableTarget.key)
    assert repaired == "updated min, max"
    assert "RegisterScalableTarget" in refused and "DescribeScalableTargets" in refused
    assert engine.drift(spec) == []

    # The page: the target as AWS has it, the hosts' queue against its target, the stand-in
    # named for what it does not do (no activities), and no error page.
    aws.client("cloudwatch").put_metric_data(
        Namespace="CentralLLM/Serving",
        MetricData=[
            {
                "MetricName": "RequestsInFlight",
                "Dimensions": [{"Name": "Environment", "Value": spec.name}],
                "Value": 21.5,
                "Timestamp": datetime.now(UTC) - timedelta(minutes=1),
            }
        ],
    )
    client.force_login(viewer)
    response = client.get(reverse("provisioning:environment", args=[environment.name]))
    assert response.status_code == 200
    section = _section(response.content.decode())
    assert "<strong>1 to 4 tasks</strong>" in section
    assert "holds 16 requests in flight per task" in section
    assert '<line class="target"' in section and "21.5 <small>target 16</small>" in section
    # The stand-in's 500 is no error to alarm anyone with: it is one of its limits, stated.
    assert "Not listed by the local AWS (see below)." in section
    assert "AWS did not list the scaling activities" not in section
    assert scaling.STAND_IN_LIMITS in section

    engine.destroy(spec, confirm=spec.name)
    assert scalable_targets(autoscaling, rid) == []
    assert (
        autoscaling.describe_scaling_policies(ServiceNamespace="ecs", ResourceId=rid)[
            "ScalingPolicies"
        ]
        == []
    )


def _section(page: str) -> str:
    start = page.index('<section class="scaling"')
    return page[start : page.index("</section>", start)]


def test_the_page_shows_awss_activities_and_figures_as_aws_documents_them(client, viewer):
    """Answers as AWS documents them (the local AWS has no activities and no Container
    Insights or group metrics): DescribeScalingActivities with its Cause and StatusMessage
    (https://docs.aws.amazon.com/autoscaling/application/APIReference/API_ScalingActivity.html),
    GetMetricData's results per query
    (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_GetMetricData.html)."""
    Environment.objects.create(name="scaled", suffix="-scaled", is_local=True, region=PAGE_REGION)
    rid = resource_id("central-llm-service-cluster-scaled", "central-llm-service-scaled")
    quick = scaling.QUICK_CLIENTS
    autoscaling = aws.client("application-autoscaling", region_name=PAGE_REGION, **quick)
    cloudwatch = aws.client("cloudwatch", region_name=PAGE_REGION, **quick)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    with Stubber(autoscaling) as scaling_stub, Stubber(cloudwatch) as metrics_stub:
        scaling_stub.add_response(
            "describe_scalable_targets",
            {
                "ScalableTargets": [
                    {
                        "ServiceNamespace": "ecs",
                        "ResourceId": rid,
                        "ScalableDimension": DIMENSION,
                        "MinCapacity": 1,
                        "MaxCapacity": 4,
                        "RoleARN": "arn:aws:iam::123456789012:role/aws-service-role/x",
                        "CreationTime": now - timedelta(days=2),
                        "SuspendedState": {
                            "DynamicScalingInSuspended": False,
                            "DynamicScalingOutSuspended": False,
                            "ScheduledScalingSuspended": False,
                        },
                    }
                ]
            },
        )
        scaling_stub.add_response("describe_scaling_policies", {"ScalingPolicies": []})
        metrics_stub.add_response(
            "get_metric_data",
            {
                "MetricDataResults": [
                    {
                        "Id": "tasks",
                        "Timestamps": [now - timedelta(minutes=10), now - timedelta(minutes=5)],
                        "Values": [2.0, 3.0],
                        "StatusCode": "Complete",
                    },
                    {"Id": "instances", "Timestamps": [], "Values": [], "StatusCode": "Complete"},
                    {
                        "Id": "queue",
                        "Timestamps": [now - timedelta(minutes=5)],
                        "Values": [31.0],
                        "StatusCode": "Complete",
                    },
                ]
            },
        )
        scaling_stub.add_response(
            "describe_scaling_activities",
            {
                "ScalingActivities": [
                    {
                        "ActivityId": "e6c5f7d1-6f7a-4b1e-9f3c-1a2b3c4d5e6f",
                        "ServiceNamespace": "ecs",
                        "ResourceId": rid,
                        "ScalableDimension": DIMENSION,
                        "Description": "Setting desired count to 3.",
                        "Cause": "monitor alarm TargetTracking-service/central-llm-service-"
                        "cluster-scaled/central-llm-service-scaled-AlarmHigh-1f2a in state "
                        "ALARM triggered policy central-llm-requests-in-flight",
                        "StartTime": now - timedelta(minutes=7),
                        "EndTime": now - timedelta(minutes=6),
                        "StatusCode": "Successful",
                        "StatusMessage": "Successfully set desired count to 3. Change "
                        "successfully fulfilled by ecs.",
                    }
                ]
            },
            {
                "ServiceNamespace": "ecs",
                "ResourceId": rid,
                "ScalableDimension": DIMENSION,
                "MaxResults": scaling.ACTIVITIES,
            },
        )
        client.force_login(viewer)
        response = client.get(reverse("provisioning:environment", args=["scaled"]))
        scaling_stub.assert_no_pending_responses()
        metrics_stub.assert_no_pending_responses()

    assert response.status_code == 200
    section = _section(response.content.decode())
    assert "<strong>no scaling policy</strong>: an apply puts it back" in section
    assert "Tasks running</dt><dd><svg" in section and "</svg> 3</dd>" in section
    assert "GPU instances in service</dt><dd><svg" in section
    assert "</svg> <small>no datapoints</small>" in section
    assert "31.0 <small>target 16</small>" in section
    assert "Setting desired count to 3." in section
    assert "Successfully set desired count to 3." in section
    assert "triggered policy central-llm-requests-in-flight" in section
    assert 'class="status status-succeeded">Successful' in section
