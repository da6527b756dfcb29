"""The gateway's secret (issue 20): made once per environment and kept, restored after a
destroy, sent by API Gateway, handed to the task by ECS, and never in the console's records.

Against the moto server over HTTP; where moto differs from AWS (a secret scheduled for deletion
answers CreateSecret differently), botocore's Stubber with AWS's documented answer."""

from itertools import chain

import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY
from django.apps import apps
from django.core import serializers
from django.urls import reverse

from centralllm import aws
from centralllm.audit import contract
from provisioning import engine, runs
from provisioning.jobs import execute
from provisioning.models import Run
from provisioning.resources.base import Context
from provisioning.resources.secretsmanager import (
    RECOVERY_DAYS,
    SAFE_VALUE,
    GatewaySecret,
    fingerprint,
)

REGION = "us-west-1"  # no other test file uses it: clients are shared process-wide
NAME = "central-llm/gateway-secret-stub"
ARN = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:{NAME}-AbCdEf"


def value_of(environment) -> str:
    secret = f"central-llm/gateway-secret{environment.suffix}"
    return aws.client("secretsmanager").get_secret_value(SecretId=secret)["SecretString"]


def run(environment, kind: str) -> Run:
    started = runs.start(environment, kind, actor=None, enqueue=False)
    execute(started.pk)
    started.refresh_from_db()
    assert started.status == Run.Status.SUCCEEDED, started.explanation
    return started


@pytest.mark.django_db
def test_after_an_apply_the_secret_is_in_aws_and_nowhere_in_the_console(
    environment, client, viewer
):
    applied = run(environment, "apply")
    value = value_of(environment)
    spec = environment.spec()

    # What it must be: random, and carried as it is by an API Gateway static value ('...').
    assert SAFE_VALUE.fullmatch(value) and len(value) == 43
    # API Gateway sends it to the serving hosts with every request it passes on.
    header = f"integration.request.header.{contract.GATEWAY_SECRET_HEADER}"
    assert integration_of(spec)["requestParameters"][header] == f"'{value}'"
    # ECS hands it to the task from Secrets Manager, with the execution role's permission.
    task = aws.client("ecs").describe_task_definition(
        taskDefinition=f"central-llm-service{spec.suffix}"
    )["taskDefinition"]
    secrets = {
        item["name"]: item["valueFrom"] for item in task["containerDefinitions"][0]["secrets"]
    }
    arn = secrets[contract.GATEWAY_SECRET_ENV]
    assert arn.startswith(
        f"arn:aws:secretsmanager:{spec.region}:123456789012:secret:central-llm/gateway-secret"
        f"{spec.suffix}-"
    )
    policy = aws.client("iam").get_role_policy(
        RoleName=f"ecsTaskExecutionRole{spec.suffix}", PolicyName="read-gateway-secret"
    )["PolicyDocument"]
    assert policy["Statement"][0]["Resource"] == [arn]
    step = applied.steps.get(key=GatewaySecret.key)
    assert step.outputs == {
        "name": f"central-llm/gateway-secret{spec.suffix}",
        "arn": arn,
        "fingerprint": fingerprint(value),
    }

    # Given a new value by hand, the plan shows the integration's change by fingerprints.
    new = "New-value_0123456789abcdefghijklmnopqrstuvw"
    aws.client("secretsmanager").put_secret_value(SecretId=arn, SecretString=new)
    plan = run(environment, "plan")
    changes = {change["key"]: change for change in plan.result["changes"]}
    integration = changes["apigateway.rest_api"]["fields"]["integration"]
    assert [side["requestParameters"][header] for side in integration] == [
        fingerprint(value),
        fingerprint(new),
    ]

    # Neither value anywhere in the database (runs, plans, outputs, the run log, the action
    # log), nor on the pages that show them.
    everything = database()
    assert fingerprint(value) in everything
    assert value not in everything and new not in everything
    client.force_login(viewer)
    for page in (
        reverse("provisioning:environment", args=[environment.name]),
        reverse("provisioning:run", args=[applied.pk]),
        reverse("provisioning:run", args=[plan.pk]),
    ):
        content = client.get(page).content.decode()
        assert value not in content and new not in content


def database() -> str:
    """Every row the console keeps, of every table, as JSON."""
    kept = [model for model in apps.get_models() if model._meta.managed]
    return serializers.serialize("json", chain.from_iterable(m.objects.all() for m in kept))


