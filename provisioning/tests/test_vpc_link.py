"""The VPC link takes minutes to build: a link left PENDING is waited for (moto's is AVAILABLE at
once, so real AWS's answers come from a Stubber here)."""

import pytest

from provisioning import engine
from provisioning.resources.apigateway import VpcLink
from provisioning.resources.base import ProvisioningError

# A region no other test uses, so the stubbed client is ours alone.
REGION = "ap-northeast-3"
BALANCER = f"arn:aws:elasticloadbalancing:{REGION}:123456789012:loadbalancer/net/nlb/abc"


@pytest.fixture
def link(stubbed):
    ctx, stubber, sleeps = stubbed("apigateway", REGION)
    ctx.outputs["elbv2.load_balancer"] = {"arn": BALANCER}
    return VpcLink(ctx), stubber, sleeps


def listed(status: str) -> dict:
    link = {"id": "l1", "name": "central-llm-vpc-link-stub", "targetArns": [BALANCER]}
    return {"items": [{**link, "status": status}]}


def test_a_link_left_pending_by_an_interrupted_apply_is_waited_for(link):
    vpc_link, stubber, sleeps = link
    stubber.add_response("get_vpc_links", listed("PENDING"))
    stubber.add_response("get_vpc_link", {"id": "l1", "status": "PENDING"}, {"vpcLinkId": "l1"})
    stubber.add_response("get_vpc_link", {"id": "l1", "status": "AVAILABLE"}, {"vpcLinkId": "l1"})

    current = vpc_link.read()
    fields = engine.diff(vpc_link.desired(), current)
    assert fields == {"status": ("PENDING", "AVAILABLE")}
    vpc_link.update(vpc_link.desired(), current, list(fields))

    assert sleeps == [15]


def test_a_failed_link_is_deleted_and_made_again(link):
    """A link made while its NLB was provisioning ends FAILED for good ("NLB is not in active
    state", aws-cloudformation/cloudformation-coverage-roadmap#1951): an apply replaces it
    instead of failing at it until someone deletes it by hand."""
    vpc_link, stubber, _ = link
    reason = "NLB is not in active state. If you recently created this NLB, please wait"
    failed = listed("FAILED")
    failed["items"][0]["statusMessage"] = reason
    stubber.add_response("get_vpc_links", failed)
    stubber.add_response("delete_vpc_link", {}, {"vpcLinkId": "l1"})
    stubber.add_response("get_vpc_links", {"items": []})
    stubber.add_response(
        "create_vpc_link",
        {"id": "l2", "status": "PENDING"},
        {"name": "central-llm-vpc-link-stub", "targetArns": [BALANCER]},
    )
    stubber.add_response(
        "get_vpc_links", {"items": [{**listed("PENDING")["items"][0], "id": "l2"}]}
    )
    stubber.add_response("get_vpc_link", {"id": "l2", "status": "AVAILABLE"}, {"vpcLinkId": "l2"})

    current = vpc_link.read()
    assert current is not None  # so apply does not create a second link of the same name
    vpc_link.update(vpc_link.desired(), current, ["status"])
    assert f"the VPC link failed ({reason}): making it again" in vpc_link.ctx.progress.lines


def test_a_link_that_fails_while_waited_for_says_why(link):
    vpc_link, stubber, sleeps = link
    stubber.add_response("get_vpc_links", listed("PENDING"))
    stubber.add_response(
        "get_vpc_link",
        {"id": "l1", "status": "FAILED", "statusMessage": "NLB is not in active state"},
        {"vpcLinkId": "l1"},
    )

    current = vpc_link.read()
    with pytest.raises(ProvisioningError, match=r"failed \(NLB is not in active state\)"):
        vpc_link.update(vpc_link.desired(), current, ["status"])
    assert sleeps == []
