"""The pre-flight checks against real AWS's documented answers (botocore's Stubber): moto has
no Service Quotas, offers every instance type everywhere and leaves a default security group
without the rules AWS gives it, so it cannot show a failure. Where moto answers as AWS does
(buckets, subnets and route tables, roles, secrets), the checks also run against it, at the
end of this file."""

import dataclasses
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from botocore.exceptions import ConnectTimeoutError, NoCredentialsError
from botocore.stub import Stubber

from centralllm import aws as aws_clients
from provisioning import preflight
from provisioning.models import Environment
from provisioning.preflight import Check
from provisioning.resources.base import ROOT, Context, names_too_long

# A region no other test uses, so the stubbed clients are ours alone.
REGION = "sa-east-1"
ACCOUNT = "123456789012"
SERVICES = ("sts", "ec2", "service-quotas", "ecr", "s3", "iam", "secretsmanager", "codebuild")
SUBNETS = {"subnet-a": f"{REGION}a", "subnet-b": f"{REGION}b"}
TOKEN_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:hf-token-AbCdEf"


class Stubbed:
    """A real-AWS context whose clients Stubbers answer, and the operations called.
    ``client_options`` (``aws.client``'s) choose the clients: code that builds its own
    context with the same options and region gets the same, stubbed, clients."""

    def __init__(self, client_options: dict | None = None, **declared: object) -> None:
        self.environment = Environment(
            name="stub",
            is_local=False,
            region=REGION,
            account_id=ACCOUNT,
            vpc_id="vpc-1",
            subnet_ids="subnet-a,subnet-b",
            security_group_id="sg-1",
            **{"suffix": "-stub", "hf_token_secret_arn": TOKEN_ARN, **declared},
        )
        self.ctx = Context(self.environment.spec(), client_options=client_options)
        self.operations: list[str] = []
        self.checks: list[Check] = []
        self.stubbers = {}
        for service in SERVICES:
            client = self.ctx.client(service)
            # Before the Stubber's before-call answer, which ends the call's events early.
            client.meta.events.register(
                "before-parameter-build", self._record, unique_id="preflight-test"
            )
            self.stubbers[service] = Stubber(client)
            self.stubbers[service].activate()

    def _record(self, model, **kwargs) -> None:
        self.operations.append(model.name)

    def run(self) -> list[Check]:
        self.checks = preflight.run_checks(self.ctx)
        return self.checks

    def __getitem__(self, service: str) -> Stubber:
        return self.stubbers[service]

    def close(self) -> None:
        for service, stubber in self.stubbers.items():
            stubber.deactivate()
            self.ctx.client(service).meta.events.unregister(
                "before-parameter-build", unique_id="preflight-test"
            )
        self.ctx.close()


@contextmanager
def stubbed_aws(**client_options: float) -> Iterator[Callable[..., Stubbed]]:
    """``make(**declared)``: a Stubbed account; on leaving, every stubbed answer was asked
    for, and nothing but reads."""
    opened: list[Stubbed] = []

    def make(**declared: object) -> Stubbed:
        opened.append(Stubbed(client_options, **declared))
        return opened[-1]

    yield make
    for stubbed in opened:
        stubbed.close()
    for stubbed in opened:
        for stubber in stubbed.stubbers.values():
            stubber.assert_no_pending_responses()
        # Every call a read: a mutating one would also have found no stubbed answer.
        assert all(
            name.startswith(("Describe", "Get", "List", "Head")) for name in stubbed.operations
        )
        # The checks turn botocore errors into failed lines, the Stubber's own among them: an
        # unexpected call or unexpected parameters would otherwise pass as a plain failure.
        assert not [c for c in stubbed.checks if "Error getting response stub" in c.reason]


@pytest.fixture
def aws():
    with stubbed_aws() as make:
        yield make


def answer_account(aws: Stubbed, account: str = ACCOUNT) -> None:
    aws["sts"].add_response(
        "get_caller_identity",
        {
            "UserId": "AIDASAMPLEUSERID",
            "Account": account,
            "Arn": f"arn:aws:iam::{account}:user/operator",
        },
        {},
    )


# What the instances' group should hold: vLLM's port from the VPC, where the NLB's addresses are.
FROM_THE_VPC = [
    {
        "IpProtocol": "tcp",
        "FromPort": 8000,
        "ToPort": 8000,
        "IpRanges": [{"CidrIp": "10.0.0.0/16", "Description": "the NLB in the VPC"}],
        "Ipv6Ranges": [],
        "PrefixListIds": [],
        "UserIdGroupPairs": [],
    }
]


# A private subnet's way out, as DescribeRouteTables reports it.
THROUGH_NAT = {
    "DestinationCidrBlock": "0.0.0.0/0",
    "NatGatewayId": "nat-0a1b2c3d4e5f60718",
    "Origin": "CreateRoute",
    "State": "active",
}


def answer_network(
    aws: Stubbed,
    subnets: dict[str, str] = SUBNETS,
    group_vpc: str = "vpc-1",
    rules: list[dict] = FROM_THE_VPC,
    public_ips: bool = False,
    default_route: dict | None = THROUGH_NAT,
    main_table: bool = False,
) -> None:
    """The VPC, subnets and group; then, when every subnet is found, their route table (see
    ``answer_routes``)."""
    ec2 = aws["ec2"]
    ec2.add_response(
        "describe_vpcs",
        {
            "Vpcs": [
                {
                    "VpcId": "vpc-1",
                    "CidrBlock": "10.0.0.0/16",
                    "CidrBlockAssociationSet": [
                        {
                            "AssociationId": "vpc-cidr-assoc-1",
                            "CidrBlock": "10.0.0.0/16",
                            "CidrBlockState": {"State": "associated"},
                        }
                    ],
                    "Ipv6CidrBlockAssociationSet": [
                        {
                            "AssociationId": "vpc-cidr-assoc-2",
                            "Ipv6CidrBlock": "2600:1f18:abcd:1200::/56",
                            "Ipv6CidrBlockState": {"State": "associated"},
                            "NetworkBorderGroup": REGION,
                            "Ipv6Pool": "Amazon",
                        }
                    ],
                    "State": "available",
                    "OwnerId": ACCOUNT,
                    "IsDefault": False,
                }
            ]
        },
        {"Filters": [{"Name": "vpc-id", "Values": ["vpc-1"]}]},
    )
    ec2.add_response(
        "describe_subnets",
        {
            "Subnets": [
                {
                    "SubnetId": subnet,
                    "VpcId": "vpc-1",
                    "AvailabilityZone": zone,
                    "CidrBlock": f"10.0.{index}.0/24",
                    "State": "available",
                    "AvailableIpAddressCount": 250,
                    "MapPublicIpOnLaunch": public_ips,
                    "OwnerId": ACCOUNT,
                }
                for index, (subnet, zone) in enumerate(subnets.items())
            ]
        },
        {"Filters": [{"Name": "subnet-id", "Values": ["subnet-a", "subnet-b"]}]},
    )
    ec2.add_response(
        "describe_security_groups",
        {
            "SecurityGroups": [
                {
                    "GroupId": "sg-1",
                    "GroupName": "central-llm",
                    "Description": "Central LLM service",
                    "VpcId": group_vpc,
                    "OwnerId": ACCOUNT,
                    "IpPermissions": rules,
                    "IpPermissionsEgress": [
                        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
                    ],
                }
            ]
        },
        {"Filters": [{"Name": "group-id", "Values": ["sg-1"]}]},
    )
    if set(subnets) == set(SUBNETS):
        answer_routes(aws, default_route, main=main_table)


