"""AWS's documented asynchrony, one defect at a time, answered by botocore's Stubber with the
responses AWS documents (moto answers at once). The whole life under the same behaviour is in
test_documented_aws.py."""

from dataclasses import replace

import pytest

from provisioning.resources.apigateway import UsagePlan
from provisioning.resources.base import Context, ProvisioningError, wait_until
from provisioning.resources.cloudwatch import ServiceHealthAlarm
from provisioning.resources.dynamodb import AuditTable
from provisioning.resources.ecs import CapacityProvider
from provisioning.resources.elbv2 import LoadBalancer
from provisioning.resources.s3 import AuditBucket

REGION = "eu-west-3"  # no other test file uses it: clients are shared process-wide
BALANCER = f"arn:aws:elasticloadbalancing:{REGION}:123456789012:loadbalancer/net/nlb-stub/1"


def test_a_usage_plan_loses_its_stages_before_it_is_deleted(stubbed):
    """AWS refuses "Cannot delete Usage Plan ... because there are API Stages associated with
    it" (aws/aws-sdk-js#3841): the stage is removed with the patch the update uses."""
    ctx, stubber, _ = stubbed("apigateway", REGION)
    stubber.add_response(
        "update_usage_plan",
        {"id": "p1"},
        {
            "usagePlanId": "p1",
            "patchOperations": [{"op": "remove", "path": "/apiStages", "value": "a1:prod"}],
        },
    )
    stubber.add_response("delete_usage_plan", {}, {"usagePlanId": "p1"})

    UsagePlan(ctx).delete({"id": "p1", "stages": ["a1:prod"]})


def provider(update_status: str, reason: str = "") -> dict:
    """DescribeCapacityProviders: a deleted provider stays ACTIVE with its updateStatus
    (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_CapacityProvider.html)."""
    found = {
        "capacityProviderArn": f"arn:aws:ecs:{REGION}:123456789012:capacity-provider/gpu",
        "name": "central-llm-gpu-stub",
        "status": "ACTIVE",
        "autoScalingGroupProvider": {"autoScalingGroupArn": "arn:group"},
        "updateStatus": update_status,
    }
    if reason:
        found["updateStatusReason"] = reason
    return {"capacityProviders": [found]}


def test_a_capacity_provider_being_deleted_is_absent_and_its_deletion_is_waited_for(stubbed):
    ctx, stubber, sleeps = stubbed("ecs", REGION)
    capacity_provider = CapacityProvider(ctx)
    stubber.add_response("describe_capacity_providers", provider("DELETE_IN_PROGRESS"))
    assert capacity_provider.read() is None  # apply makes it anew once it is gone

    stubber.add_response("delete_capacity_provider", {"capacityProvider": {}})
    stubber.add_response("describe_capacity_providers", provider("DELETE_IN_PROGRESS"))
    stubber.add_response("describe_capacity_providers", provider("DELETE_COMPLETE"))
    capacity_provider.delete({})
    assert sleeps == [15]
    assert ctx.progress.lines == [
        "waiting for the capacity provider to be deleted: 0 s; usually 1-2 min"
    ]


def test_a_capacity_provider_that_ecs_cannot_delete_says_why(stubbed):
    ctx, stubber, _ = stubbed("ecs", REGION)
    reason = "The Auto Scaling group is in use by another capacity provider"
    stubber.add_response("delete_capacity_provider", {"capacityProvider": {}})
    stubber.add_response("describe_capacity_providers", provider("DELETE_FAILED", reason))
    with pytest.raises(ProvisioningError, match=reason):
        CapacityProvider(ctx).delete({})


def table(status: str) -> dict:
    return {
        "Table": {
            "TableName": "CentralLLMAudit-stub",
            "TableStatus": status,
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        }
    }


def test_a_table_still_deleting_is_absent_and_waited_out_before_it_is_made_again(stubbed):
    """A deleted table is DELETING until DynamoDB is done, and keeps its name meanwhile:
    https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_DeleteTable.html"""
    ctx, stubber, sleeps = stubbed("dynamodb", REGION)
    audit_table = AuditTable(ctx)
    stubber.add_response("describe_table", table("DELETING"))
    assert audit_table.read() is None

    stubber.add_response("describe_table", table("DELETING"))
    stubber.add_client_error("describe_table", "ResourceNotFoundException", http_status_code=400)
    stubber.add_response("create_table", {"TableDescription": table("CREATING")["Table"]})
    stubber.add_response("describe_table", table("ACTIVE"))
    stubber.add_response("update_time_to_live", {})
    audit_table.create(audit_table.desired())
    assert sleeps == [10]
    assert ctx.progress.lines[0].startswith("waiting for the table of this name to be deleted")


