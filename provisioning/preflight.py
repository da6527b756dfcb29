"""Pre-flight checks before a plan against real AWS: what would otherwise fail half-way
through an apply or a rollout (wrong credentials, a bucket name another account owns, a
mistyped subnet, instances with no way out, no GPU quota, no model token) is found first,
each as a pass/fail line with a reason an operator can act on.

Plain Python (no Django). Every call is a read (Describe/Get/List/Head): the checks change
nothing.
"""

import ipaddress
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as NoAnswerInTime
from dataclasses import dataclass, field
from itertools import takewhile
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from provisioning.resources.base import (
    MAX_SUFFIX_LENGTH,
    Context,
    Spec,
    error_code,
    ignoring,
    names_too_long,
    suggested_suffix,
)
from provisioning.resources.elbv2 import VLLM_PORT

ACCOUNT = "account"
NAME_LENGTHS = "name lengths"
BUCKETS = "bucket names"
NETWORK = "network"
NETWORK_PATH = "instance network path"
SERVING_PORT = "serving port"
ZONES = "availability zones"
QUOTA = "vCPU quota"
SERVICE_ROLE = "ECS service-linked role"
MODEL_TOKEN = "model token"  # noqa: S105 - the name of a check, not a secret
BUILD_SOURCE = "build source"
IMAGE = "image"
# The checks, in the order they run and are shown.
CHECKS = (
    ACCOUNT,
    NAME_LENGTHS,
    BUCKETS,
    NETWORK,
    NETWORK_PATH,
    SERVING_PORT,
    ZONES,
    QUOTA,
    SERVICE_ROLE,
    MODEL_TOKEN,
    BUILD_SOURCE,
    IMAGE,
)
# ECS's service-linked role: CreateCluster makes it, but the capacity provider comes first.
# https://docs.aws.amazon.com/AmazonECS/latest/developerguide/using-service-linked-roles.html
ECS_SERVICE_ROLE = "AWSServiceRoleForECS"
# Hugging Face publishers whose models are gated: downloads need a token of an account that
# accepted the model's conditions (https://huggingface.co/docs/hub/models-gated).
GATED_PUBLISHERS = ("mistralai/",)
# CodeBuild source credentials that reach a private repository on GitHub.
# https://docs.aws.amazon.com/codebuild/latest/userguide/access-tokens-github.html
GITHUB_SERVERS = ("GITHUB", "GITHUB_ENTERPRISE")
Cidr = ipaddress.IPv4Network | ipaddress.IPv6Network
# What the checks call, and the IAM action each needs: what to grant when AWS refuses one.
# GetCallerIdentity needs none, HeadBucket needs s3:ListBucket:
# https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html
# https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadBucket.html
PERMISSIONS = {
    "HeadBucket": "s3:ListBucket",
    **{
        operation: f"ec2:{operation}"
        for operation in (
            "DescribeVpcs",
            "DescribeSubnets",
            "DescribeSecurityGroups",
            "DescribeRouteTables",
            "DescribeInstanceTypeOfferings",
            "DescribeInstanceTypes",
        )
    },
    "GetServiceQuota": "servicequotas:GetServiceQuota",
    "GetAWSDefaultServiceQuota": "servicequotas:GetAWSDefaultServiceQuota",
    "GetRole": "iam:GetRole",
    "DescribeSecret": "secretsmanager:DescribeSecret",
    "ListSourceCredentials": "codebuild:ListSourceCredentials",
    "DescribeImages": "ecr:DescribeImages",
}
# How each service says "these credentials may not make this call" (EC2:
# https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html; the others'
# common errors).
DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation")
# How STS refuses credentials it does not accept: an unknown or deleted key, an expired
# session, a wrong secret key (https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html).
REFUSED_CREDENTIALS = ("InvalidClientTokenId", "ExpiredToken", "SignatureDoesNotMatch")

