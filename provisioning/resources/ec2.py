"""EC2: the network the platform runs in, and the launch template of the GPU instances."""

import base64

from provisioning.resources.base import ProvisioningError, Resource, ignoring, projected

GPU_AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2/gpu/recommended/image_id"
# Used only when a local AWS lacks the public parameter: no instance ever boots locally.
LOCAL_FALLBACK_AMI = "ami-00000000000000000"
_DATA_KEYS = ("ImageId", "InstanceType", "IamInstanceProfile", "SecurityGroupIds", "UserData")
# IMDSv2 only, one hop: the host (the ECS agent, Docker's log driver) reads the instance role's
# credentials, a container on the bridge network (one hop further) cannot. Tasks get theirs
# from the ECS agent's endpoint.
METADATA_OPTIONS = {
    "HttpEndpoint": "enabled",
    "HttpTokens": "required",
    "HttpPutResponseHopLimit": 1,
}
# The root volume holds Docker's images, the model cache and the audit spool (the host paths of
# inference/ecs-task-definition.json): the vLLM image (~10 GB, and the one it replaces until
# ECS cleans it up), Ministral-8B's weights (~16 GB; ~32 GB if the repository's consolidated
# copy is fetched as well) and the spool, raw bodies included, while S3 is unreachable. The
# AMI's 30 GiB holds barely the first two; 200 GiB leaves ~140 GiB for the spool, for about
# $16 a month per instance. /dev/xvda is the Amazon Linux 2 AMI's root device.
ROOT_VOLUME = {
    "DeviceName": "/dev/xvda",
    "Ebs": {"VolumeSize": 200, "VolumeType": "gp3", "Encrypted": True, "DeleteOnTermination": True},
}
_SHAPES = {"MetadataOptions": METADATA_OPTIONS, "BlockDeviceMappings": [ROOT_VOLUME]}


class Network(Resource):
    """The VPC, subnets and security group: declared by the environment, never created here.

    A local environment without them uses the local AWS's default VPC (made if missing).
    """

    key = "ec2.network"
    title = "VPC, subnets and security group"
    service = "ec2"
    managed = False

    def _uses_default_vpc(self) -> bool:
        return self.spec.is_local and not self.spec.vpc_id

    def desired(self) -> dict:
        return {}  # nothing to configure: the network is only found

    def read(self) -> dict | None:
        ec2 = self.client
        if self._uses_default_vpc():
            vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
        else:
            vpcs = ignoring(
                lambda: ec2.describe_vpcs(VpcIds=[self.spec.vpc_id]), "InvalidVpcID.NotFound"
            )
            vpcs = vpcs["Vpcs"] if vpcs else []
        if not vpcs:
            return None
        vpc_id = vpcs[0]["VpcId"]
        subnets = list(self.spec.subnet_ids)
        if not subnets:
            found = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])
            subnets = sorted(subnet["SubnetId"] for subnet in found["Subnets"])[:2]
        group = self.spec.security_group_id
        if not group:
            found = ec2.describe_security_groups(
                Filters=[
                    {"Name": "vpc-id", "Values": [vpc_id]},
                    {"Name": "group-name", "Values": ["default"]},
                ]
            )
            group = found["SecurityGroups"][0]["GroupId"]
        return {"vpc_id": vpc_id, "subnet_ids": subnets, "security_group": group}

    def create(self, desired: dict) -> None:
        if not self._uses_default_vpc():
            raise ProvisioningError(f"VPC {self.spec.vpc_id} does not exist in {self.spec.region}")
        self.client.create_default_vpc()

    def outputs(self, current: dict) -> dict:
        return {key: current[key] for key in ("vpc_id", "subnet_ids", "security_group")}


class LaunchTemplate(Resource):
    """GPU instances with the ECS-optimised GPU AMI that join the cluster on boot."""

    key = "ec2.launch_template"
    title = "GPU launch template"
    service = "ec2"
    base_name = "LaunchTemplate"
    depends_on = ("iam.instance_profile", "ec2.network")

    def _image_id(self) -> str:
        found = ignoring(
            lambda: self.ctx.client("ssm").get_parameter(Name=GPU_AMI_PARAMETER),
            "ParameterNotFound",
        )
        if found:
            return found["Parameter"]["Value"]
        if self.spec.is_local:
            return LOCAL_FALLBACK_AMI
        raise ProvisioningError(f"no ECS GPU AMI in {self.spec.region} ({GPU_AMI_PARAMETER})")

    def desired(self) -> dict:
        user_data = (
            "#!/bin/bash\n"
            f"echo ECS_CLUSTER={self.ctx.name('Cluster')} >> /etc/ecs/ecs.config\n"
            "echo ECS_ENABLE_GPU_SUPPORT=true >> /etc/ecs/ecs.config\n"
        )
        return {
            "ImageId": self._image_id(),
            "InstanceType": self.spec.instance_type,
            "IamInstanceProfile": {"Arn": self.output("iam.instance_profile")["arn"]},
            "SecurityGroupIds": [self.output("ec2.network")["security_group"]],
            "UserData": base64.b64encode(user_data.encode()).decode(),
            **_SHAPES,
        }

    def read(self) -> dict | None:
        found = ignoring(
            lambda: self.client.describe_launch_template_versions(
                LaunchTemplateName=self.name, Versions=["$Latest"]
            ),
            "InvalidLaunchTemplateName.NotFoundException",
            "InvalidLaunchTemplateId.NotFound",
        )
        if not found or not found["LaunchTemplateVersions"]:
            return None
        version = found["LaunchTemplateVersions"][0]
        data = version["LaunchTemplateData"]
        current = {"id": version["LaunchTemplateId"], **{key: data.get(key) for key in _DATA_KEYS}}
        # Only what is declared: AWS may add fields (the metadata options' State, for one).
        current.update({key: projected(data.get(key), shape) for key, shape in _SHAPES.items()})
        return current

    def create(self, desired: dict) -> None:
        self.client.create_launch_template(LaunchTemplateName=self.name, LaunchTemplateData=desired)

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        # The Auto Scaling group uses $Latest: new instances get the new version (running ones
        # keep theirs until they are replaced).
        self.client.create_launch_template_version(
            LaunchTemplateName=self.name, LaunchTemplateData=desired
        )

    def delete(self, current: dict) -> None:
        self.client.delete_launch_template(LaunchTemplateName=self.name)

    def outputs(self, current: dict) -> dict:
        return {"name": self.name, "id": current["id"]}
