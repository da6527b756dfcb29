"""Rollouts that roll back on slower answers: the two rollout alarms, the service watching
them (``deploymentConfiguration.alarms``), and a rollout that ECS rolls back because one
fired, recorded with the alarm's values.

AWS's side with botocore's Stubber fed its documented answers (ECS evaluates no alarm in
moto, and moto has no service deployments nor alarm history); the local path through the
local AWS's stand-in (``devtools.local_ecs_alarms``), with the alarm set to ALARM during a
real local rollout."""

import json
import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from botocore.stub import Stubber
from django.core.exceptions import ValidationError
from django.urls import reverse

from centralllm import aws
from provisioning import deployment_alarms, engine, rollout
from provisioning.models import Environment
from provisioning.resources.base import Context
from provisioning.resources.cloudwatch import TOPIC, RolloutErrorRateAlarm, RolloutTtftAlarm
from provisioning.resources.ecs import Service
from provisioning.tests.test_engine import actions
from provisioning.tests.test_rollout import _deployment, roll_out

REGION = "ap-northeast-2"  # no other test file uses it: clients are shared process-wide
CLUSTER = "central-llm-service-cluster-stub"
SERVICE = "central-llm-service-stub"
ACCOUNT = "123456789012"
NEW = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/central-llm-service-stub:8"
OLD = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/central-llm-service-stub:7"
GROUP = f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:targetgroup/central-llm-vllm-stub/1"
TTFT = "central-llm-rollout-ttft-p95-stub"
DEPLOYED_AT = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
FIRED_AT = datetime(2026, 12, 1, 10, 4, tzinfo=UTC)
SERVICE_DEPLOYMENT = f"arn:aws:ecs:{REGION}:{ACCOUNT}:service-deployment/{CLUSTER}/{SERVICE}/8"


@pytest.fixture
def stubbed():
    spec = Environment(name="stub", suffix="-stub", is_local=True, region=REGION).spec()
    ctx = Context(spec, sleep=lambda seconds: None)
    stubbers = {name: Stubber(ctx.client(name)) for name in ("ecs", "cloudwatch", "elbv2")}
    for stubber in stubbers.values():
        stubber.activate()
    yield ctx, stubbers
    for stubber in stubbers.values():
        stubber.deactivate()
        stubber.assert_no_pending_responses()
    ctx.close()


def _services(deployments: list[dict], task_definition: str, running: int = 1) -> dict:
    """DescribeServices, as its API reference shows a service with its deployments."""
    return {
        "services": [
            {
                "serviceName": SERVICE,
                "taskDefinition": task_definition,
                "desiredCount": 1,
                "runningCount": running,
                "deployments": deployments,
                "loadBalancers": [
                    {"targetGroupArn": GROUP, "containerName": "vllm", "containerPort": 8000}
                ],
                "events": [],
            }
        ]
    }


def _no_stopped_tasks(ecs: Stubber) -> None:
    ecs.add_response("list_tasks", {"taskArns": []})


def _rolled_back_by(ecs: Stubber, alarm: str) -> None:
    """A deployment an alarm failed, as ECS documents it: DescribeServices shows it FAILED
    beside the rollback to the last completed one
    (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/deployment-alarm-failure.html);
    the service deployment says which alarm (ListServiceDeployments, then
    DescribeServiceDeployments: ServiceDeploymentAlarms' status TRIGGERED and
    triggeredAlarmNames, https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ServiceDeploymentAlarms.html)."""
    failed = _deployment(NEW, "FAILED", "ACTIVE", "ECS deployment ecs-svc/8 failed.")
    back = _deployment(OLD, "IN_PROGRESS", "PRIMARY")
    ecs.add_response("describe_services", _services([back, failed], OLD))
    _no_stopped_tasks(ecs)
    earlier = {
        "serviceDeploymentArn": SERVICE_DEPLOYMENT[:-1] + "7",
        "createdAt": datetime(2026, 11, 30, tzinfo=UTC),
        "status": "SUCCESSFUL",
    }
    ours = {
        "serviceDeploymentArn": SERVICE_DEPLOYMENT,
        "createdAt": DEPLOYED_AT,
        "status": "ROLLBACK_IN_PROGRESS",
    }
    ecs.add_response(
        "list_service_deployments",
        {"serviceDeployments": [earlier, ours]},
        {"cluster": CLUSTER, "service": SERVICE},
    )
    ecs.add_response(
        "describe_service_deployments",
        {
            "serviceDeployments": [
                {
                    "serviceDeploymentArn": SERVICE_DEPLOYMENT,
                    "createdAt": DEPLOYED_AT,
                    "startedAt": DEPLOYED_AT,
                    "status": "ROLLBACK_IN_PROGRESS",
                    "alarms": {
                        "status": "TRIGGERED",
                        "alarmNames": [TTFT, "central-llm-rollout-5xx-rate-stub"],
                        "triggeredAlarmNames": [alarm],
                    },
                    "deploymentCircuitBreaker": {"status": "MONITORING", "failureCount": 0},
                    "rollback": {"reason": "alarm", "startedAt": FIRED_AT},
                }
            ],
            "failures": [],
        },
        {"serviceDeploymentArns": [SERVICE_DEPLOYMENT]},
    )