# The EC2 "Running On-Demand ... instances" quotas (service code ec2), counted in vCPUs.
_GPU_QUOTA = ("L-DB2E81BA", "Running On-Demand G and VT instances")
_P_QUOTA = ("L-417A185B", "Running On-Demand P instances")
_STANDARD_QUOTA = ("L-1216C47A", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances")
QUOTAS = {
    "g": _GPU_QUOTA,
    "vt": _GPU_QUOTA,
    "p": _P_QUOTA,
    **{family: _STANDARD_QUOTA for family in "acdhimrtz"},
}


@dataclass(frozen=True)
class Check:
    """One line of the pre-flight: a warning is a pass (ok) the operator should still read.
    An unchecked line is no pass either: AWS gave no answer to judge by (the call was refused,
    or did not come back in time), or a check it builds on had none."""

    name: str
    ok: bool
    reason: str
    warning: bool = False
    unchecked: bool = False

    @property
    def outcome(self) -> str:
        """What the operator reads first: passed, warning, failed or could not check."""
        if self.ok:
            return "warning" if self.warning else "passed"
        return "could not check" if self.unchecked else "failed"


# Runs one check by its name, making a line of whatever AWS answers.
Guard = Callable[[str, Callable[[], Check]], Check]


@dataclass
class _Network:
    """What the network check found, for the checks built on it."""

    subnets: dict[str, dict] = field(default_factory=dict)  # by id, once all are found
    subnet_cidrs: list[str] = field(default_factory=list)
    vpc: dict | None = None
    group: dict | None = None  # only if it is in the declared VPC

    @property
    def zones(self) -> dict[str, str]:
        return {id_: subnet["AvailabilityZone"] for id_, subnet in self.subnets.items()}


def run_checks(
    ctx: Context, *, seconds_each: float | None = None, seconds_in_all: float | None = None
) -> list[Check]:
    """The checks of ``CHECKS`` in order, so a plan against real AWS starts only from known
    ground.

    Never raises for AWS errors: a refused or failed call leaves its check unchecked, saying
    what to grant or to do. A check that needs what an earlier one could not establish waits
    on it, without calling AWS. A local environment has nothing to check.

    With ``seconds_each``, a check that takes longer is left unchecked and the next one runs
    (an endpoint that does not answer holds nobody); none starts once ``seconds_in_all`` have
    passed. Without, each takes as long as its clients' own timeouts and retries allow.
    """
    if ctx.spec.is_local:
        return []
    guarded = _Timed(seconds_each, seconds_in_all) if seconds_each else _Inline()
    try:
        return _checks(ctx, guarded)
    finally:
        guarded.close()


def _checks(ctx: Context, guarded: Guard) -> list[Check]:
    account = guarded(ACCOUNT, lambda: _account(ctx))
    if not account.ok:
        # Anything else would be answered by another account, or by no credentials at all.
        waiting = f"waits on the {ACCOUNT} check"
        return [account, *(Check(name, False, waiting, unchecked=True) for name in CHECKS[1:])]
    checks = [account, _name_lengths(ctx.spec), guarded(BUCKETS, lambda: _buckets(ctx))]
    found = _Network()
    network = guarded(NETWORK, lambda: _network(ctx, found))
    if network.unchecked:
        found = _Network()  # one that ran out of time may still be filling it in
    checks.append(network)
    subnets = "the subnets are not known"
    checks += [
        _after(
            guarded,
            NETWORK_PATH,
            found.subnets,
            subnets,
            lambda: _network_path(ctx, found.subnets),
        ),
        _after(
            guarded,
            SERVING_PORT,
            found.vpc and found.group,
            "the VPC or its security group is not known",
            lambda: _serving_port(ctx, found),
        ),
        _after(guarded, ZONES, found.subnets, subnets, lambda: _zones(ctx, found.zones)),
        guarded(QUOTA, lambda: _quota(ctx)),
        guarded(SERVICE_ROLE, lambda: _service_role(ctx)),
        guarded(MODEL_TOKEN, lambda: _model_token(ctx)),
        guarded(BUILD_SOURCE, lambda: _build_source(ctx)),
        guarded(IMAGE, lambda: _image(ctx)),
    ]
    return checks


def failures(checks: list[Check]) -> list[Check]:
    """The checks that stop a plan (warnings do not; neither does an unchecked one pass)."""
    return [check for check in checks if not check.ok]


def _after(
    guarded: Guard, name: str, known: object, missing: str, check: Callable[[], Check]
) -> Check:
    """``check()`` once the network check has established what it needs (``known``)."""
    if not known:
        return Check(name, False, f"waits on the {NETWORK} check: {missing}", unchecked=True)
    return guarded(name, check)


class _Inline:
    """Runs each check where it is called; what AWS refuses or fails becomes its line."""

    def __call__(self, name: str, check: Callable[[], Check]) -> Check:
        return _guarded(name, check)

    def close(self) -> None:
        pass


class _Timed(_Inline):
    """Runs each check in a thread of its own and waits for it ``seconds_each`` at most; none
    starts once ``seconds_in_all`` have passed. A check left behind ends at its clients' own
    timeouts; the threads are never waited for."""

    def __init__(self, seconds_each: float, seconds_in_all: float | None) -> None:
        self.each = seconds_each
        self.in_all = seconds_in_all or seconds_each * len(CHECKS)
        self.deadline = time.monotonic() + self.in_all
        # A thread per check: one left behind never holds up the next.
        self.pool = ThreadPoolExecutor(max_workers=len(CHECKS), thread_name_prefix="preflight")

    def __call__(self, name: str, check: Callable[[], Check]) -> Check:
        left = min(self.each, self.deadline - time.monotonic())
        if left <= 0:
            reason = f"not started: the checks stop after {self.in_all:g} s; check again"
            return Check(name, False, reason, unchecked=True)
        try:
            return self.pool.submit(_guarded, name, check).result(timeout=left)
        except NoAnswerInTime:
            reason = f"AWS did not answer within {left:.1f} s: check again"
            return Check(name, False, reason, unchecked=True)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _guarded(name: str, check: Callable[[], Check]) -> Check:
    try:
        return check()
    except ClientError as exc:
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", "").rstrip(". ")
        if code in DENIED:
            grant = PERMISSIONS.get(exc.operation_name, exc.operation_name)
            said = f"{code}: {message}: allow {grant} to the console's credentials"
        elif code.isdigit():  # no AWS error in the answer (a proxy's page, say): its status
            said = f"{exc.operation_name} answered HTTP {code}: check again"
        else:
            said = f"{code}: {message}: check again"
        return Check(name, False, said, unchecked=True)
    except BotoCoreError as exc:
        return Check(name, False, f"{exc}: check again", unchecked=True)


def _account(ctx: Context) -> Check:
    """Whose credentials the console holds. STS answers GetCallerIdentity to any valid
    credentials (no permission needed), so a refusal means the credentials themselves."""
    declared = ctx.spec.account_id
    try:
        identity = ctx.client("sts").get_caller_identity()
    except NoCredentialsError:
        return Check(
            ACCOUNT,
            False,
            f"the console found no AWS credentials: give it credentials for {declared} "
            "(AWS_PROFILE, the AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY variables, or the "
            "instance's or task's role) and restart it",
        )
    except ClientError as exc:
        if error_code(exc) not in REFUSED_CREDENTIALS:
            raise
        message = exc.response.get("Error", {}).get("Message", "")
        return Check(
            ACCOUNT,
            False,
            f"AWS refused the console's credentials ({error_code(exc)}: {message}): renew "
            f"them, or give the console valid credentials for {declared}",
        )
    account = identity["Account"]
    if account != declared:
        return Check(
            ACCOUNT,
            False,
            f"the credentials ({identity['Arn']}) are for account {account}, but environment "
            f"{ctx.spec.name} is declared in {declared}: use credentials for {declared}",
        )
    return Check(ACCOUNT, True, f"{identity['Arn']} in account {account}")


def _name_lengths(spec: Spec) -> Check:
    """The form refuses such a suffix; an environment saved before it did is caught here."""
    too_long = names_too_long(spec.suffix)
    if too_long:
        return Check(
            NAME_LENGTHS,
            False,
            f"{'; '.join(too_long)}: choose a suffix of at most {MAX_SUFFIX_LENGTH} characters",
        )
    return Check(NAME_LENGTHS, True, f"every name fits AWS's limits with suffix {spec.suffix!r}")


def _buckets(ctx: Context) -> Check:
    """S3 bucket names are global: another account may own the guide's names. Settled here,
    apply would otherwise stop at its first step with a bare "Forbidden"."""
    spec, s3 = ctx.spec, ctx.client("s3")
    found = [_bucket(s3, ctx.name(key), spec) for key in ("AuditBucket", "RawBucket")]
    problems = [text for usable, text in found if not usable]
    if problems:
        suffix = suggested_suffix(spec.suffix, spec.account_id)
        return Check(BUCKETS, False, f"{'; '.join(problems)}: choose a name suffix, e.g. {suffix}")
    return Check(BUCKETS, True, "; ".join(text for _, text in found))


def _bucket(s3: Any, bucket: str, spec: Spec) -> tuple[bool, str]:
    """Whether the name is ours or free, and what was found. With the expected owner,
    HeadBucket answers 200 only for our bucket, 404 for a free name and 403 for a bucket of
    another account (botocore's error code "403"; also when these credentials lack
    s3:ListBucket)."""
    try:
        head = s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=spec.account_id)
    except ClientError as exc:
        if error_code(exc) == "404":
            return True, f"{bucket} is free"
        if error_code(exc) == "403":
            return False, f"{bucket} is owned by another account (S3 bucket names are global)"
        raise
    region = head.get("BucketRegion", spec.region)
    if region != spec.region:  # its notifications could not reach this region's ingest Lambda
        return False, f"{bucket} is this account's, but in {region}, not {spec.region}"
    return True, f"{bucket} exists in this account"


