"""Rollouts: build, image, revision, service, deployment; against the local AWS for the
happy path (its CodeBuild builds and pushes the image: devtools.local_codebuild), and with
botocore's Stubber for what it never shows (tasks waiting for capacity or pulling, a FAILED
deployment with stopped tasks, a build failing on AWS)."""

import hashlib
import time
from datetime import UTC, datetime

import pytest
from botocore.stub import Stubber
from django.urls import reverse

from centralllm import aws
from core.refusals import Refused
from provisioning import engine, rollout, rollout_runs, runs
from provisioning.jobs import execute
from provisioning.models import Environment, Hold, Release, Run
from provisioning.resources.base import Context, Progress, ProvisioningError
from provisioning.resources.ecs import task_count


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch):
    """A rollout polls its build every 10 s; here every 0.1 s (the local CodeBuild's builds
    take LOCAL_BUILD_SECONDS, 1 s in the tests)."""
    monkeypatch.setattr(Context, "default_sleep", lambda seconds: time.sleep(0.1))


def digest_in_ecr(environment: Environment, tag: str) -> str:
    found = aws.client("ecr").describe_images(
        repositoryName=f"mistral8b-vllm{environment.suffix}", imageIds=[{"imageTag": tag}]
    )
    return found["imageDetails"][0]["imageDigest"]


def roll_out(environment: Environment, source_version: str) -> Run:
    run = runs.start(
        environment,
        "rollout",
        actor=None,
        parameters={"source_version": source_version},
        enqueue=False,
    )
    execute(run.pk)
    run.refresh_from_db()
    return run


@pytest.mark.django_db
def test_a_first_rollout_goes_live_and_an_apply_keeps_it(environment):
    engine.apply(environment)

    run = roll_out(environment, "0123abc")

    assert run.status == "succeeded", run.explanation
    assert list(run.steps.values_list("key", "status")) == [
        (key, "done") for key, _ in rollout.STAGES
    ]
    # The build was followed while it ran, to its end.
    said = list(run.events.values_list("text", flat=True))
    assert said.index("BUILD: in progress") < said.index("BUILD: succeeded")
    assert "POST_BUILD: succeeded" in said
    live = environment.live_release()
    digest = digest_in_ecr(environment, "0123abc")
    assert (live.image_tag, live.image_digest, live.run) == ("0123abc", digest, run)
    service = aws.client("ecs").describe_services(
        cluster=f"central-llm-service-cluster{environment.suffix}",
        services=[f"central-llm-service{environment.suffix}"],
    )["services"][0]
    assert service["taskDefinition"] == live.task_definition
    image = aws.client("ecs").describe_task_definition(taskDefinition=live.task_definition)[
        "taskDefinition"
    ]["containerDefinitions"][0]["image"]
    assert image.endswith(f"/mistral8b-vllm{environment.suffix}:0123abc")
    # The declaration follows what is live: no drift, and an apply changes nothing.
    assert environment.spec().live_image_tag == "0123abc"
    assert not engine.drift(environment)

    second = roll_out(environment, "4567def")
    assert second.status == "succeeded", second.explanation
    outcomes = dict(environment.releases.values_list("image_tag", "outcome"))
    assert outcomes == {"0123abc": "replaced", "4567def": "live"}


@pytest.mark.django_db
def test_a_build_that_pushed_nothing_fails_and_changes_no_service(environment):
    engine.apply(environment)
    # A buildspec whose post_build forgot the push: the build succeeds, ECR has no image.
    # (Made again: moto has no UpdateProject.)
    codebuild, name = aws.client("codebuild"), f"mistral8b-vllm-build{environment.suffix}"
    project = codebuild.batch_get_projects(names=[name])["projects"][0]
    source = project["source"]
    source["buildspec"] = source["buildspec"].replace('- docker push "$IMAGE_URI"', "- true")
    codebuild.delete_project(name=name)
    codebuild.create_project(
        name=name,
        source=source,
        artifacts=project["artifacts"],
        environment=project["environment"],
        serviceRole=project["serviceRole"],
    )

    run = roll_out(environment, "no-push")

    assert run.status == "failed"
    assert run.steps.get(key="build").status == "done"
    assert "mistral8b-vllm" in run.explanation and ":no-push is not in ECR" in run.explanation
    assert not Release.objects.filter(environment=environment).exists()


