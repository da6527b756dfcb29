"""What the environment page says about its resources is what the runs last saw in AWS: after
a destroy, a failed apply, a drift, and whatever runs are deleted."""

import re
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse
from django.utils import timezone

from centralllm import aws
from provisioning import engine, runs, state
from provisioning.jobs import execute
from provisioning.models import Environment, ResourceState, Run
from provisioning.resources.ecs import Service

pytestmark = pytest.mark.django_db
# What a destroy leaves in place: the audit data, and what this console did not make.
KEPT = {"S3 audit bucket", "S3 raw prompt bucket", "DynamoDB audit table and its indexes",
        "VPC, subnets and security group", "ECS service-linked role"}  # fmt: skip


def run(environment: Environment, kind: str, **parameters) -> Run:
    started = runs.start(environment, kind, actor=None, parameters=parameters, enqueue=False)
    execute(started.pk)
    started.refresh_from_db()
    return started


def shown(client, environment: Environment) -> dict:
    """The environment page's sync word, resources (title: state) and outputs, as shown."""
    page = client.get(reverse("provisioning:environment", args=[environment.name]))
    html = page.content.decode()
    sync = re.search(r'data-badge="sync">.*?<span class="state">([^<]*)</span>', html, re.S)
    return {
        "sync": sync.group(1),
        "resources": dict(re.findall(r'<tr><td>([^<]+)</td><td class="state-(\w+)">', html)),
        "outputs": re.findall(r"<dt>([^<]+)</dt>", html),
        "endpoint": "Endpoint:" in html,
    }


def test_after_a_destroy_the_page_says_it_is_not_deployed(client, viewer, environment):
    assert run(environment, "apply").status == "succeeded"
    client.force_login(viewer)
    applied = shown(client, environment)
    assert applied["sync"] == "in sync" and applied["endpoint"]
    assert set(applied["resources"].values()) == {"present"}

    destroy = run(environment, "destroy", confirm=environment.name)

    assert destroy.status == "succeeded", destroy.explanation
    after = shown(client, environment)
    assert after["sync"] == "not deployed"
    present = {title for title, seen in after["resources"].items() if seen == "present"}
    assert present == KEPT
    assert set(after["resources"].values()) == {"present", "missing"}
    assert not after["endpoint"] and "API Gateway usage plan" not in after["outputs"]
    assert "S3 audit bucket" in after["outputs"]  # kept, so still named


def test_an_environment_destroyed_can_be_deleted_and_one_applied_cannot(
    client, operator, environment
):
    client.force_login(operator)
    url = reverse("provisioning:environment-delete", args=[environment.name])
    run(environment, "apply")
    client.post(url, {"confirm": environment.name})
    assert Environment.objects.filter(pk=environment.pk).exists()

    run(environment, "destroy", confirm=environment.name)
    page = client.get(reverse("provisioning:environment", args=[environment.name]))
    assert "Delete this environment" in page.content.decode()
    client.post(url, {"confirm": environment.name})
    assert not Environment.objects.filter(pk=environment.pk).exists()


def test_a_failed_apply_shows_the_steps_it_finished_present(
    client, viewer, environment, monkeypatch
):
    def refused(self, desired):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "CreateService")

    monkeypatch.setattr(Service, "create", refused)

    apply = run(environment, "apply")

    assert apply.status == "failed" and "ECS service" in apply.explanation
    client.force_login(viewer)
    seen = shown(client, environment)["resources"]
    done = list(apply.steps.filter(status="done").values_list("title", flat=True))
    assert len(done) > 10
    assert {seen[title] for title in done} == {"present"}
    assert seen["ECS service"] == "unknown"  # it failed half-way: only a fresh look tells
    assert "API Gateway usage plan" not in seen  # after the failure: never looked at


def test_deleting_the_runs_changes_nothing_the_page_says(client, viewer, environment):
    run(environment, "apply")
    run(environment, "drift")
    client.force_login(viewer)
    before = shown(client, environment)

    environment.runs.all().delete()

    assert shown(client, environment) == before
    assert before["sync"] == "in sync" and before["resources"] and before["outputs"]


def test_a_drift_that_finds_a_resource_missing_shows_it_missing(client, viewer, environment):
    run(environment, "apply")
    queue = aws.client("sqs").get_queue_url(QueueName=f"llm-audit-dlq{environment.suffix}")
    aws.client("sqs").delete_queue(QueueUrl=queue["QueueUrl"])

    drift = run(environment, "drift")

    assert drift.status == "succeeded", drift.explanation
    client.force_login(viewer)
    after = shown(client, environment)
    assert after["sync"] == "out of sync"
    assert after["resources"]["SQS audit dead-letter queue"] == "missing"
    assert "SQS audit dead-letter queue" not in after["outputs"]
    assert "S3 audit bucket" in after["outputs"]
    rows = {row.key: row for row in state.last_seen(environment).rows}
    assert rows["sqs.dlq"].run == drift and rows["s3.audit_bucket"].run == drift


