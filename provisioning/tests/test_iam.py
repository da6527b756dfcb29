"""IAM: every policy document is valid, narrow and names its resources; roles settle slowly."""

import json

import pytest
from botocore.exceptions import ClientError

from provisioning.models import Environment
from provisioning.resources import CATALOGUE, iam
from provisioning.resources.base import Context
from provisioning.resources.lambda_ import Function

# What each role may do, from the deployment guide: nothing more.
ALLOWED_ACTIONS = {
    "iam.task_role": {"s3:PutObject"},
    "iam.execution_role": {"secretsmanager:GetSecretValue"},
    "iam.lambda_role": {
        "s3:GetObject",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:GetItem",  # a taken request id's guard, to tell a repeat from a conflict
        "sqs:SendMessage",
    },
    "iam.codebuild_role": {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"},
    "iam.instance_role": set(),
}
TRUSTED = {
    "iam.task_role": "ecs-tasks.amazonaws.com",
    "iam.execution_role": "ecs-tasks.amazonaws.com",
    "iam.lambda_role": "lambda.amazonaws.com",
    "iam.codebuild_role": "codebuild.amazonaws.com",
    "iam.instance_role": "ec2.amazonaws.com",
}
ROLES = [cls for cls in CATALOGUE if issubclass(cls, iam.Role)]


@pytest.fixture
def ctx():
    environment = Environment(
        name="policies",
        suffix="-policies",
        is_local=True,
        hf_token_secret_arn="arn:aws:secretsmanager:eu-central-1:123456789012:secret:hf-AbCdEf",
    )
    ctx = Context(environment.spec())
    yield ctx
    ctx.close()


def test_every_role_of_the_guide_is_declared():
    assert {cls.key for cls in ROLES} == set(ALLOWED_ACTIONS)


@pytest.mark.parametrize("role", ROLES, ids=lambda cls: cls.key)
def test_policy_documents_are_valid_narrow_and_name_their_resources(ctx, role):
    for path in role.files():
        json.loads(ctx.render(path))  # valid JSON once the placeholders are filled in
    desired = role(ctx).desired()

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
                assert resource != "*" and resource.startswith("arn:aws:"), resource
                assert "${" not in resource
                # Named: the environment's own bucket, table, queue, log group or secret.
                assert "-policies" in resource or resource == ctx.spec.hf_token_secret_arn


@pytest.fixture
def stubbed_lambda(stubbed):
    ctx, stubber, sleeps = stubbed("lambda", "ap-southeast-2")
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

    function.create(DESIRED_FUNCTION)

    assert sleeps == [2, 4]
    assert "not usable by Lambda yet" in function.ctx.progress.lines[0]


def test_other_invalid_parameters_fail_at_once(stubbed_lambda):
    function, stubber, sleeps = stubbed_lambda
    stubber.add_client_error(
        "create_function", "InvalidParameterValueException", "Unsupported runtime", 400
    )

    with pytest.raises(ClientError, match="Unsupported runtime"):
        function.create(DESIRED_FUNCTION)
    assert sleeps == []