def _history_asked(alarm: str) -> dict:
    return {
        "AlarmName": alarm,
        "HistoryItemType": "StateUpdate",
        "StartDate": DEPLOYED_AT,
        "ScanBy": "TimestampDescending",
        "MaxRecords": 10,
    }


def test_a_deployment_the_ttft_alarm_fails_is_rolled_back_with_the_alarms_values(stubbed):
    ctx, stubbers = stubbed
    _rolled_back_by(stubbers["ecs"], TTFT)
    # DescribeAlarmHistory's StateUpdate items carry the old and new state as JSON, the new
    # one with its stateReasonData (the AWS CLI's describe-alarm-history example,
    # aws/aws-cli awscli/examples/cloudwatch/describe-alarm-history.rst, and
    # https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_AlarmHistoryItem.html).
    into_alarm = {
        "version": "1.0",
        "oldState": {"stateValue": "OK", "stateReason": "Threshold Crossed: no datapoints"},
        "newState": {
            "stateValue": "ALARM",
            "stateReason": "Threshold Crossed: 2 out of the last 3 datapoints [5120.0 "
            "(01/12/26 10:03:00), 4010.2 (01/12/26 10:02:00)] were greater than the "
            "threshold (3000.0) (minimum 2 datapoints for OK -> ALARM transition).",
            "stateReasonData": {
                "version": "1.0",
                "queryDate": "2026-12-01T10:04:05.123+0000",
                "startDate": "2026-12-01T10:01:00.000+0000",
                "extendedStatistic": "p95",
                "period": 60,
                "recentDatapoints": [2950.0, 4010.2, 5120.0],
                "threshold": 3000.0,
                "evaluatedDatapoints": [
                    {"timestamp": "2026-12-01T10:03:00.000+0000", "value": 5120.0},
                    {"timestamp": "2026-12-01T10:02:00.000+0000", "value": 4010.2},
                ],
            },
        },
    }
    stubbers["cloudwatch"].add_response(
        "describe_alarm_history",
        {
            "AlarmHistoryItems": [
                {
                    "AlarmName": TTFT,
                    "AlarmType": "MetricAlarm",
                    "Timestamp": FIRED_AT,
                    "HistoryItemType": "StateUpdate",
                    "HistorySummary": "Alarm updated from OK to ALARM",
                    "HistoryData": json.dumps(into_alarm),
                }
            ]
        },
        _history_asked(TTFT),
    )

    with pytest.raises(rollout.RolledBack) as raised:
        rollout.follow_deployment(ctx, NEW)

    fired = raised.value.alarm
    assert (fired["name"], fired["label"]) == (TTFT, "TTFT p95")
    assert (fired["value"], fired["threshold"]) == (5120.0, 3000.0)
    assert fired["said"] == "TTFT p95 5,120 ms > 3,000 ms"
    assert fired["reason"].startswith("Threshold Crossed: 2 out of the last 3 datapoints")
    assert str(raised.value) == (
        f"ECS rolled the deployment back: alarm {TTFT} fired (TTFT p95 5,120 ms > 3,000 ms)"
    )


def test_throttled_alarm_history_still_names_the_alarm_and_its_threshold(stubbed):
    """CloudWatch throttles DescribeAlarmHistory ("Throttling", "Rate exceeded"); the SDK
    retries it (https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html,
    which a Stubber's answer skips), and once its attempts are spent the rollback by alarm
    is still recorded, naming the alarm, its declared threshold and why its values are
    missing."""
    ctx, stubbers = stubbed
    _rolled_back_by(stubbers["ecs"], TTFT)
    stubbers["cloudwatch"].add_client_error(
        "describe_alarm_history",
        service_error_code="Throttling",
        service_message="Rate exceeded",
        http_status_code=400,
        expected_params=_history_asked(TTFT),
    )

    with pytest.raises(rollout.RolledBack) as raised:
        rollout.follow_deployment(ctx, NEW)

    fired = raised.value.alarm
    assert fired["name"] == TTFT and fired["threshold"] == 3000.0 and "value" not in fired
    assert fired["said"].startswith("TTFT p95 above 3,000 ms: its values could not be read:")
    assert "Throttling" in fired["said"] and "Rate exceeded" in fired["said"]


