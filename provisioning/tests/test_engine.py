"""The engine against the moto server: plan, apply, converge, resume, drift, destroy."""

import json
import uuid

import pytest
from botocore.exceptions import EndpointConnectionError

from centralllm import aws
from core.refusals import Refused
from provisioning import engine
from provisioning.models import Environment
from provisioning.resources import CATALOGUE
from provisioning.resources.base import ProvisioningError, is_read_only

# Managed elsewhere: the local AWS's default VPC exists before any apply.
NOT_OURS = {"ec2.network", "iam.ecs_service_linked_role"}
# The account's ECS service-linked role: made by whichever test applies first.
MADE_ONCE = {"iam.ecs_service_linked_role"}
DATA = {"s3.audit_bucket", "s3.raw_bucket", "dynamodb.audit_table"}


def actions(changes: list[engine.Change]) -> dict[str, str]:
    return {change.key: change.action for change in changes}


def test_plan_on_an_empty_account_creates_everything_and_changes_nothing(environment):
    spec = environment.spec()
    with engine.counting_calls(spec.region) as calls:
        planned = actions(engine.plan(spec))
    keys = {cls.key for cls in engine.ordered(spec)}
    assert set(planned) == keys
    assert {key for key, action in planned.items() if action != engine.CREATE} | MADE_ONCE == (
        NOT_OURS
    )
    assert calls["mutating"] == 0
    assert calls["read"] > 0


def test_dependencies_come_first():
    # ordered() skips dependencies an environment does not declare: a misspelt key would
    # silently drop the ordering, so every dependency must name a resource of the catalogue.
    known = {cls.key for cls in CATALOGUE}
    assert len(known) == len(CATALOGUE)
    for cls in CATALOGUE:
        assert set(cls.depends_on) <= known, cls.key
    spec_keys = [cls.key for cls in engine.ordered(_any_spec())]
    position = {key: index for index, key in enumerate(spec_keys)}
    for cls in engine.ordered(_any_spec()):
        for dependency in cls.depends_on:
            if dependency in position:
                assert position[dependency] < position[cls.key], (dependency, cls.key)


def _any_spec():
    return Environment(name="order", is_local=True).spec()


def test_apply_creates_everything_then_a_second_apply_only_reads(environment):
    spec = environment.spec()
    result = engine.apply(spec)
    assert {
        key for key, outcome in result.outcomes.items() if outcome != "created"
    } | MADE_ONCE == (NOT_OURS)
    assert set(actions(engine.plan(spec)).values()) == {engine.NONE}

    with engine.counting_calls(spec.region) as calls:
        again = engine.apply(spec)
    assert calls["mutating"] == 0, again.outcomes
    assert again.calls == {"read": calls["read"]}
    assert set(again.outcomes.values()) == {"unchanged"}

    # What apply made is really there, under the environment's names.
    table = aws.client("dynamodb").describe_table(TableName=f"CentralLLMAudit{spec.suffix}")
    indexes = [index["IndexName"] for index in table["Table"]["GlobalSecondaryIndexes"]]
    assert sorted(indexes) == ["GSI_ProjectLatency", "GSI_StatusTime", "GSI_UserTime"]
    service = aws.client("ecs").describe_services(
        cluster=f"central-llm-service-cluster{spec.suffix}",
        services=[f"central-llm-service{spec.suffix}"],
    )["services"][0]
    assert service["desiredCount"] == 1


def test_an_interrupted_apply_resumes_and_converges(environment):
    spec = environment.spec()
    mutating = 0

    def fail_at_the_twentieth_change(model, **kwargs) -> None:
        nonlocal mutating
        if not is_read_only(model.name):
            mutating += 1
            if mutating == 20:
                raise EndpointConnectionError(endpoint_url="injected failure")

    with (
        engine.on_every_call(spec.region, fail_at_the_twentieth_change),
        pytest.raises(ProvisioningError),
    ):
        engine.apply(spec)
    halfway = actions(engine.plan(spec))
    assert engine.NONE in halfway.values()
    assert engine.CREATE in halfway.values()

    resumed = engine.apply(spec)
    assert "created" in resumed.outcomes.values()
    assert set(actions(engine.plan(spec)).values()) == {engine.NONE}


