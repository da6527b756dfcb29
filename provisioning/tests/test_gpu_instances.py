"""The GPU instances: safe from scale-in while they run a task, IMDSv2 with one hop, a root
volume sized for the image, the model and the spool. Real AWS's answers come from a Stubber
(moto accepts managed termination protection on a group that does not protect its instances,
which ECS refuses); the moto server shows the same settings applied and repaired."""

from datetime import UTC, datetime

import pytest

from centralllm import aws
from provisioning import engine
from provisioning.resources.autoscaling import GROUP_METRICS, GpuGroup
from provisioning.resources.base import Spec
from provisioning.resources.ec2 import METADATA_OPTIONS, ROOT_VOLUME, LaunchTemplate
from provisioning.resources.ecs import CapacityProvider

# Regions no other test uses, so the stubbed clients are ours alone.
GROUP_REGION, PROVIDER_REGION, TEMPLATE_REGION = "me-central-1", "il-central-1", "ca-west-1"
ACCOUNT = "123456789012"
GROUP = "central-llm-gpu-stub"
AMI = "ami-0123456789abcdef0"


def apply_only(spec: Spec, *keys: str) -> None:
    """Apply ``keys`` and what they depend on, one resource at a time: cheaper than a whole
    apply, and independent of resources these tests are not about."""
    wanted = {cls.key: cls for cls in engine.ordered(spec)}
    needed: set[str] = set()
    todo = list(keys)
    while todo:
        key = todo.pop()
        if key in wanted and key not in needed:
            needed.add(key)
            todo.extend(wanted[key].depends_on)
    for cls in engine.ordered(spec):
        if cls.key in needed:
            engine.apply_one(spec, cls.key)


def described_group(*, protected: bool, instances: list[str]) -> dict:
    """DescribeAutoScalingGroups as AWS answers it, the instances' protection as given."""
    template = {"LaunchTemplateId": "lt-1", "LaunchTemplateName": GROUP, "Version": "$Latest"}
    return {
        "AutoScalingGroups": [
            {
                "AutoScalingGroupName": GROUP,
                "AutoScalingGroupARN": f"arn:aws:autoscaling:{GROUP_REGION}:{ACCOUNT}:"
                f"autoScalingGroup:6d3e1c7f-0000-4000-8000-000000000000:"
                f"autoScalingGroupName/{GROUP}",
                "LaunchTemplate": template,
                "MinSize": 0,
                "MaxSize": 8,
                "DesiredCapacity": len(instances),
                "DefaultCooldown": 300,
                "AvailabilityZones": [f"{GROUP_REGION}a"],
                "HealthCheckType": "EC2",
                "CreatedTime": datetime(2026, 1, 1, tzinfo=UTC),
                "VPCZoneIdentifier": "subnet-a",
                "NewInstancesProtectedFromScaleIn": protected,
                "EnabledMetrics": [
                    {"Metric": metric, "Granularity": "1Minute"} for metric in GROUP_METRICS
                ],
                "Instances": [
                    {
                        "InstanceId": instance,
                        "InstanceType": "g5.2xlarge",
                        "AvailabilityZone": f"{GROUP_REGION}a",
                        "LifecycleState": "InService",
                        "HealthStatus": "Healthy",
                        "LaunchTemplate": template,
                        "ProtectedFromScaleIn": protected,
                    }
                    for instance in instances
                ],
            }
        ]
    }


@pytest.fixture
def group(stubbed):
    ctx, stubber, _sleeps = stubbed("autoscaling", GROUP_REGION)
    ctx.outputs["ec2.launch_template"] = {"name": GROUP}
    ctx.outputs["ec2.network"] = {"subnet_ids": ["subnet-a"]}
    return GpuGroup(ctx), stubber


# What the engine sends to create or update the group.
GROUP_SETTINGS = {
    "AutoScalingGroupName": GROUP,
    "LaunchTemplate": {"LaunchTemplateName": GROUP, "Version": "$Latest"},
    "MinSize": 0,
    "MaxSize": 8,  # twice the max tasks: a rollout at the most tasks starts as many again
    "VPCZoneIdentifier": "subnet-a",
    "NewInstancesProtectedFromScaleIn": True,
}


