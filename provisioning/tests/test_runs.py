"""Runs from the browser: plan, confirm, apply in a real RQ worker on real Redis against the
moto server; the environment lock; cancel; the reaper; the live log."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import django_rq
import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rq import SimpleWorker

from centralllm import aws
from core.models import Action
from core.refusals import Refused
from devtools.testing import at_once, test_database_url
from provisioning import engine, runs
from provisioning.jobs import execute
from provisioning.models import Environment, Run, RunEvent
from provisioning.resources.base import Progress
from provisioning.tests.test_engine import real_aws_environment


def work() -> None:
    """Every queued job, by a burst worker in this process (a forking one would share the
    test database connection)."""
    queue = django_rq.get_queue(runs.QUEUE)
    SimpleWorker([queue], connection=queue.connection).work(burst=True)


def post(client, name: str, **kwargs):
    return client.post(reverse(f"provisioning:{name}", kwargs=kwargs.pop("args", {})), kwargs)


@pytest.fixture
def started(client, operator, environment, redis_conn, django_capture_on_commit_callbacks):
    """POST a start as the operator; returns the run, its job enqueued after commit."""

    def start(kind: str = "plan") -> Run:
        client.force_login(operator)
        with django_capture_on_commit_callbacks(execute=True):
            response = post(client, "run-start", args={"name": environment.name}, kind=kind)
        assert response.status_code == 302
        return Run.objects.get(pk=int(response["Location"].rstrip("/").split("/")[-1]))

    return start


@pytest.mark.django_db
def test_plan_confirm_apply_in_a_worker(
    client, started, environment, operator, django_capture_on_commit_callbacks
):
    plan = started("plan")
    assert plan.status == "queued"
    assert django_rq.get_queue(runs.QUEUE).job_ids == [plan.job_id]

    work()

    plan.refresh_from_db()
    assert plan.status == "succeeded", plan.explanation
    assert plan.decision == "pending"
    changes = plan.result["changes"]
    assert len(changes) == plan.steps.count() == len(engine.ordered(environment.spec()))
    assert {"key": "s3.audit_bucket", "title": "S3 audit bucket", "action": "create"}.items() <= (
        changes[[change["key"] for change in changes].index("s3.audit_bucket")].items()
    )
    assert plan.steps.filter(status="done").count() == plan.steps.count()
    page = client.get(reverse("provisioning:run", args=[plan.pk])).content.decode()
    assert "Confirm and apply" in page and "S3 audit bucket" in page

    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, "run-confirm", args={"pk": plan.pk})
    apply = Run.objects.get(plan=plan)
    assert response["Location"] == reverse("provisioning:run", args=[apply.pk])
    work()

    apply.refresh_from_db()
    assert apply.status == "succeeded", apply.explanation
    assert apply.started_by == operator and apply.started_by_name == "otto"
    step = apply.steps.get(key="s3.audit_bucket")
    assert step.outcome == "created" and step.calls["CreateBucket"] == 1
    assert step.outputs["name"] == f"central-llm-audit{environment.suffix}"
    assert list(apply.events.values_list("seq", flat=True)) == list(
        range(1, apply.events.count() + 1)
    )
    page = client.get(reverse("provisioning:environment", args=[environment.name])).content
    assert b"in sync" in page
    verbs = list(Action.objects.order_by("id").values_list("verb", "actor_name"))
    assert verbs == [("run.plan", "otto"), ("run.apply", "otto")]
    # Confirming twice (a double click) starts nothing more.
    response = post(client, "run-confirm", args={"pk": plan.pk})
    assert Run.objects.filter(plan=plan).count() == 1


@pytest.mark.django_db
def test_a_second_mutating_run_is_refused_with_the_holder_named(environment, operator):
    holder = runs.start(environment, "apply", actor=operator)
    with pytest.raises(Refused, match=rf"held by apply #{holder.pk}, started by otto"):
        runs.start(environment, "destroy", actor=None, parameters={"confirm": environment.name})
    # Reading is never locked out.
    assert runs.start(environment, "plan", actor=operator).status == "queued"


@pytest.mark.django_db
def test_a_refused_start_in_the_browser_links_to_the_holder(client, operator, environment):
    plan = runs.start(environment, "plan", actor=operator, enqueue=False)
    Run.objects.filter(pk=plan.pk).update(
        status="succeeded", decision="pending", result={"changes": [], "declaration": {}}
    )
    holder = runs.start(environment, "apply", actor=None, enqueue=False)
    client.force_login(operator)

    response = post(client, "run-confirm", args={"pk": plan.pk})

    assert response["Location"] == reverse("provisioning:run", args=[holder.pk])
    page = client.get(response["Location"]).content.decode()
    assert f"held by apply #{holder.pk}, started by command" in page
    # The environment's page words it the same way.
    page = client.get(reverse("provisioning:environment", args=[environment.name])).content
    assert f"held by apply #{holder.pk}, started by command" in page.decode()


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite runs one writer at a time: no race to lose"
)
@pytest.mark.django_db(transaction=True)
def test_racing_starts_on_one_environment_let_exactly_one_win(operator):
    environment = Environment.objects.create(name="race", suffix="-race", is_local=True)

    def race() -> str:
        try:
            runs.start(environment, "apply", actor=None, enqueue=False)
        except Refused:
            return "refused"
        return "won"

    assert sorted(at_once(race)) == ["refused", "won"]
    assert Run.objects.filter(environment=environment, kind="apply").count() == 1


def _apply_now(environment: Environment) -> Run:
    run = runs.start(environment, "apply", actor=None, enqueue=False)
    execute(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.explanation
    return run


def _confirmed_plan(environment: Environment, operator) -> Run:
    plan = runs.start(environment, "plan", actor=operator, enqueue=False)
    execute(plan.pk)
    return runs.confirm(Run.objects.get(pk=plan.pk), actor=operator)


@pytest.mark.django_db
def test_an_apply_refuses_when_aws_changed_since_the_plan(environment, operator):
    _apply_now(environment)
    # A count within min..max is scaling's: raising the minimum above it is what makes a change.
    Environment.objects.filter(pk=environment.pk).update(desired_count=2, min_tasks=2)
    environment.refresh_from_db()
    apply = _confirmed_plan(environment, operator)
    # Behind the console's back: someone sets the service to 7 tasks by hand, beyond max_tasks.
    aws.client("ecs").update_service(
        cluster=f"central-llm-service-cluster{environment.suffix}",
        service=f"central-llm-service{environment.suffix}",
        desiredCount=7,
    )

    with engine.counting_calls(environment.region) as calls:
        execute(apply.pk)

    apply.refresh_from_db()
    assert apply.status == "failed"
    assert "AWS changed since plan" in apply.explanation and "ECS service" in apply.explanation
    assert calls["mutating"] == 0


@pytest.mark.django_db
def test_an_apply_refuses_when_the_environment_was_edited_since_the_plan(environment, operator):
    apply = _confirmed_plan(environment, operator)
    Environment.objects.filter(pk=environment.pk).update(quota_limit=5)

    execute(apply.pk)

    apply.refresh_from_db()
    assert apply.status == "failed"
    assert "edited since plan" in apply.explanation and "quota_limit" in apply.explanation


@pytest.mark.django_db
def test_failing_preflight_stops_the_apply_before_any_change(operator):
    environment = real_aws_environment(vpc_id="vpc-00000000", security_group_id="sg-00000000")
    run = runs.start(environment, "apply", actor=operator, enqueue=False)

    with engine.counting_calls(environment.region) as calls:
        execute(run.pk)

    run.refresh_from_db()
    assert run.status == "failed"
    assert run.explanation.startswith("Pre-flight checks failed (network")
    assert calls["mutating"] == 0
    lines = list(run.events.values_list("text", flat=True))
    assert any("pre-flight FAIL: network" in line and "vpc-00000000" in line for line in lines)
    assert any("pre-flight pass: account" in line for line in lines)


class CancelAfter(Progress):
    """Asks for a cancel once ``steps`` steps are done, as an operator would mid-run."""

    def __init__(self, run: Run, steps: int) -> None:
        self.run, self.left = run, steps

    def finished(self, step: str, outcome: str) -> None:
        self.left -= 1
        if self.left == 0:
            runs.cancel(self.run, actor=None)


@pytest.mark.django_db
def test_a_cancelled_apply_stops_between_steps_and_a_later_apply_converges(environment):
    run = runs.start(environment, "apply", actor=None, enqueue=False)

    execute(run.pk, echo=CancelAfter(run, 5))

    run.refresh_from_db()
    assert run.status == "cancelled"
    assert "between two steps" in run.explanation
    assert run.steps.filter(status="done").count() == 5
    assert run.steps.filter(status="running").count() == 0
    again = _apply_now(environment)
    assert runs.holder_of(environment) is None
    assert again.result["outcomes"][run.steps.get(position=1).key] == "unchanged"


@pytest.mark.django_db
def test_cancelling_a_queued_run_takes_it_off_the_queue(
    environment, operator, redis_conn, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run = runs.start(environment, "apply", actor=operator)
    queue = django_rq.get_queue(runs.QUEUE)
    assert queue.job_ids == [run.job_id]

    with django_capture_on_commit_callbacks(execute=True):
        assert runs.cancel(run, actor=operator) == "Cancelled before it started."

    run.refresh_from_db()
    assert run.status == "cancelled"
    assert queue.job_ids == []
    assert runs.holder_of(environment) is None


@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_fails_its_run_and_the_retry_completes(
    client, admin_user, redis_conn, settings
):
    settings.RUN_HEARTBEAT_TIMEOUT_SECONDS = 2
    environment = Environment.objects.create(name="crash", suffix="-crash", is_local=True)
    run = runs.start(environment, "apply", actor=admin_user)  # enqueued on commit
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", runs.QUEUE],
        env={**os.environ, "DATABASE_URL": test_database_url()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not RunEvent.objects.filter(run=run, step__gt="").exists():
            assert time.monotonic() < deadline, "the worker never started the run"
            time.sleep(0.02)
        # Freeze it mid-run, then kill it and its work horse as the OOM killer would.
        os.killpg(worker.pid, signal.SIGSTOP)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)  # also when the test failed: leave no worker
        worker.wait(10)
    run.refresh_from_db()
    assert run.status == "running"
    client.force_login(admin_user)

    deadline = time.monotonic() + 60
    while run.status == "running":
        assert time.monotonic() < deadline, "the reaper did not fail the run within a minute"
        client.get(reverse("provisioning:run-events", args=[run.pk]))  # a viewer's poll
        time.sleep(0.5)
        run.refresh_from_db()

    assert run.status == "failed"
    assert "stopped answering" in run.explanation
    assert runs.holder_of(environment) is None
    retry = runs.retry(run, actor=admin_user)
    work()
    retry.refresh_from_db()
    assert retry.status == "succeeded", retry.explanation
    assert retry.retry_of == run


@pytest.mark.django_db
def test_the_live_log_opens_at_its_tail_and_continues_without_gaps(client, viewer, environment):
    run = runs.start(environment, "apply", actor=None, enqueue=False)
    Run.objects.filter(pk=run.pk).update(status="running", heartbeat_at=timezone.now())
    RunEvent.objects.bulk_create(RunEvent(run=run, seq=n, text=f"line {n}") for n in range(1, 5001))
    client.force_login(viewer)

    page = client.get(reverse("provisioning:run", args=[run.pk])).content.decode()
    assert page.count('class="event') == 200
    assert 'data-seq="4801"' in page and 'data-seq="4800"' not in page
    assert "?after=5000" in page and "?before=4801" in page
    older = client.get(reverse("provisioning:run", args=[run.pk]), {"before": 4801})
    assert 'data-seq="4601"' in older.content.decode()

    for n in (5001, 5002):
        runs.log(run, f"line {n}")
    fragment = client.get(reverse("provisioning:run-events", args=[run.pk]), {"after": 5000})
    text = fragment.content.decode()
    assert [int(seq) for seq in _seqs(text)] == [5001, 5002]
    assert "?after=5002" in text
    empty = client.get(reverse("provisioning:run-events", args=[run.pk]), {"after": 5002})
    assert _seqs(empty.content.decode()) == []

    Run.objects.filter(pk=run.pk).update(status="succeeded")
    ended = client.get(reverse("provisioning:run-events", args=[run.pk]), {"after": 5002})
    assert ended.status_code == 286  # htmx stops polling
    assert "run-poller" not in ended.content.decode()


def _seqs(html: str) -> list[str]:
    import re

    return re.findall(r'data-seq="(\d+)"', html)


@pytest.mark.django_db
def test_viewers_see_no_buttons_and_their_posts_are_refused(client, viewer, environment):
    plan = runs.start(environment, "plan", actor=None, enqueue=False)
    Run.objects.filter(pk=plan.pk).update(
        status="succeeded", decision="pending", result={"changes": [], "declaration": {}}
    )
    client.force_login(viewer)

    for page in (
        client.get(reverse("provisioning:environment", args=[environment.name])),
        client.get(reverse("provisioning:run", args=[plan.pk])),
        client.get(reverse("provisioning:environments")),
    ):
        assert page.status_code == 200
        text = page.content.decode()
        assert "<button" not in text.replace('<button class="link">Log out</button>', "")

    name = {"name": environment.name}
    pk = {"pk": plan.pk}
    for route, args in [
        ("run-start", name),
        ("run-destroy", name),
        ("environment-edit", name),
        ("environment-delete", name),
        ("environment-create", {}),
        ("run-confirm", pk),
        ("run-discard", pk),
        ("run-cancel", pk),
        ("run-retry", pk),
        ("run-force-cancel", pk),
        ("run-roll-back-now", pk),
        ("release-roll-back", {"pk": 1}),
        ("hold-clear", {"pk": 1}),
    ]:
        response = client.post(reverse(f"provisioning:{route}", kwargs=args), {"kind": "plan"})
        assert response.status_code == 403, route
    assert Run.objects.count() == 1


@pytest.mark.django_db
def test_operators_cannot_force_cancel(client, operator, environment):
    run = runs.start(environment, "apply", actor=None, enqueue=False)
    client.force_login(operator)
    assert post(client, "run-force-cancel", args={"pk": run.pk}).status_code == 403
    run.refresh_from_db()
    assert run.status == "queued"


@pytest.mark.django_db
def test_an_admin_force_cancels_a_run_and_frees_the_environment(client, admin_user, environment):
    run = runs.start(environment, "apply", actor=None, enqueue=False)
    client.force_login(admin_user)

    post(client, "run-force-cancel", args={"pk": run.pk})

    run.refresh_from_db()
    assert run.status == "cancelled" and "Force-cancelled by ada" in run.explanation
    assert runs.holder_of(environment) is None
    assert Action.objects.filter(verb="run.force_cancel", actor_name="ada").exists()


@pytest.mark.django_db
def test_a_silent_running_run_is_shown_stalled_with_what_it_last_said(
    client, viewer, environment, settings
):
    settings.RUN_STALLED_SECONDS = 60
    run = runs.start(environment, "apply", actor=None, enqueue=False)
    runs.log(run, "waiting for the ECS service to become stable")
    quiet_since = timezone.now() - timedelta(seconds=90)
    # The worker still answers RQ, so the reaper leaves it alone; the run has just gone quiet.
    Run.objects.filter(pk=run.pk).update(status="running", heartbeat_at=quiet_since)
    settings.RUN_HEARTBEAT_TIMEOUT_SECONDS = 3600
    client.force_login(viewer)

    page = client.get(reverse("provisioning:run", args=[run.pk])).content.decode()

    assert "stalled" in page
    assert "it last said: waiting for the ECS service to become stable" in page
    assert 'last heard from <time datetime="' in page and ">1 min ago</time>" in page
    Run.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now())
    assert "stalled" not in client.get(reverse("provisioning:run", args=[run.pk])).content.decode()