def _network(ctx: Context, network: _Network) -> Check:
    spec, ec2 = ctx.spec, ctx.client("ec2")
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [spec.vpc_id]}])["Vpcs"]
    subnets = ec2.describe_subnets(
        Filters=[{"Name": "subnet-id", "Values": list(spec.subnet_ids)}]
    )["Subnets"]
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "group-id", "Values": [spec.security_group_id]}]
    )["SecurityGroups"]
    found = {subnet["SubnetId"]: subnet for subnet in subnets}
    if all(subnet_id in found for subnet_id in spec.subnet_ids):
        network.subnets.update(found)
    network.subnet_cidrs = [s["CidrBlock"] for s in subnets if s["VpcId"] == spec.vpc_id]
    network.vpc = vpcs[0] if vpcs else None
    network.group = next((g for g in groups if g["VpcId"] == spec.vpc_id), None)
    problems = []
    if not vpcs:
        problems.append(f"VPC {spec.vpc_id} does not exist in {spec.region}")
    missing = [subnet_id for subnet_id in spec.subnet_ids if subnet_id not in found]
    if missing:
        problems.append(f"subnets not found in {spec.region}: {', '.join(missing)}")
    if not groups:
        problems.append(f"security group {spec.security_group_id} does not exist in {spec.region}")
    members = [(s["SubnetId"], s["VpcId"]) for s in subnets]
    members += [(group["GroupId"], group["VpcId"]) for group in groups]
    problems += [
        f"{id_} is in {vpc}, not {spec.vpc_id}" for id_, vpc in members if vpc != spec.vpc_id
    ]
    if problems:
        return Check(NETWORK, False, "; ".join(problems))
    return Check(
        NETWORK, True, f"{spec.vpc_id} with {len(found)} subnets and {groups[0]['GroupId']}"
    )


