"""The whole life of an environment against AWS as documented (``devtools.aws_rules``): the
local AWS with AWS's transitional states, lagging reads, refused first attempts and
throttling put back. Each test asserts the rules it relies on fired, so it cannot pass by not
meeting them; the rules cite their documentation (``aws_rules.RULES``)."""

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from centralllm import aws
from devtools.aws_rules import RULES, AwsRules
from provisioning import engine, preflight, runs, validation
from provisioning.jobs import execute
from provisioning.models import Run
from provisioning.resources.base import Context, ProvisioningError
from provisioning.resources.iam import service_trust
from provisioning.resources.s3 import AuditBucket, RawBucket
from provisioning.tests.test_engine import actions, real_aws_environment

# Transitions and lags the life of an environment meets, whatever the seed. (A new role is
# refused for seconds only; by the time the engine uses one, minutes of other waits have
# passed: test_the_rules_refuse_what_aws_refuses shows those rules on.)
MET = {
    "nlb_provisioning",
    "vpc_link_pending",
    "vpc_link_deleting",
    "capacity_provider_deleting",
    "asg_deleting",
    "service_draining",
    "s3_lifecycle_lag",
    "s3_notification_lag",
    "sqs_new_queue",
    "iam_read_lag",
    "lambda_states",
    "table_transitions",
    "throttling",
}


def run(environment, kind: str, **parameters) -> Run:
    started = runs.start(environment, kind, actor=None, parameters=parameters, enqueue=False)
    execute(started.pk)
    started.refresh_from_db()
    return started


def said(run: Run) -> list[str]:
    return list(run.events.values_list("text", flat=True))


@pytest.mark.slow
@pytest.mark.django_db
def test_a_local_environment_lives_from_nothing_to_destroyed_under_aws_as_documented(
    environment,
):
    with AwsRules(environment.region, seed=19, throttle_rate=0.1) as rules:
        fresh = run(environment, "plan")
        # The plan says how long the first apply usually takes on AWS, step by step.
        expected = {change["key"]: change["expected"] for change in fresh.result["changes"]}
        assert expected["elbv2.load_balancer"] == expected["apigateway.vpc_link"] == "3 min"
        # At least the NLB's and the VPC link's three minutes each.
        minutes, unit = fresh.result["expected_duration"].split()[:2]
        assert unit == "min" and int(minutes) >= 6
        applied = run(environment, "apply")
        assert applied.status == "succeeded", applied.explanation
        lines = said(applied)
        # Waits say what they wait for, how long so far, and what AWS documents as usual.
        assert any(
            line.startswith("waiting for the NLB to become active: ") and "usually 2-4 min" in line
            for line in lines
        )
        assert any(
            line.startswith("waiting for the VPC link to become available") for line in lines
        )
        assert any("waiting for AWS to show the change" in line for line in lines)
        # A fresh account: the role ECS needs is made before the capacity provider.
        assert rules.calls["iam.CreateServiceLinkedRole"] == 1
        assert rules.calls["ecs.CreateCapacityProvider"] == 1
        # The fixed engine never makes a VPC link against a provisioning NLB.
        assert rules.fired["vpc_link_needs_active_nlb"] == 0

        planned = run(environment, "plan")
        assert planned.status == "succeeded", planned.explanation
        assert {change["action"] for change in planned.result["changes"]} == {engine.NONE}

        rolled = run(environment, "rollout", source_version="0123abc")
        assert rolled.status == "succeeded", rolled.explanation
        validated = Run.objects.get(environment=environment, kind="validate")
        execute(validated.pk)
        validated.refresh_from_db()
        assert validated.status == "succeeded", validated.explanation

        destroyed = run(
            environment,
            "destroy",
            confirm=environment.name,
            delete_data=True,
            confirm_data=engine.data_confirmation(environment.name),
        )
        assert destroyed.status == "succeeded", destroyed.explanation
        # Refused by AWS while its stage is attached: the engine removed the stage first.
        assert rules.calls["apigateway.DeleteUsagePlan"] == 1
        assert rules.fired["usage_plan_with_stages"] == 0
        assert set(rules.fired) >= MET, sorted(MET - set(rules.fired))

        # Nothing is left, even what was still being deleted when destroy returned.
        rules.sleep(3600)
        again = run(environment, "plan")
    creates = {change["action"] for change in again.result["changes"]}
    assert creates == {engine.CREATE, engine.NONE}
    kept = {c["key"] for c in again.result["changes"] if c["action"] == engine.NONE}
    assert kept == {"ec2.network", "iam.ecs_service_linked_role"}


