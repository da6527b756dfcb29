"""An operator deploys from the browser: Debian's chromium through Playwright, a live server,
a real RQ worker process on real Redis, and the moto server."""

import os
import re
import subprocess
import sys
import time

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from devtools.testing import log_in, test_database_url
from provisioning import runs
from provisioning.models import Environment, Run

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def provisioning_worker(redis_conn):
    process = subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", "provisioning"],
        env={**os.environ, "DATABASE_URL": test_database_url()},
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


def test_an_operator_rolls_out_watches_the_stages_and_sees_the_validation(
    page, live_server, operator, provisioning_worker, settings
):
    from provisioning import engine
    from provisioning.tests.test_rollout import push_image

    settings.LOCAL_MODEL_URL = ""  # no model served here: the completion is skipped, with why
    environment = Environment.objects.create(name="rolled", suffix="-rl", is_local=True)
    engine.apply(environment)
    push_image(environment, "0123abc")  # what the build would push: moto's CodeBuild runs none
    log_in(page, live_server.url, "otto")
    page.goto(f"{live_server.url}/environments/rolled/")
    expect(page.get_by_text("Never rolled out")).to_be_visible()

    page.get_by_label("Source version (branch, tag or commit)").fill("0123abc")
    page.get_by_role("button", name="Roll out").click()

    expect(page.get_by_role("heading", name="Rollout")).to_be_visible()
    expect(page.locator("[data-status]")).to_have_text("succeeded", timeout=60_000)
    log = page.locator("#run-log")
    for stage in (
        "BUILD: succeeded",
        "mistral8b-vllm-rl:0123abc is sha256:",
        "registered",
        "the service now deploys",
        "steady: 1 tasks running",
    ):
        expect(log).to_contain_text(stage)
    expect(log).to_contain_text("validation #")
    page.get_by_role("link", name="← rolled").click()
    expect(page.locator('[data-badge="validation"] .state')).to_have_text("passed", timeout=60_000)
    expect(page.locator("section:has(> h2:text-is('Image')) table")).to_contain_text("0123abc")
    page.screenshot(path="var/rollout-environment.png", full_page=True)