def _network_path(ctx: Context, subnets: dict[str, dict]) -> Check:
    """The GPU instances register with ECS, pull the image from ECR (its layers from S3),
    send logs to CloudWatch Logs and download the model from Hugging Face: each subnet needs a
    default route out, through a NAT gateway, or an internet gateway with public IPs on launch.
    VPC endpoints reach the AWS services but never Hugging Face."""
    tables = _route_tables(ctx.client("ec2"), subnets)
    found: dict[str, list[str]] = {"out": [], "unchecked": [], "blocked": []}
    for id_, subnet in subnets.items():
        way, text = _way_out(id_, subnet, tables.get(id_, {}))
        found[way].append(text)
    if found["blocked"]:
        return Check(
            NETWORK_PATH,
            False,
            f"instances in {'; '.join(found['blocked'])} get no route to ECS, ECR or Hugging "
            "Face (no NAT gateway, no internet gateway with public IPs): add a NAT gateway "
            "route (0.0.0.0/0) to the subnet's route table; VPC endpoints alone do not reach "
            "Hugging Face",
        )
    if found["unchecked"]:
        return Check(
            NETWORK_PATH,
            True,
            f"{'; '.join(found['unchecked'])}: not checked beyond it; the instances must reach "
            "ECS, ECR, S3, CloudWatch Logs and Hugging Face that way",
            warning=True,
        )
    return Check(NETWORK_PATH, True, "; ".join(found["out"]))


