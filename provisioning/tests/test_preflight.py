"""The pre-flight checks against real AWS's documented answers (botocore's Stubber): moto has
no Service Quotas, offers every instance type everywhere and leaves a default security group
without the rules AWS gives it, so it cannot show a failure."""

import json
from datetime import UTC, datetime

import pytest
from botocore.exceptions import NoCredentialsError
from botocore.stub import Stubber

from provisioning import preflight
from provisioning.models import Environment
from provisioning.preflight import Check
from provisioning.resources.base import ROOT, Context

# A region no other test uses, so the stubbed clients are ours alone.
REGION = "sa-east-1"
ACCOUNT = "123456789012"
SERVICES = ("sts", "ec2", "service-quotas", "ecr")
REPOSITORY = "mistral8b-vllm-stub"
SUBNETS = {"subnet-a": f"{REGION}a", "subnet-b": f"{REGION}b"}


class Stubbed:
    """A real-AWS context whose four clients Stubbers answer, and the operations called."""

    def __init__(self, **declared: object) -> None:
        environment = Environment(
            name="stub",
            suffix="-stub",
            is_local=False,
            region=REGION,
            account_id=ACCOUNT,
            vpc_id="vpc-1",
            subnet_ids="subnet-a,subnet-b",
            security_group_id="sg-1",
            **declared,
        )
        self.ctx = Context(environment.spec())
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


@pytest.fixture
def aws():
    opened: list[Stubbed] = []

    def make(**declared: object) -> Stubbed:
        opened.append(Stubbed(**declared))
        return opened[-1]

    yield make
    for stubbed in opened:
        stubbed.close()
    for stubbed in opened:
        for stubber in stubbed.stubbers.values():
            stubber.assert_no_pending_responses()
        # Every call a read: a mutating one would also have found no stubbed answer.
        assert all(name.startswith(("Describe", "Get", "List")) for name in stubbed.operations)
        # The checks turn botocore errors into failed lines, the Stubber's own among them: an
        # unexpected call or unexpected parameters would otherwise pass as a plain failure.
        assert not [c for c in stubbed.checks if "Error getting response stub" in c.reason]


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


def answer_network(
    aws: Stubbed,
    subnets: dict[str, str] = SUBNETS,
    group_vpc: str = "vpc-1",
    rules: list[dict] = FROM_THE_VPC,
) -> None:
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
    aws["ecr"].add_response(
        "describe_images",
        {
            "imageDetails": [
                {
                    "registryId": ACCOUNT,
                    "repositoryName": REPOSITORY,
                    "imageDigest": "sha256:" + "0" * 64,
                    "imageTags": ["latest"],
                    "imageSizeInBytes": 9_000_000_000,
                    "imagePushedAt": datetime(2025, 1, 1, tzinfo=UTC),
                }
            ]
        },
        {"repositoryName": REPOSITORY, "imageIds": [{"imageTag": "latest"}]},
    )


def answer_all(aws: Stubbed) -> None:
    answer_account(aws)
    answer_network(aws)
    answer_offerings(aws, list(SUBNETS.values()))
    answer_quota(aws)
    answer_image(aws)


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def test_everything_in_place_passes(aws):
    stubbed = aws()
    answer_all(stubbed)

    checks = stubbed.run()

    assert [check.name for check in checks] == [
        "account",
        "network",
        "serving port",
        "availability zones",
        "vCPU quota",
        "image",
    ]
    assert all(check.ok and not check.warning for check in checks), checks
    assert preflight.failures(checks) == []
    assert "needs 8 vCPUs, quota is 64" in by_name(checks)["vCPU quota"].reason
    assert stubbed.operations == [
        "GetCallerIdentity",
        "DescribeVpcs",
        "DescribeSubnets",
        "DescribeSecurityGroups",
        "DescribeInstanceTypeOfferings",
        "DescribeInstanceTypes",
        "GetServiceQuota",
        "DescribeImages",
    ]


def test_credentials_for_another_account_fail_and_nothing_else_is_asked(aws):
    stubbed = aws()
    answer_account(stubbed, account="999999999999")

    checks = stubbed.run()

    account = checks[0]
    assert not account.ok
    assert "999999999999" in account.reason and ACCOUNT in account.reason
    assert [check.reason for check in checks[1:]] == ["waits on the account check"] * 5
    assert preflight.failures(checks) == checks


