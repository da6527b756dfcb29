"""IAM: every policy document is valid, narrow and names its resources; roles settle slowly;
roles this console did not create are used, never stripped or deleted."""

import json

import pytest
from botocore.exceptions import ClientError

from centralllm import aws
from provisioning import engine
from provisioning.models import Environment
from provisioning.resources import CATALOGUE, iam
from provisioning.resources.base import Context, ProvisioningError
from provisioning.resources.lambda_ import Function
from provisioning.resources.secretsmanager import GatewaySecret
from provisioning.tests.conftest import Messages

# Actions that take no resource, so "*" is the only one they can name.
RESOURCELESS = {"ecr:GetAuthorizationToken"}  # docker login
# docker push to one repository (ECR's "IAM permissions for pushing an image").
ECR_PUSH = {
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:CompleteLayerUpload",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
}
# What each role may do, from the deployment guide: nothing more.
ALLOWED_ACTIONS = {
    # Records and raw bodies put; the attribution bindings read (issue 20).
    "iam.task_role": {"s3:PutObject", "s3:GetObject"},
    "iam.execution_role": {"secretsmanager:GetSecretValue"},
    "iam.lambda_role": {
        "s3:GetObject",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:GetItem",  # a taken request id's guard, to tell a repeat from a conflict
        "sqs:SendMessage",
    },
    "iam.codebuild_role": {
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        *RESOURCELESS,
        *ECR_PUSH,
    },
    "iam.instance_role": set(),
}
# The AWS-managed policies each role may have: service roles' own, never a broad one.
MANAGED = {
    "iam.task_role": [],
    "iam.execution_role": ["service-role/AmazonECSTaskExecutionRolePolicy"],
    "iam.lambda_role": ["service-role/AWSLambdaBasicExecutionRole"],
    "iam.codebuild_role": [],
    "iam.instance_role": ["service-role/AmazonEC2ContainerServiceforEC2Role"],
}
TRUSTED = {
    "iam.task_role": "ecs-tasks.amazonaws.com",
    "iam.execution_role": "ecs-tasks.amazonaws.com",
    "iam.lambda_role": "lambda.amazonaws.com",
    "iam.codebuild_role": "codebuild.amazonaws.com",
    "iam.instance_role": "ec2.amazonaws.com",
}
ROLES = [cls for cls in CATALOGUE if issubclass(cls, iam.Role)]
# A region no other test uses, so the stubbed Lambda client is ours alone.
REGION = "ap-southeast-2"
GATEWAY_SECRET = (
    "arn:aws:secretsmanager:eu-central-1:123456789012:secret:"
    "central-llm/gateway-secret-policies-AbCdEf"
)


@pytest.fixture
def ctx():
    environment = Environment(
        name="policies",
        suffix="-policies",
        is_local=True,
        hf_token_secret_arn="arn:aws:secretsmanager:eu-central-1:123456789012:secret:hf-AbCdEf",
    )
    ctx = Context(environment.spec())
    ctx.outputs[GatewaySecret.key] = {"arn": GATEWAY_SECRET}
    yield ctx
    ctx.close()


def test_every_role_of_the_guide_is_declared():
    assert {cls.key for cls in ROLES} == set(ALLOWED_ACTIONS)


@pytest.mark.parametrize("role", ROLES, ids=lambda cls: cls.key)
def test_policy_documents_are_valid_narrow_and_name_their_resources(ctx, role):
    for path in role.files():
        json.loads(ctx.render(path))  # valid JSON once the placeholders are filled in
    desired = role(ctx).desired()

    assert desired["managed_policies"] == [iam.AWS_POLICY + name for name in MANAGED[role.key]]

    trust = desired["trust_policy"]["Statement"]
    assert [statement["Principal"] for statement in trust] == [{"Service": TRUSTED[role.key]}]
    assert [statement["Action"] for statement in trust] == ["sts:AssumeRole"]

    for document in desired["inline_policies"].values():
        assert document["Version"] == "2012-10-17"
        for statement in document["Statement"]:
            assert statement["Effect"] == "Allow"
            actions = statement["Action"]
            actions = {actions} if isinstance(actions, str) else set(actions)
            assert actions <= ALLOWED_ACTIONS[role.key]
            resources = statement["Resource"]
            resources = [resources] if isinstance(resources, str) else resources
            for resource in resources:
                if resource == "*":
                    assert actions <= RESOURCELESS, actions
                    continue
                assert resource.startswith("arn:aws:"), resource
                assert "${" not in resource
                # Named: the environment's own bucket, table, queue, log group or secret.
                assert "-policies" in resource or resource == ctx.spec.hf_token_secret_arn