@pytest.mark.django_db
def test_operators_start_a_rollout_and_viewers_may_not(client, operator, viewer, environment):
    url = reverse("provisioning:run-start", args=[environment.name])
    client.force_login(viewer)
    assert client.post(url, {"kind": "rollout"}).status_code == 403
    client.force_login(operator)
    response = client.post(url, {"kind": "rollout", "source_version": "bad version!"})
    assert not Run.objects.exists()
    response = client.post(url, {"kind": "rollout", "source_version": "release/1.2"})
    run = Run.objects.get()
    assert response["Location"] == reverse("provisioning:run", args=[run.pk])
    assert (run.kind, run.parameters) == ("rollout", {"source_version": "release/1.2"})


@pytest.mark.django_db
def test_a_rolled_back_deployment_leaves_the_previous_image_live_and_says_why(
    environment, monkeypatch
):
    engine.apply(environment)
    first = roll_out(environment, "0123abc")

    def breaker(ctx, arn, **kwargs):
        # What follow_deployment raises when ECS's circuit breaker rolls back (shown with
        # AWS's responses below); moto's deployments never fail.
        raise rollout.RolledBack("ECS's circuit breaker rolled the deployment back: CUDA OOM")

    monkeypatch.setattr(rollout, "follow_deployment", breaker)
    second = roll_out(environment, "bad0000")

    assert second.status == "failed"
    assert "circuit breaker rolled the deployment back: CUDA OOM" in second.explanation
    assert second.steps.get(key="deployment").status == "failed"
    bad = Release.objects.get(run=second)
    assert (bad.outcome, bad.finished_at is not None) == ("rolled back", True)
    assert "CUDA OOM" in bad.reason
    assert environment.live_release().run == first
    assert environment.spec().live_image_tag == "0123abc"


@pytest.mark.django_db
def test_roll_back_now_puts_the_service_back_at_once_and_holds_the_image(
    environment, operator, monkeypatch
):
    engine.apply(environment)
    first = roll_out(environment, "0123abc")

    def operator_rolls_back_while_following(ctx, arn, **kwargs):
        run = Run.objects.get(kind="rollout", status="running")
        rollout_runs.roll_back_now(run, actor=operator, reason="answers are garbage")
        ctx.progress.checkpoint()  # the next poll of the deployment

    monkeypatch.setattr(rollout, "follow_deployment", operator_rolls_back_while_following)
    second = roll_out(environment, "bad0000")

    assert second.status == "cancelled"
    assert second.explanation.startswith("Rolled back by otto (answers are garbage): the service")
    live = environment.live_release()
    assert live.run == first
    service = aws.client("ecs").describe_services(
        cluster=f"central-llm-service-cluster{environment.suffix}",
        services=[f"central-llm-service{environment.suffix}"],
    )["services"][0]
    assert service["taskDefinition"] == live.task_definition
    bad = Release.objects.get(run=second)
    assert bad.outcome == "rolled back" and bad.reason == "rolled back by otto: answers are garbage"
    [hold] = environment.holds.all()
    assert (hold.image_tag, hold.created_by_name) == ("bad0000", "otto")

    # The held image cannot go out again until the hold is cleared, with a reason.
    with pytest.raises(Refused, match="bad0000 is on hold"):
        runs.start(environment, "rollout", actor=operator, parameters={"source_version": "bad0000"})
    with pytest.raises(Refused, match="Say why"):
        rollout_runs.clear_hold(hold, actor=operator, reason=" ")
    rollout_runs.clear_hold(hold, actor=operator, reason="fixed the prompt template")
    monkeypatch.undo()
    assert roll_out(environment, "bad0000").status == "succeeded"


@pytest.mark.django_db
def test_an_image_on_hold_is_refused_however_its_build_was_named(environment):
    engine.apply(environment)
    with Context(environment.spec()) as ctx:
        rollout.build_image(ctx, "0123abc")  # built before, by a rollout stopped after it
    digest = digest_in_ecr(environment, "0123abc")
    Hold.objects.create(
        environment=environment,
        image_tag="other-name",
        image_digest=digest,
        reason="bad weights",
        created_by_name="ada",
    )

    run = roll_out(environment, "0123abc")

    assert run.status == "failed"
    assert "0123abc is on hold" in run.explanation and "bad weights" in run.explanation
    assert not Release.objects.exists()