def test_a_resource_no_run_has_seen_keeps_the_environment_from_in_sync(client, viewer, environment):
    first, *others = engine.ordered(environment.spec())
    seen = {"environment": environment, "state": "present", "seen_at": timezone.now()}
    for cls in others:
        ResourceState.objects.create(key=cls.key, title=cls.title, **seen)
    client.force_login(viewer)
    assert shown(client, environment)["sync"] == "unknown"
    page = client.get(reverse("provisioning:environment", args=[environment.name])).content
    assert f"<td>{first.title}</td><td>not looked at yet</td>".encode() in page

    ResourceState.objects.create(key=first.key, title=first.title, **seen)
    assert shown(client, environment)["sync"] == "in sync"


@pytest.mark.django_db(transaction=True)
def test_the_upgrade_fills_the_state_from_the_runs_so_far():
    before = ("provisioning", "0011_run_kinds_hold_the_environment")
    after = ("provisioning", "0012_resource_state")
    executor = MigrationExecutor(connection)
    executor.migrate([before])
    old = executor.loader.project_state([before]).apps
    OldEnvironment, OldRun, OldStep = (
        old.get_model("provisioning", name) for name in ("Environment", "Run", "RunStep")
    )
    at = iter(timezone.now() - timedelta(minutes=minutes) for minutes in range(10, 0, -1))

    def ran(environment, kind: str, *steps, status="succeeded", result=None) -> None:
        """An old run: each step (key, status, outcome, outputs) as it was recorded."""
        made = OldRun.objects.create(
            environment=environment, kind=kind, status=status, result=result, finished_at=next(at)
        )
        for position, (key, step_status, outcome, outputs) in enumerate(steps):
            OldStep.objects.create(
                run=made,
                position=position,
                key=key,
                title=key,
                status=step_status,
                outcome=outcome,
                outputs=outputs,
            )

    drifted = OldEnvironment.objects.create(name="drifted", suffix="-d", is_local=True)
    ran(
        drifted,
        "apply",
        ("s3.audit_bucket", "done", "created", {"name": "audit-d"}),
        ("sqs.dlq", "done", "created", {"name": "dlq-d"}),
        ("apigateway.usage_plan", "done", "created", {"id": "plan-d"}),
    )
    changes = [
        {"key": "sqs.dlq", "title": "dlq", "action": "create", "fields": {}},
        {"key": "apigateway.usage_plan", "title": "plan", "action": "none", "fields": {}},
        {"key": "s3.audit_bucket", "title": "bucket", "action": "update", "fields": {"x": [1, 2]}},
    ]
    ran(drifted, "drift", result={"changes": changes})
    destroyed = OldEnvironment.objects.create(name="destroyed", suffix="-x", is_local=True)
    ran(
        destroyed,
        "apply",
        ("s3.audit_bucket", "done", "created", {"name": "audit-x"}),
        ("ecs.service", "done", "created", {"arn": "service-x"}),
    )
    ran(
        destroyed,
        "destroy",
        ("ecs.service", "done", "deleted", {}),
        ("s3.audit_bucket", "done", "kept (holds audit data)", {}),
    )
    failed = OldEnvironment.objects.create(name="failed", suffix="-f", is_local=True)
    ran(
        failed,
        "apply",
        ("s3.audit_bucket", "done", "created", {}),
        ("ecs.service", "failed", "AccessDenied", {}),
        ("apigateway.usage_plan", "pending", "", {}),
        status="failed",
    )

    MigrationExecutor(connection).migrate([after])
    # Read through today's models: the migrations after it add their columns too.
    latest = MigrationExecutor(connection)
    latest.migrate(latest.loader.graph.leaf_nodes())

    def states(name: str) -> dict:
        seen = state.last_seen(Environment.objects.get(name=name))
        return {row.key: (row.state, row.outputs) for row in seen.rows} | {"sync": seen.sync}

    assert states("drifted") == {
        "s3.audit_bucket": ("drifted", {"name": "audit-d"}),
        "sqs.dlq": ("missing", {}),
        "apigateway.usage_plan": ("present", {"id": "plan-d"}),
        "sync": "out of sync",
    }
    assert states("destroyed") == {
        "s3.audit_bucket": ("present", {"name": "audit-x"}),
        "ecs.service": ("missing", {}),
        "sync": "not deployed",
    }
    assert states("failed") == {
        "s3.audit_bucket": ("present", {}),
        "ecs.service": ("unknown", {}),
        "sync": "unknown",
    }