def route_table(table_id: str, default_route: dict | None, *, main: bool = False) -> dict:
    """A route table as DescribeRouteTables reports it: associated with both subnets, or the
    VPC's main one."""
    if main:
        associations = [{"Main": True, "RouteTableAssociationId": "rtbassoc-main"}]
    else:
        associations = [
            {"Main": False, "RouteTableAssociationId": f"rtbassoc-{id_}", "SubnetId": id_}
            for id_ in SUBNETS
        ]
    local = {
        "DestinationCidrBlock": "10.0.0.0/16",
        "GatewayId": "local",
        "Origin": "CreateRouteTable",
        "State": "active",
    }
    return {
        "RouteTableId": table_id,
        "VpcId": "vpc-1",
        "OwnerId": ACCOUNT,
        "Associations": [
            {**association, "RouteTableId": table_id, "AssociationState": {"State": "associated"}}
            for association in associations
        ],
        "Routes": [local, *([default_route] if default_route else [])],
    }


def answer_routes(aws: Stubbed, default_route: dict | None, *, main: bool = False) -> None:
    """The subnets' own route table; or (``main``) none of their own, then the VPC's main."""
    own = [] if main else [route_table("rtb-private", default_route)]
    aws["ec2"].add_response(
        "describe_route_tables",
        {"RouteTables": own},
        {"Filters": [{"Name": "association.subnet-id", "Values": list(SUBNETS)}]},
    )
    if main:
        aws["ec2"].add_response(
            "describe_route_tables",
            {"RouteTables": [route_table("rtb-main", default_route, main=True)]},
            {
                "Filters": [
                    {"Name": "vpc-id", "Values": ["vpc-1"]},
                    {"Name": "association.main", "Values": ["true"]},
                ]
            },
        )


def answer_offerings(aws: Stubbed, offered: list[str], instance_type: str = "g5.2xlarge") -> None:
    aws["ec2"].add_response(
        "describe_instance_type_offerings",
        {
            "InstanceTypeOfferings": [
                {"InstanceType": instance_type, "LocationType": "availability-zone", "Location": z}
                for z in offered
            ]
        },
        {
            "LocationType": "availability-zone",
            "Filters": [
                {"Name": "instance-type", "Values": [instance_type]},
                {"Name": "location", "Values": sorted(set(SUBNETS.values()))},
            ],
        },
    )


def answer_quota(
    aws: Stubbed,
    *,
    vcpus: int = 8,
    quota: float = 64.0,
    instance_type: str = "g5.2xlarge",
    code: str = "L-DB2E81BA",
    applied: bool = True,
) -> None:
    """The vCPUs of the type, then the quota: the account's value, or (``applied=False``, an
    account that never had its own) the error AWS gives and then the default value."""
    aws["ec2"].add_response(
        "describe_instance_types",
        {
            "InstanceTypes": [
                {
                    "InstanceType": instance_type,
                    "VCpuInfo": {
                        "DefaultVCpus": vcpus,
                        "DefaultCores": vcpus // 2,
                        "DefaultThreadsPerCore": 2,
                    },
                }
            ]
        },
        {"InstanceTypes": [instance_type]},
    )
    asked = {"ServiceCode": "ec2", "QuotaCode": code}
    owner = ACCOUNT if applied else ""  # a default quota's ARN names no account
    if not applied:
        aws["service-quotas"].add_client_error(
            "get_service_quota",
            service_error_code="NoSuchResourceException",
            service_message="The request failed because the specified resource does not exist.",
            expected_params=asked,
        )
    aws["service-quotas"].add_response(
        "get_service_quota" if applied else "get_aws_default_service_quota",
        {
            "Quota": {
                "ServiceCode": "ec2",
                "ServiceName": "Amazon Elastic Compute Cloud (Amazon EC2)",
                "QuotaArn": f"arn:aws:servicequotas:{REGION}:{owner}:ec2/{code}",
                "QuotaCode": code,
                "QuotaName": "Running On-Demand instances",
                "Value": quota,
                "Unit": "None",
                "Adjustable": True,
                "GlobalQuota": False,
            }
        },
        asked,
    )


def answer_image(aws: Stubbed) -> None:
    repository = aws.ctx.name("EcrRepository")
    aws["ecr"].add_response(
        "describe_images",
        {
            "imageDetails": [
                {
                    "registryId": ACCOUNT,
                    "repositoryName": repository,
                    "imageDigest": "sha256:" + "0" * 64,
                    "imageTags": ["latest"],
                    "imageSizeInBytes": 9_000_000_000,
                    "imagePushedAt": datetime(2025, 1, 1, tzinfo=UTC),
                }
            ]
        },
        {"repositoryName": repository, "imageIds": [{"imageTag": "latest"}]},
    )


def answer_buckets(aws: Stubbed, audit: int = 404, raw: int = 404, region: str = REGION) -> None:
    """HeadBucket of the audit and raw buckets: 200 with the bucket's region, or the bare
    status botocore reports as the error code (404 free, 403 another account's)."""
    suffix = aws.ctx.spec.suffix
    for bucket, status in (
        (f"central-llm-audit{suffix}", audit),
        (f"central-llm-audit-raw{suffix}", raw),
    ):
        asked = {"Bucket": bucket, "ExpectedBucketOwner": ACCOUNT}
        if status == 200:
            aws["s3"].add_response("head_bucket", {"BucketRegion": region}, asked)
        else:
            aws["s3"].add_client_error(
                "head_bucket",
                service_error_code=str(status),
                service_message="Forbidden" if status == 403 else "Not Found",
                http_status_code=status,
                expected_params=asked,
            )


def answer_service_role(aws: Stubbed, *, present: bool = True) -> None:
    """GetRole of ECS's service-linked role; a fresh account has none until CreateCluster or
    CreateServiceLinkedRole makes it
    (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/using-service-linked-roles.html)."""
    asked = {"RoleName": "AWSServiceRoleForECS"}
    if not present:
        aws["iam"].add_client_error(
            "get_role",
            service_error_code="NoSuchEntity",
            service_message="The role with name AWSServiceRoleForECS cannot be found.",
            http_status_code=404,
            expected_params=asked,
        )
        return
    aws["iam"].add_response(
        "get_role",
        {
            "Role": {
                "Path": "/aws-service-role/ecs.amazonaws.com/",
                "RoleName": "AWSServiceRoleForECS",
                "RoleId": "AROASAMPLEROLEID0001",
                "Arn": f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/ecs.amazonaws.com/"
                "AWSServiceRoleForECS",
                "CreateDate": datetime(2024, 1, 1, tzinfo=UTC),
            }
        },
        asked,
    )


def answer_token(aws: Stubbed, **found: object) -> None:
    """DescribeSecret of the Hugging Face token's secret."""
    aws["secretsmanager"].add_response(
        "describe_secret",
        {"ARN": TOKEN_ARN, "Name": "hf-token", "CreatedDate": datetime(2024, 1, 1, tzinfo=UTC)}
        | found,
        {"SecretId": TOKEN_ARN},
    )


def answer_source(aws: Stubbed, *servers: str) -> None:
    """ListSourceCredentials: the account's imported credentials in the region."""
    aws["codebuild"].add_response(
        "list_source_credentials",
        {
            "sourceCredentialsInfos": [
                {
                    "arn": f"arn:aws:codebuild:{REGION}:{ACCOUNT}:token/{server.lower()}",
                    "serverType": server,
                    "authType": "PERSONAL_ACCESS_TOKEN",
                }
                for server in servers
            ]
        },
        {},
    )