def _route_tables(ec2: Any, subnets: dict[str, dict]) -> dict[str, dict]:
    """Each subnet's route table: its own, or else its VPC's main one."""
    own = ec2.describe_route_tables(
        Filters=[{"Name": "association.subnet-id", "Values": list(subnets)}]
    )["RouteTables"]
    tables = {
        association["SubnetId"]: table
        for table in own
        for association in table.get("Associations", [])
        if association.get("SubnetId") in subnets
    }
    vpcs = sorted({subnet["VpcId"] for id_, subnet in subnets.items() if id_ not in tables})
    if vpcs:
        mains = ec2.describe_route_tables(
            Filters=[
                {"Name": "vpc-id", "Values": vpcs},
                {"Name": "association.main", "Values": ["true"]},
            ]
        )["RouteTables"]
        main = {table["VpcId"]: table for table in mains}
        for id_, subnet in subnets.items():
            if id_ not in tables and subnet["VpcId"] in main:
                tables[id_] = main[subnet["VpcId"]]
    return tables


def _way_out(subnet_id: str, subnet: dict, table: dict) -> tuple[str, str]:
    """("out", "unchecked" or "blocked", what was found) for one subnet's default route."""
    route = next(
        (
            route
            for route in table.get("Routes", [])
            if route.get("DestinationCidrBlock") == "0.0.0.0/0"
            and route.get("State") != "blackhole"  # its NAT gateway or instance is gone
        ),
        {},
    )
    gateway = route.get("GatewayId", "")
    where = f"{subnet_id} ({table.get('RouteTableId', 'no route table')})"
    if route.get("NatGatewayId"):
        return "out", f"{subnet_id} through NAT gateway {route['NatGatewayId']}"
    if gateway.startswith("igw-") and subnet.get("MapPublicIpOnLaunch"):
        return "out", f"{subnet_id} through internet gateway {gateway} with public IPs"
    if gateway.startswith("igw-"):
        return "blocked", f"{where}: internet gateway {gateway}, but no public IPs on launch"
    # A transit gateway or a NAT instance may lead out: what lies beyond is not visible here.
    other = route.get("TransitGatewayId") or route.get("NetworkInterfaceId")
    if other:
        return "unchecked", f"{subnet_id} through {other}"
    return "blocked", f"{where}: no default route"