def balancer(state: dict) -> dict:
    return {
        "LoadBalancers": [
            {
                "LoadBalancerArn": BALANCER,
                "DNSName": "nlb-stub.elb.amazonaws.com",
                "Type": "network",
                "Scheme": "internal",
                "AvailabilityZones": [{"SubnetId": "subnet-a", "ZoneName": f"{REGION}a"}],
                "State": state,
            }
        ]
    }


def load_balancer(stubbed) -> tuple[LoadBalancer, object, list[float]]:
    ctx, stubber, sleeps = stubbed("elbv2", REGION)
    ctx.outputs["ec2.network"] = {"subnet_ids": ["subnet-a"]}
    stubber.add_response("describe_load_balancers", balancer({"Code": "provisioning"}))
    stubber.add_response(
        "describe_load_balancer_attributes",
        {"Attributes": [{"Key": "load_balancing.cross_zone.enabled", "Value": "false"}]},
    )
    return LoadBalancer(ctx), stubber, sleeps


def test_a_new_nlb_is_waited_for_until_active_and_gets_cross_zone_load_balancing(stubbed):
    """An NLB is "provisioning" for minutes; a VPC link made meanwhile ends FAILED
    (aws-cloudformation/cloudformation-coverage-roadmap#1951)."""
    nlb, stubber, sleeps = load_balancer(stubbed)
    current = nlb.read()
    fields = {name for name, value in nlb.desired().items() if current.get(name) != value}
    assert fields == {"state", "cross_zone"}
    stubber.add_response(
        "modify_load_balancer_attributes",
        {},
        {
            "LoadBalancerArn": BALANCER,
            "Attributes": [{"Key": "load_balancing.cross_zone.enabled", "Value": "true"}],
        },
    )
    for state in ("provisioning", "provisioning", "active"):
        stubber.add_response(
            "describe_load_balancers", balancer({"Code": state}), {"LoadBalancerArns": [BALANCER]}
        )
    nlb.update(nlb.desired(), current, sorted(fields))
    assert sleeps == [15, 15]
    assert nlb.ctx.progress.lines == [
        "waiting for the NLB to become active: 0 s; usually 2-4 min",
        "waiting for the NLB to become active: 15 s; usually 2-4 min",
    ]


def test_an_nlb_that_failed_to_provision_says_why(stubbed):
    nlb, stubber, _ = load_balancer(stubbed)
    current = nlb.read()
    failed = {"Code": "failed", "Reason": "Subnet subnet-a has no free addresses"}
    stubber.add_response(
        "describe_load_balancers", balancer(failed), {"LoadBalancerArns": [BALANCER]}
    )
    with pytest.raises(ProvisioningError, match="no free addresses"):
        nlb.update(nlb.desired(), current, ["state"])


def test_a_bucket_of_another_account_is_named_with_a_suffix_to_use(stubbed):
    """S3 answers HeadBucket on another account's bucket with a bare 403 (bucket names are
    global: https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html)."""
    ctx, stubber, _ = stubbed("s3", REGION)
    ctx.account_id = "123456789012"
    stubber.add_client_error("head_bucket", "403", "Forbidden", 403)
    with pytest.raises(ProvisioningError, match=r"owned by another AWS account.*-stub-789012"):
        AuditBucket(ctx).read()


def test_a_wait_that_outlasts_its_bound_leaves_a_resumable_environment(stubbed):
    ctx, _, sleeps = stubbed("elbv2", REGION)
    with pytest.raises(ProvisioningError) as stopped:
        wait_until(
            ctx,
            lambda: False,
            what="the NLB to become active",
            usually="2-4 min",
            timeout_seconds=60,
        )
    assert str(stopped.value) == (
        "gave up waiting for the NLB to become active after 1 min (usually 2-4 min): nothing "
        "is lost, apply again to resume from here"
    )
    assert sleeps == [15, 15, 15, 15]


def test_the_running_tasks_alarm_is_silent_until_the_first_rollout(stubbed):
    """0 tasks before the first rollout of a real-AWS service, missing data breaching: the
    alarm would page from the day the environment is created."""
    ctx, _, _ = stubbed("cloudwatch", REGION)
    real = replace(ctx.spec, is_local=False)
    for live, enabled, missing in (("", False, "notBreaching"), ("0123abc", True, "breaching")):
        alarm_ctx = Context(replace(real, live_image_tag=live))
        alarm_ctx.outputs["sns.alarm_topic"] = {"arn": "arn:aws:sns:topic"}
        desired = ServiceHealthAlarm(alarm_ctx).desired()
        assert (desired["ActionsEnabled"], desired["TreatMissingData"]) == (enabled, missing)