def answer_account_wide(aws: Stubbed) -> None:
    """What the network tests leave as it should be: buckets free, the service-linked role,
    the token's secret, a GitHub credential in CodeBuild."""
    answer_buckets(aws)
    answer_service_role(aws)
    answer_token(aws)
    answer_source(aws, "GITHUB")


def answer_all(aws: Stubbed, **instead: Callable[[], None]) -> None:
    """Every answer of a pre-flight that passes; ``instead`` replaces a part by name, e.g.
    ``buckets=lambda: answer_buckets(stubbed, audit=403)``. Each client's answers keep the
    order its calls come in."""
    parts = {
        "account": lambda: answer_account(aws),
        "buckets": lambda: answer_buckets(aws),
        "network": lambda: answer_network(aws),
        "offerings": lambda: answer_offerings(aws, list(SUBNETS.values())),
        "quota": lambda: answer_quota(aws),
        "service_role": lambda: answer_service_role(aws),
        "token": lambda: answer_token(aws),
        "source": lambda: answer_source(aws, "GITHUB"),
        "image": lambda: answer_image(aws),
    }
    assert set(instead) <= set(parts), instead
    for answer in {**parts, **instead}.values():
        answer()


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def test_everything_in_place_passes(aws):
    stubbed = aws()
    answer_all(stubbed)

    checks = stubbed.run()

    assert [check.name for check in checks] == [
        "account",
        "name lengths",
        "bucket names",
        "network",
        "instance network path",
        "serving port",
        "availability zones",
        "vCPU quota",
        "ECS service-linked role",
        "model token",
        "build source",
        "image",
    ]
    assert [check.name for check in checks] == list(preflight.CHECKS)
    assert all(check.ok and not check.warning for check in checks), checks
    assert {check.outcome for check in checks} == {"passed"}
    assert preflight.failures(checks) == []
    # What to grant is known for every call (GetCallerIdentity needs no permission).
    assert set(stubbed.operations) - {"GetCallerIdentity"} <= set(preflight.PERMISSIONS)
    assert stubbed.operations == [
        "GetCallerIdentity",
        "HeadBucket",
        "HeadBucket",
        "DescribeVpcs",
        "DescribeSubnets",
        "DescribeSecurityGroups",
        "DescribeRouteTables",
        "DescribeInstanceTypeOfferings",
        "DescribeInstanceTypes",
        "GetServiceQuota",
        "GetRole",
        "DescribeSecret",
        "ListSourceCredentials",
        "DescribeImages",
    ]
    found = {check.name: check.reason for check in checks}
    assert found["bucket names"] == (
        "central-llm-audit-stub is free; central-llm-audit-raw-stub is free"
    )
    assert found["instance network path"] == (
        "subnet-a through NAT gateway nat-0a1b2c3d4e5f60718; "
        "subnet-b through NAT gateway nat-0a1b2c3d4e5f60718"
    )
    assert found["ECS service-linked role"] == "AWSServiceRoleForECS exists"
    assert found["model token"].startswith(
        "mistralai/Ministral-8B-Instruct-2410 is downloaded with the token in hf-token"
    )
    assert found["build source"] == (
        "CodeBuild clones https://github.com/central-llm/central-llm-service.git with the "
        "account's GITHUB PERSONAL_ACCESS_TOKEN"
    )


def test_credentials_for_another_account_fail_and_nothing_else_is_asked(aws):
    stubbed = aws()
    answer_account(stubbed, account="999999999999")

    checks = stubbed.run()

    account = checks[0]
    assert not account.ok
    assert "999999999999" in account.reason and ACCOUNT in account.reason
    assert [check.reason for check in checks[1:]] == ["waits on the account check"] * 11
    assert [check.outcome for check in checks] == ["failed"] + ["could not check"] * 11
    assert [check.name for check in checks] == list(preflight.CHECKS)
    assert preflight.failures(checks) == checks


def test_missing_credentials_are_a_failed_check_not_an_exception(aws, monkeypatch):
    stubbed = aws()

    def no_credentials(**kwargs):
        raise NoCredentialsError()

    monkeypatch.setattr(stubbed.ctx.client("sts"), "get_caller_identity", no_credentials)

    checks = stubbed.run()

    assert checks[0] == Check(
        "account",
        False,
        "the console found no AWS credentials: give it credentials for 123456789012 "
        "(AWS_PROFILE, the AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY variables, or the "
        "instance's or task's role) and restart it",
    )
    assert len(preflight.failures(checks)) == len(preflight.CHECKS)


def test_a_missing_subnet_is_named_and_the_zone_check_waits_on_it(aws):
    stubbed = aws()
    answer_account(stubbed)
    answer_account_wide(stubbed)
    answer_network(stubbed, subnets={"subnet-a": f"{REGION}a"})
    answer_quota(stubbed)
    answer_image(stubbed)

    checks = by_name(stubbed.run())

    assert not checks["network"].ok
    assert "subnet-b" in checks["network"].reason and "subnet-a" not in checks["network"].reason
    for waiting in ("availability zones", "instance network path"):
        assert not checks[waiting].ok
        assert checks[waiting].reason == "waits on the network check: the subnets are not known"
    assert "DescribeInstanceTypeOfferings" not in stubbed.operations
    assert "DescribeRouteTables" not in stubbed.operations
    assert checks["vCPU quota"].ok and checks["image"].ok


def test_a_security_group_of_another_vpc_fails(aws):
    stubbed = aws()
    answer_account(stubbed)
    answer_account_wide(stubbed)
    answer_network(stubbed, group_vpc="vpc-2")
    answer_offerings(stubbed, list(SUBNETS.values()))
    answer_quota(stubbed)
    answer_image(stubbed)

    checks = by_name(stubbed.run())

    assert checks["network"] == Check("network", False, "sg-1 is in vpc-2, not vpc-1")
    assert checks["availability zones"].ok  # the subnets' zones are known all the same
    assert checks["serving port"].reason.startswith("waits on the network check")


def test_a_zone_without_the_instance_type_is_named(aws):
    stubbed = aws()
    answer_account(stubbed)
    answer_account_wide(stubbed)
    answer_network(stubbed)
    answer_offerings(stubbed, [f"{REGION}a"])
    answer_quota(stubbed)
    answer_image(stubbed)

    zones = by_name(stubbed.run())["availability zones"]

    assert zones.ok and zones.warning
    assert f"not in {REGION}b (subnet-b)" in zones.reason


def test_no_zone_offering_the_instance_type_fails(aws):
    stubbed = aws()
    answer_account(stubbed)
    answer_account_wide(stubbed)
    answer_network(stubbed)
    answer_offerings(stubbed, [])
    answer_quota(stubbed)
    answer_image(stubbed)

    checks = stubbed.run()
    zones = by_name(checks)["availability zones"]

    assert not zones.ok
    assert f"{REGION}a (subnet-a), {REGION}b (subnet-b)" in zones.reason
    assert preflight.failures(checks) == [zones]