def test_a_new_group_protects_its_new_instances_from_scale_in(group):
    gpu_group, stubber = group
    # No group of this name still being deleted (a destroy just before keeps the name).
    stubber.add_response("describe_auto_scaling_groups", {"AutoScalingGroups": []})
    stubber.add_response("create_auto_scaling_group", {}, {**GROUP_SETTINGS, "DesiredCapacity": 0})
    # Its metrics from the first hour (the costs app prices its instance-hours from them).
    stubber.add_response(
        "enable_metrics_collection",
        {},
        {"AutoScalingGroupName": GROUP, "Metrics": GROUP_METRICS, "Granularity": "1Minute"},
    )

    gpu_group.create(gpu_group.desired())


def test_an_unprotected_group_is_drift_and_its_running_instances_are_protected_too(group):
    gpu_group, stubber = group
    stubber.add_response(
        "describe_auto_scaling_groups",
        described_group(protected=False, instances=["i-0aaa", "i-0bbb"]),
        {"AutoScalingGroupNames": [GROUP]},
    )
    stubber.add_response("update_auto_scaling_group", {}, GROUP_SETTINGS)
    # The group's setting covers instances launched later: ECS wants the running ones too.
    stubber.add_response(
        "set_instance_protection",
        {},
        {
            "AutoScalingGroupName": GROUP,
            "InstanceIds": ["i-0aaa", "i-0bbb"],
            "ProtectedFromScaleIn": True,
        },
    )

    current = gpu_group.read()
    fields = engine.diff(gpu_group.desired(), current)
    assert fields == {"protect_new_instances": (False, True)}
    gpu_group.update(gpu_group.desired(), current, list(fields))


def test_instances_ecs_unprotected_are_not_drift(group):
    gpu_group, stubber = group
    # ECS lifts the protection of an instance without tasks so that the group may scale in.
    answer = described_group(protected=True, instances=["i-0aaa"])
    answer["AutoScalingGroups"][0]["Instances"][0]["ProtectedFromScaleIn"] = False
    stubber.add_response("describe_auto_scaling_groups", answer)

    assert engine.diff(gpu_group.desired(), gpu_group.read()) == {}


def test_a_group_without_its_metrics_collected_is_drift_and_collects_them(group):
    """The page charts the group's instances in service: Auto Scaling sends its group metrics
    to CloudWatch only once collection is enabled; others enabled beside them are no drift
    (https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_EnableMetricsCollection.html)."""
    gpu_group, stubber = group
    answer = described_group(protected=True, instances=[])
    answer["AutoScalingGroups"][0]["EnabledMetrics"] = [
        {"Metric": "GroupTotalInstances", "Granularity": "1Minute"}
    ]
    stubber.add_response("describe_auto_scaling_groups", answer)
    stubber.add_response("update_auto_scaling_group", {}, GROUP_SETTINGS)
    stubber.add_response(
        "enable_metrics_collection",
        {},
        {"AutoScalingGroupName": GROUP, "Metrics": GROUP_METRICS, "Granularity": "1Minute"},
    )

    current = gpu_group.read()
    fields = engine.diff(gpu_group.desired(), current)
    assert fields == {"metrics": ([], GROUP_METRICS)}
    gpu_group.update(gpu_group.desired(), current, list(fields))


def described_provider(protection: str) -> dict:
    """DescribeCapacityProviders as AWS answers it."""
    return {
        "capacityProviders": [
            {
                "capacityProviderArn": f"arn:aws:ecs:{PROVIDER_REGION}:{ACCOUNT}:"
                "capacity-provider/central-llm-gpu-stub",
                "name": "central-llm-gpu-stub",
                "status": "ACTIVE",
                "autoScalingGroupProvider": {
                    "autoScalingGroupArn": "arn:group",
                    "managedScaling": {
                        "status": "ENABLED",
                        "targetCapacity": 100,
                        "minimumScalingStepSize": 1,
                        "maximumScalingStepSize": 10000,
                        "instanceWarmupPeriod": 300,
                    },
                    "managedTerminationProtection": protection,
                    "managedDraining": "ENABLED",
                },
                "updateStatus": "UPDATE_COMPLETE",
                "tags": [],
            }
        ]
    }