def _serving_port(ctx: Context, network: _Network) -> Check:
    """Only the load balancer may reach vLLM's port: the serving middleware trusts the request
    id and API key id headers because the gateway sets them. The NLB has no security group
    and its traffic (PrivateLink from the VPC link, health checks) comes from its private
    addresses in the subnets, so the group must admit the port from the VPC and nowhere else.
    Asks AWS nothing: the network check's answers hold the rules and the CIDRs."""
    vpc, group = network.vpc, network.group
    assert vpc is not None and group is not None
    vpc_id, account = vpc["VpcId"], ctx.spec.account_id
    vpc_cidrs = _vpc_cidrs(vpc)
    outside: list[str] = []
    admitted: list[Cidr] = []  # the ranges inside the VPC that reach the port
    for rule in group.get("IpPermissions", []):
        if not _opens(rule, VLLM_PORT):
            continue
        ports = _ports(rule)
        for cidr in _cidrs(rule):
            if any(_within(cidr, vpc_cidr) for vpc_cidr in vpc_cidrs):
                admitted.append(cidr)
            else:
                outside.append(f"{ports} from {cidr}")
        # A group of this VPC and account admits only its members (the instances' own group
        # does by default); one across a peering or of another account does not.
        for pair in rule.get("UserIdGroupPairs", []):
            if (pair.get("VpcId") or vpc_id, pair.get("UserId") or account) != (vpc_id, account):
                outside.append(
                    f"{ports} from security group {pair['GroupId']} (another VPC or account)"
                )
        for prefix in rule.get("PrefixListIds", []):
            outside.append(f"{ports} from prefix list {prefix['PrefixListId']} (not checked)")
    group_id, cidrs = group["GroupId"], ", ".join(str(cidr) for cidr in vpc_cidrs)
    if outside:
        return Check(
            SERVING_PORT,
            False,
            f"{group_id} admits port {VLLM_PORT} from outside {vpc_id} ({cidrs}): remove the "
            f"inbound rule {'; '.join(outside)}. Only the load balancer may reach vLLM: it "
            "trusts the request id and API key headers the gateway sets",
        )
    unreached = [
        subnet
        for subnet in network.subnet_cidrs
        if not any(_within(ipaddress.ip_network(subnet), cidr) for cidr in admitted)
    ]
    if unreached or not admitted:
        return Check(
            SERVING_PORT,
            False,
            f"{group_id} does not admit tcp {VLLM_PORT} from the load balancer's subnets "
            f"({', '.join(unreached) or vpc['CidrBlock']}): add an inbound rule from "
            f"{vpc['CidrBlock']}, or the load balancer cannot reach vLLM",
        )
    reached = ", ".join(sorted({str(cidr) for cidr in admitted}))
    return Check(SERVING_PORT, True, f"{group_id} admits port {VLLM_PORT} from {reached} only")


def _vpc_cidrs(vpc: dict) -> list[Cidr]:
    """The VPC's associated IPv4 and IPv6 blocks (the primary one among them)."""
    blocks = [
        item["CidrBlock"]
        for item in vpc.get("CidrBlockAssociationSet", [])
        if item.get("CidrBlockState", {}).get("State") == "associated"
    ]
    blocks += [
        item["Ipv6CidrBlock"]
        for item in vpc.get("Ipv6CidrBlockAssociationSet", [])
        if item.get("Ipv6CidrBlockState", {}).get("State") == "associated"
    ]
    return [ipaddress.ip_network(block) for block in blocks or [vpc["CidrBlock"]]]


def _opens(rule: dict, port: int) -> bool:
    """Whether an inbound rule admits TCP ``port`` (protocol -1 is all traffic, any port)."""
    if rule["IpProtocol"] == "-1":
        return True
    return rule["IpProtocol"] in ("tcp", "6") and rule["FromPort"] <= port <= rule["ToPort"]