def test_a_quota_too_small_for_the_max_tasks_fails_with_the_figures(aws):
    """One task per instance, and scaling may run the max tasks (issue 23): four tasks need
    four instances, whatever the count the service starts with."""
    stubbed = aws(desired_count=3)
    answer_account(stubbed)
    answer_account_wide(stubbed)
    answer_network(stubbed)
    answer_offerings(stubbed, list(SUBNETS.values()))
    answer_quota(stubbed, vcpus=8, quota=16.0)
    answer_image(stubbed)

    checks = stubbed.run()
    quota = by_name(checks)["vCPU quota"]

    assert not quota.ok
    assert quota.reason == (
        "needs 32 vCPUs: 4 instances of g5.2xlarge at the max tasks; quota is 16 "
        "(Running On-Demand G and VT instances, L-DB2E81BA): scaling could not reach them; "
        "lower the max tasks or request an increase in Service Quotas"
    )
    assert preflight.failures(checks) == [quota]


def test_a_quota_that_holds_the_max_tasks_but_not_a_rollout_there_warns(aws):
    stubbed = aws()
    answer_account(stubbed)
    answer_account_wide(stubbed)
    answer_network(stubbed)
    answer_offerings(stubbed, list(SUBNETS.values()))
    answer_quota(stubbed, vcpus=8, quota=48.0)
    answer_image(stubbed)

    quota = by_name(stubbed.run())["vCPU quota"]

    assert quota.ok and quota.warning
    assert "needs 32 vCPUs: 4 instances of g5.2xlarge at the max tasks; quota is 48" in quota.reason
    assert "starts as many again (64 vCPUs)" in quota.reason


@pytest.mark.parametrize(
    ("instance_type", "code"),
    [("p4d.24xlarge", "L-417A185B"), ("vt1.3xlarge", "L-DB2E81BA"), ("m5.xlarge", "L-1216C47A")],
)
def test_each_family_is_measured_against_its_own_quota(aws, instance_type, code):
    stubbed = aws(instance_type=instance_type, max_tasks=1)
    answer_account(stubbed)
    answer_account_wide(stubbed)
    answer_network(stubbed)
    answer_offerings(stubbed, list(SUBNETS.values()), instance_type)
    answer_quota(stubbed, vcpus=96, quota=96.0, instance_type=instance_type, code=code)
    answer_image(stubbed)

    quota = by_name(stubbed.run())["vCPU quota"]

    assert quota.ok and f"needs 96 vCPUs: 1 instance of {instance_type}" in quota.reason


def test_an_account_without_its_own_quota_value_gets_the_default(aws):
    stubbed = aws()
    answer_account(stubbed)
    answer_account_wide(stubbed)
    answer_network(stubbed)
    answer_offerings(stubbed, list(SUBNETS.values()))
    answer_quota(stubbed, quota=0.0, applied=False)
    answer_image(stubbed)

    quota = by_name(stubbed.run())["vCPU quota"]

    assert not quota.ok
    assert "needs 32 vCPUs: 4 instances of g5.2xlarge at the max tasks; quota is 0" in quota.reason
    assert "GetAWSDefaultServiceQuota" in stubbed.operations


@pytest.mark.parametrize(
    ("code", "message", "said"),
    [
        ("RepositoryNotFoundException", "The repository does not exist", "no repository"),
        ("ImageNotFoundException", "The image requested does not exist", "no image"),
    ],
)
def test_a_missing_image_is_a_warning_not_a_failure(aws, code, message, said):
    stubbed = aws()
    answer_account(stubbed)
    answer_account_wide(stubbed)
    answer_network(stubbed)
    answer_offerings(stubbed, list(SUBNETS.values()))
    answer_quota(stubbed)
    stubbed["ecr"].add_client_error(
        "describe_images", service_error_code=code, service_message=message
    )

    checks = stubbed.run()
    image = by_name(checks)["image"]

    assert image.ok and image.warning
    assert image.reason.startswith(said)
    assert "never rolled out: its first rollout builds the image" in image.reason
    assert preflight.failures(checks) == []


def test_access_denied_fails_its_own_check_and_the_others_still_run(aws):
    stubbed = aws()
    answer_account(stubbed)
    answer_account_wide(stubbed)
    answer_network(stubbed)
    answer_offerings(stubbed, list(SUBNETS.values()))
    answer_quota(stubbed)
    stubbed["ecr"].add_client_error(
        "describe_images",
        service_error_code="AccessDeniedException",
        service_message="User is not authorized to perform: ecr:DescribeImages",
    )

    checks = stubbed.run()

    assert preflight.failures(checks) == [
        Check(
            "image",
            False,
            "AccessDeniedException: User is not authorized to perform: ecr:DescribeImages: "
            "allow ecr:DescribeImages to the console's credentials",
            unchecked=True,
        )
    ]
    assert len(checks) == len(preflight.CHECKS)


def test_access_denied_on_the_network_fails_it_and_the_zone_check_waits(aws):
    stubbed = aws()
    answer_account(stubbed)
    answer_account_wide(stubbed)
    stubbed["ec2"].add_client_error(
        "describe_vpcs",
        service_error_code="UnauthorizedOperation",
        service_message="You are not authorized to perform this operation.",
    )
    answer_quota(stubbed)
    answer_image(stubbed)

    checks = by_name(stubbed.run())

    assert checks["network"].reason == (
        "UnauthorizedOperation: You are not authorized to perform this operation: allow "
        "ec2:DescribeVpcs to the console's credentials"
    )
    assert checks["network"].outcome == "could not check"
    assert not checks["availability zones"].ok
    assert not checks["serving port"].ok
    assert not checks["instance network path"].ok
    assert checks["vCPU quota"].ok and checks["image"].ok


def test_an_answer_without_an_aws_error_is_named_by_its_status_not_printed(aws):
    """Botocore makes the HTTP status the error code when the body holds no AWS error."""
    stubbed = aws()
    answer_all(stubbed, image=lambda: None)
    stubbed["ecr"].add_client_error(
        "describe_images",
        service_error_code="502",
        service_message="<html><body><h1>502 Bad Gateway</h1></body></html>",
        http_status_code=502,
    )

    image = stubbed.run()[-1]

    assert image == Check(
        "image", False, "DescribeImages answered HTTP 502: check again", unchecked=True
    )


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("InvalidClientTokenId", "The security token included in the request is invalid."),
        ("ExpiredToken", "The security token included in the request is expired"),
    ],
)
def test_credentials_sts_refuses_fail_the_account_check_saying_what_to_do(aws, code, message):
    """GetCallerIdentity needs no permission, and an explicit deny does not stop it
    (https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html): what
    STS refuses, with a 403, is the credentials themselves: a key that does not exist, a
    session that expired (https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html)."""
    stubbed = aws()
    stubbed["sts"].add_client_error(
        "get_caller_identity",
        service_error_code=code,
        service_message=message,
        http_status_code=403,
    )

    checks = stubbed.run()

    assert checks[0] == Check(
        "account",
        False,
        f"AWS refused the console's credentials ({code}: {message}): renew them, or give the "
        f"console valid credentials for {ACCOUNT}",
    )
    assert [check.outcome for check in checks] == ["failed"] + ["could not check"] * 11
    assert stubbed.operations == ["GetCallerIdentity"]


@contextmanager
def no_answer(stubbed: Stubbed, service: str, operation: str) -> Iterator[None]:
    """``operation`` hangs, as against an endpoint that does not answer, until the block
    ends; then it fails as the client's own connect timeout would."""
    released = threading.Event()

    def hang(**kwargs) -> None:
        released.wait(30)
        raise ConnectTimeoutError(endpoint_url=f"https://{service}.{REGION}.amazonaws.com/")

    # The Stubber would answer, or refuse a call it has no answer for, before any hook of ours.
    stubbed[service].deactivate()
    events, event = stubbed.ctx.client(service).meta.events, f"before-call.{service}.{operation}"
    events.register_first(event, hang, unique_id="no-answer")  # before any request is sent
    try:
        yield
    finally:
        released.set()
        events.unregister(event, unique_id="no-answer")


