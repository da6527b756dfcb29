"""EC2: the network the platform runs in, and the launch template of the GPU instances."""

import base64

from provisioning.resources.base import ProvisioningError, Resource, ignoring

GPU_AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2/gpu/recommended/image_id"
# Used only when a local AWS lacks the public parameter: no instance ever boots locally.
LOCAL_FALLBACK_AMI = "ami-00000000000000000"
_DATA_KEYS = ("ImageId", "InstanceType", "IamInstanceProfile", "SecurityGroupIds", "UserData")


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
        return {"id": version["LaunchTemplateId"], **{key: data.get(key) for key in _DATA_KEYS}}

    def create(self, desired: dict) -> None:
        self.client.create_launch_template(LaunchTemplateName=self.name, LaunchTemplateData=desired)

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        # The Auto Scaling group uses $Latest: new instances get the new version.
        self.client.create_launch_template_version(
            LaunchTemplateName=self.name, LaunchTemplateData=desired
        )

    def delete(self, current: dict) -> None:
        self.client.delete_launch_template(LaunchTemplateName=self.name)

    def outputs(self, current: dict) -> dict:
        return {"name": self.name, "id": current["id"]}