@pytest.mark.django_db
def test_rolling_back_to_an_earlier_release_is_one_run(environment, operator):
    engine.apply(environment)
    roll_out(environment, "0123abc")
    roll_out(environment, "4567def")
    earlier = environment.releases.get(image_tag="0123abc")

    run = rollout_runs.roll_back_to(earlier, actor=operator, reason="latency doubled")
    execute(run.pk)

    run.refresh_from_db()
    assert run.status == "succeeded", run.explanation
    assert list(run.steps.values_list("key", flat=True)) == ["service", "deployment"]
    live = environment.live_release()
    assert (live.image_tag, live.task_definition, live.run) == (
        "0123abc",
        earlier.task_definition,
        run,
    )
    assert environment.holds.get().image_tag == "4567def"
    assert "latency doubled" in environment.holds.get().reason


# What moto cannot show, with AWS's documented response shapes -------------------------------

REGION = "ap-northeast-3"  # no other test file uses it: clients are shared process-wide
CLUSTER = "central-llm-service-cluster-stub"
SERVICE = "central-llm-service-stub"
ARN = "arn:aws:ecs:ap-northeast-3:123456789012:task-definition/central-llm-service-stub:8"
OLD = "arn:aws:ecs:ap-northeast-3:123456789012:task-definition/central-llm-service-stub:7"
GROUP = (
    "arn:aws:elasticloadbalancing:ap-northeast-3:123456789012:targetgroup/central-llm-vllm-stub/1"
)
WHEN = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


class Said(Progress):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, step: str, text: str) -> None:
        self.lines.append(text)


@pytest.fixture
def stubbed():
    spec = Environment(name="stub", suffix="-stub", is_local=True, region=REGION).spec()
    said = Said()
    ctx = Context(spec, said, sleep=lambda seconds: None)
    stubbers = {name: Stubber(ctx.client(name)) for name in ("codebuild", "ecs", "elbv2")}
    for stubber in stubbers.values():
        stubber.activate()
    yield ctx, stubbers, said
    for stubber in stubbers.values():
        stubber.deactivate()
        stubber.assert_no_pending_responses()
    ctx.close()


def _build(status: str, phases: list[dict]) -> dict:
    return {
        "builds": [
            {
                "id": "mistral8b-vllm-build-stub:1",
                "buildStatus": status,
                "sourceVersion": "main",
                "resolvedSourceVersion": "89abcdef",
                "phases": phases,
            }
        ]
    }


def test_the_build_is_followed_phase_by_phase(stubbed):
    ctx, stubbers, said = stubbed
    codebuild = stubbers["codebuild"]
    codebuild.add_response(
        "start_build",
        {"build": {"id": "mistral8b-vllm-build-stub:1", "buildStatus": "IN_PROGRESS"}},
        {"projectName": "mistral8b-vllm-build-stub", "sourceVersion": "main"},
    )
    submitted = {"phaseType": "SUBMITTED", "phaseStatus": "SUCCEEDED", "durationInSeconds": 0}
    codebuild.add_response(
        "batch_get_builds", _build("IN_PROGRESS", [submitted, {"phaseType": "BUILD"}])
    )
    done = {"phaseType": "BUILD", "phaseStatus": "SUCCEEDED", "durationInSeconds": 412}
    # The last entry marks the end and has no status (the CodeBuild user guide's examples).
    completed = {"phaseType": "COMPLETED", "startTime": WHEN}
    codebuild.add_response("batch_get_builds", _build("SUCCEEDED", [submitted, done, completed]))

    assert rollout.build_image(ctx, "main") == "89abcdef"  # the commit it resolved to
    assert said.lines == [
        "build mistral8b-vllm-build-stub:1 of main started",
        "SUBMITTED: succeeded",
        "BUILD: in progress",
        "BUILD: succeeded",
    ]