def test_a_check_without_an_answer_in_time_is_left_unchecked_and_the_next_ones_run(aws):
    """Asked from a page, a check that AWS does not answer holds it ``seconds_each`` only."""
    stubbed = aws()
    answer_all(stubbed, service_role=lambda: None)

    with no_answer(stubbed, "iam", "GetRole"):
        stubbed.checks = preflight.run_checks(stubbed.ctx, seconds_each=1, seconds_in_all=5)

    checks = by_name(stubbed.checks)
    role = checks.pop("ECS service-linked role")
    assert role == Check(
        "ECS service-linked role",
        False,
        "AWS did not answer within 1.0 s: check again",
        unchecked=True,
    )
    assert {check.outcome for check in checks.values()} == {"passed"}


def test_no_check_starts_once_the_time_in_all_has_passed(aws):
    stubbed = aws()
    answer_all(
        stubbed,
        service_role=lambda: None,
        token=lambda: None,
        source=lambda: None,
        image=lambda: None,
    )

    with no_answer(stubbed, "iam", "GetRole"):
        stubbed.checks = preflight.run_checks(stubbed.ctx, seconds_each=3, seconds_in_all=2)

    checks = stubbed.checks
    assert [check.outcome for check in checks[:8]] == ["passed"] * 8
    assert checks[8].reason.startswith("AWS did not answer within ")
    assert [check.reason for check in checks[9:]] == [
        "not started: the checks stop after 2 s; check again"
    ] * 3
    assert {check.outcome for check in checks[8:]} == {"could not check"}


def test_a_local_environment_is_not_checked():
    spec = Environment(name="stub", suffix="-stub", is_local=True, region=REGION).spec()
    ctx = Context(spec)
    try:
        assert preflight.run_checks(ctx) == []
    finally:
        ctx.close()


def rule(*, ports: tuple[int, int] | None = (8000, 8000), **sources: list[dict]) -> dict:
    """An inbound rule as DescribeSecurityGroups reports it (``ports=None``: all traffic)."""
    shape = {"IpRanges": [], "Ipv6Ranges": [], "PrefixListIds": [], "UserIdGroupPairs": []}
    if ports is None:
        return {"IpProtocol": "-1", **shape, **sources}
    return {"IpProtocol": "tcp", "FromPort": ports[0], "ToPort": ports[1], **shape, **sources}


def serving_port(stubbed: Stubbed, rules: list[dict]) -> Check:
    answer_account(stubbed)
    answer_account_wide(stubbed)
    answer_network(stubbed, rules=rules)
    answer_offerings(stubbed, list(SUBNETS.values()))
    answer_quota(stubbed)
    answer_image(stubbed)
    checks = stubbed.run()
    assert [check.name for check in preflight.failures(checks)] in ([], ["serving port"])
    return by_name(checks)["serving port"]


def test_the_serving_port_admitted_from_the_vpc_alone_passes(aws):
    check = serving_port(aws(), FROM_THE_VPC)

    assert check == Check("serving port", True, "sg-1 admits port 8000 from 10.0.0.0/16 only")


@pytest.mark.parametrize(
    ("opened", "named"),
    [
        (rule(IpRanges=[{"CidrIp": "0.0.0.0/0"}]), "tcp 8000 from 0.0.0.0/0"),
        (rule(Ipv6Ranges=[{"CidrIpv6": "::/0"}]), "tcp 8000 from ::/0"),
        (rule(IpRanges=[{"CidrIp": "192.168.0.0/16"}]), "tcp 8000 from 192.168.0.0/16"),
        # Wider than the VPC: it holds addresses outside it.
        (rule(IpRanges=[{"CidrIp": "10.0.0.0/8"}]), "tcp 8000 from 10.0.0.0/8"),
        (rule(ports=(0, 65535), IpRanges=[{"CidrIp": "0.0.0.0/0"}]), "tcp 0-65535 from 0.0.0.0/0"),
        (
            rule(ports=None, IpRanges=[{"CidrIp": "203.0.113.7/32"}]),
            "all traffic from 203.0.113.7/32",
        ),
        (
            rule(PrefixListIds=[{"PrefixListId": "pl-63a5400a"}]),
            "tcp 8000 from prefix list pl-63a5400a (not checked)",
        ),
        (
            rule(
                UserIdGroupPairs=[
                    {
                        "GroupId": "sg-peer",
                        "UserId": "210987654321",
                        "VpcId": "vpc-peer",
                        "VpcPeeringConnectionId": "pcx-1",
                        "PeeringStatus": "active",
                    }
                ]
            ),
            "tcp 8000 from security group sg-peer (another VPC or account)",
        ),
    ],
)
def test_the_serving_port_open_outside_the_vpc_fails_and_names_the_rule(aws, opened, named):
    check = serving_port(aws(), [*FROM_THE_VPC, opened])

    assert not check.ok
    assert check.reason.startswith(
        "sg-1 admits port 8000 from outside vpc-1 (10.0.0.0/16, 2600:1f18:abcd:1200::/56): "
        f"remove the inbound rule {named}."
    )
    assert "trusts the request id and API key headers" in check.reason


def test_other_ports_open_to_the_world_and_groups_of_the_vpc_are_not_a_failure(aws):
    own_group = rule(ports=None, UserIdGroupPairs=[{"GroupId": "sg-1", "UserId": ACCOUNT}])
    https = rule(ports=(443, 443), IpRanges=[{"CidrIp": "0.0.0.0/0"}])
    subnet_only = rule(IpRanges=[{"CidrIp": "10.0.0.0/23"}])  # both subnets, nothing more

    check = serving_port(aws(), [own_group, https, subnet_only])

    assert check.ok and check.reason == "sg-1 admits port 8000 from 10.0.0.0/23 only"


@pytest.mark.parametrize(
    ("rules", "unreached"),
    [
        ([], "10.0.0.0/24, 10.0.1.0/24"),
        # The NLB has no security group: a group reference never admits its traffic.
        (
            [rule(UserIdGroupPairs=[{"GroupId": "sg-1", "UserId": ACCOUNT}])],
            "10.0.0.0/24, 10.0.1.0/24",
        ),
        ([rule(IpRanges=[{"CidrIp": "10.0.0.0/24"}])], "10.0.1.0/24"),
    ],
)
def test_a_serving_port_the_load_balancer_cannot_reach_fails(aws, rules, unreached):
    check = serving_port(aws(), rules)

    assert check == Check(
        "serving port",
        False,
        f"sg-1 does not admit tcp 8000 from the load balancer's subnets ({unreached}): add an "
        "inbound rule from 10.0.0.0/16, or the load balancer cannot reach vLLM",
    )


def test_the_serving_port_is_the_task_definitions_host_port():
    task = json.loads((ROOT / "inference/ecs-task-definition.json").read_text())
    [mapping] = task["containerDefinitions"][0]["portMappings"]
    assert mapping["hostPort"] == mapping["containerPort"] == preflight.VLLM_PORT


