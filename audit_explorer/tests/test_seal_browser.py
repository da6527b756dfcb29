"""An operator follows the dashboard's badge to a day whose record was rewritten after
sealing, sees which one, and seals the day again, keeping the old seal: Debian's chromium, a
live server, a real RQ worker process on real Redis, the local AWS."""

import hashlib
from datetime import UTC, datetime, time, timedelta

import pytest
from playwright.sync_api import expect

from audit_explorer import audit_runs
from audit_explorer.models import AuditDay
from centralllm.audit.contract import dumps, record_key
from centralllm.audit.tests.conftest import make_record
from devtools.testing import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_operator_sees_the_changed_record_and_seals_the_day_again(
    page, live_server, operator, trail, rq_worker
):
    yesterday = audit_runs.today() - timedelta(days=1)
    records = [
        make_record(created_at=datetime.combine(yesterday, time(hour, 5), tzinfo=UTC))
        for hour in (1, 2)
    ]
    s3, bucket = trail.client("s3"), trail.name("AuditBucket")
    for record in records:
        s3.put_object(Bucket=bucket, Key=record_key(record), Body=dumps(record))
    checked = AuditDay.objects.create(
        environment=trail.environment,
        day=yesterday,
        complete=True,
        objects_count=2,
        items_count=2,
        rollup_count=2,
    )
    audit_runs.seal_and_keep(trail, checked)  # as the nightly check seals it
    forged = dumps({**records[0], "project": "someone-else"})
    s3.put_object(Bucket=bucket, Key=record_key(records[0]), Body=forged)
    audit_runs.seal_and_keep(trail, checked)  # and the next check finds it

    log_in(page, live_server.url, "otto")
    row = page.locator("tr", has=page.get_by_role("link", name=trail.environment.name))
    row.get_by_role("link", name="changed since sealed").click()

    changed = page.locator(f"tr[data-changed='{record_key(records[0])}']")
    expect(changed).to_contain_text(hashlib.sha256(dumps(records[0])).hexdigest())
    expect(changed).to_contain_text(hashlib.sha256(forged).hexdigest())
    page.get_by_role("button", name="Seal again").click()

    kept = f"seals/{yesterday:%Y/%m/%d}.1.json"
    expect(page.locator("[data-status]")).to_have_text("succeeded", timeout=60_000)
    expect(page.locator(".explanation")).to_contain_text(f"is kept as {kept}")
    page.goto(f"{live_server.url}/audit/trail/{trail.environment.name}/days/{yesterday}/")
    expect(page.locator("#seal")).to_have_attribute("data-seal", "sealed")
    expect(page.locator(f"[data-kept='{kept}']")).to_contain_text(
        "1 changed, 0 vanished, 0 added since"
    )
    page.screenshot(path="var/audit-seal.png", full_page=True)