def test_a_failed_build_says_in_which_phase_and_why(stubbed):
    ctx, stubbers, _ = stubbed
    codebuild = stubbers["codebuild"]
    codebuild.add_response("start_build", {"build": {"id": "mistral8b-vllm-build-stub:2"}})
    failed = {
        "phaseType": "BUILD",
        "phaseStatus": "FAILED",
        "contexts": [
            {
                "statusCode": "COMMAND_EXECUTION_ERROR",
                "message": "Error while executing command: docker build. Reason: exit status 1",
            }
        ],
    }
    codebuild.add_response("batch_get_builds", _build("FAILED", [failed]))

    with pytest.raises(ProvisioningError, match="ended FAILED in its BUILD phase: Error while"):
        rollout.build_image(ctx, "main")


def _service(deployments: list[dict], events: list[str], running: int = 0) -> dict:
    return {
        "services": [
            {
                "serviceName": SERVICE,
                "taskDefinition": ARN,
                "desiredCount": 1,
                "runningCount": running,
                "deployments": deployments,
                "loadBalancers": [
                    {"targetGroupArn": GROUP, "containerName": "vllm", "containerPort": 8000}
                ],
                "events": [
                    {
                        "id": hashlib.sha256(message.encode()).hexdigest()[:12],
                        "createdAt": WHEN,
                        "message": message,
                    }
                    for message in events
                ],
            }
        ]
    }


def _deployment(arn: str, state: str, status: str = "PRIMARY", reason: str = "") -> dict:
    return {
        "id": f"ecs-svc/{arn[-1]}",
        "status": status,
        "taskDefinition": arn,
        "rolloutState": state,
        "rolloutStateReason": reason,
    }


def _tasks(ecs: Stubber, running: list[dict], stopped: list[dict]) -> None:
    """The stopped tasks first (follow_deployment reports them), then the running ones."""
    ecs.add_response("list_tasks", {"taskArns": [t["taskArn"] for t in stopped]})
    if stopped:
        ecs.add_response("describe_tasks", {"tasks": stopped})


def _running(ecs: Stubber, tasks: list[dict]) -> None:
    ecs.add_response("list_tasks", {"taskArns": [t["taskArn"] for t in tasks]})
    if tasks:
        ecs.add_response("describe_tasks", {"tasks": tasks})


def _task(n: int, status: str, **fields) -> dict:
    return {
        "taskArn": f"arn:aws:ecs:{REGION}:123456789012:task/{CLUSTER}/t{n}",
        "taskDefinitionArn": ARN,
        "lastStatus": status,
        **fields,
    }


def test_the_deployment_is_followed_stage_by_stage_to_steady(stubbed):
    ctx, stubbers, said = stubbed
    ecs, elbv2 = stubbers["ecs"], stubbers["elbv2"]
    in_progress = [_deployment(ARN, "IN_PROGRESS"), _deployment(OLD, "COMPLETED", "ACTIVE")]
    no_capacity = (
        f"(service {SERVICE}) was unable to place a task because no container "
        "instance met all of its requirements."
    )
    # 1: no instance can take the task yet (the Auto Scaling group is growing).
    ecs.add_response("describe_services", _service(in_progress, [no_capacity]))
    _tasks(ecs, [], [])
    # 2: the task is on an instance, pulling the image.
    ecs.add_response("describe_services", _service(in_progress, [no_capacity]))
    _tasks(ecs, [], [])
    ecs.add_response(
        "describe_services", _service(in_progress, ["(service x) has started 1 tasks: (task t1)."])
    )
    _tasks(ecs, [], [])
    _running(ecs, [_task(1, "PENDING", pullStartedAt=WHEN)])
    # 3: running, the model loading: not healthy in the target group yet.
    ecs.add_response(
        "describe_services", _service(in_progress, ["(service x) has started 1 tasks: (task t1)."])
    )
    _tasks(ecs, [], [])
    _running(ecs, [_task(1, "RUNNING", pullStartedAt=WHEN, pullStoppedAt=WHEN)])
    elbv2.add_response(
        "describe_target_health",
        {
            "TargetHealthDescriptions": [
                {"Target": {"Id": "i-1", "Port": 32768}, "TargetHealth": {"State": "initial"}}
            ]
        },
        {"TargetGroupArn": GROUP},
    )
    # 4: steady.
    steady = [_deployment(ARN, "COMPLETED")]
    ecs.add_response(
        "describe_services",
        _service(steady, ["(service x) has reached a steady state."], running=1),
    )
    _tasks(ecs, [], [])

    rollout.follow_deployment(ctx, ARN)

    stages = [line for line in said.lines if not line.startswith("ECS:")]
    assert stages[0].startswith(
        "waiting for GPU capacity: (service central-llm-service-stub) was unable to place a task"
    )
    assert stages[1:] == [
        "pulling the image",
        "loading the model: 0 of 1 tasks healthy in the target group (health checks start "
        "counting after 600s)",
        "steady: 1 tasks running central-llm-service-stub:8",
    ]
    assert "ECS: (service x) has reached a steady state." in said.lines


