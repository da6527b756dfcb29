""" "Check this account" on the environment form: pre-flight with the values as typed, saved
nowhere, against the moto server where it answers as AWS does, and against AWS's documented
answers (botocore's Stubber) where it cannot: refused calls, a quota too small, a bucket name
another account owns."""

import html
import json
import os
import re
from functools import partial

import pytest
from django.forms import model_to_dict
from django.urls import reverse

from core.models import Action
from provisioning.account_check import QUICK_CLIENTS
from provisioning.forms import EnvironmentForm
from provisioning.models import Environment
from provisioning.tests.test_preflight import (
    ACCOUNT,
    Stubbed,
    answer_all,
    answer_buckets,
    answer_quota,
    moto_account_of,
    stubbed_aws,
)

pytestmark = pytest.mark.django_db

NEW = reverse("provisioning:environment-create")
HTMX = {"HX-Request": "true"}


@pytest.fixture
def quick_moto():
    """A fresh account on the moto server, answering the clients the form's check uses."""
    with moto_account_of(**QUICK_CLIENTS) as account:
        yield account


@pytest.fixture
def quick_stubbed():
    """``make(**declared)``: AWS's documented answers to the clients the form's check uses."""
    with stubbed_aws(**QUICK_CLIENTS) as make:
        yield make


def typed(environment: Environment, **changed: object) -> dict:
    """The form as an operator fills it in for ``environment`` (ticked boxes only)."""
    values = {**model_to_dict(environment, fields=EnvironmentForm._meta.fields), **changed}
    return {name: value for name, value in values.items() if not (value is None or value is False)}


def outcomes(page: str) -> dict[str, tuple[str, str]]:
    """Each check's row of the page: (outcome, what AWS showed and what to do)."""
    rows = re.findall(
        r'<tr data-check="([^"]+)"><td>[^<]*</td><td class="check [a-z]+">([^<]+)</td>'
        r"<td>([^<]*)</td></tr>",
        page,
    )
    return {name: (outcome, html.unescape(reason)) for name, outcome, reason in rows}


def check(client, url: str, data: dict, **headers: str) -> str:
    response = client.post(url, {**data, "check": "1"}, headers=headers)
    assert response.status_code == 200
    return response.content.decode()


def test_a_new_environment_is_checked_in_place_and_not_saved(client, admin_user, quick_moto):
    """The moto server answers as AWS does for the account, buckets, network, routes, role,
    secret and image; the GPU quota and CodeBuild's credentials, which it lacks, are answered
    as AWS would (``MotoAccount.answer_what_moto_lacks``)."""
    environment = quick_moto.declare()
    ec2 = quick_moto.clients["ec2"]
    public = ec2.create_subnet(VpcId=environment.vpc_id, CidrBlock="10.1.9.0/24")["Subnet"]
    address = ec2.allocate_address(Domain="vpc")["AllocationId"]
    nat = ec2.create_nat_gateway(SubnetId=public["SubnetId"], AllocationId=address)
    table = ec2.create_route_table(VpcId=environment.vpc_id)["RouteTable"]["RouteTableId"]
    ec2.create_route(
        RouteTableId=table,
        DestinationCidrBlock="0.0.0.0/0",
        NatGatewayId=nat["NatGateway"]["NatGatewayId"],
    )
    for subnet in environment.subnets:
        ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
    quick_moto.answer_what_moto_lacks()
    client.force_login(admin_user)

    page = check(client, NEW, typed(environment), **HTMX)

    assert page.startswith('<form method="post" class="card" id="environment-form">')
    assert {name: outcome for name, (outcome, _) in outcomes(page).items()} == {
        "account": "passed",
        "name lengths": "passed",
        "bucket names": "passed",
        "network": "passed",
        "instance network path": "passed",
        "serving port": "passed",
        "availability zones": "warning",  # moto knows g5.2xlarge is not offered in zone b
        "vCPU quota": "passed",
        "ECS service-linked role": "warning",  # a fresh account: apply creates it
        "model token": "passed",
        "build source": "warning",  # no GitHub credential: public repositories only
        "image": "warning",  # never rolled out
    }
    assert "4 passed with a warning, 8 passed, in " in page
    # The form comes back as typed, and nothing is saved.
    assert f'value="{environment.vpc_id}"' in page and 'value="moto"' in page
    assert not Environment.objects.filter(name="moto").exists()
    action = Action.objects.get(verb="environment.check_account")
    assert action.actor_name == "ada" and action.object_repr == "moto" and action.object_id == ""
    assert action.parameters["subnet_ids"] == environment.subnet_ids
    assert action.after["outcomes"]["network"] == "passed"
    recorded = json.dumps([action.parameters, action.after])
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in recorded