def test_a_deployment_that_bakes_with_its_alarms_ok_completes(stubbed):
    """While ECS bakes the new revision its rolloutState stays IN_PROGRESS; with no alarm in
    ALARM it turns COMPLETED (deployment-alarm-failure.html): steady, no rollback, and no
    service deployment read."""
    ctx, stubbers = stubbed
    ecs, elbv2 = stubbers["ecs"], stubbers["elbv2"]
    ecs.add_response(
        "describe_services", _services([_deployment(NEW, "IN_PROGRESS", "PRIMARY")], NEW)
    )
    _no_stopped_tasks(ecs)
    task = {
        "taskArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{CLUSTER}/t1",
        "taskDefinitionArn": NEW,
        "lastStatus": "RUNNING",
    }
    ecs.add_response("list_tasks", {"taskArns": [task["taskArn"]]})
    ecs.add_response("describe_tasks", {"tasks": [task]})
    elbv2.add_response(
        "describe_target_health",
        {
            "TargetHealthDescriptions": [
                {"Target": {"Id": "i-1"}, "TargetHealth": {"State": "healthy"}}
            ]
        },
    )
    ecs.add_response(
        "describe_services", _services([_deployment(NEW, "COMPLETED", "PRIMARY")], NEW)
    )
    _no_stopped_tasks(ecs)

    rollout.follow_deployment(ctx, NEW)  # returns: steady


def test_the_alarms_aws_describes_are_read_back_as_declared(stubbed):
    """DescribeAlarms answers a percentile alarm with ExtendedStatistic and a metric-math one
    with its Metrics, each MetricStat as given and AWS's own additions (an empty Dimensions,
    the actions' state)
    (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_MetricAlarm.html):
    neither is drift."""
    ctx, stubbers = stubbed
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:central-llm-alarms-stub"
    ctx.outputs[TOPIC] = {"arn": topic}
    for cls in (RolloutTtftAlarm, RolloutErrorRateAlarm):
        alarm = cls(ctx)
        declared = alarm.desired()
        answer = {
            "AlarmName": alarm.name,
            "AlarmArn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{alarm.name}",
            "StateValue": "OK",
            "StateReason": "Threshold Crossed: no datapoints were received",
            "StateUpdatedTimestamp": DEPLOYED_AT,
            "InsufficientDataActions": [],
            "Dimensions": [],
            **declared,
        }
        stubbers["cloudwatch"].add_response(
            "describe_alarms", {"MetricAlarms": [answer]}, {"AlarmNames": [alarm.name]}
        )
        current = alarm.read()
        assert {key: current[key] for key in declared} == declared, cls.key
    ttft, rate = RolloutTtftAlarm(ctx).desired(), RolloutErrorRateAlarm(ctx).desired()
    assert (ttft["ExtendedStatistic"], ttft["Period"], ttft["Threshold"]) == ("p95", 60, 3000.0)
    assert "Statistic" not in ttft and (ttft["EvaluationPeriods"], ttft["DatapointsToAlarm"]) == (
        3,
        2,
    )
    assert rate["Metrics"][0]["Expression"] == "100 * FILL(errors, 0) / responses"
    assert "Period" not in rate and rate["Threshold"] == 5.0


@pytest.mark.django_db
def test_thresholds_are_validated_and_zero_is_not_watched(environment):
    environment.rollout_error_rate_percent = 101
    with pytest.raises(ValidationError) as raised:
        environment.full_clean()
    assert "rollout_error_rate_percent" in raised.value.message_dict
    environment.rollout_error_rate_percent, environment.rollout_ttft_p95_ms = 0, -1
    with pytest.raises(ValidationError, match="zero or more"):
        environment.full_clean()
    environment.rollout_ttft_p95_ms = 0
    spec = environment.spec()
    assert not RolloutTtftAlarm.wanted(spec) and not RolloutErrorRateAlarm.wanted(spec)
    assert deployment_alarms.watched(spec) == []
    with Context(spec) as ctx:
        ctx.outputs["ecs.task_definition"] = {"arn": NEW}
        # The method is off when nothing is watched, as ECS takes it (enable false).
        assert Service(ctx).desired()["deployment"]["alarms"] == {
            "alarmNames": [],
            "enable": False,
            "rollback": False,
        }


def _service(environment: Environment) -> dict:
    return aws.client("ecs").describe_services(
        cluster=f"central-llm-service-cluster{environment.suffix}",
        services=[f"central-llm-service{environment.suffix}"],
    )["services"][0]


@pytest.fixture
def quick_polls(monkeypatch):
    """A rollout polls every 0.1 s here (the local deployments settle in 1 s)."""
    monkeypatch.setattr(Context, "default_sleep", lambda seconds: time.sleep(0.1))


