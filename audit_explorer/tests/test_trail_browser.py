"""An operator redrives the dead-letter queue in Debian's chromium and sees yesterday's
completeness badge turn green: a live server, a real RQ worker process on real Redis, the
local AWS."""

import json
import uuid
from datetime import UTC, datetime, time, timedelta

import pytest
from playwright.sync_api import expect

from audit_explorer import audit_runs, dead_letters
from audit_explorer.models import AuditDay
from centralllm.audit.contract import dumps, record_key
from centralllm.audit.tests.conftest import make_record
from devtools.testing import log_in
from provisioning import jobs, runs

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_operator_redrives_the_dlq_and_the_day_turns_complete(
    page, live_server, operator, trail, rq_worker
):
    yesterday = audit_runs.today() - timedelta(days=1)
    records = [
        make_record(created_at=datetime.combine(yesterday, time(hour, 5), tzinfo=UTC))
        for hour in (1, 2, 3)
    ]
    bucket = trail.name("AuditBucket")
    for record in records:
        trail.client("s3").put_object(Bucket=bucket, Key=record_key(record), Body=dumps(record))
    dead_letters.redrive(trail, dead_letters.s3_event(bucket, [record_key(records[0])]))
    # The other two failed their three attempts (a bug since fixed) and wait in the DLQ.
    for record in records[1:]:
        trail.client("sqs").send_message(
            QueueUrl=dead_letters.queue_url(trail),
            MessageBody=json.dumps(dead_letters.s3_event(bucket, [record_key(record)])),
            MessageAttributes={
                "RequestID": {"DataType": "String", "StringValue": str(uuid.uuid4())},
                "ErrorMessage": {"DataType": "String", "StringValue": "RuntimeError: a bug"},
            },
        )
    check = runs.start(
        trail.environment,
        "check",
        actor=None,
        parameters={"day": str(yesterday)},
        enqueue=False,
    )
    jobs.execute(check.pk)
    assert AuditDay.objects.get(environment=trail.environment).missing_count == 2

    log_in(page, live_server.url, "otto")
    row = page.locator("tr", has=page.get_by_role("link", name=trail.environment.name))
    expect(row.locator("[data-audit-day]")).to_have_text("2 missing")

    page.get_by_role("link", name=trail.environment.name).click()
    day = page.locator(f".calendar [data-day='{yesterday}']")
    expect(day).to_have_class("day incomplete")
    page.locator("[data-dead-letters]").click()
    expect(page.locator("tr[data-letter]")).to_have_count(2)
    page.get_by_label("Select all").check()
    page.get_by_role("button", name="Redrive selected").click()

    expect(page.locator("[data-status]")).to_have_text("succeeded", timeout=60_000)
    expect(page.locator(".explanation")).to_have_text("2 ingested again; nothing failed.")
    page.screenshot(path="var/audit-redrive.png", full_page=True)

    page.get_by_role("link", name="Dashboard").click()
    expect(row.locator("[data-audit-day]")).to_have_text("complete")
    row.locator("[data-audit-day]").click()
    expect(page.locator("[data-count='items']")).to_have_text("3")
    expect(page.locator("[data-count='rollups']")).to_have_text("3")

    page.goto(f"{live_server.url}/environments/{trail.environment.name}/")
    expect(day).to_have_class("day complete")
    page.locator(".calendar").scroll_into_view_if_needed()
    page.screenshot(path="var/audit-calendar.png", full_page=True)