def test_the_execution_role_reads_the_gateway_secret_and_the_hf_token_only(ctx):
    # ECS fetches a task's secrets with the execution role when the task starts:
    # https://docs.aws.amazon.com/AmazonECS/latest/developerguide/secrets-envvar-secrets-manager.html
    policies = iam.ExecutionRole(ctx).desired()["inline_policies"]
    granted = {
        name: [(statement["Action"], statement["Resource"]) for statement in document["Statement"]]
        for name, document in policies.items()
    }
    read = ["secretsmanager:GetSecretValue"]
    assert granted == {
        "read-gateway-secret": [(read, [GATEWAY_SECRET])],
        "read-hf-token": [(read, [ctx.spec.hf_token_secret_arn])],
    }


def test_codebuild_pushes_only_to_the_environments_repository(ctx):
    policies = iam.CodeBuildRole(ctx).desired()["inline_policies"]
    repository = "arn:aws:ecr:eu-central-1:123456789012:repository/mistral8b-vllm-policies"
    granted = {
        action: statement["Resource"]
        for statement in policies["push-inference-image"]["Statement"]
        for action in statement["Action"]
    }
    assert granted.pop("ecr:GetAuthorizationToken") == ["*"]
    assert set(granted) == ECR_PUSH
    assert all(resources == [repository] for resources in granted.values())


@pytest.fixture
def stubbed_lambda(stubbed):
    ctx, stubber, sleeps = stubbed("lambda", REGION)
    return Function(ctx), stubber, sleeps


DESIRED_FUNCTION = {
    "runtime": "python3.12",
    "handler": "llm_audit_ingest.handler.lambda_handler",
    "timeout": 60,
    "role": "arn:aws:iam::123456789012:role/llm-audit-ingest-role-stub",
    "environment": {"TABLE_NAME": "CentralLLMAudit-stub", "MAX_PREVIEW_CHARS": "2048"},
    "dead_letter_queue": "arn:aws:sqs:ap-southeast-2:123456789012:llm-audit-dlq-stub",
}
NOT_ASSUMABLE = "The role defined for the function cannot be assumed by Lambda."
NO_DLQ_PERMISSION = (
    "The provided execution role does not have permissions to call SendMessage on SQS"
)


def test_creating_the_lambda_waits_for_a_new_role_to_become_assumable(stubbed_lambda):
    function, stubber, sleeps = stubbed_lambda
    # Real AWS answers both while the new role and its inline policy propagate.
    for message in (NOT_ASSUMABLE, NO_DLQ_PERMISSION):
        stubber.add_client_error("create_function", "InvalidParameterValueException", message, 400)
    stubber.add_response("create_function", {"FunctionName": "llm-audit-ingest-stub"})
    # A new function is Pending until Lambda has set it up, and refuses changes meanwhile:
    # https://docs.aws.amazon.com/lambda/latest/dg/functions-states.html
    function_state(stubber, State="Pending", LastUpdateStatus="InProgress")
    function_state(stubber, State="Active", LastUpdateStatus="Successful")

    function.create(DESIRED_FUNCTION)

    assert sleeps == [2, 4, 2]
    assert "not usable by Lambda yet" in function.ctx.progress.lines[0]
    assert function.ctx.progress.lines[-1].startswith("waiting for the function to be ready: 0 s")


def function_state(stubber, **states: str) -> None:
    stubber.add_response(
        "get_function_configuration",
        {"FunctionName": "llm-audit-ingest-stub", **states},
        {"FunctionName": "llm-audit-ingest-stub"},
    )