def test_a_failed_deployment_is_a_rollback_with_the_stopped_tasks_reasons(stubbed):
    ctx, stubbers, said = stubbed
    ecs = stubbers["ecs"]
    failed = [
        _deployment(
            ARN, "FAILED", "ACTIVE", "ECS deployment circuit breaker: tasks failed to start."
        ),
        _deployment(OLD, "IN_PROGRESS"),
    ]
    stopped = [
        _task(
            2,
            "STOPPED",
            stoppedAt=WHEN,
            stoppedReason="Essential container in task exited",
            containers=[{"name": "vllm", "exitCode": 1, "reason": "CUDA out of memory"}],
        ),
        _task(
            1,
            "STOPPED",
            stoppedAt=datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
            stoppedReason="Task failed ELB health checks in (target-group x)",
        ),
    ]
    ecs.add_response(
        "describe_services",
        _service(failed, ["(service x) deployment failed: tasks failed to start."]),
    )
    _tasks(ecs, [], stopped)
    # What failed it is on the service deployment: the circuit breaker, no alarm
    # (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ServiceDeployment.html).
    deployment = f"arn:aws:ecs:{REGION}:123456789012:service-deployment/{CLUSTER}/{SERVICE}/8"
    ecs.add_response(
        "list_service_deployments",
        {"serviceDeployments": [{"serviceDeploymentArn": deployment, "createdAt": WHEN}]},
    )
    ecs.add_response(
        "describe_service_deployments",
        {
            "serviceDeployments": [
                {
                    "serviceDeploymentArn": deployment,
                    "status": "ROLLBACK_IN_PROGRESS",
                    "deploymentCircuitBreaker": {"status": "TRIGGERED", "failureCount": 2},
                    "alarms": {"status": "MONITORING", "alarmNames": ["x"]},
                }
            ]
        },
        {"serviceDeploymentArns": [deployment]},
    )

    with pytest.raises(rollout.RolledBack) as raised:
        rollout.follow_deployment(ctx, ARN)

    reason = str(raised.value)
    assert reason.startswith(
        "ECS's circuit breaker rolled the deployment back: ECS deployment "
        "circuit breaker: tasks failed to start."
    )
    assert "Essential container in task exited (vllm: CUDA out of memory exit code 1)" in reason
    assert "Task failed ELB health checks" in reason
    assert any(line.startswith("task t2 stopped: Essential container") for line in said.lines)


@pytest.mark.django_db
def test_a_real_aws_service_runs_no_task_before_its_first_rollout():
    environment = Environment.objects.create(
        name="fresh",
        suffix="-fresh",
        account_id="123456789012",
        vpc_id="vpc-1",
        subnet_ids="subnet-1",
        security_group_id="sg-1",
        desired_count=2,
    )
    before = environment.spec()
    assert (before.desired_count, before.live_image_tag, task_count(before)) == (2, "", 0)
    Release.objects.create(
        environment=environment,
        image_tag="0123abc",
        image_digest="sha256:1",
        task_definition="arn:aws:ecs:eu-central-1:123456789012:task-definition/x:1",
        outcome="live",
    )
    after = environment.spec()
    assert (after.live_image_tag, task_count(after)) == ("0123abc", 2)
    local = Environment.objects.get(name="local").spec()
    assert task_count(local) == local.desired_count  # moto pulls nothing
