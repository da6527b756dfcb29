"""An operator deploys from the browser: Debian's chromium through Playwright, a live server,
a real RQ worker process on real Redis, and the moto server."""

import os
import re
import subprocess
import sys
import time

import pytest
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import expect

from centralllm import aws
from devtools.testing import log_in, test_database_url
from provisioning import runs
from provisioning.models import Environment, Run

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def provisioning_worker(redis_conn):
    # No model is served here: a validation says so (the completion skipped, with why).
    environ = {name: value for name, value in os.environ.items() if name != "LOCAL_MODEL_URL"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", "provisioning"],
        env={**environ, "DATABASE_URL": test_database_url()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield process
    process.terminate()
    process.wait(10)


def test_an_operator_creates_staging_plans_confirms_and_watches_the_apply(
    page, live_server, operator, provisioning_worker
):
    suffix = f"-b{int(time.time()) % 100000}"
    # A transactional test starts from empty tables: the migration's local environment is gone.
    Environment.objects.get_or_create(name="local", defaults={"is_local": True})
    log_in(page, live_server.url, "otto")
    page.goto(f"{live_server.url}/environments/local/")
    page.get_by_role("link", name="Copy").click()
    page.locator("#id_name").fill("staging")
    page.locator("#id_suffix").fill(suffix)
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_text("Environment staging created")).to_be_visible()

    page.get_by_role("button", name="Plan").click()
    expect(page.locator("[data-status]")).to_have_text("succeeded", timeout=60_000)
    expect(page.locator("table.diff")).to_contain_text("S3 audit bucket")
    # How long the first apply usually takes on AWS, from the documented waits.
    expect(page.locator("p.expected")).to_contain_text("this apply usually takes about")
    nlb = page.locator("table.diff tr", has_text="Network Load Balancer")
    expect(nlb.locator("td").last).to_have_text("3 min")
    page.screenshot(path="var/run-plan.png", full_page=True)
    page.get_by_role("button", name="Confirm and apply").click()

    expect(page.get_by_role("heading", name="Apply")).to_be_visible()
    expect(page.locator("[data-status]")).to_have_text("succeeded", timeout=120_000)
    expect(page.locator("#run-log")).to_contain_text("ECS service")
    seqs = [
        int(s)
        for s in page.locator("#run-log [data-seq]").evaluate_all(
            "nodes => nodes.map(n => n.dataset.seq)"
        )
    ]
    assert seqs == list(range(1, len(seqs) + 1))  # the live log: no gap, no repeat
    page.screenshot(path="var/run-apply.png", full_page=True)
    page.get_by_role("link", name="← staging").click()
    expect(page.locator('[data-badge="sync"] .state')).to_have_text("in sync")
    page.screenshot(path="var/environment.png", full_page=True)


def test_reloading_a_running_run_continues_its_log_without_gaps_or_repeats(
    page, live_server, viewer
):
    environment, _ = Environment.objects.get_or_create(name="local", defaults={"is_local": True})
    run = runs.start(environment, "apply", actor=None, enqueue=False)
    Run.objects.filter(pk=run.pk).update(status="running", heartbeat_at=timezone.now())
    for n in range(1, 251):
        runs.log(run, f"line {n}")
    log_in(page, live_server.url, "vera")
    page.goto(f"{live_server.url}/environments/runs/{run.pk}/")
    events = page.locator("#run-log [data-seq]")
    expect(events).to_have_count(200)  # it opens at its tail

    for n in range(251, 256):
        runs.log(run, f"line {n}")
    expect(events.last).to_have_attribute("data-seq", "255")  # the poller brought them in
    page.reload()
    for n in range(256, 261):
        runs.log(run, f"line {n}")
    expect(events.last).to_have_attribute("data-seq", "260")
    seqs = [int(seq) for seq in events.evaluate_all("nodes => nodes.map(n => n.dataset.seq)")]
    assert seqs == list(range(seqs[0], 261)) and seqs[0] > 1

    # A viewer watches: no button but logging out.
    expect(page.locator("main button")).to_have_count(0)
    Run.objects.filter(pk=run.pk).update(status="succeeded", finished_at=timezone.now())
    expect(page.locator("[data-status]")).to_have_text("succeeded")


def test_a_held_environment_is_named_and_a_queued_run_is_cancelled_in_the_browser(
    page, live_server, operator
):
    environment, _ = Environment.objects.get_or_create(name="local", defaults={"is_local": True})
    holder = runs.start(environment, "apply", actor=None, enqueue=False)  # no worker takes it
    plan = runs.start(environment, "plan", actor=operator, enqueue=False)
    Run.objects.filter(pk=plan.pk).update(
        status="succeeded",
        decision="pending",
        result={
            "changes": [
                {
                    "key": "s3.audit_bucket",
                    "title": "S3 audit bucket",
                    "action": "create",
                    "note": "",
                    "fields": {},
                }
            ],
            "declaration": {},
        },
    )
    log_in(page, live_server.url, "otto")
    page.goto(f"{live_server.url}/environments/runs/{plan.pk}/")

    page.get_by_role("button", name="Confirm and apply").click()

    expect(page.locator(".message.error")).to_contain_text(
        f"local is held by apply #{holder.pk}, started by command"
    )
    page.goto(f"{live_server.url}/environments/runs/{holder.pk}/")
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("[data-status]")).to_have_text("cancelled")
    expect(page.get_by_text("Cancelled by otto before it started.").first).to_be_visible()
    page.goto(f"{live_server.url}/environments/runs/{plan.pk}/")
    page.get_by_role("button", name="Confirm and apply").click()  # the plan waited: now free
    # (Not plan.pk + 1: on PostgreSQL the refused insert took an id.)
    expect(page.get_by_role("heading", name=re.compile(r"^Apply #\d+ of local$"))).to_be_visible()
    assert Run.objects.get(plan=plan).kind == "apply"