def test_other_invalid_parameters_fail_at_once(stubbed_lambda):
    function, stubber, sleeps = stubbed_lambda
    stubber.add_client_error(
        "create_function", "InvalidParameterValueException", "Unsupported runtime", 400
    )

    with pytest.raises(ClientError, match="Unsupported runtime"):
        function.create(DESIRED_FUNCTION)
    assert sleeps == []


def test_against_real_aws_the_dead_letter_queue_is_compared_and_set(stubbed_lambda, real_aws):
    function, stubber, _ = stubbed_lambda
    function.ctx.outputs.update(
        {
            "iam.lambda_role": {"arn": DESIRED_FUNCTION["role"]},
            "dynamodb.audit_table": {"name": "CentralLLMAudit-stub"},
            "sqs.dlq": {"arn": DESIRED_FUNCTION["dead_letter_queue"]},
        }
    )
    desired = function.desired()
    other_queue = f"arn:aws:sqs:{REGION}:123456789012:someone-elses-dlq"
    stubber.add_response(
        "get_function_configuration",
        {
            "FunctionName": "llm-audit-ingest-stub",
            "FunctionArn": f"arn:aws:lambda:{REGION}:123456789012:function:llm-audit-ingest-stub",
            "Runtime": desired["runtime"],
            "Handler": desired["handler"],
            "Timeout": desired["timeout"],
            "Role": desired["role"],
            "Environment": {"Variables": desired["environment"]},
            "CodeSha256": desired["code_sha256"],
            "DeadLetterConfig": {"TargetArn": other_queue},
        },
        {"FunctionName": "llm-audit-ingest-stub"},
    )

    current = function.read()
    fields = engine.diff(desired, current)

    # The local AWS drops the setting, so only real AWS's answer can show this drift.
    assert fields == {"dead_letter_queue": (other_queue, DESIRED_FUNCTION["dead_letter_queue"])}
    stubber.add_response(
        "update_function_configuration",
        {"FunctionName": "llm-audit-ingest-stub"},
        {
            "FunctionName": "llm-audit-ingest-stub",
            "Runtime": "python3.12",
            "Handler": desired["handler"],
            "Timeout": 60,
            "Role": desired["role"],
            "Environment": {"Variables": desired["environment"]},
            "DeadLetterConfig": {"TargetArn": DESIRED_FUNCTION["dead_letter_queue"]},
        },
    )
    function_state(stubber, State="Active", LastUpdateStatus="InProgress")
    function_state(stubber, State="Active", LastUpdateStatus="Successful")
    function.update(desired, current, list(fields))


OTHER_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}],
    }
)
# The tags that mark what this console created, for which environment.
MANAGED_BY, ENVIRONMENT = "central-llm:managed-by", "central-llm:environment"
OURS = {MANAGED_BY: "central-llm-console"}


def tags_of_role(name: str) -> dict[str, str]:
    tags = aws.client("iam").list_role_tags(RoleName=name)["Tags"]
    return {tag["Key"]: tag["Value"] for tag in tags}


def someone_elses_role(name: str, **extra) -> str:
    """A role of another workload under one of the guide's names, with its own policies; the
    ARN of its managed policy."""
    client = aws.client("iam")
    trust = json.dumps(iam.service_trust("ecs-tasks.amazonaws.com"))
    client.create_role(RoleName=name, AssumeRolePolicyDocument=trust, **extra)
    arn = client.create_policy(PolicyName=f"other-{name}", PolicyDocument=OTHER_POLICY)
    client.attach_role_policy(RoleName=name, PolicyArn=arn["Policy"]["Arn"])
    client.put_role_policy(RoleName=name, PolicyName="other-workload", PolicyDocument=OTHER_POLICY)
    return arn["Policy"]["Arn"]


