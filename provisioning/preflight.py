"""Pre-flight checks before a plan against real AWS: what would otherwise fail half-way
through an apply (wrong credentials, a mistyped subnet, no GPU quota) is found first, each
as a pass/fail line with a reason an operator can act on.

Plain Python (no Django). Every call is a read (Describe/Get/List): the checks change nothing.
"""

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import takewhile

from botocore.exceptions import BotoCoreError, ClientError

from provisioning.resources.base import Context, error_code
from provisioning.resources.elbv2 import VLLM_PORT

ACCOUNT = "account"
NETWORK = "network"
SERVING_PORT = "serving port"
ZONES = "availability zones"
QUOTA = "vCPU quota"
IMAGE = "image"
Cidr = ipaddress.IPv4Network | ipaddress.IPv6Network

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
    """One line of the pre-flight: a warning is a pass (ok) the operator should still read."""

    name: str
    ok: bool
    reason: str
    warning: bool = False


@dataclass
class _Network:
    """What the network check found, for the checks built on it."""

    zones: dict[str, str] = field(default_factory=dict)  # subnet id -> zone, once all are found
    subnet_cidrs: list[str] = field(default_factory=list)
    vpc: dict | None = None
    group: dict | None = None  # only if it is in the declared VPC


def run_checks(ctx: Context) -> list[Check]:
    """The six checks in order, so a plan against real AWS starts only from known ground.

    Never raises for AWS errors: a failed call fails its check. A check that needs what an
    earlier one could not establish fails with what it waits on, without calling AWS. A local
    environment has nothing to check.
    """
    if ctx.spec.is_local:
        return []
    account = _guarded(ACCOUNT, lambda: _account(ctx))
    if not account.ok:
        # Anything else would be answered by another account, or by no credentials at all.
        waiting = f"waits on the {ACCOUNT} check"
        later = (NETWORK, SERVING_PORT, ZONES, QUOTA, IMAGE)
        return [account, *(Check(name, False, waiting) for name in later)]
    found = _Network()
    network = _guarded(NETWORK, lambda: _network(ctx, found))
    if found.vpc and found.group:
        serving = _serving_port(ctx, found)
    else:
        reason = f"waits on the {NETWORK} check: the VPC or its security group is not known"
        serving = Check(SERVING_PORT, False, reason)
    if found.zones:
        offered = _guarded(ZONES, lambda: _zones(ctx, found.zones))
    else:
        offered = Check(ZONES, False, f"waits on the {NETWORK} check: the subnets are not known")
    return [
        account,
        network,
        serving,
        offered,
        _guarded(QUOTA, lambda: _quota(ctx)),
        _guarded(IMAGE, lambda: _image(ctx)),
    ]


def failures(checks: list[Check]) -> list[Check]:
    """The checks that stop a plan (warnings do not)."""
    return [check for check in checks if not check.ok]


def _guarded(name: str, check: Callable[[], Check]) -> Check:
    try:
        return check()
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", "")
        return Check(name, False, f"{error_code(exc)}: {message}")
    except BotoCoreError as exc:
        return Check(name, False, str(exc))


def _account(ctx: Context) -> Check:
    identity = ctx.client("sts").get_caller_identity()
    account, declared = identity["Account"], ctx.spec.account_id
    if account != declared:
        return Check(
            ACCOUNT,
            False,
            f"the credentials ({identity['Arn']}) are for account {account}, but environment "
            f"{ctx.spec.name} is declared in {declared}: use credentials for {declared}",
        )
    return Check(ACCOUNT, True, f"{identity['Arn']} in account {account}")


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
        network.zones.update({id_: subnet["AvailabilityZone"] for id_, subnet in found.items()})
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
    needed = vcpus * max(ctx.spec.desired_count, 1)
    quotas = ctx.client("service-quotas")
    try:
        value = quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"]
    except ClientError as exc:
        if error_code(exc) != "NoSuchResourceException":
            raise
        found = quotas.get_aws_default_service_quota(ServiceCode="ec2", QuotaCode=code)
        value = found["Quota"]["Value"]
    quota = int(value) if float(value).is_integer() else value
    figures = f"needs {needed} vCPUs, quota is {quota} ({title}, {code})"
    if needed > value:
        return Check(QUOTA, False, f"{figures}: request an increase in Service Quotas")
    return Check(QUOTA, True, f"{figures}; instances already running count against it too")


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