def preflight_of(spec) -> dict[str, preflight.Check]:
    ctx = Context(spec)
    try:
        return {check.name: check for check in preflight.run_checks(ctx)}
    finally:
        ctx.close()


def test_every_rule_cites_its_source():
    for name, source in RULES.items():
        assert "https://" in source or "#" in source, name


@pytest.mark.django_db
def test_the_rules_refuse_what_aws_refuses(environment):
    """Without the engine's care, the rules answer as AWS does: they are really on."""
    spec = environment.spec()
    with AwsRules(environment.region, seed=1, throttle_rate=0) as rules:
        production = Context(replace(spec, suffix=""))
        for bucket in (AuditBucket(production), RawBucket(production)):
            with pytest.raises(ProvisioningError, match="owned by another AWS account"):
                bucket.read()
            with pytest.raises(ProvisioningError, match="declare a name suffix"):
                bucket.create(bucket.desired())
        apigateway = aws.client("apigateway", region_name=spec.region)
        api = apigateway.create_rest_api(name=f"rules-{spec.suffix}")["id"]
        root = apigateway.get_resources(restApiId=api)["items"][0]["id"]
        apigateway.put_method(
            restApiId=api, resourceId=root, httpMethod="GET", authorizationType="NONE"
        )
        apigateway.put_integration(restApiId=api, resourceId=root, httpMethod="GET", type="MOCK")
        apigateway.create_deployment(restApiId=api, stageName="prod")
        plan = apigateway.create_usage_plan(
            name=f"rules-{spec.suffix}", apiStages=[{"apiId": api, "stage": "prod"}]
        )
        with pytest.raises(apigateway.exceptions.BadRequestException, match="API Stages"):
            apigateway.delete_usage_plan(usagePlanId=plan["id"])
        iam = aws.client("iam", region_name=spec.region)
        role = iam.create_role(
            RoleName=f"rules-role{spec.suffix}",
            AssumeRolePolicyDocument=json.dumps(service_trust("lambda.amazonaws.com")),
        )["Role"]
        with pytest.raises(iam.exceptions.NoSuchEntityException):
            iam.get_role(RoleName=role["RoleName"])
        function = aws.client("lambda", region_name=spec.region)
        with pytest.raises(function.exceptions.InvalidParameterValueException, match="assumed"):
            function.create_function(
                FunctionName=f"rules{spec.suffix}",
                Runtime="python3.12",
                Role=role["Arn"],
                Handler="index.handler",
                Code={"ZipFile": b"PK"},
            )
        ecs = aws.client("ecs", region_name=spec.region)
        with pytest.raises(ecs.exceptions.ClientException, match="Service Linked Role"):
            ecs.create_capacity_provider(
                name=f"rules{spec.suffix}",
                autoScalingGroupProvider={"autoScalingGroupArn": "arn:aws:autoscaling:x"},
            )
    refused = {
        "foreign_bucket",
        "usage_plan_with_stages",
        "ecs_service_linked_role",
        "iam_read_lag",
        "iam_not_assumable",
    }
    assert refused <= set(rules.fired), sorted(refused - set(rules.fired))