# Bucket names ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("suffix", "proposed"),
    [
        ("", "-789012"),  # the guide's production names
        ("-stub", "-stub-789012"),
        ("-abcdefghijk", "-789012"),  # the current suffix and the digits would be too long
    ],
)
def test_a_bucket_name_another_account_owns_fails_and_a_suffix_is_proposed(aws, suffix, proposed):
    """Bucket names are unique across all accounts of a partition
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html); HeadBucket
    answers a bare 403 for a bucket one may not read
    (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadBucket.html): issue 19, item 4."""
    stubbed = aws(suffix=suffix)
    answer_all(stubbed, buckets=lambda: answer_buckets(stubbed, audit=403))

    checks = stubbed.run()

    assert preflight.failures(checks) == [
        Check(
            "bucket names",
            False,
            f"central-llm-audit{suffix} is owned by another account (S3 bucket names are "
            f"global): choose a name suffix, e.g. {proposed}",
        )
    ]
    assert names_too_long(proposed) == []


def test_our_own_buckets_pass(aws):
    """HeadBucket answers 200 with the bucket's region for a bucket of the expected owner
    (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadBucket.html)."""
    stubbed = aws()
    answer_all(stubbed, buckets=lambda: answer_buckets(stubbed, audit=200, raw=200))

    assert by_name(stubbed.run())["bucket names"] == Check(
        "bucket names",
        True,
        "central-llm-audit-stub exists in this account; "
        "central-llm-audit-raw-stub exists in this account",
    )


def test_our_bucket_in_another_region_fails(aws):
    """HeadBucket reports the bucket's region (BucketRegion, x-amz-bucket-region); S3 event
    notifications reach a Lambda function of the bucket's own region only
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/how-to-enable-disable-notification-intro.html)."""
    stubbed = aws()
    answer_all(stubbed, buckets=lambda: answer_buckets(stubbed, 200, 200, region="us-east-1"))

    buckets = by_name(stubbed.run())["bucket names"]

    assert not buckets.ok
    assert buckets.reason == (
        f"central-llm-audit-stub is this account's, but in us-east-1, not {REGION}; "
        f"central-llm-audit-raw-stub is this account's, but in us-east-1, not {REGION}: "
        "choose a name suffix, e.g. -stub-789012"
    )


# Name lengths ---------------------------------------------------------------------------
def test_a_suffix_saved_before_the_limit_was_checked_fails_the_name_lengths(aws):
    """ELB names stop at 32 characters (https://docs.aws.amazon.com/elasticloadbalancing/
    latest/APIReference/API_CreateLoadBalancer.html): issue 19, item 11. The form refuses such
    a suffix now (test_names.py); an environment saved before is caught here."""
    stubbed = aws()
    long_suffix = "-" + "x" * 19
    stubbed.ctx.spec = dataclasses.replace(stubbed.ctx.spec, suffix=long_suffix)
    answer_all(stubbed)

    checks = stubbed.run()

    assert preflight.failures(checks) == [
        Check(
            "name lengths",
            False,
            f"load balancer name central-llm-nlb{long_suffix} is 35 characters; ELB allows 32; "
            f"target group name central-llm-vllm{long_suffix} is 36 characters; ELB allows 32: "
            "choose a suffix of at most 16 characters",
        )
    ]


# ECS service-linked role ----------------------------------------------------------------
def test_a_fresh_account_without_the_ecs_service_linked_role_is_a_warning(aws):
    """CreateCluster creates the role, but the capacity provider comes first: "ECS Service
    Linked Role does not exist" (terraform-aws-modules/terraform-aws-ecs#26; issue 19, item
    2; https://docs.aws.amazon.com/AmazonECS/latest/developerguide/using-service-linked-roles.html).
    """
    stubbed = aws()
    answer_all(stubbed, service_role=lambda: answer_service_role(stubbed, present=False))

    checks = stubbed.run()

    assert preflight.failures(checks) == []
    assert by_name(checks)["ECS service-linked role"] == Check(
        "ECS service-linked role",
        True,
        "AWSServiceRoleForECS not yet created in this account: apply creates it first "
        "(iam:CreateServiceLinkedRole)",
        warning=True,
    )


# Model token ----------------------------------------------------------------------------
def test_the_gated_model_without_a_token_fails_without_asking_aws(aws):
    """Ministral-8B is gated on Hugging Face: downloads need a token of an account that
    accepted its conditions (https://huggingface.co/docs/hub/models-gated)."""
    stubbed = aws(hf_token_secret_arn="")
    answer_all(stubbed, token=lambda: None)

    checks = stubbed.run()

    assert preflight.failures(checks) == [
        Check(
            "model token",
            False,
            "mistralai/Ministral-8B-Instruct-2410 is a gated model: vLLM cannot download it "
            "without a Hugging Face token; store it in Secrets Manager and set the "
            "environment's token secret",
        )
    ]
    assert "DescribeSecret" not in stubbed.operations


def test_a_public_model_needs_no_token(aws):
    stubbed = aws(hf_token_secret_arn="", model_id="Qwen/Qwen2.5-0.5B-Instruct")
    answer_all(stubbed, token=lambda: None)

    token = by_name(stubbed.run())["model token"]

    assert token == Check(
        "model token", True, "Qwen/Qwen2.5-0.5B-Instruct is downloaded without a token"
    )


def test_a_token_secret_that_is_missing_fails_naming_it(aws):
    """DescribeSecret answers ResourceNotFoundException for an unknown secret
    (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_DescribeSecret.html)."""
    stubbed = aws()

    def missing() -> None:
        stubbed["secretsmanager"].add_client_error(
            "describe_secret",
            service_error_code="ResourceNotFoundException",
            service_message="Secrets Manager can't find the specified secret.",
            http_status_code=400,
            expected_params={"SecretId": TOKEN_ARN},
        )

    answer_all(stubbed, token=missing)

    assert by_name(stubbed.run())["model token"] == Check(
        "model token",
        False,
        f"no secret {TOKEN_ARN} in Secrets Manager ({REGION}): store the Hugging Face token "
        "there, or correct the environment's token secret",
    )


def test_a_token_secret_scheduled_for_deletion_fails(aws):
    """DescribeSecret reports a secret scheduled for deletion with its DeletedDate; it cannot
    be read until restored
    (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_DescribeSecret.html)."""
    stubbed = aws()
    deleted = datetime(2026, 3, 1, tzinfo=UTC)
    answer_all(stubbed, token=lambda: answer_token(stubbed, DeletedDate=deleted))

    assert by_name(stubbed.run())["model token"] == Check(
        "model token",
        False,
        f"secret {TOKEN_ARN} is scheduled for deletion: restore it, or store the token in another",
    )


# Build source ---------------------------------------------------------------------------
@pytest.mark.parametrize("servers", [(), ("BITBUCKET",)])
def test_no_github_credential_in_codebuild_is_a_warning(aws, servers):
    """CodeBuild reaches a private GitHub repository only with a credential imported for the
    region (https://docs.aws.amazon.com/codebuild/latest/userguide/access-tokens-github.html);
    a public one builds without."""
    stubbed = aws()
    answer_all(stubbed, source=lambda: answer_source(stubbed, *servers))

    checks = stubbed.run()

    assert preflight.failures(checks) == []
    source = by_name(checks)["build source"]
    assert source.ok and source.warning
    assert source.reason.startswith(
        f"CodeBuild has no GitHub credential in {REGION}: "
        "https://github.com/central-llm/central-llm-service.git builds only if it is public"
    )