def test_a_mistyped_subnet_fails_the_network_and_the_edit_is_not_saved(
    client, operator, quick_moto
):
    environment = quick_moto.declare()
    environment.name = "staging"
    environment.save()
    quick_moto.answer_what_moto_lacks()
    client.force_login(operator)
    mistyped = "subnet-0123456789abcdef0"
    subnets = f"{environment.subnets[0]},{mistyped}"

    page = check(
        client,
        reverse("provisioning:environment-edit", args=["staging"]),
        typed(environment, name="staging-eu", subnet_ids=subnets),
    )

    found = outcomes(page)
    assert found["network"] == (
        "failed",
        f"subnets not found in {environment.region}: {mistyped}",
    )
    for waiting in ("instance network path", "availability zones"):
        assert found[waiting] == (
            "could not check",
            "waits on the network check: the subnets are not known",
        )
    assert found["account"][0] == "passed" and found["vCPU quota"][0] == "passed"
    # The whole page, without htmx, still about the saved environment.
    assert "<title>Edit staging ·" in page and 'href="/environments/staging/">Cancel' in page
    environment.refresh_from_db()
    assert environment.name == "staging" and mistyped not in environment.subnet_ids
    assert not Action.objects.filter(verb="environment.update").exists()
    action = Action.objects.get(verb="environment.check_account")
    assert (action.actor_name, action.object_id) == ("otto", str(environment.pk))
    assert action.object_repr == "staging-eu"  # as typed, and checked


def test_bad_input_names_its_fields_and_nothing_is_checked(client, operator):
    client.force_login(operator)
    data = typed(
        Environment(name="bad", account_id="1234", vpc_id="vpc-1", security_group_id="sg-1"),
        subnet_ids="subnet-a,net-b",
        desired_count="two",
    )

    page = check(client, NEW, data, **HTMX)

    assert "An AWS account id is 12 digits." in page
    assert "Every subnet id starts with &#x27;subnet-&#x27;." in page
    assert "Enter a whole number." in page
    assert (
        "Nothing was checked: correct the form first (Account id, Desired count, Subnets)."
    ) in page
    assert outcomes(page) == {}
    assert not Action.objects.exists()
    assert not Environment.objects.filter(name="bad").exists()


def test_checking_needs_the_permission_to_create_or_edit(client, viewer):
    client.force_login(viewer)
    data = typed(Environment(name="peek", account_id=ACCOUNT, vpc_id="vpc-1"))

    assert client.post(NEW, {**data, "check": "1"}).status_code == 403
    assert not Action.objects.exists()


def through_the_form(client, stubbed: Stubbed) -> dict[str, tuple[str, str]]:
    page = check(client, NEW, typed(stubbed.environment), **HTMX)
    assert "Error getting response stub" not in page  # a call the Stubber did not expect
    return outcomes(page)


