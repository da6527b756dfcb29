"""A rollout (deployment guide, section 9): build the inference image in CodeBuild, find what
the build pushed in ECR, register a task definition revision with it, move the ECS service
onto it, and follow the deployment until it is steady or ECS rolls it back (its circuit
breaker, or a deployment alarm: ``provisioning.deployment_alarms``).

Plain Python (no Django); each stage reports through the run's Progress, so a page shows
which stage a GPU task is in (waiting for capacity, pulling the image, loading the model,
healthy) and why tasks stopped.
"""

from dataclasses import dataclass, replace
from datetime import datetime

from botocore.exceptions import ClientError

from provisioning import deployment_alarms
from provisioning.resources.base import Context, ProvisioningError, error_code
from provisioning.resources.ecs import HEALTH_CHECK_GRACE_SECONDS, TaskDefinition

# The run's steps, in order: (key, title).
STAGES = [
    ("build", "Build the inference image in CodeBuild"),
    ("image", "Find the pushed image in ECR"),
    ("task_definition", "Register a task definition revision"),
    ("service", "Move the ECS service onto it"),
    ("deployment", "Follow the deployment until it is steady"),
]
BUILD_FAILED = ("FAILED", "FAULT", "STOPPED", "TIMED_OUT")
# The service event ECS writes while no container instance can take a task.
NO_CAPACITY = "unable to place a task"


class RolledBack(ProvisioningError):
    """The deployment failed and ECS put the service back on the previous revision;
    ``alarm`` is the deployment alarm that failed it, with its values (None: the circuit
    breaker did)."""

    def __init__(self, message: str, alarm: dict | None = None) -> None:
        super().__init__(message)
        self.alarm = alarm


@dataclass(frozen=True)
class Image:
    tag: str
    digest: str


def build_image(ctx: Context, source_version: str, *, poll_seconds: float = 10) -> str:
    """Start the image build and follow its phases; returns the tag it pushed (the commit
    CodeBuild resolved the source version to, as the buildspec tags it)."""
    codebuild = ctx.client("codebuild")
    started = codebuild.start_build(
        projectName=ctx.name("CodeBuildProject"), sourceVersion=source_version
    )["build"]
    ctx.say(f"build {started['id']} of {source_version} started")
    told: dict[str, str] = {}
    while True:
        build = codebuild.batch_get_builds(ids=[started["id"]])["builds"][0]
        for phase in build.get("phases", []):
            if phase["phaseType"] == "COMPLETED":
                continue  # marks the end, with no status of its own
            status = phase.get("phaseStatus", "IN_PROGRESS")
            if told.get(phase["phaseType"]) != status:
                told[phase["phaseType"]] = status
                ctx.say(f"{phase['phaseType']}: {status.lower().replace('_', ' ')}")
        if build["buildStatus"] == "SUCCEEDED":
            return (
                build.get("resolvedSourceVersion") or build.get("sourceVersion") or source_version
            )
        if build["buildStatus"] in BUILD_FAILED:
            raise ProvisioningError(
                f"The image build {build['id']} ended {build['buildStatus']}{_why(build)}"
            )
        ctx.sleep(poll_seconds)


def _why(build: dict) -> str:
    for phase in build.get("phases", []):
        if phase.get("phaseStatus") in BUILD_FAILED:
            messages = [c.get("message", "") for c in phase.get("contexts", []) if c.get("message")]
            detail = f": {'; '.join(messages)}" if messages else ""
            return f" in its {phase['phaseType']} phase{detail}"
    return ""