def _ports(rule: dict) -> str:
    if rule["IpProtocol"] == "-1":
        return "all traffic"
    low, high = rule["FromPort"], rule["ToPort"]
    return f"tcp {low}" if low == high else f"tcp {low}-{high}"


def _cidrs(rule: dict) -> list[Cidr]:
    ranges = [item["CidrIp"] for item in rule.get("IpRanges", [])]
    ranges += [item["CidrIpv6"] for item in rule.get("Ipv6Ranges", [])]
    return [ipaddress.ip_network(cidr) for cidr in ranges]


def _within(network: Cidr, container: Cidr) -> bool:
    return network.version == container.version and network.subnet_of(container)


def _zones(ctx: Context, zones: dict[str, str]) -> Check:
    instance_type, wanted = ctx.spec.instance_type, sorted(set(zones.values()))
    offerings = ctx.client("ec2").describe_instance_type_offerings(
        LocationType="availability-zone",
        Filters=[
            {"Name": "instance-type", "Values": [instance_type]},
            {"Name": "location", "Values": wanted},
        ],
    )["InstanceTypeOfferings"]
    offered = {offering["Location"] for offering in offerings}
    lacking = [
        f"{zone} ({', '.join(s for s, z in zones.items() if z == zone)})"
        for zone in wanted
        if zone not in offered
    ]
    if not offered & set(wanted):
        return Check(
            ZONES,
            False,
            f"{instance_type} is not offered in any of the subnets' zones: {', '.join(lacking)}; "
            "choose subnets in a zone that offers it, or another instance type",
        )
    if lacking:
        return Check(
            ZONES,
            True,
            f"{instance_type} is offered in {', '.join(sorted(offered))} but not in "
            f"{', '.join(lacking)}: instances launch only where it is offered",
            warning=True,
        )
    return Check(ZONES, True, f"{instance_type} is offered in {', '.join(wanted)}")


def _quota(ctx: Context) -> Check:
    instance_type = ctx.spec.instance_type
    family = "".join(takewhile(str.isalpha, instance_type.lower()))  # g5.2xlarge: g
    if family not in QUOTAS:
        reason = f"no On-Demand quota known for the {family!r} family: check it by hand"
        return Check(QUOTA, True, reason, warning=True)
    code, title = QUOTAS[family]
    types = ctx.client("ec2").describe_instance_types(InstanceTypes=[instance_type])
    if not types["InstanceTypes"]:
        return Check(QUOTA, False, f"EC2 does not know the instance type {instance_type}")
    vcpus = types["InstanceTypes"][0]["VCpuInfo"]["DefaultVCpus"]
    # One task per one-GPU instance: scaling may run max_tasks of them, and a rollout there
    # starts the new tasks beside the old ones (maximumPercent 200: the group's max_size).
    instances = ctx.spec.max_tasks
    needed = vcpus * instances
    quotas = ctx.client("service-quotas")
    try:
        value = quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"]
    except ClientError as exc:
        if error_code(exc) != "NoSuchResourceException":
            raise
        found = quotas.get_aws_default_service_quota(ServiceCode="ec2", QuotaCode=code)
        value = found["Quota"]["Value"]
    quota = int(value) if float(value).is_integer() else value
    figures = (
        f"needs {needed} vCPUs: {instances} instance{'s' if instances > 1 else ''} of "
        f"{instance_type} at the max tasks; quota is {quota} ({title}, {code})"
    )
    if needed > value:
        return Check(
            QUOTA,
            False,
            f"{figures}: scaling could not reach them; lower the max tasks or request an "
            "increase in Service Quotas",
        )
    if 2 * needed > value:
        return Check(
            QUOTA,
            True,
            f"{figures}; a rollout at the max tasks starts as many again ({2 * needed} vCPUs): "
            "short of them, ECS stops old tasks first (minimumHealthyPercent 50) and the "
            "rollout takes longer",
            warning=True,
        )
    return Check(
        QUOTA,
        True,
        f"{figures}, {2 * needed} during a rollout there; instances already running count "
        "against it too",
    )