def test_missing_credentials_are_a_failed_check_not_an_exception(aws, monkeypatch):
    stubbed = aws()

    def no_credentials(**kwargs):
        raise NoCredentialsError()

    monkeypatch.setattr(stubbed.ctx.client("sts"), "get_caller_identity", no_credentials)

    checks = stubbed.run()

    assert checks[0] == Check("account", False, "Unable to locate credentials")
    assert len(preflight.failures(checks)) == 6


def test_a_missing_subnet_is_named_and_the_zone_check_waits_on_it(aws):
    stubbed = aws()
    answer_account(stubbed)
    answer_network(stubbed, subnets={"subnet-a": f"{REGION}a"})
    answer_quota(stubbed)
    answer_image(stubbed)

    checks = by_name(stubbed.run())

    assert not checks["network"].ok
    assert "subnet-b" in checks["network"].reason and "subnet-a" not in checks["network"].reason
    assert not checks["availability zones"].ok
    assert checks["availability zones"].reason.startswith("waits on the network check")
    assert "DescribeInstanceTypeOfferings" not in stubbed.operations
    assert checks["vCPU quota"].ok and checks["image"].ok


def test_a_security_group_of_another_vpc_fails(aws):
    stubbed = aws()
    answer_account(stubbed)
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
    answer_network(stubbed)
    answer_offerings(stubbed, [])
    answer_quota(stubbed)
    answer_image(stubbed)

    checks = stubbed.run()
    zones = by_name(checks)["availability zones"]

    assert not zones.ok
    assert f"{REGION}a (subnet-a), {REGION}b (subnet-b)" in zones.reason
    assert preflight.failures(checks) == [zones]


def test_a_quota_too_small_for_the_desired_count_fails_with_the_figures(aws):
    stubbed = aws(desired_count=3)
    answer_account(stubbed)
    answer_network(stubbed)
    answer_offerings(stubbed, list(SUBNETS.values()))
    answer_quota(stubbed, vcpus=8, quota=16.0)
    answer_image(stubbed)

    checks = stubbed.run()
    quota = by_name(checks)["vCPU quota"]

    assert not quota.ok
    assert "needs 24 vCPUs, quota is 16" in quota.reason
    assert preflight.failures(checks) == [quota]


@pytest.mark.parametrize(
    ("instance_type", "code"),
    [("p4d.24xlarge", "L-417A185B"), ("vt1.3xlarge", "L-DB2E81BA"), ("m5.xlarge", "L-1216C47A")],
)
def test_each_family_is_measured_against_its_own_quota(aws, instance_type, code):
    stubbed = aws(instance_type=instance_type, desired_count=0)
    answer_account(stubbed)
    answer_network(stubbed)
    answer_offerings(stubbed, list(SUBNETS.values()), instance_type)
    answer_quota(stubbed, vcpus=96, quota=96.0, instance_type=instance_type, code=code)
    answer_image(stubbed)

    quota = by_name(stubbed.run())["vCPU quota"]

    assert quota.ok and "needs 96 vCPUs, quota is 96" in quota.reason  # at least one instance


def test_an_account_without_its_own_quota_value_gets_the_default(aws):
    stubbed = aws()
    answer_account(stubbed)
    answer_network(stubbed)
    answer_offerings(stubbed, list(SUBNETS.values()))
    answer_quota(stubbed, quota=0.0, applied=False)
    answer_image(stubbed)

    quota = by_name(stubbed.run())["vCPU quota"]

    assert not quota.ok
    assert "needs 8 vCPUs, quota is 0" in quota.reason
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
            "AccessDeniedException: User is not authorized to perform: ecr:DescribeImages",
        )
    ]
    assert len(checks) == 6


def test_access_denied_on_the_network_fails_it_and_the_zone_check_waits(aws):
    stubbed = aws()
    answer_account(stubbed)
    stubbed["ec2"].add_client_error(
        "describe_vpcs",
        service_error_code="UnauthorizedOperation",
        service_message="You are not authorized to perform this operation.",
    )
    answer_quota(stubbed)
    answer_image(stubbed)

    checks = by_name(stubbed.run())

    assert checks["network"].reason == (
        "UnauthorizedOperation: You are not authorized to perform this operation."
    )
    assert not checks["availability zones"].ok
    assert not checks["serving port"].ok
    assert checks["vCPU quota"].ok and checks["image"].ok


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
