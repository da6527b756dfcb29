"""Application Auto Scaling as AWS documents it, answered by botocore's Stubber (the local AWS
answers at once, never refuses a policy before its target shows, and does not delete a
target's policies when it is deregistered). Each test cites where AWS documents what it
answers. The resources' life against the local AWS is in test_scaling.py."""

from dataclasses import replace

import pytest
from botocore.exceptions import ClientError

from centralllm import serving
from provisioning import engine
from provisioning.models import Environment
from provisioning.resources.applicationautoscaling import (
    DIMENSION,
    POLICY_NAME,
    SUSPENDED,
    ScalableTarget,
    ScalingPolicy,
)
from provisioning.resources.base import Context
from provisioning.resources.ecs import Service

REGION = "ap-southeast-7"  # no other test file uses it: clients are shared process-wide
CLUSTER, SERVICE = "central-llm-service-cluster-stub", "central-llm-service-stub"
RESOURCE_ID = f"service/{CLUSTER}/{SERVICE}"
KEYS = {"ServiceNamespace": "ecs", "ResourceId": RESOURCE_ID, "ScalableDimension": DIMENSION}
TARGET_ARN = f"arn:aws:application-autoscaling:{REGION}:123456789012:scalable-target/0ec9"
POLICY_ARN = (
    f"arn:aws:autoscaling:{REGION}:123456789012:scalingPolicy:6d8972f3:resource/ecs/"
    f"{RESOURCE_ID}:policyName/{POLICY_NAME}"
)
RUNNING = dict.fromkeys(SUSPENDED, False)


def scalable_target(low: int = 1, high: int = 4) -> dict:
    """A ScalableTarget as DescribeScalableTargets returns it:
    https://docs.aws.amazon.com/autoscaling/application/APIReference/API_ScalableTarget.html"""
    return {
        **KEYS,
        "MinCapacity": low,
        "MaxCapacity": high,
        "RoleARN": "arn:aws:iam::123456789012:role/aws-service-role/ecs.application-autoscaling"
        ".amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService",
        "CreationTime": "2026-12-05T10:00:00Z",
        "SuspendedState": RUNNING,
        "ScalableTargetARN": TARGET_ARN,
    }


def scaling_policy(configuration: dict) -> dict:
    """A ScalingPolicy with the two alarms target tracking makes:
    https://docs.aws.amazon.com/autoscaling/application/APIReference/API_ScalingPolicy.html"""
    return {
        "PolicyARN": POLICY_ARN,
        "PolicyName": POLICY_NAME,
        **KEYS,
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": configuration,
        "Alarms": [
            {"AlarmName": f"TargetTracking-{RESOURCE_ID}-AlarmHigh-1f2a", "AlarmARN": "arn:a:h"},
            {"AlarmName": f"TargetTracking-{RESOURCE_ID}-AlarmLow-9b0c", "AlarmARN": "arn:a:l"},
        ],
        "CreationTime": "2026-12-05T10:00:00Z",
    }


def test_the_target_is_registered_again_while_ecs_does_not_show_the_new_service(stubbed):
    """Just after CreateService, RegisterScalableTarget answers "ValidationException: ECS
    service doesn't exist" (ECS is eventually consistent: hashicorp/terraform-provider-aws#11693,
    spinnaker/spinnaker#4371); the API reference says to retry:
    https://docs.aws.amazon.com/autoscaling/application/APIReference/API_RegisterScalableTarget.html"""
    ctx, stubber, sleeps = stubbed("application-autoscaling", REGION)
    target = ScalableTarget(ctx)
    register = {**KEYS, "MinCapacity": 1, "MaxCapacity": 4, "SuspendedState": RUNNING}
    stubber.add_client_error(
        "register_scalable_target",
        "ValidationException",
        f"ECS service doesn't exist: {RESOURCE_ID}",
        400,
        expected_params=register,
    )
    stubber.add_response(
        "register_scalable_target", {"ScalableTargetARN": TARGET_ARN}, expected_params=register
    )

    target.create(target.desired())

    assert sleeps == [2]
    assert ctx.progress.lines == [
        "Application Auto Scaling does not see the new service yet; retrying in 2s "
        f"(ECS service doesn't exist: {RESOURCE_ID})"
    ]


