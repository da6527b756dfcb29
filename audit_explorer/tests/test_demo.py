"""Demo traffic: its records, a load's progress in Redis, the rest of a load cut short, and
the Audit page's notice while it loads."""

import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError
from django.core.management import CommandError, call_command
from django.urls import reverse

from audit_explorer import demo
from centralllm import aws

pytestmark = pytest.mark.django_db
HOME = reverse("audit_explorer:home")
POLL = reverse("audit_explorer:demo-progress")


def test_records_fill_the_last_30_days_and_the_last_hour_the_same_for_the_same_anchor():
    now = datetime(2026, 12, 5, 3, 20, tzinfo=UTC)  # early: the day's later hours go before
    made = list(demo.records(2000, days=30, now=now, key_ids={"search": "k-search"}))
    created = [datetime.fromisoformat(record["createdAt"]) for record in made]

    assert all(now - timedelta(days=31) < moment < now for moment in created)
    assert len({moment.date() for moment in created}) >= 30
    assert 20 < sum(moment > now - timedelta(hours=1) for moment in created) < 65  # 2%
    keys = {(record["project"], record["apiKeyId"]) for record in made}
    assert ("search", "k-search") in keys and ("summaries", "demo-key-summaries") in keys
    assert made == list(demo.records(2000, days=30, now=now, key_ids={"search": "k-search"}))
    # Drawn at another time: other request ids, so two loads never collide.
    other = next(demo.records(1, days=30, now=now + timedelta(seconds=1)))
    assert other["requestId"] != made[0]["requestId"]


def notice(page: str) -> str:
    """The opening tag of the page's demo notice."""
    return re.search(r'<div id="demo-progress"[^>]*>', page).group(0)


def _audit_objects(bucket: str) -> int:
    return aws.client("s3").list_objects_v2(Bucket=bucket, Prefix="logs/")["KeyCount"]


def _record_items(table: str) -> int:
    pages = aws.client("dynamodb").get_paginator("scan").paginate(TableName=table)
    return sum(
        1
        for page in pages
        for item in page["Items"]
        if item["id"]["S"].startswith("demo-") and item["createdAt"]["S"] != "~request"
    )


def test_a_load_cut_short_is_finished_by_the_next_with_every_record_once(
    audited, audit_bucket, redis_conn
):
    load = demo.begin(redis_conn, audited.name, records=30, days=2, key_ids={})

    def stop_halfway(done: int, total: int) -> None:
        if done >= total // 2:
            raise KeyboardInterrupt  # as make run's Ctrl-C stops it

    with pytest.raises(KeyboardInterrupt):
        demo.run(redis_conn, load, bucket=audit_bucket, report=stop_halfway)
    cut = demo.progress(redis_conn, audited.name)
    assert (cut.state, cut.done, cut.error) == ("stopped", 15, "")

    out = io.StringIO()
    call_command("demo_traffic", environment=audited.name, if_empty=True, stdout=out)
    assert "loading the rest, from 15 of 30" in out.getvalue()
    assert "loaded 30 requests over the last 2 days" in out.getvalue()
    assert demo.progress(redis_conn, audited.name).state == "finished"
    assert _audit_objects(audit_bucket) == 30
    assert _record_items(audited.resource_name("AuditTable")) == 30

    # make run's next start: the table holds records and no load was cut short.
    call_command("demo_traffic", environment=audited.name, if_empty=True, stdout=out)
    assert out.getvalue().endswith("none loaded, the audit table holds records already\n")
    assert _audit_objects(audit_bucket) == 30  # listed again: nothing was put


def test_a_second_load_while_one_runs_is_refused(audited, redis_conn):
    demo.begin(redis_conn, audited.name, records=30, days=2, key_ids={})
    with pytest.raises(CommandError, match="a load is running"):
        call_command("demo_traffic", environment=audited.name, stdout=io.StringIO())


def test_the_audit_page_shows_the_load_as_it_goes_and_stops_polling_once_loaded(
    client, viewer, audited, audit_bucket, redis_conn
):
    client.force_login(viewer)
    assert 'id="demo-progress"' not in client.get(HOME).content.decode()  # none loaded
    seen = {}

    def look(done: int, total: int) -> None:
        if done == total // 2:
            seen["page"] = client.get(HOME).content.decode()

    load = demo.begin(redis_conn, audited.name, records=20, days=2, key_ids={})
    demo.run(redis_conn, load, bucket=audit_bucket, report=look)

    page = seen["page"]
    assert f"Loading demo traffic into {audited.name}" in page
    assert '<progress max="20" value="10"></progress>' in page and "50% (10 of 20" in page
    assert f'hx-get="{POLL}?environment={audited.name}" hx-trigger="every 2s"' in notice(page)
    assert f'<a href="?environment={audited.name}">Reload</a>' in page  # without htmx
    ended = client.get(POLL, {"environment": audited.name}).content.decode()
    assert f"Demo traffic loaded: 20 requests into {audited.name}" in ended
    assert "hx-get" not in notice(ended)  # the swapped-in notice polls no more
    assert 'id="demo-progress"' not in client.get(HOME).content.decode()


def test_the_audit_page_says_a_load_stopped_or_failed_and_what_happens_next(
    client, viewer, audited, audit_bucket, redis_conn
):
    client.force_login(viewer)
    load = demo.begin(redis_conn, audited.name, records=20, days=2, key_ids={})
    with pytest.raises(ClientError, match="NoSuchBucket"):
        demo.run(redis_conn, load, bucket=f"{audit_bucket}-missing")

    page = client.get(HOME).content.decode()
    assert f"The demo traffic of {audited.name} failed at 0 of 20 requests" in page
    assert "NoSuchBucket" in page and "hx-get" not in notice(page)

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    load = demo.begin(redis_conn, audited.name, records=20, days=2, key_ids={})
    with pytest.raises(KeyboardInterrupt):
        demo.run(redis_conn, load, bucket=audit_bucket, report=interrupt)
    page = client.get(HOME).content.decode()
    assert f"The demo traffic of {audited.name} stopped at 10% (2 of 20 requests)" in page
    assert "the next <code>make run</code>" in page and "hx-get" not in notice(page)