def integration_of(spec) -> dict:
    apigateway = aws.client("apigateway")
    api = next(
        item
        for item in apigateway.get_rest_apis()["items"]
        if item["name"] == f"central-llm-rest-api{spec.suffix}"
    )
    proxy = next(
        item
        for item in apigateway.get_resources(restApiId=api["id"])["items"]
        if item["path"] == "/v1/{proxy+}"
    )
    method = apigateway.get_method(restApiId=api["id"], resourceId=proxy["id"], httpMethod="ANY")
    return method["methodIntegration"]


def test_an_apply_keeps_the_secret_and_one_after_a_destroy_restores_it(environment):
    spec = environment.spec()
    assert engine.apply_one(spec, GatewaySecret.key) == "created"
    value = value_of(environment)
    assert engine.apply_one(spec, GatewaySecret.key) == "unchanged"
    assert value_of(environment) == value

    ctx = Context(spec)
    try:
        secret = GatewaySecret(ctx)
        secret.delete(secret.read())
        # Scheduled for deletion: unusable, so absent to the engine, and its name still taken.
        deleted = aws.client("secretsmanager").describe_secret(SecretId=secret.name)
        assert deleted["DeletedDate"] and secret.read() is None
    finally:
        ctx.close()
    assert engine.apply_one(spec, GatewaySecret.key) == "created"
    assert value_of(environment) == value  # restored, not made anew


@pytest.fixture
def stubbed_secret(stubbed, real_aws):
    ctx, stubber, _ = stubbed("secretsmanager", REGION)
    return GatewaySecret(ctx), stubber


def test_a_secret_scheduled_for_deletion_is_restored_as_aws_answers(stubbed_secret):
    """AWS keeps the name of a deleted secret through its recovery window, and CreateSecret
    answers InvalidRequestException ("The secret is scheduled for deletion":
    https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_CreateSecret.html,
    Errors); moto answers ResourceExistsException instead."""
    secret, stubber = stubbed_secret
    stubber.add_client_error(
        "create_secret",
        "InvalidRequestException",
        "You can't create this secret because a secret with this name is already scheduled "
        "for deletion.",
        400,
    )
    stubber.add_response("restore_secret", {"ARN": ARN, "Name": NAME}, {"SecretId": NAME})

    secret.create(secret.desired())

    assert secret.ctx.progress.lines == [
        f"restored {NAME}, scheduled for deletion by an earlier destroy: its value is kept"
    ]


def test_other_refusals_of_create_are_not_taken_for_a_deleted_secret(stubbed_secret):
    secret, stubber = stubbed_secret
    # On AWS this means a live secret of that name: never "restored", never overwritten.
    stubber.add_client_error(
        "create_secret", "ResourceExistsException", "The secret already exists.", 400
    )
    with pytest.raises(ClientError, match="ResourceExistsException"):
        secret.create(secret.desired())


def test_destroy_schedules_the_deletion_with_the_shortest_recovery_window(stubbed_secret):
    # RecoveryWindowInDays: 7 to 30 (API_DeleteSecret.html); restorable meanwhile.
    secret, stubber = stubbed_secret
    stubber.add_response(
        "delete_secret",
        {"ARN": ARN, "Name": NAME},
        {"SecretId": ARN, "RecoveryWindowInDays": RECOVERY_DAYS},
    )
    secret.delete({"arn": ARN})
    assert RECOVERY_DAYS == 7


def test_a_secret_made_without_a_value_gets_one(stubbed_secret):
    secret, stubber = stubbed_secret
    stubber.add_response("describe_secret", {"ARN": ARN, "Name": NAME}, {"SecretId": NAME})
    # GetSecretValue of a secret without a current version (API_GetSecretValue.html, Errors).
    stubber.add_client_error(
        "get_secret_value",
        "ResourceNotFoundException",
        "Secrets Manager can't find the specified secret value for staging label: AWSCURRENT",
        400,
    )

    current = secret.read()
    fields = engine.diff(secret.desired(), current)

    assert fields["has_value"] == (False, True)
    stubber.add_response(
        "put_secret_value", {"ARN": ARN, "Name": NAME}, {"SecretId": ARN, "SecretString": ANY}
    )
    secret.update(secret.desired(), current, ["has_value"])