def test_drift_reports_changes_made_behind_our_back_and_apply_repairs_them(environment):
    spec = environment.spec()
    engine.apply(spec)
    suffix = spec.suffix
    aws.client("dynamodb").update_table(
        TableName=f"CentralLLMAudit{suffix}",
        GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": "GSI_StatusTime"}}],
    )
    aws.client("s3").put_bucket_versioning(
        Bucket=f"central-llm-audit-raw{suffix}", VersioningConfiguration={"Status": "Suspended"}
    )
    aws.client("iam").put_role_policy(
        RoleName=f"llm-audit-ingest-role{suffix}",
        PolicyName="llm-audit-ingest-inline",
        PolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
        '"Action": "s3:*", "Resource": "*"}]}',
    )
    aws.client("ecs").update_service(
        cluster=f"central-llm-service-cluster{suffix}",
        service=f"central-llm-service{suffix}",
        desiredCount=7,  # above the max tasks (4): within them, the count is scaling's
    )

    apigateway = aws.client("apigateway")
    [api] = [item for item in apigateway.get_rest_apis()["items"] if item["name"].endswith(suffix)]
    proxy = next(
        item["id"]
        for item in apigateway.get_resources(restApiId=api["id"])["items"]
        if item["path"] == "/v1/{proxy+}"
    )
    apigateway.delete_method(restApiId=api["id"], resourceId=proxy, httpMethod="ANY")
    deployed = apigateway.get_stage(restApiId=api["id"], stageName="prod")["deploymentId"]

    drifted = {change.key: change for change in engine.drift(spec)}
    assert set(drifted) == {
        "dynamodb.audit_table",
        "s3.raw_bucket",
        "iam.lambda_role",
        "ecs.service",
        "apigateway.rest_api",
    }
    assert list(drifted["dynamodb.audit_table"].fields) == ["indexes"]
    assert list(drifted["s3.raw_bucket"].fields) == ["versioning"]
    assert list(drifted["iam.lambda_role"].fields) == ["inline_policies"]
    assert drifted["ecs.service"].fields == {"desired_count": (7, 1)}
    assert "desired_count: 7 -> 1" in str(drifted["ecs.service"])

    repaired = engine.apply(spec)
    assert repaired.outcomes["ecs.service"] == "updated desired_count"
    assert engine.drift(spec) == []
    # The repaired API is deployed again: callers see the method once more.
    method = apigateway.get_method(restApiId=api["id"], resourceId=proxy, httpMethod="ANY")
    assert method["apiKeyRequired"] is True
    assert apigateway.get_stage(restApiId=api["id"], stageName="prod")["deploymentId"] != deployed


def test_destroy_removes_everything_but_keeps_the_audit_data_unless_confirmed_twice(environment):
    spec = environment.spec()
    engine.apply(spec)
    aws.client("s3").put_object(
        Bucket=f"central-llm-audit{spec.suffix}", Key="logs/2026/11/27/r1.json", Body=b"{}"
    )

    with pytest.raises(Refused):
        engine.destroy(spec, confirm="production")
    with pytest.raises(Refused):
        engine.destroy(spec, confirm=spec.name, delete_data=True, confirm_data=spec.name)
    assert set(actions(engine.plan(spec)).values()) == {engine.NONE}

    result = engine.destroy(spec, confirm=spec.name)
    kept = {key for key, outcome in result.outcomes.items() if outcome != "deleted"}
    assert kept == DATA | NOT_OURS
    after = actions(engine.plan(spec))
    assert {key for key, action in after.items() if action == engine.NONE} == DATA | NOT_OURS

    result = engine.destroy(
        spec,
        confirm=spec.name,
        delete_data=True,
        confirm_data=engine.data_confirmation(spec.name),
    )
    assert {result.outcomes[key] for key in DATA} == {"deleted"}
    # What depends on an absent resource cannot be looked up: not claimed "absent".
    assert result.outcomes["apigateway.stage"] == "not looked up (apigateway.rest_api absent)"
    assert {key for key, action in actions(engine.plan(spec)).items() if action == engine.NONE} == (
        NOT_OURS
    )


def real_aws_environment(**fields) -> Environment:
    """A real-AWS environment (Lambda notification, declared network) in moto's account."""
    ec2 = aws.client("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])
    group = ec2.describe_security_groups(
        Filters=[
            {"Name": "vpc-id", "Values": [vpc["VpcId"]]},
            {"Name": "group-name", "Values": ["default"]},
        ]
    )["SecurityGroups"][0]
    tag = uuid.uuid4().hex[:8]
    declared = {
        "name": f"real-{tag}",
        "suffix": f"-r{tag}",
        "account_id": "123456789012",
        "vpc_id": vpc["VpcId"],
        "subnet_ids": ",".join(subnet["SubnetId"] for subnet in subnets["Subnets"][:2]),
        "security_group_id": group["GroupId"],
    }
    return Environment.objects.create(**{**declared, **fields})


@pytest.mark.django_db
def test_a_real_aws_environment_sends_new_audit_records_to_the_lambda():
    environment = real_aws_environment()
    engine.apply(environment)
    assert set(actions(engine.plan(environment)).values()) == {engine.NONE}

    suffix = environment.suffix
    config = aws.client("s3").get_bucket_notification_configuration(
        Bucket=f"central-llm-audit{suffix}"
    )
    assert "QueueConfigurations" not in config
    [target] = config["LambdaFunctionConfigurations"]
    assert target["LambdaFunctionArn"].endswith(f":function:llm-audit-ingest{suffix}")
    assert target["Events"] == ["s3:ObjectCreated:Put"]
    policy = json.loads(
        aws.client("lambda").get_policy(FunctionName=f"llm-audit-ingest{suffix}")["Policy"]
    )
    [statement] = policy["Statement"]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Condition"]["ArnLike"] == {
        "AWS:SourceArn": f"arn:aws:s3:::central-llm-audit{suffix}"
    }


@pytest.mark.django_db
def test_an_environment_of_another_account_is_refused_before_any_change():
    environment = real_aws_environment(account_id="999999999999")
    with engine.counting_calls(environment.region) as calls:
        with pytest.raises(ProvisioningError, match="account 123456789012, but environment"):
            engine.apply(environment)
        with pytest.raises(ProvisioningError, match="declared in account 999999999999"):
            engine.destroy(environment, confirm=environment.name)
    assert calls == {"read": 2}