def test_a_role_found_untagged_gets_what_is_declared_and_keeps_the_rest(environment):
    spec = environment.spec()
    role = f"ecsTaskRole{spec.suffix}"
    other_arn = someone_elses_role(role)
    messages = Messages()

    outcome = engine.apply_one(spec, "iam.task_role", messages)

    assert outcome == "updated inline_policies"  # ours added, nothing removed, no tag claimed
    client = aws.client("iam")
    attached = client.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
    assert [policy["PolicyArn"] for policy in attached] == [other_arn]
    assert sorted(client.list_role_policies(RoleName=role)["PolicyNames"]) == [
        "ecs-task-audit-writer",
        "other-workload",
    ]
    assert MANAGED_BY not in tags_of_role(role)
    [said] = [line for line in messages.lines if "not created" in line]
    assert "not created by this console" in said
    assert f"left alone: {other_arn}, other-workload" in said

    changes = {change.key: change.action for change in engine.plan(spec)}
    assert changes["iam.task_role"] == engine.NONE  # what is not ours is not drift

    result = engine.destroy(spec, confirm=spec.name)
    assert result.outcomes["iam.task_role"] == "left in place (not created here)"
    assert len(client.list_role_policies(RoleName=role)["PolicyNames"]) == 2


def test_what_apply_creates_is_tagged_and_destroy_deletes_it(environment):
    spec = environment.spec()
    for key in ("iam.task_role", "iam.instance_role", "iam.instance_profile"):
        assert engine.apply_one(spec, key) == "created"
    ours = {**OURS, ENVIRONMENT: spec.name}
    assert tags_of_role(f"ecsTaskRole{spec.suffix}") == ours
    profile = aws.client("iam").get_instance_profile(
        InstanceProfileName=f"ecsInstanceRole{spec.suffix}"
    )["InstanceProfile"]
    assert {tag["Key"]: tag["Value"] for tag in profile["Tags"]} == ours

    result = engine.destroy(spec, confirm=spec.name)

    for key in ("iam.task_role", "iam.instance_role", "iam.instance_profile"):
        assert result.outcomes[key] == "deleted", key


def test_a_role_made_here_before_tags_is_recognised_tagged_and_trimmed(environment):
    spec = environment.spec()
    role = f"ecsTaskRole{spec.suffix}"
    # What this console created before it tagged roles: known by the description it gave.
    other_arn = someone_elses_role(role, Description=f"Central LLM ECS task role ({spec.name})")

    outcome = engine.apply_one(spec, "iam.task_role")

    assert outcome == "updated managed_policies, inline_policies, ownership"
    assert tags_of_role(role) == {**OURS, ENVIRONMENT: spec.name}
    client = aws.client("iam")
    assert client.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == []
    assert client.list_role_policies(RoleName=role)["PolicyNames"] == ["ecs-task-audit-writer"]
    client.delete_policy(PolicyArn=other_arn)


def test_a_role_of_another_environment_is_not_ours(environment):
    spec = environment.spec()
    role = f"ecsTaskRole{spec.suffix}"
    someone_elses_role(
        role,
        Tags=[
            {"Key": MANAGED_BY, "Value": OURS[MANAGED_BY]},
            {"Key": ENVIRONMENT, "Value": "staging"},
        ],
    )

    engine.apply_one(spec, "iam.task_role")

    assert len(aws.client("iam").list_role_policies(RoleName=role)["PolicyNames"]) == 2


def test_an_instance_profile_found_holding_another_role_is_not_changed(environment):
    spec = environment.spec()
    profile = f"ecsInstanceRole{spec.suffix}"
    client = aws.client("iam")
    someone_elses_role(f"other{spec.suffix}")
    client.create_instance_profile(InstanceProfileName=profile)
    client.add_role_to_instance_profile(InstanceProfileName=profile, RoleName=f"other{spec.suffix}")
    engine.apply_one(spec, "iam.instance_role")

    with pytest.raises(ProvisioningError, match="not created by this console and holds other"):
        engine.apply_one(spec, "iam.instance_profile")

    result = engine.destroy(spec, confirm=spec.name)
    assert result.outcomes["iam.instance_profile"] == "left in place (not created here)"
    roles = client.get_instance_profile(InstanceProfileName=profile)["InstanceProfile"]["Roles"]
    assert [role["RoleName"] for role in roles] == [f"other{spec.suffix}"]