def find_image(ctx: Context, tag: str) -> Image:
    """The image the build pushed, by tag, with its digest (what the revision will run)."""
    repository = ctx.name("EcrRepository")
    try:
        found = ctx.client("ecr").describe_images(
            repositoryName=repository, imageIds=[{"imageTag": tag}]
        )["imageDetails"]
    except ClientError as exc:
        if error_code(exc) not in ("ImageNotFoundException", "RepositoryNotFoundException"):
            raise
        found = []
    if not found:
        raise ProvisioningError(
            f"The build succeeded but {repository}:{tag} is not in ECR: check the buildspec's "
            "push step and the build's logs."
        )
    image = Image(tag, found[0]["imageDigest"])
    ctx.say(f"{repository}:{tag} is {image.digest}")
    return image


def register_revision(ctx: Context, image: Image) -> str:
    """A new revision of the service's task definition running ``image``; returns its ARN."""
    with_image = Context(replace(ctx.spec, live_image_tag=image.tag), ctx.progress, sleep=ctx.sleep)
    try:
        definition = TaskDefinition(with_image).desired()["definition"]
    finally:
        with_image.close()
    registered = ctx.client("ecs").register_task_definition(**definition)["taskDefinition"]
    arn = registered["taskDefinitionArn"]
    ctx.say(f"registered {_short(arn)}")
    return arn


def move_service(ctx: Context, arn: str) -> None:
    """The first rollout starts the declared tasks (a real-AWS service has none before it);
    later ones keep the count scaling has reached. Scaling may add tasks during the
    deployment, but ECS suspends its scale-in until the deployment ends:
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-auto-scaling.html"""
    first = not ctx.spec.live_image_tag
    count = {"desiredCount": ctx.spec.desired_count} if first else {}
    ctx.client("ecs").update_service(
        cluster=ctx.name("Cluster"), service=ctx.name("Service"), taskDefinition=arn, **count
    )
    tasks = f"{ctx.spec.desired_count} tasks" if first else "as many tasks as it runs"
    ctx.say(f"the service now deploys {_short(arn)} to {tasks}")


def follow_deployment(
    ctx: Context, arn: str, *, poll_seconds: float = 15, timeout_seconds: float = 3600
) -> None:
    """Until the deployment of ``arn`` is steady; raises RolledBack when ECS rolls it back."""
    ecs = ctx.client("ecs")
    cluster, name = ctx.name("Cluster"), ctx.name("Service")
    seen_events: set[str] = set()
    seen_stopped: set[str] = set()
    last_stage = ""
    waited = 0.0
    while True:
        service = ecs.describe_services(cluster=cluster, services=[name])["services"][0]
        for event in reversed(service.get("events", [])[:5]):
            if event["id"] not in seen_events:
                seen_events.add(event["id"])
                ctx.say(f"ECS: {event['message']}")
        stopped = _stopped_tasks(ctx, cluster, name)
        for task in stopped:
            if task["taskArn"] not in seen_stopped:
                seen_stopped.add(task["taskArn"])
                ctx.say(f"task {_short(task['taskArn'])} stopped: {_stop_reason(task)}")
        deployment = _deployment_of(service, arn)
        if deployment is None or deployment.get("rolloutState") == "FAILED":
            alarm = deployment_alarms.fired(ctx, cluster, name)
            raise RolledBack(_rollback_reason(service, deployment, stopped, alarm), alarm)
        steady = (
            deployment.get("rolloutState", "COMPLETED") == "COMPLETED"
            and len(service.get("deployments", [])) == 1
            and service.get("runningCount", 0) >= service.get("desiredCount", 0)
        )
        if steady:
            ctx.say(f"steady: {service.get('runningCount', 0)} tasks running {_short(arn)}")
            return
        stage = _stage(ctx, service, arn)
        if stage != last_stage:
            last_stage = stage
            ctx.say(stage)
        if waited >= timeout_seconds:
            raise ProvisioningError(f"the deployment is not steady after {waited:.0f}s")
        ctx.progress.checkpoint()
        ctx.sleep(poll_seconds)
        waited += poll_seconds


def _short(arn: str) -> str:
    return arn.rpartition("/")[2]


