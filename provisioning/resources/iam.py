"""IAM roles of the platform, with their trust, managed and inline policies.

Policy documents come from the repository (``inference/``, ``lambda/``) where the code that
needs the permissions lives; the few that belong to the infrastructure itself are built here.

Without a name suffix the roles are ``ecsTaskRole``, ``ecsTaskExecutionRole`` and
``ecsInstanceRole``, names other workloads of an account use too. What this console creates
carries its tags; a role (or instance profile) found without them is used as found: what is
declared is added, anything else on it is left alone, and destroy leaves it in place.
"""

import json
from typing import ClassVar

from botocore.exceptions import ClientError

from provisioning.resources.base import ProvisioningError, Resource, Spec, error_code, ignoring
from provisioning.resources.secretsmanager import GatewaySecret

AWS_POLICY = "arn:aws:iam::aws:policy/"
MANAGED_BY = "central-llm:managed-by"
CONSOLE = "central-llm-console"
ENVIRONMENT = "central-llm:environment"


def ownership_tags(spec: Spec) -> dict[str, str]:
    """The tags that mark a role or instance profile as created here, for ``spec``."""
    return {MANAGED_BY: CONSOLE, ENVIRONMENT: spec.name}


def _ownership(found: dict) -> dict[str, str]:
    """The ownership tags on what AWS returned (GetRole and GetInstanceProfile carry Tags)."""
    tags = {tag["Key"]: tag["Value"] for tag in found.get("Tags", [])}
    return {key: tags[key] for key in (MANAGED_BY, ENVIRONMENT) if key in tags}


def _as_tags(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in values.items()]


def service_trust(service: str) -> dict:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def allow(actions: list[str], resources: list[str]) -> dict:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resources}],
    }


class Role(Resource):
    service = "iam"
    typical_create_seconds = 5  # IAM is eventually consistent: seconds before it shows
    principal: ClassVar[str] = ""
    trust_file: ClassVar[str] = ""
    managed_policies: ClassVar[tuple[str, ...]] = ()
    inline_policy_name: ClassVar[str] = ""
    inline_policy_file: ClassVar[str] = ""
    _told = False  # the adopted role's message, once per run step

    @classmethod
    def files(cls) -> tuple[str, ...]:
        return tuple(path for path in (cls.trust_file, cls.inline_policy_file) if path)

    def trust_policy(self) -> dict:
        if self.trust_file:
            return self.ctx.render_json(self.trust_file)
        return service_trust(self.principal)

    def inline_policies(self) -> dict[str, dict]:
        """The role's inline policies by name."""
        if not self.inline_policy_file:
            return {}
        return {self.inline_policy_name: self.ctx.render_json(self.inline_policy_file)}

    def desired(self) -> dict:
        return {
            "trust_policy": self.trust_policy(),
            "managed_policies": sorted(AWS_POLICY + name for name in self.managed_policies),
            "inline_policies": self.inline_policies(),
            "ownership": ownership_tags(self.spec),
        }

    def _description(self) -> str:
        return f"Central LLM {self.title} ({self.spec.name})"

    def read(self) -> dict | None:
        iam, role = self.client, self.name
        found = ignoring(lambda: iam.get_role(RoleName=role), "NoSuchEntity")
        if found is None:
            return None
        found = found["Role"]
        attached = iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
        inline = {
            name: iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
            for name in iam.list_role_policies(RoleName=role)["PolicyNames"]
        }
        current = {
            "arn": found["Arn"],
            "trust_policy": found["AssumeRolePolicyDocument"],
            "managed_policies": sorted(policy["PolicyArn"] for policy in attached),
            "inline_policies": inline,
        }
        ownership = _ownership(found)
        # Roles created before they were tagged are known by the description given them then;
        # their tags are added (the ownership field differs).
        current["created_here"] = (
            ownership == ownership_tags(self.spec)
            or found.get("Description") == self._description()
        )
        if current["created_here"]:
            current["ownership"] = ownership
            return current
        # Adopted: only what is declared is compared, so the rest is never drift nor removed.
        declared = self.desired()
        kept = {
            "managed_policies": [
                arn for arn in current["managed_policies"] if arn in declared["managed_policies"]
            ],
            "inline_policies": {
                name: document
                for name, document in inline.items()
                if name in declared["inline_policies"]
            },
        }
        foreign = sorted(set(current["managed_policies"]) - set(kept["managed_policies"]))
        foreign += sorted(inline.keys() - kept["inline_policies"].keys())
        self._tell_adopted(foreign)
        return {**current, **kept}

    def _tell_adopted(self, foreign: list[str]) -> None:
        if self._told:
            return
        self._told = True
        text = (
            f"{self.name} was not created by this console (no {MANAGED_BY} tag for "
            f"{self.spec.name}): it is used as found and destroy leaves it in place"
        )
        if foreign:
            text += f"; its other policies are left alone: {', '.join(foreign)}"
        self.ctx.say(text)

    def create(self, desired: dict) -> None:
        ignoring(
            lambda: self.client.create_role(
                RoleName=self.name,
                AssumeRolePolicyDocument=json.dumps(desired["trust_policy"]),
                Description=self._description(),
                Tags=_as_tags(desired["ownership"]),
            ),
            "EntityAlreadyExists",
        )

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        iam, role = self.client, self.name
        if "trust_policy" in fields:
            iam.update_assume_role_policy(
                RoleName=role, PolicyDocument=json.dumps(desired["trust_policy"])
            )
        if "ownership" in fields:
            iam.tag_role(RoleName=role, Tags=_as_tags(desired["ownership"]))
        wanted, attached = set(desired["managed_policies"]), set(current["managed_policies"])
        for arn in sorted(wanted - attached):
            iam.attach_role_policy(RoleName=role, PolicyArn=arn)
        for name, document in desired["inline_policies"].items():
            if current["inline_policies"].get(name) != document:
                iam.put_role_policy(
                    RoleName=role, PolicyName=name, PolicyDocument=json.dumps(document)
                )
        if not current["created_here"]:
            return  # what else an adopted role holds is someone else's
        for arn in sorted(attached - wanted):
            iam.detach_role_policy(RoleName=role, PolicyArn=arn)
        for name in current["inline_policies"].keys() - desired["inline_policies"].keys():
            iam.delete_role_policy(RoleName=role, PolicyName=name)

    def owns(self, current: dict) -> bool:
        return current["created_here"]

    def delete(self, current: dict) -> None:
        iam, role = self.client, self.name
        for arn in current["managed_policies"]:
            iam.detach_role_policy(RoleName=role, PolicyArn=arn)
        for name in current["inline_policies"]:
            iam.delete_role_policy(RoleName=role, PolicyName=name)
        iam.delete_role(RoleName=role)

    def outputs(self, current: dict) -> dict:
        return {"name": self.name, "arn": current["arn"], "created_here": current["created_here"]}