@pytest.fixture
def provider(stubbed):
    ctx, stubber, _sleeps = stubbed("ecs", PROVIDER_REGION)
    ctx.outputs["autoscaling.gpu_group"] = {"arn": "arn:group"}
    return CapacityProvider(ctx), stubber


SCALING = {"status": "ENABLED", "targetCapacity": 100}


def test_a_new_capacity_provider_keeps_instances_with_tasks_from_scale_in(provider):
    capacity_provider, stubber = provider
    stubber.add_response("describe_capacity_providers", {"capacityProviders": []})
    stubber.add_response(
        "create_capacity_provider",
        {"capacityProvider": described_provider("ENABLED")["capacityProviders"][0]},
        {
            "name": "central-llm-gpu-stub",
            "autoScalingGroupProvider": {
                "autoScalingGroupArn": "arn:group",
                "managedScaling": SCALING,
                "managedTerminationProtection": "ENABLED",
            },
        },
    )

    capacity_provider.create(capacity_provider.desired())


def test_a_provider_without_termination_protection_is_drift_and_repaired(provider):
    capacity_provider, stubber = provider
    stubber.add_response("describe_capacity_providers", described_provider("DISABLED"))
    stubber.add_response(
        "update_capacity_provider",
        {},
        {
            "name": "central-llm-gpu-stub",
            "autoScalingGroupProvider": {
                "managedScaling": SCALING,
                "managedTerminationProtection": "ENABLED",
            },
        },
    )

    current = capacity_provider.read()
    fields = engine.diff(capacity_provider.desired(), current)
    assert fields == {"termination_protection": ("DISABLED", "ENABLED")}
    capacity_provider.update(capacity_provider.desired(), current, list(fields))


def template_version(data: dict) -> dict:
    """DescribeLaunchTemplateVersions as AWS answers it for the latest version."""
    return {
        "LaunchTemplateVersions": [
            {
                "LaunchTemplateId": "lt-0abc",
                "LaunchTemplateName": "central-llm-gpu-stub",
                "VersionNumber": 1,
                "CreateTime": datetime(2026, 1, 1, tzinfo=UTC),
                "CreatedBy": f"arn:aws:iam::{ACCOUNT}:user/operator",
                "DefaultVersion": True,
                "LaunchTemplateData": data,
            }
        ]
    }


@pytest.fixture
def template(stubbed, monkeypatch):
    ctx, stubber, _sleeps = stubbed("ec2", TEMPLATE_REGION)
    ctx.outputs["iam.instance_profile"] = {"arn": f"arn:aws:iam::{ACCOUNT}:instance-profile/p"}
    ctx.outputs["ec2.network"] = {"security_group": "sg-1"}
    monkeypatch.setattr(LaunchTemplate, "_image_id", lambda self: AMI)
    launch_template = LaunchTemplate(ctx)
    # What this console declared before: no metadata options, the AMI's own root volume.
    before = {
        key: value
        for key, value in launch_template.desired().items()
        if key not in ("MetadataOptions", "BlockDeviceMappings")
    }
    return launch_template, stubber, before


def test_a_template_without_imdsv2_or_a_sized_root_volume_gets_a_new_version(template):
    launch_template, stubber, before = template
    stubber.add_response("describe_launch_template_versions", template_version(before))
    desired = launch_template.desired()
    stubber.add_response(
        "create_launch_template_version",
        {},
        {"LaunchTemplateName": "central-llm-gpu-stub", "LaunchTemplateData": desired},
    )

    current = launch_template.read()
    fields = engine.diff(desired, current)
    assert fields == {
        "MetadataOptions": (None, METADATA_OPTIONS),
        "BlockDeviceMappings": (None, [ROOT_VOLUME]),
    }
    assert desired["MetadataOptions"] == {
        "HttpEndpoint": "enabled",
        "HttpTokens": "required",
        "HttpPutResponseHopLimit": 1,
    }
    assert desired["BlockDeviceMappings"] == [
        {
            "DeviceName": "/dev/xvda",
            "Ebs": {
                "VolumeSize": 200,
                "VolumeType": "gp3",
                "Encrypted": True,
                "DeleteOnTermination": True,
            },
        }
    ]
    launch_template.update(desired, current, list(fields))