def _service_role(ctx: Context) -> Check:
    role = ignoring(lambda: ctx.client("iam").get_role(RoleName=ECS_SERVICE_ROLE), "NoSuchEntity")
    if role is None:
        return Check(
            SERVICE_ROLE,
            True,
            f"{ECS_SERVICE_ROLE} not yet created in this account: apply creates it first "
            "(iam:CreateServiceLinkedRole)",
            warning=True,
        )
    return Check(SERVICE_ROLE, True, f"{ECS_SERVICE_ROLE} exists")


def _model_token(ctx: Context) -> Check:
    """vLLM downloads the model when the task starts, with the token ECS reads from the
    secret; describing the secret tells whether it is there without reading its value."""
    spec = ctx.spec
    arn = spec.hf_token_secret_arn
    if not arn:
        if spec.model_id.startswith(GATED_PUBLISHERS):
            return Check(
                MODEL_TOKEN,
                False,
                f"{spec.model_id} is a gated model: vLLM cannot download it without a Hugging "
                "Face token; store it in Secrets Manager and set the environment's token secret",
            )
        return Check(MODEL_TOKEN, True, f"{spec.model_id} is downloaded without a token")
    secrets = ctx.client("secretsmanager")
    secret = ignoring(lambda: secrets.describe_secret(SecretId=arn), "ResourceNotFoundException")
    if secret is None:
        return Check(
            MODEL_TOKEN,
            False,
            f"no secret {arn} in Secrets Manager ({spec.region}): store the Hugging Face token "
            "there, or correct the environment's token secret",
        )
    if secret.get("DeletedDate"):
        return Check(
            MODEL_TOKEN,
            False,
            f"secret {arn} is scheduled for deletion: restore it, or store the token in another",
        )
    return Check(
        MODEL_TOKEN,
        True,
        f"{spec.model_id} is downloaded with the token in {secret['Name']} (its Hugging Face "
        "account must have accepted the model's conditions)",
    )


def _build_source(ctx: Context) -> Check:
    """CodeBuild clones the repository with the account's GitHub credential of the region; a
    public repository needs none."""
    url = ctx.spec.source_repository
    if urlparse(url).hostname != "github.com":
        return Check(
            BUILD_SOURCE,
            True,
            f"{url} is not on github.com, but the build project's source type is GITHUB",
            warning=True,
        )
    credentials = ctx.client("codebuild").list_source_credentials()["sourceCredentialsInfos"]
    github = [found for found in credentials if found["serverType"] in GITHUB_SERVERS]
    if not github:
        return Check(
            BUILD_SOURCE,
            True,
            f"CodeBuild has no GitHub credential in {ctx.spec.region}: {url} builds only if it "
            "is public; for a private repository import a token (aws codebuild "
            "import-source-credentials) or connect GitHub with CodeConnections",
            warning=True,
        )
    kinds = ", ".join(sorted({f"{item['serverType']} {item['authType']}" for item in github}))
    return Check(BUILD_SOURCE, True, f"CodeBuild clones {url} with the account's {kinds}")


def _image(ctx: Context) -> Check:
    repository = ctx.name("EcrRepository")
    tag = ctx.spec.live_image_tag or ctx.spec.image_tag  # what the task definition runs
    first_rollout = "never rolled out: its first rollout builds the image"
    try:
        ctx.client("ecr").describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except ClientError as exc:
        if error_code(exc) == "RepositoryNotFoundException":
            return Check(IMAGE, True, f"no repository {repository}: {first_rollout}", warning=True)
        if error_code(exc) == "ImageNotFoundException":
            reason = f"no image {repository}:{tag}: {first_rollout}"
            return Check(IMAGE, True, reason, warning=True)
        raise
    return Check(IMAGE, True, f"{repository}:{tag} exists")