@pytest.mark.slow
@pytest.mark.django_db
def test_a_real_aws_environment_converges_under_aws_as_documented_where_the_stand_in_allows():
    """Declared for real AWS: the S3 -> Lambda path (validated by S3 against the function's
    new permission), the declared network, the alarm silent before the first rollout."""
    environment = real_aws_environment()
    suffix = environment.suffix
    with AwsRules(environment.region, seed=7) as rules:
        before = preflight_of(environment.spec())
        assert "is free" in before["bucket names"].reason and before["bucket names"].ok
        # A fresh account has no ECS service-linked role: apply makes it first.
        assert before["ECS service-linked role"].warning
        assert not before["model token"].ok and "gated" in before["model token"].reason
        taken = preflight_of(replace(environment.spec(), suffix=""))["bucket names"]
        assert not taken.ok
        assert "owned by another account" in taken.reason and "-789012" in taken.reason

        result = engine.apply(environment)
        after = preflight_of(environment.spec())
        assert "exists in this account" in after["bucket names"].reason
        assert not after["ECS service-linked role"].warning
        assert set(actions(engine.plan(environment)).values()) == {engine.NONE}
        # On a first apply the VPC link's minutes pass between the permission and the
        # notification; made one after the other, S3 refuses the notification until the
        # permission settles, and the engine retries it.
        function, bucket = f"llm-audit-ingest{environment.suffix}", f"central-llm-audit{suffix}"
        aws.client("lambda").remove_permission(FunctionName=function, StatementId="AllowS3Invoke")
        aws.client("s3").put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={}
        )
        rules.sleep(60)
        puts = rules.calls["s3.PutBucketNotificationConfiguration"]
        again = engine.apply(environment)
        assert again.outcomes["lambda.s3_permission"] == "created"
        assert rules.fired["s3_lambda_validation"] >= 1
        assert rules.calls["s3.PutBucketNotificationConfiguration"] >= puts + 2
        alarm = aws.client("cloudwatch").describe_alarms(
            AlarmNames=[f"central-llm-service-running-tasks{environment.suffix}"]
        )["MetricAlarms"][0]
        # No task runs before the first rollout: nobody is paged for it from day 0.
        assert alarm["ActionsEnabled"] is False
        assert alarm["TreatMissingData"] == "notBreaching"
        # Nor does scaling start tasks with no image to pull: held at none, and suspended.
        service = f"service/central-llm-service-cluster{suffix}/central-llm-service{suffix}"
        [target] = aws.client("application-autoscaling").describe_scalable_targets(
            ServiceNamespace="ecs", ResourceIds=[service]
        )["ScalableTargets"]
        assert (target["MinCapacity"], target["MaxCapacity"]) == (0, 0)
        assert all(target["SuspendedState"].values())

        destroyed = engine.destroy(
            environment,
            confirm=environment.name,
            delete_data=True,
            confirm_data=engine.data_confirmation(environment.name),
        )
        assert "deleted" in destroyed.outcomes.values()
    assert result.outcomes["lambda.function"] == "created"
    assert {"nlb_provisioning", "vpc_link_pending", "lambda_states"} <= set(rules.fired)


@pytest.mark.django_db
def test_the_ingest_log_check_reads_past_an_empty_first_page(environment):
    """FilterLogEvents "can return empty results while there are more log events available
    through the token" (its API reference): the validation's log check follows the token."""
    spec = environment.spec()
    group = f"/aws/lambda/llm-audit-ingest{spec.suffix}"
    logs = aws.client("logs", region_name=spec.region)
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="2026/12/04/[$LATEST]1")
    sent_at = datetime.now(UTC)
    logs.put_log_events(
        logGroupName=group,
        logStreamName="2026/12/04/[$LATEST]1",
        logEvents=[{"timestamp": int(sent_at.timestamp() * 1000), "message": "ingested r-19"}],
    )
    with AwsRules(spec.region, throttle_rate=0) as rules:
        ctx = Context(spec)
        check = validation.Validation(ctx, model_url=None, wait_seconds=0)
        check.request_id, check.sent_at = "r-19", sent_at
        outcome = check.check("ingest_log")
        ctx.close()
    assert outcome.status == validation.PASS, outcome
    assert rules.fired["empty_page"] == 1
    logs.delete_log_group(logGroupName=group)