@pytest.mark.slow
@pytest.mark.django_db
def test_a_local_rollout_whose_ttft_alarm_fires_is_recorded_as_rolled_back_by_it(
    environment, client, operator, monkeypatch, quick_polls
):
    engine.apply(environment)
    ttft = RolloutTtftAlarm.name_in(environment.spec())
    rate = RolloutErrorRateAlarm.name_in(environment.spec())
    # Apply made both alarms and the service watches them; drift reads that back.
    cloudwatch = aws.client("cloudwatch")
    made = cloudwatch.describe_alarms(AlarmNames=[ttft, rate])["MetricAlarms"]
    assert {alarm["AlarmName"] for alarm in made} == {ttft, rate}
    assert _service(environment)["deploymentConfiguration"]["alarms"] == {
        "alarmNames": [ttft, rate],
        "enable": True,
        "rollback": True,
    }
    assert not engine.drift(environment)
    cloudwatch.put_metric_alarm(**{**_declared(made, ttft), "Threshold": 9000.0})
    assert actions(engine.drift(environment)) == {RolloutTtftAlarm.key: engine.UPDATE}
    engine.apply(environment)

    # Alarms OK while it settles: live.
    first = roll_out(environment, "0123abc")
    assert first.status == "succeeded", first.explanation
    assert environment.live_release().alarms["watched"][0]["name"] == ttft

    def slow_release_goes_out(ctx, arn):
        moved(ctx, arn)
        # The new tasks answer slowly: the alarm goes into ALARM while the deployment settles.
        cloudwatch.set_alarm_state(
            AlarmName=ttft,
            StateValue="ALARM",
            StateReason="Threshold Crossed: 2 out of the last 3 datapoints were greater than "
            "the threshold (3000.0).",
            StateReasonData=json.dumps(
                {"version": "1.0", "recentDatapoints": [4010.2, 5120.0], "threshold": 3000.0}
            ),
        )

    moved = rollout.move_service
    monkeypatch.setattr(rollout, "move_service", slow_release_goes_out)
    slow = roll_out(environment, "slow000")

    assert slow.status == "failed"
    assert slow.explanation.endswith(
        f"ECS rolled the deployment back: alarm {ttft} fired (TTFT p95 5,120 ms > 3,000 ms)"
    )
    release = slow.releases.get()
    assert (release.outcome, release.status) == ("rolled back", "rolled back (alarm)")
    assert release.alarms["fired"]["said"] == "TTFT p95 5,120 ms > 3,000 ms"
    assert environment.holds.get().image_tag == "slow000"
    live = environment.live_release()
    assert live.run == first and _service(environment)["taskDefinition"] == live.task_definition

    client.force_login(operator)
    page = client.get(reverse("provisioning:run", args=[slow.pk])).content.decode()
    assert f'data-fired-alarm="{ttft}"' in page and "TTFT p95 5,120 ms &gt; 3,000 ms" in page
    assert f'data-watched-alarm="{ttft}"' in page and f'data-watched-alarm="{rate}"' in page
    assert "&gt; 3,000 ms" in page and "&gt; 5%" in page
    assert "data-local-limits" in page and "set-alarm-state" in page
    detail = reverse("provisioning:environment", args=[environment.name])
    assert 'data-release-status="rolled back (alarm)"' in client.get(detail).content.decode()
    dashboard = client.get(reverse("dashboard")).content.decode()
    assert 'data-release-status="rolled back (alarm)"' in dashboard

    # A limit of 0: that alarm is no longer watched (the service changes, the alarm is not
    # declared).
    environment.rollout_error_rate_percent = 0
    environment.save()
    planned = actions(engine.plan(environment))
    assert RolloutErrorRateAlarm.key not in planned and planned[Service.key] == engine.UPDATE


def _declared(alarms: list[dict], name: str) -> dict:
    """What PutMetricAlarm takes again, from DescribeAlarms' answer."""
    alarm = next(alarm for alarm in alarms if alarm["AlarmName"] == name)
    keys = (
        "AlarmName",
        "Namespace",
        "MetricName",
        "Dimensions",
        "ExtendedStatistic",
        "Period",
        "EvaluationPeriods",
        "DatapointsToAlarm",
        "Threshold",
        "ComparisonOperator",
        "TreatMissingData",
        "AlarmActions",
        "OKActions",
    )
    return {key: alarm[key] for key in keys}


def test_a_real_aws_rollout_page_links_each_alarm_to_the_cloudwatch_console():
    local = Environment(name="prod", region="eu-west-1", is_local=True).spec()
    watched = deployment_alarms.watched(replace(local, is_local=False))
    assert [(alarm["name"], alarm["threshold"]) for alarm in watched] == [
        ("central-llm-rollout-ttft-p95", "> 3,000 ms"),
        ("central-llm-rollout-5xx-rate", "> 5%"),
    ]
    assert watched[0]["url"] == (
        "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1"
        "#alarmsV2:alarm/central-llm-rollout-ttft-p95"
    )
    assert all(not alarm["url"] for alarm in deployment_alarms.watched(local))