def _deployment_of(service: dict, arn: str) -> dict | None:
    deployments = service.get("deployments", [])
    ours = next((d for d in deployments if d.get("taskDefinition") == arn), None)
    if ours is None and service.get("taskDefinition") == arn:
        # The service is on it, but its deployment does not say so (the local stand-in keeps
        # the first deployment's task definition): the primary one is ours.
        ours = next((d for d in deployments if d.get("status") == "PRIMARY"), None)
    return ours


def _rollback_reason(
    service: dict, deployment: dict | None, stopped: list[dict], alarm: dict | None
) -> str:
    if alarm is not None:
        return f"ECS rolled the deployment back: alarm {alarm['name']} fired ({alarm['said']})"
    parts = []
    if deployment is not None and deployment.get("rolloutStateReason"):
        parts.append(deployment["rolloutStateReason"])
    else:
        parts.append(f"the service went back to {_short(service.get('taskDefinition', '?'))}")
    reasons = [_stop_reason(task) for task in stopped[:2]]
    if reasons:
        parts.append("last stopped tasks: " + "; ".join(reasons))
    return "ECS's circuit breaker rolled the deployment back: " + ". ".join(parts)


def _stopped_tasks(ctx: Context, cluster: str, service: str) -> list[dict]:
    """The two most recently stopped tasks of the service, newest first."""
    ecs = ctx.client("ecs")
    arns = ecs.list_tasks(cluster=cluster, serviceName=service, desiredStatus="STOPPED")["taskArns"]
    if not arns:
        return []
    tasks = ecs.describe_tasks(cluster=cluster, tasks=arns[:100])["tasks"]
    tasks.sort(key=lambda task: task.get("stoppedAt") or datetime.min, reverse=True)
    return tasks[:2]


def _stop_reason(task: dict) -> str:
    reason = task.get("stoppedReason") or "no reason given"
    for container in task.get("containers", []):
        if container.get("reason") or container.get("exitCode") not in (None, 0):
            reason += f" ({container.get('name')}: {container.get('reason') or ''}"
            reason += f" exit code {container.get('exitCode')})"
    return reason


def _stage(ctx: Context, service: dict, arn: str) -> str:
    """Where the new tasks are: waiting for GPU capacity, pulling the image, loading the model,
    or healthy in the target group."""
    events = [event["message"] for event in service.get("events", [])[:1]]
    if events and NO_CAPACITY in events[0]:
        return f"waiting for GPU capacity: {events[0]}"
    ecs = ctx.client("ecs")
    cluster, name = ctx.name("Cluster"), ctx.name("Service")
    arns = ecs.list_tasks(cluster=cluster, serviceName=name, desiredStatus="RUNNING")["taskArns"]
    tasks = ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"] if arns else []
    tasks = [task for task in tasks if task.get("taskDefinitionArn") == arn]
    if not tasks:
        return "waiting for GPU capacity: no task placed yet"
    waiting = [task for task in tasks if task.get("lastStatus") in ("PROVISIONING", "PENDING")]
    if any(task.get("pullStartedAt") and not task.get("pullStoppedAt") for task in waiting):
        return "pulling the image"
    if waiting:
        return "waiting for GPU capacity: the task waits for a container instance"
    healthy = _healthy_targets(ctx, service)
    if healthy < len(tasks):
        return (
            f"loading the model: {healthy} of {len(tasks)} tasks healthy in the target group "
            f"(health checks start counting after {HEALTH_CHECK_GRACE_SECONDS}s)"
        )
    return f"healthy in the target group: {healthy} of {len(tasks)} tasks"


def _healthy_targets(ctx: Context, service: dict) -> int:
    groups = [balancer["targetGroupArn"] for balancer in service.get("loadBalancers", [])]
    elbv2 = ctx.client("elbv2")
    return sum(
        description["TargetHealth"]["State"] == "healthy"
        for group in groups
        for description in elbv2.describe_target_health(TargetGroupArn=group)[
            "TargetHealthDescriptions"
        ]
    )