def test_a_github_enterprise_credential_is_enough(aws):
    """A credential of server type GITHUB or GITHUB_ENTERPRISE
    (https://docs.aws.amazon.com/codebuild/latest/APIReference/API_SourceCredentialsInfo.html)."""
    stubbed = aws()
    answer_all(stubbed, source=lambda: answer_source(stubbed, "GITHUB_ENTERPRISE"))

    source = by_name(stubbed.run())["build source"]

    assert source.ok and not source.warning


def test_a_repository_off_github_is_a_warning(aws):
    """The build project's source type is GITHUB (provisioning/resources/codebuild.py), which
    reads github.com only (https://docs.aws.amazon.com/codebuild/latest/APIReference/API_ProjectSource.html)."""
    stubbed = aws(source_repository="https://gitlab.com/central-llm/central-llm-service.git")
    answer_all(stubbed, source=lambda: None)

    source = by_name(stubbed.run())["build source"]

    assert source.ok and source.warning
    assert "is not on github.com, but the build project's source type is GITHUB" in source.reason
    assert "ListSourceCredentials" not in stubbed.operations


# Instance network path ------------------------------------------------------------------
INTERNET_GATEWAY = {
    "DestinationCidrBlock": "0.0.0.0/0",
    "GatewayId": "igw-0a1b2c3d",
    "Origin": "CreateRoute",
    "State": "active",
}


def network_path(stubbed: Stubbed, *, public_ips: bool, route: dict | None, main: bool) -> Check:
    """The check with ``route`` as the subnets' default route, in a table of their own or
    (``main``) in the VPC's main table."""
    answer_all(
        stubbed,
        network=lambda: answer_network(
            stubbed, public_ips=public_ips, default_route=route, main_table=main
        ),
    )
    return by_name(stubbed.run())["instance network path"]


@pytest.mark.parametrize("main", [False, True])
def test_subnets_with_a_nat_gateway_route_pass(aws, main):
    """A private subnet reaches the internet through a NAT gateway route
    (https://docs.aws.amazon.com/vpc/latest/userguide/vpc-nat-gateway.html); a subnet with no
    table of its own uses the VPC's main route table
    (https://docs.aws.amazon.com/vpc/latest/userguide/RouteTables.html)."""
    check = network_path(aws(), public_ips=False, route=THROUGH_NAT, main=main)

    assert check.ok and not check.warning
    assert check.reason.startswith("subnet-a through NAT gateway nat-0a1b2c3d4e5f60718")


def test_public_subnets_with_an_internet_gateway_route_pass(aws):
    """An internet gateway route and public IPs on launch
    (https://docs.aws.amazon.com/vpc/latest/userguide/VPC_Internet_Gateway.html)."""
    check = network_path(aws(), public_ips=True, route=INTERNET_GATEWAY, main=True)

    assert check == Check(
        "instance network path",
        True,
        "subnet-a through internet gateway igw-0a1b2c3d with public IPs; "
        "subnet-b through internet gateway igw-0a1b2c3d with public IPs",
    )


@pytest.mark.parametrize(
    ("public_ips", "route", "main", "found"),
    [
        # Private subnets of a VPC whose main table has only the local route (or VPC
        # endpoints, which never reach Hugging Face).
        (False, None, True, "subnet-a (rtb-main): no default route"),
        (
            False,
            INTERNET_GATEWAY,
            False,
            "subnet-a (rtb-private): internet gateway igw-0a1b2c3d, but no public IPs on launch",
        ),
        # The NAT gateway was deleted: AWS keeps the route as a blackhole.
        (
            False,
            {**THROUGH_NAT, "State": "blackhole"},
            False,
            "subnet-a (rtb-private): no default route",
        ),
    ],
)
def test_subnets_without_a_way_out_fail_and_name_the_fix(aws, public_ips, route, main, found):
    """The instances must reach ECS, ECR (image layers in S3), CloudWatch Logs and Hugging
    Face: a private subnet needs a NAT gateway, a public one an internet gateway and public
    IPs (https://docs.aws.amazon.com/vpc/latest/userguide/vpc-nat-gateway.html,
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/launch_container_instance.html)."""
    check = network_path(aws(), public_ips=public_ips, route=route, main=main)

    assert not check.ok
    assert check.reason.startswith(f"instances in {found}; subnet-b (")
    assert check.reason.endswith(
        "get no route to ECS, ECR or Hugging Face (no NAT gateway, no internet gateway with "
        "public IPs): add a NAT gateway route (0.0.0.0/0) to the subnet's route table; VPC "
        "endpoints alone do not reach Hugging Face"
    )


def test_a_transit_gateway_route_is_a_warning_not_checked_beyond(aws):
    """A transit gateway may lead to a central egress VPC, which this account cannot see
    (https://docs.aws.amazon.com/vpc/latest/tgw/what-is-transit-gateway.html)."""
    route = {
        "DestinationCidrBlock": "0.0.0.0/0",
        "TransitGatewayId": "tgw-0a1b2c3d4e5f60718",
        "Origin": "CreateRoute",
        "State": "active",
    }

    check = network_path(aws(), public_ips=False, route=route, main=False)

    assert check.ok and check.warning
    assert check.reason.startswith(
        "subnet-a through tgw-0a1b2c3d4e5f60718; subnet-b through tgw-0a1b2c3d4e5f60718: "
        "not checked beyond it"
    )


# Against the moto server ------------------------------------------------------------------
MOTO_REGION = "ap-southeast-3"  # no other test file uses it: clients are shared process-wide
MOTO_SERVICES = ("sts", "s3", "ec2", "iam", "secretsmanager", "ecr")


class MotoAccount:
    """A fresh account of its own on the moto server (moto answers as the account named in
    the x-moto-account-id header): no bucket, no service-linked role, nothing but what the
    test makes, whatever other tests did. CodeBuild's source credentials and Service Quotas,
    which moto lacks, are answered by Stubbers as AWS would."""

    def __init__(self, **client_options: float) -> None:
        """``client_options`` (``aws.client``'s) choose the clients answered as this account."""
        self.id = str(uuid.uuid4().int)[:12]
        self.client_options = client_options

        def client(name: str):
            return aws_clients.client(name, region_name=MOTO_REGION, **client_options)

        self.clients = {name: client(name) for name in MOTO_SERVICES}
        for each in self.clients.values():
            each.meta.events.register("before-sign", self._as_account, unique_id="preflight")
        self.codebuild = Stubber(client("codebuild"))
        self.quotas = Stubber(client("service-quotas"))
        self.codebuild.activate()
        self.quotas.activate()

    def _as_account(self, request, **kwargs) -> None:
        request.headers["x-moto-account-id"] = self.id

    def close(self) -> None:
        self.codebuild.deactivate()
        self.quotas.deactivate()
        for client in self.clients.values():
            client.meta.events.unregister("before-sign", unique_id="preflight")

    def environment(self, **declared: object) -> Context:
        return Context(self.declare(**declared).spec(), client_options=self.client_options)

    def declare(self, *, public_ips: bool = False, **declared: object) -> Environment:
        """A real-AWS environment in this account, not saved: its own VPC (whose main route
        table has only the local route, as AWS makes it), two subnets, the instances' group
        with vLLM's port open to the VPC, and the model token's secret."""
        ec2 = self.clients["ec2"]
        vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
        subnets = []
        for index, zone in enumerate("ab"):
            subnet = ec2.create_subnet(
                VpcId=vpc, CidrBlock=f"10.1.{index}.0/24", AvailabilityZone=f"{MOTO_REGION}{zone}"
            )["Subnet"]["SubnetId"]
            ec2.modify_subnet_attribute(SubnetId=subnet, MapPublicIpOnLaunch={"Value": public_ips})
            subnets.append(subnet)
        group = ec2.create_security_group(
            GroupName="central-llm", Description="Central LLM service", VpcId=vpc
        )["GroupId"]
        ec2.authorize_security_group_ingress(
            GroupId=group,
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": 8000,
                    "ToPort": 8000,
                    "IpRanges": [{"CidrIp": "10.1.0.0/16"}],
                }
            ],
        )
        suffix = f"-m{uuid.uuid4().hex[:8]}"
        token = self.clients["secretsmanager"].create_secret(
            Name=f"hf-token{suffix}", SecretString="hf_not_a_real_token"
        )["ARN"]
        return Environment(
            name="moto",
            suffix=suffix,
            is_local=False,
            region=MOTO_REGION,
            account_id=self.id,
            vpc_id=vpc,
            subnet_ids=",".join(subnets),
            security_group_id=group,
            **{"hf_token_secret_arn": token, **declared},
        )

    def answer_what_moto_lacks(self) -> None:
        """CodeBuild's source credentials (none) and the GPU quota (64 vCPUs), as AWS would."""
        self.codebuild.add_response("list_source_credentials", {"sourceCredentialsInfos": []})
        self.quotas.add_response(
            "get_service_quota",
            {"Quota": {"ServiceCode": "ec2", "QuotaCode": "L-DB2E81BA", "Value": 64.0}},
        )

    def run(self, ctx: Context) -> dict[str, Check]:
        self.answer_what_moto_lacks()
        return by_name(preflight.run_checks(ctx))