def test_an_operator_rolls_out_rolls_back_and_sees_the_validation_after_each(
    page, live_server, operator, provisioning_worker
):
    """As on `make run`: the local CodeBuild builds and pushes each image (nothing is pushed
    behind the console's back), no model is served, and the environment was applied as
    `make run` applies its local environment at start."""
    environment = Environment.objects.create(name="rolled", suffix="-rl", is_local=True)
    call_command("env", "apply", environment.name, verbosity=0)
    log_in(page, live_server.url, "otto")
    page.goto(f"{live_server.url}/environments/rolled/")
    expect(page.get_by_text("Never rolled out")).to_be_visible()

    first = roll_out(page, "v1")
    releases = page.locator("section:has(> h2:text-is('Image')) table")
    expect(releases.locator("tr", has_text="v1")).to_contain_text("live")
    see_the_validation_after(page, first)

    second = roll_out(page, "v2")
    expect(releases.locator("tr", has_text="v2")).to_contain_text("live")
    replaced = releases.locator("tr", has_text="v1")
    expect(replaced).to_contain_text("replaced")
    see_the_validation_after(page, second)

    replaced.get_by_label("Reason to roll back to v1").fill("v2 answers slower")
    replaced.get_by_role("button", name="Roll back to this").click()
    expect(page.get_by_role("heading", name=re.compile(r"^Rollback #\d+"))).to_be_visible()
    expect(page.locator("[data-status]")).to_have_text("succeeded", timeout=60_000)
    log = page.locator("#run-log")
    expect(log).to_contain_text("steady: 1 tasks running")
    back = validation_started(page)
    page.get_by_role("link", name="← rolled").click()
    expect(releases.locator("tr", has_text="rollback")).to_contain_text("live")
    expect(releases.locator("tr", has_text="v2")).to_contain_text("replaced")
    expect(page.locator('[data-hold="v2"]')).to_contain_text("v2 answers slower")
    see_the_validation_after(page, back)
    page.screenshot(path="var/rollout-environment.png", full_page=True)


def roll_out(page, tag: str) -> int:
    """Rolls ``tag`` out from the environment's page, follows it to live and comes back;
    returns the validation run it started."""
    page.get_by_label("Source version (branch, tag or commit)").fill(tag)
    page.get_by_role("button", name="Roll out").click()
    expect(page.get_by_role("heading", name=re.compile(r"^Rollout #\d+"))).to_be_visible()
    expect(page.locator("[data-status]")).to_have_text("succeeded", timeout=60_000)
    log = page.locator("#run-log")
    # The local CodeBuild: a phase in progress at the first look (which one depends on how
    # soon the run first looks: its phases take 1 s in all here), its phases, then the push.
    expect(log).to_contain_text(re.compile(r"[A-Z_]+: in progress"))
    expect(log).to_contain_text("POST_BUILD: succeeded")
    digest = aws.client("ecr").describe_images(
        repositoryName="mistral8b-vllm-rl", imageIds=[{"imageTag": tag}]
    )["imageDetails"][0]["imageDigest"]
    expect(log).to_contain_text(f"mistral8b-vllm-rl:{tag} is {digest}")
    expect(log).to_contain_text("steady: 1 tasks running")
    started = validation_started(page)
    page.get_by_role("link", name="← rolled").click()
    return started


def validation_started(page) -> int:
    line = page.locator("#run-log li", has_text=re.compile(r"validation #\d+ started"))
    return int(re.search(r"#(\d+)", line.inner_text()).group(1))


def see_the_validation_after(page, number: int) -> None:
    """Validation ``number``, from the environment's recent runs: with no model served locally
    it passes what it can check and says plainly what it skipped and why, as the badge does."""
    page.get_by_role("link", name=f"validate #{number}").click()
    expect(page.locator("[data-status]")).to_have_text("succeeded", timeout=60_000)
    steps = page.locator("#run-summary table")
    completion = steps.locator("tr", has_text="A chat completion through the endpoint")
    expect(completion).to_contain_text("skipped: no model is served locally")
    expect(steps.locator("tr", has_text="The ECS service is steady")).to_contain_text("pass: ")
    page.get_by_role("link", name="← rolled").click()
    badge = page.locator('[data-badge="validation"]')
    expect(badge.get_by_role("link", name=f"#{number}")).to_be_visible()
    expect(badge.locator(".state")).to_have_text("passed, 4 skipped")
    expect(badge).to_contain_text("1 of 5 checks passed, 4 skipped: no model is served locally")