def test_a_quota_too_small_and_a_bucket_name_another_account_owns_fail_saying_what_to_do(
    client, admin_user, quick_stubbed
):
    """The applied quota, in vCPUs, from GetServiceQuota
    (https://docs.aws.amazon.com/servicequotas/2019-06-24/apireference/API_GetServiceQuota.html,
    https://docs.aws.amazon.com/ec2/latest/instancetypes/ec2-instance-quotas.html); HeadBucket
    with the expected owner answers 403 for a bucket of another account
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-owner-condition.html): the
    bucket name is taken globally, which moto's single account never shows."""
    stubbed = quick_stubbed()
    answer_all(
        stubbed,
        buckets=lambda: answer_buckets(stubbed, audit=403),
        quota=lambda: answer_quota(stubbed, quota=8.0),
    )
    client.force_login(admin_user)

    found = through_the_form(client, stubbed)

    assert found["vCPU quota"] == (
        "failed",
        "needs 32 vCPUs: 4 instances of g5.2xlarge at the max tasks; quota is 8 (Running "
        "On-Demand G and VT instances, L-DB2E81BA): scaling could not reach them; lower the "
        "max tasks or request an increase in Service Quotas",
    )
    assert found["bucket names"] == (
        "failed",
        "central-llm-audit-stub is owned by another account (S3 bucket names are global): "
        "choose a name suffix, e.g. -stub-789012",
    )
    assert [outcome for outcome, _ in found.values()].count("passed") == 10


def test_a_refused_ec2_call_could_not_be_checked_and_names_the_permission(
    client, admin_user, quick_stubbed
):
    """EC2 refuses a call the credentials' policies do not allow with UnauthorizedOperation
    (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html): the
    network is then neither right nor wrong, and what builds on it waits."""
    stubbed = quick_stubbed()
    refused = partial(
        stubbed["ec2"].add_client_error,
        "describe_vpcs",
        service_error_code="UnauthorizedOperation",
        service_message="You are not authorized to perform this operation. User: "
        f"arn:aws:iam::{ACCOUNT}:user/operator is not authorized to perform: "
        "ec2:DescribeVpcs because no identity-based policy allows the ec2:DescribeVpcs action",
        http_status_code=403,
    )
    answer_all(stubbed, network=refused, offerings=lambda: None)
    client.force_login(admin_user)

    found = through_the_form(client, stubbed)

    outcome, reason = found["network"]
    assert outcome == "could not check"
    assert reason.startswith("UnauthorizedOperation: You are not authorized")
    assert reason.endswith(": allow ec2:DescribeVpcs to the console's credentials")
    assert [found[name][0] for name in found if name.startswith(("instance", "serving"))] == [
        "could not check",
        "could not check",
    ]
    assert found["account"][0] == "passed" and found["vCPU quota"][0] == "passed"


def test_credentials_sts_refuses_fail_the_account_and_nothing_else_is_asked(
    client, admin_user, quick_stubbed
):
    """STS answers any valid credentials (GetCallerIdentity needs no permission,
    https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html) and
    refuses a key it does not know with InvalidClientTokenId, a 403
    (https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html)."""
    stubbed = quick_stubbed()
    stubbed["sts"].add_client_error(
        "get_caller_identity",
        service_error_code="InvalidClientTokenId",
        service_message="The security token included in the request is invalid.",
        http_status_code=403,
    )
    client.force_login(admin_user)

    found = through_the_form(client, stubbed)

    assert found.pop("account") == (
        "failed",
        "AWS refused the console's credentials (InvalidClientTokenId: The security token "
        f"included in the request is invalid.): renew them, or give the console valid "
        f"credentials for {ACCOUNT}",
    )
    assert set(found.values()) == {("could not check", "waits on the account check")}
    assert stubbed.operations == ["GetCallerIdentity"]


def test_a_local_environment_has_nothing_to_check(client, operator):
    client.force_login(operator)
    data = typed(Environment(name="laptop"), is_local="on", vpc_id="", subnet_ids="")

    page = check(client, NEW, data, **HTMX)

    assert "A local environment has nothing to check" in page
    assert not Environment.objects.filter(name="laptop").exists()


def test_each_aws_field_says_where_the_aws_console_shows_it(client, operator):
    client.force_login(operator)

    page = client.get(NEW).content.decode()

    assert "VPC console → Your VPCs → VPC ID (vpc-…)." in page
    assert "Running On-Demand G and VT instances" in page
    assert 'aria-describedby="id_vpc_id_helptext"' in page
    assert '<small id="id_vpc_id_helptext">' in page