def test_what_aws_adds_to_the_declared_options_is_not_drift(template):
    launch_template, stubber, before = template
    reported = {
        **before,
        "MetadataOptions": {
            **METADATA_OPTIONS,
            "State": "applied",
            "HttpProtocolIpv6": "disabled",
            "InstanceMetadataTags": "disabled",
        },
        "BlockDeviceMappings": [
            {**ROOT_VOLUME, "Ebs": {**ROOT_VOLUME["Ebs"], "Iops": 3000, "Throughput": 125}}
        ],
    }
    stubber.add_response("describe_launch_template_versions", template_version(reported))

    assert engine.diff(launch_template.desired(), launch_template.read()) == {}


def test_hop_limit_two_is_drift(template):
    launch_template, stubber, before = template
    # Two hops: a container on the bridge network could read the instance role's credentials.
    two_hops = {**METADATA_OPTIONS, "HttpPutResponseHopLimit": 2}
    loose = {**before, "MetadataOptions": two_hops, "BlockDeviceMappings": [ROOT_VOLUME]}
    stubber.add_response("describe_launch_template_versions", template_version(loose))

    fields = engine.diff(launch_template.desired(), launch_template.read())
    assert fields == {"MetadataOptions": (two_hops, METADATA_OPTIONS)}


def test_applied_to_moto_and_changes_behind_our_back_are_drift_and_repaired(environment):
    spec = environment.spec()
    apply_only(spec, "ecs.capacity_provider")
    suffix = spec.suffix
    ec2, autoscaling, ecs = (aws.client(name) for name in ("ec2", "autoscaling", "ecs"))
    name = f"central-llm-gpu{suffix}"

    def latest() -> dict:
        return ec2.describe_launch_template_versions(LaunchTemplateName=name, Versions=["$Latest"])[
            "LaunchTemplateVersions"
        ][0]

    data = latest()["LaunchTemplateData"]
    assert data["MetadataOptions"] == METADATA_OPTIONS
    assert data["BlockDeviceMappings"] == [ROOT_VOLUME]
    [group] = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
        "AutoScalingGroups"
    ]
    assert group["NewInstancesProtectedFromScaleIn"] is True
    [provider] = ecs.describe_capacity_providers(capacityProviders=[name])["capacityProviders"]
    assert provider["autoScalingGroupProvider"]["managedTerminationProtection"] == "ENABLED"

    # By hand: a version with IMDSv1, the group and the provider unprotected.
    loose = {**data, "MetadataOptions": {"HttpTokens": "optional"}}
    ec2.create_launch_template_version(LaunchTemplateName=name, LaunchTemplateData=loose)
    autoscaling.update_auto_scaling_group(
        AutoScalingGroupName=name, NewInstancesProtectedFromScaleIn=False
    )
    ecs.update_capacity_provider(
        name=name, autoScalingGroupProvider={"managedTerminationProtection": "DISABLED"}
    )
    keys = {"ec2.launch_template", "autoscaling.gpu_group", "ecs.capacity_provider"}
    drifted = {c.key: c for c in engine.drift(spec) if c.key in keys}
    assert {key: list(change.fields) for key, change in drifted.items()} == {
        "ec2.launch_template": ["MetadataOptions"],
        "autoscaling.gpu_group": ["protect_new_instances"],
        "ecs.capacity_provider": ["termination_protection"],
    }

    version = latest()["VersionNumber"]
    for key in ("ec2.launch_template", "autoscaling.gpu_group", "ecs.capacity_provider"):
        assert engine.apply_one(spec, key).startswith("updated")  # dependencies first
    assert latest()["VersionNumber"] == version + 1  # a new version, the group uses $Latest
    assert {engine.apply_one(spec, key) for key in keys} == {"unchanged"}
