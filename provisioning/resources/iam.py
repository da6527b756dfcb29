"""IAM roles of the platform, with their trust, managed and inline policies.

Policy documents come from the repository (``inference/``, ``lambda/``) where the code that
needs the permissions lives; the few that belong to the infrastructure itself are built here.
"""

import json
from typing import ClassVar

from provisioning.resources.base import Resource, ignoring

AWS_POLICY = "arn:aws:iam::aws:policy/"


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
    principal: ClassVar[str] = ""
    trust_file: ClassVar[str] = ""
    managed_policies: ClassVar[tuple[str, ...]] = ()
    inline_policy_name: ClassVar[str] = ""
    inline_policy_file: ClassVar[str] = ""

    @classmethod
    def files(cls) -> tuple[str, ...]:
        return tuple(path for path in (cls.trust_file, cls.inline_policy_file) if path)

    def trust_policy(self) -> dict:
        if self.trust_file:
            return self.ctx.render_json(self.trust_file)
        return service_trust(self.principal)

    def inline_policy(self) -> dict | None:
        return self.ctx.render_json(self.inline_policy_file) if self.inline_policy_file else None

    def desired(self) -> dict:
        inline = self.inline_policy()
        return {
            "trust_policy": self.trust_policy(),
            "managed_policies": sorted(AWS_POLICY + name for name in self.managed_policies),
            "inline_policies": {self.inline_policy_name: inline} if inline else {},
        }

    def read(self) -> dict | None:
        iam, role = self.client, self.name
        found = ignoring(lambda: iam.get_role(RoleName=role), "NoSuchEntity")
        if found is None:
            return None
        attached = iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
        inline = {
            name: iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
            for name in iam.list_role_policies(RoleName=role)["PolicyNames"]
        }
        return {
            "arn": found["Role"]["Arn"],
            "trust_policy": found["Role"]["AssumeRolePolicyDocument"],
            "managed_policies": sorted(policy["PolicyArn"] for policy in attached),
            "inline_policies": inline,
        }

    def create(self, desired: dict) -> None:
        ignoring(
            lambda: self.client.create_role(
                RoleName=self.name,
                AssumeRolePolicyDocument=json.dumps(desired["trust_policy"]),
                Description=f"Central LLM {self.title} ({self.spec.name})",
            ),
            "EntityAlreadyExists",
        )

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        iam, role = self.client, self.name
        if "trust_policy" in fields:
            iam.update_assume_role_policy(
                RoleName=role, PolicyDocument=json.dumps(desired["trust_policy"])
            )
        wanted, attached = set(desired["managed_policies"]), set(current["managed_policies"])
        for arn in sorted(wanted - attached):
            iam.attach_role_policy(RoleName=role, PolicyArn=arn)
        for arn in sorted(attached - wanted):
            iam.detach_role_policy(RoleName=role, PolicyArn=arn)
        for name, document in desired["inline_policies"].items():
            if current["inline_policies"].get(name) != document:
                iam.put_role_policy(
                    RoleName=role, PolicyName=name, PolicyDocument=json.dumps(document)
                )
        for name in current["inline_policies"].keys() - desired["inline_policies"].keys():
            iam.delete_role_policy(RoleName=role, PolicyName=name)

    def delete(self, current: dict) -> None:
        iam, role = self.client, self.name
        for arn in current["managed_policies"]:
            iam.detach_role_policy(RoleName=role, PolicyArn=arn)
        for name in current["inline_policies"]:
            iam.delete_role_policy(RoleName=role, PolicyName=name)
        iam.delete_role(RoleName=role)

    def outputs(self, current: dict) -> dict:
        return {"name": self.name, "arn": current["arn"]}


class TaskRole(Role):
    key = "iam.task_role"
    title = "ECS task role"
    base_name = "TaskRole"
    principal = "ecs-tasks.amazonaws.com"
    inline_policy_name = "ecs-task-audit-writer"
    inline_policy_file = "inference/ecs-task-audit-writer.json"


class ExecutionRole(Role):
    """What ECS itself needs to start the task: pull the image, write logs, read the HF token."""

    key = "iam.execution_role"
    title = "ECS task execution role"
    base_name = "ExecutionRole"
    principal = "ecs-tasks.amazonaws.com"
    managed_policies = ("service-role/AmazonECSTaskExecutionRolePolicy",)
    inline_policy_name = "read-hf-token"

    def inline_policy(self) -> dict | None:
        secret = self.spec.hf_token_secret_arn
        return allow(["secretsmanager:GetSecretValue"], [secret]) if secret else None


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


class CodeBuildRole(Role):
    key = "iam.codebuild_role"
    title = "CodeBuild service role"
    base_name = "CodeBuildRole"
    principal = "codebuild.amazonaws.com"
    managed_policies = ("AmazonEC2ContainerRegistryPowerUser",)
    inline_policy_name = "codebuild-logs"

    def inline_policy(self) -> dict | None:
        # Without these CodeBuild cannot write the build log and the build fails.
        project = self.ctx.name("CodeBuildProject")
        log_group = (
            f"arn:aws:logs:{self.spec.region}:{self.ctx.account_id}"
            f":log-group:/aws/codebuild/{project}"
        )
        return allow(
            ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            [log_group, f"{log_group}:*"],
        )


class InstanceProfile(Resource):
    key = "iam.instance_profile"
    title = "ECS instance profile"
    service = "iam"
    base_name = "InstanceRole"
    depends_on = ("iam.instance_role",)

    def desired(self) -> dict:
        return {"roles": [self.ctx.name("InstanceRole")]}

    def read(self) -> dict | None:
        found = ignoring(
            lambda: self.client.get_instance_profile(InstanceProfileName=self.name),
            "NoSuchEntity",
        )
        if found is None:
            return None
        profile = found["InstanceProfile"]
        return {"arn": profile["Arn"], "roles": [role["RoleName"] for role in profile["Roles"]]}

    def create(self, desired: dict) -> None:
        ignoring(
            lambda: self.client.create_instance_profile(InstanceProfileName=self.name),
            "EntityAlreadyExists",
        )

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        for role in current["roles"]:
            self.client.remove_role_from_instance_profile(
                InstanceProfileName=self.name, RoleName=role
            )
        for role in desired["roles"]:
            self.client.add_role_to_instance_profile(InstanceProfileName=self.name, RoleName=role)

    def delete(self, current: dict) -> None:
        self.update({"roles": []}, current, ["roles"])
        self.client.delete_instance_profile(InstanceProfileName=self.name)

    def outputs(self, current: dict) -> dict:
        return {"name": self.name, "arn": current["arn"]}