@contextmanager
def moto_account_of(**client_options: float) -> Iterator[MotoAccount]:
    """A fresh MotoAccount; on leaving, every stubbed answer was asked for."""
    account = MotoAccount(**client_options)
    yield account
    account.close()
    account.codebuild.assert_no_pending_responses()
    account.quotas.assert_no_pending_responses()


@pytest.fixture
def moto_account():
    with moto_account_of() as account:
        yield account


def test_on_moto_a_fresh_account_warns_of_the_role_and_fails_a_subnet_without_a_way_out(
    moto_account,
):
    """A new VPC's main route table has only the local route, and a fresh account has no ECS
    service-linked role (https://docs.aws.amazon.com/vpc/latest/userguide/RouteTables.html,
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/using-service-linked-roles.html)."""
    ctx = moto_account.environment()
    subnets = ctx.spec.subnet_ids

    checks = moto_account.run(ctx)

    assert checks["account"].ok, checks["account"]
    suffix = ctx.spec.suffix
    assert checks["bucket names"] == Check(
        "bucket names",
        True,
        f"central-llm-audit{suffix} is free; central-llm-audit-raw{suffix} is free",
    )
    assert checks["ECS service-linked role"].ok and checks["ECS service-linked role"].warning
    path = checks["instance network path"]
    assert not path.ok
    assert path.reason.startswith(f"instances in {subnets[0]} (rtb-")
    assert f"; {subnets[1]} (rtb-" in path.reason and ": no default route" in path.reason
    assert checks["model token"].ok, checks["model token"]
    assert checks["vCPU quota"].reason.startswith(
        "needs 32 vCPUs: 4 instances of g5.2xlarge at the max tasks; quota is 64"
    )
    ctx.close()


def test_on_moto_our_bucket_the_role_and_a_nat_route_pass(moto_account):
    """Moto answers HeadBucket, GetRole and DescribeRouteTables as AWS documents them
    (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadBucket.html,
    https://docs.aws.amazon.com/vpc/latest/userguide/vpc-nat-gateway.html)."""
    ctx = moto_account.environment()
    ec2, suffix = moto_account.clients["ec2"], ctx.spec.suffix
    moto_account.clients["s3"].create_bucket(
        Bucket=f"central-llm-audit{suffix}",
        CreateBucketConfiguration={"LocationConstraint": MOTO_REGION},
    )
    # As AWS names it (moto's CreateServiceLinkedRole names it AWSServiceRoleForecs).
    moto_account.clients["iam"].create_role(
        RoleName="AWSServiceRoleForECS",
        Path="/aws-service-role/ecs.amazonaws.com/",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "ecs.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )
    # A public subnet holds the NAT gateway; the instances' subnets route through it.
    public = ec2.create_subnet(VpcId=ctx.spec.vpc_id, CidrBlock="10.1.9.0/24")["Subnet"]
    address = ec2.allocate_address(Domain="vpc")["AllocationId"]
    nat = ec2.create_nat_gateway(SubnetId=public["SubnetId"], AllocationId=address)
    nat_id = nat["NatGateway"]["NatGatewayId"]
    table = ec2.create_route_table(VpcId=ctx.spec.vpc_id)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat_id)
    for subnet in ctx.spec.subnet_ids:
        ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)

    checks = moto_account.run(ctx)

    assert checks["bucket names"] == Check(
        "bucket names",
        True,
        f"central-llm-audit{suffix} exists in this account; central-llm-audit-raw{suffix} is free",
    )
    assert checks["ECS service-linked role"] == Check(
        "ECS service-linked role", True, "AWSServiceRoleForECS exists"
    )
    first, second = ctx.spec.subnet_ids
    assert checks["instance network path"] == Check(
        "instance network path",
        True,
        f"{first} through NAT gateway {nat_id}; {second} through NAT gateway {nat_id}",
    )
    ctx.close()


def test_on_moto_public_subnets_need_public_ips_beside_the_internet_gateway(moto_account):
    """A subnet with an internet gateway route reaches the internet only from instances with
    a public IP (https://docs.aws.amazon.com/vpc/latest/userguide/VPC_Internet_Gateway.html)."""
    public = moto_account.environment(public_ips=True)
    private = moto_account.environment(public_ips=False)
    ec2 = moto_account.clients["ec2"]
    for ctx in (public, private):
        gateway = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=ctx.spec.vpc_id)
        main = ec2.describe_route_tables(
            Filters=[
                {"Name": "vpc-id", "Values": [ctx.spec.vpc_id]},
                {"Name": "association.main", "Values": ["true"]},
            ]
        )["RouteTables"][0]["RouteTableId"]
        ec2.create_route(RouteTableId=main, DestinationCidrBlock="0.0.0.0/0", GatewayId=gateway)

    through_gateway = moto_account.run(public)["instance network path"]
    without_ips = moto_account.run(private)["instance network path"]

    assert through_gateway.ok and "through internet gateway igw-" in through_gateway.reason
    assert not without_ips.ok
    assert "but no public IPs on launch" in without_ips.reason
    public.close()
    private.close()


def test_on_moto_a_token_secret_that_does_not_exist_fails_naming_it(moto_account):
    """DescribeSecret: ResourceNotFoundException
    (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_DescribeSecret.html)."""
    arn = f"arn:aws:secretsmanager:{MOTO_REGION}:{moto_account.id}:secret:hf-gone-AbCdEf"
    ctx = moto_account.environment(hf_token_secret_arn=arn)

    token = moto_account.run(ctx)["model token"]

    assert token == Check(
        "model token",
        False,
        f"no secret {arn} in Secrets Manager ({MOTO_REGION}): store the Hugging Face token "
        "there, or correct the environment's token secret",
    )
    ctx.close()