def test_the_policy_waits_for_its_new_target_and_for_a_pending_update(stubbed):
    """PutScalingPolicy right after RegisterScalableTarget may answer ObjectNotFoundException
    ("No scalable target registered ...": cloudposse/terraform-aws-ecs-cloudwatch-autoscaling#36;
    "a brief delay until the operation achieves eventual consistency", API_RegisterScalableTarget),
    and ConcurrentUpdateException while another update is pending:
    https://docs.aws.amazon.com/autoscaling/application/APIReference/API_PutScalingPolicy.html
    The request is the documented target-tracking configuration on the hosts' metric:
    https://docs.aws.amazon.com/autoscaling/application/APIReference/API_TargetTrackingScalingPolicyConfiguration.html"""
    ctx, stubber, sleeps = stubbed("application-autoscaling", REGION)
    policy = ScalingPolicy(ctx)
    put = {
        "PolicyName": POLICY_NAME,
        **KEYS,
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": 16.0,
            "CustomizedMetricSpecification": {
                "MetricName": "RequestsInFlight",
                "Namespace": "CentralLLM/Serving",
                "Dimensions": [{"Name": "Environment", "Value": "stub"}],
                "Statistic": "Average",
            },
            "ScaleOutCooldown": 60,
            "ScaleInCooldown": 300,
            "DisableScaleIn": False,
        },
    }
    not_yet = (
        "No scalable target registered for service namespace: ecs, resource ID: "
        f"{RESOURCE_ID}, scalable dimension: {DIMENSION}"
    )
    stubber.add_client_error(
        "put_scaling_policy", "ObjectNotFoundException", not_yet, 400, expected_params=put
    )
    stubber.add_client_error(
        "put_scaling_policy", "ConcurrentUpdateException", "pending update", 400, None, put
    )
    stubber.add_response("put_scaling_policy", {"PolicyARN": POLICY_ARN, "Alarms": []}, put)

    policy.create(policy.desired())

    assert sleeps == [2, 4]
    assert serving.REQUESTS_IN_FLIGHT == "RequestsInFlight"  # the hosts' contract, by name


def test_targets_and_policies_are_found_past_a_first_page(stubbed):
    """DescribeScalableTargets and DescribeScalingPolicies answer in pages with NextToken:
    https://docs.aws.amazon.com/autoscaling/application/APIReference/API_DescribeScalableTargets.html,
    https://docs.aws.amazon.com/autoscaling/application/APIReference/API_DescribeScalingPolicies.html"""
    ctx, stubber, _ = stubbed("application-autoscaling", REGION)
    asked = {
        "ServiceNamespace": "ecs",
        "ResourceIds": [RESOURCE_ID],
        "ScalableDimension": DIMENSION,
    }
    stubber.add_response("describe_scalable_targets", {"ScalableTargets": [], "NextToken": "t2"})
    stubber.add_response(
        "describe_scalable_targets",
        {"ScalableTargets": [scalable_target(low=2)]},
        {**asked, "NextToken": "t2"},
    )
    policy = ScalingPolicy(ctx)
    configuration = policy.desired()["configuration"]
    stubber.add_response("describe_scaling_policies", {"ScalingPolicies": [], "NextToken": "p2"})
    stubber.add_response(
        "describe_scaling_policies",
        {"ScalingPolicies": [scaling_policy({**configuration, "TargetValue": 32.0})]},
        {**KEYS, "PolicyNames": [POLICY_NAME], "NextToken": "p2"},
    )

    target = ScalableTarget(ctx)
    current = target.read()
    # A min changed in AWS is drift; the declared 1..4 is what apply puts back.
    assert engine.diff(target.desired(), current) == {"min": (2, 1)}
    found = policy.read()
    assert engine.diff(policy.desired(), found) == {
        "configuration": (
            {**configuration, "TargetValue": 32.0},
            configuration,
        )
    }
    assert policy.outputs(found)["alarms"][0].startswith("TargetTracking-service/")