class TaskRole(Role):
    key = "iam.task_role"
    title = "ECS task role"
    base_name = "TaskRole"
    principal = "ecs-tasks.amazonaws.com"
    inline_policy_name = "ecs-task-audit-writer"
    inline_policy_file = "inference/ecs-task-audit-writer.json"


class ExecutionRole(Role):
    """What ECS itself needs to start the task: pull the image, write logs, read the secrets it
    hands to the task (the gateway's, and the HF token when declared)."""

    key = "iam.execution_role"
    title = "ECS task execution role"
    base_name = "ExecutionRole"
    principal = "ecs-tasks.amazonaws.com"
    managed_policies = ("service-role/AmazonECSTaskExecutionRolePolicy",)
    depends_on = (GatewaySecret.key,)

    def inline_policies(self) -> dict[str, dict]:
        read = ["secretsmanager:GetSecretValue"]
        gateway_secret = self.output(GatewaySecret.key)["arn"]
        policies = {"read-gateway-secret": allow(read, [gateway_secret])}
        if self.spec.hf_token_secret_arn:
            policies["read-hf-token"] = allow(read, [self.spec.hf_token_secret_arn])
        return policies


class InstanceRole(Role):
    """The GPU instances' role: the ECS agent registers them with the cluster."""

    key = "iam.instance_role"
    title = "ECS instance role"
    base_name = "InstanceRole"
    principal = "ec2.amazonaws.com"
    managed_policies = ("service-role/AmazonEC2ContainerServiceforEC2Role",)


class LambdaRole(Role):
    key = "iam.lambda_role"
    title = "audit ingest Lambda role"
    base_name = "LambdaRole"
    trust_file = "lambda/llm_audit_ingest/trust-policy.json"
    managed_policies = ("service-role/AWSLambdaBasicExecutionRole",)
    inline_policy_name = "llm-audit-ingest-inline"
    inline_policy_file = "lambda/llm_audit_ingest/inline-policy.json"


# What ``docker push`` to one repository needs (ECR's "IAM permissions for pushing an image"):
# in place of the account-wide AmazonEC2ContainerRegistryPowerUser.
PUSH_ACTIONS = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:CompleteLayerUpload",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
]


class CodeBuildRole(Role):
    key = "iam.codebuild_role"
    title = "CodeBuild service role"
    base_name = "CodeBuildRole"
    principal = "codebuild.amazonaws.com"

    def inline_policies(self) -> dict[str, dict]:
        spec, account = self.spec, self.ctx.account_id
        project = self.ctx.name("CodeBuildProject")
        log_group = f"arn:aws:logs:{spec.region}:{account}:log-group:/aws/codebuild/{project}"
        repository = (
            f"arn:aws:ecr:{spec.region}:{account}:repository/{self.ctx.name('EcrRepository')}"
        )
        push = allow(PUSH_ACTIONS, [repository])
        # GetAuthorizationToken (docker login) names no resource: "*" is the only one it takes.
        push["Statement"].append(
            {"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": ["*"]}
        )
        return {
            # Without these CodeBuild cannot write the build log and the build fails.
            "codebuild-logs": allow(
                ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                [log_group, f"{log_group}:*"],
            ),
            "push-inference-image": push,
        }


class InstanceProfile(Resource):
    key = "iam.instance_profile"
    title = "ECS instance profile"
    service = "iam"
    base_name = "InstanceRole"
    depends_on = ("iam.instance_role",)

    def desired(self) -> dict:
        return {"roles": [self.ctx.name("InstanceRole")], "ownership": ownership_tags(self.spec)}

    def read(self) -> dict | None:
        found = ignoring(
            lambda: self.client.get_instance_profile(InstanceProfileName=self.name),
            "NoSuchEntity",
        )
        if found is None:
            return None
        profile = found["InstanceProfile"]
        ownership = _ownership(profile)
        roles = [role["RoleName"] for role in profile["Roles"]]
        # Made here before profiles were tagged: untagged, with (at most) its role, made here.
        made_with_its_role = (
            not ownership
            and set(roles) <= set(self.desired()["roles"])
            and self.output("iam.instance_role")["created_here"] is True
        )
        current = {
            "arn": profile["Arn"],
            "roles": roles,
            "created_here": ownership == ownership_tags(self.spec) or made_with_its_role,
        }
        if current["created_here"]:
            current["ownership"] = ownership
        return current

    def create(self, desired: dict) -> None:
        ignoring(
            lambda: self.client.create_instance_profile(
                InstanceProfileName=self.name, Tags=_as_tags(desired["ownership"])
            ),
            "EntityAlreadyExists",
        )

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        if "ownership" in fields:
            self.client.tag_instance_profile(
                InstanceProfileName=self.name, Tags=_as_tags(desired["ownership"])
            )
        if "roles" in fields:
            if current["roles"] and not current["created_here"]:
                raise ProvisioningError(
                    f"instance profile {self.name} was not created by this console and holds "
                    f"{', '.join(current['roles'])}, which others may use: give the "
                    "environment a name suffix"
                )
            self._set_roles(current["roles"], desired["roles"])

    def _set_roles(self, found: list[str], roles: list[str]) -> None:
        for role in found:
            self.client.remove_role_from_instance_profile(
                InstanceProfileName=self.name, RoleName=role
            )
        for role in roles:
            self.client.add_role_to_instance_profile(InstanceProfileName=self.name, RoleName=role)

    def delete(self, current: dict) -> None:
        self._set_roles(current["roles"], [])
        self.client.delete_instance_profile(InstanceProfileName=self.name)

    def owns(self, current: dict) -> bool:
        return current["created_here"]

    def outputs(self, current: dict) -> dict:
        return {"name": self.name, "arn": current["arn"]}


class EcsServiceLinkedRole(Resource):
    """The account's role for ECS itself. A fresh account has none until CreateCluster makes
    it, and the capacity provider comes before the cluster: without the role AWS refuses it
    ("ECS Service Linked Role does not exist", terraform-aws-modules/terraform-aws-ecs#26).
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/using-service-linked-roles.html
    """

    key = "iam.ecs_service_linked_role"
    title = "ECS service-linked role"
    service = "iam"
    managed = False  # every ECS cluster of the account uses it
    kept_because = "the account's ECS clusters share it"
    path = "/aws-service-role/ecs.amazonaws.com/"

    def desired(self) -> dict:
        return {}

    def read(self) -> dict | None:
        pages = self.client.get_paginator("list_roles").paginate(PathPrefix=self.path)
        for page in pages:
            for role in page["Roles"]:
                return {"arn": role["Arn"]}
        return None

    def create(self, desired: dict) -> None:
        try:
            self.client.create_service_linked_role(AWSServiceName="ecs.amazonaws.com")
        except ClientError as exc:
            # Made meanwhile (by a cluster of another workload): AWS says the name is taken.
            if not (error_code(exc) == "InvalidInput" and "has been taken" in str(exc)):
                raise

    def outputs(self, current: dict) -> dict:
        return {"arn": current["arn"]}