def test_an_already_deregistered_target_and_its_deleted_policy_are_gone_not_failures(stubbed):
    """Deregistering a target deletes its policies; deleting what is gone answers
    ObjectNotFoundException ("for any operation that deletes or deregisters a resource, this
    exception is thrown if the resource cannot be found"), and a pending update
    ConcurrentUpdateException, retried:
    https://docs.aws.amazon.com/autoscaling/application/APIReference/API_DeregisterScalableTarget.html,
    https://docs.aws.amazon.com/autoscaling/application/APIReference/API_DeleteScalingPolicy.html"""
    ctx, stubber, sleeps = stubbed("application-autoscaling", REGION)
    stubber.add_client_error(
        "delete_scaling_policy",
        "ObjectNotFoundException",
        f"No scaling policy found for service namespace: ecs, resource ID: {RESOURCE_ID}",
        400,
        expected_params={"PolicyName": POLICY_NAME, **KEYS},
    )
    stubber.add_client_error(
        "deregister_scalable_target", "ConcurrentUpdateException", "pending", 400, None, KEYS
    )
    stubber.add_client_error(
        "deregister_scalable_target",
        "ObjectNotFoundException",
        f"No scalable target found for service namespace: ecs, resource ID: {RESOURCE_ID}",
        400,
        expected_params=KEYS,
    )

    ScalingPolicy(ctx).delete({})
    ScalableTarget(ctx).delete({})

    assert sleeps == [2]


def test_a_refusal_that_is_no_delay_is_not_retried(stubbed):
    ctx, stubber, sleeps = stubbed("application-autoscaling", REGION)
    stubber.add_client_error(
        "register_scalable_target", "ValidationException", "MinCapacity exceeds MaxCapacity"
    )
    target = ScalableTarget(ctx)
    with pytest.raises(ClientError, match="MinCapacity exceeds MaxCapacity"):
        target.create(target.desired())
    assert sleeps == []


def test_before_the_first_rollout_on_aws_scaling_holds_the_service_at_no_task():
    """Registering a minimum above the service's count changes the count at once
    (API_RegisterScalableTarget): before the first rollout, on AWS, the target holds no task
    and its scaling is suspended; once a release is live it spans the min and max tasks:
    https://docs.aws.amazon.com/autoscaling/application/userguide/application-auto-scaling-suspend-resume-scaling.html"""
    local = Environment(name="stub", suffix="-stub", is_local=True, region=REGION).spec()
    spec = replace(local, is_local=False)
    with Context(spec) as before, Context(replace(spec, live_image_tag="0123abc")) as live:
        assert ScalableTarget(before).desired() == {
            "min": 0,
            "max": 0,
            "suspended": dict.fromkeys(SUSPENDED, True),
        }
        assert ScalableTarget(live).desired() == {"min": 1, "max": 4, "suspended": RUNNING}


def described_service(count: int) -> dict:
    return {
        "services": [
            {
                "serviceArn": f"arn:aws:ecs:{REGION}:123456789012:service/{SERVICE}",
                "status": "ACTIVE",
                "taskDefinition": "arn:td:3",
                "desiredCount": count,
            }
        ]
    }


def test_the_service_leaves_a_count_within_min_and_max_to_scaling(stubbed):
    """Scaling owns the desired count: 3 of 1..4 is no drift, and an update leaves the count
    alone; 7 is outside and is set back to where the service starts."""
    ctx, stubber, _ = stubbed("ecs", REGION)
    ctx.outputs["ecs.task_definition"] = {"arn": "arn:td:4"}
    service = Service(ctx)
    stubber.add_response("describe_services", described_service(3))
    stubber.add_response(
        "update_service",
        {},
        {
            "cluster": CLUSTER,
            "service": SERVICE,
            "taskDefinition": "arn:td:4",
            "healthCheckGracePeriodSeconds": service.desired()["health_check_grace_seconds"],
            "deploymentConfiguration": service.desired()["deployment"],
        },
    )

    stubber.add_response("describe_services", described_service(7))

    within = service.read()
    assert engine.diff(service.desired(), within) == {"task_definition": ("arn:td:3", "arn:td:4")}
    service.update(service.desired(), within, ["task_definition"])  # no desiredCount sent
    outside = service.read()
    assert engine.diff(service.desired(), outside)["desired_count"] == (7, 1)
