from datetime import UTC, datetime, timedelta

import pytest

from centralllm.audit.ingest import ingest_record
from centralllm.audit.items import (
    get_item,
    latency_sort_prefix,
    query_project_latency,
    query_status,
    query_user,
)
from centralllm.audit.table import STATUS_SHARDS, shard_of
from centralllm.audit.tests.conftest import make_record

START = datetime(2026, 11, 27, 5, 0, tzinfo=UTC)


def ingest_minutes(count: int, **fields) -> list[dict]:
    """``count`` records, one a minute from START, latencies 10, 20, 30 ... ms."""
    records = [
        make_record(created_at=START + timedelta(minutes=n), latency_ms=10 * (n + 1), **fields)
        for n in range(count)
    ]
    for record in records:
        ingest_record(record)
    return records


def all_pages(query, *args, **kwargs) -> list[list[str]]:
    pages, token = [], None
    while True:
        page = query(*args, token=token, **kwargs)
        pages.append([item["id"] for item in page.items])
        if page.next_token is None:
            return pages
        token = page.next_token


def test_status_pages_merge_every_shard_newest_first(audit_table):
    records = ingest_minutes(23, status=429)
    assert len({shard_of(r["requestId"], STATUS_SHARDS) for r in records}) > 1

    pages = all_pages(query_status, 429, limit=5)

    newest_first = [r["requestId"] for r in reversed(records)]
    assert [request_id for page in pages for request_id in page] == newest_first
    assert all(len(page) == 5 for page in pages[:4])


def test_status_oldest_first_within_a_time_range(audit_table):
    records = ingest_minutes(10, status=504)

    page = query_status(
        504,
        start=START + timedelta(minutes=3),
        end=START + timedelta(minutes=6),
        newest_first=False,
    )

    # start included, end excluded
    assert [item["id"] for item in page.items] == [r["requestId"] for r in records[3:6]]
    assert page.next_token is None


def test_user_pages_and_time_range(audit_table):
    records = ingest_minutes(7, user="pager")
    ingest_minutes(2, user="someone-else")

    pages = all_pages(query_user, "pager", limit=3, start=START + timedelta(minutes=1))

    assert [i for page in pages for i in page] == [r["requestId"] for r in records[:0:-1]]


def test_project_by_latency(audit_table):
    records = ingest_minutes(6, project="latency-project")  # 10 ... 60 ms

    slowest = query_project_latency("latency-project", limit=2)
    between = query_project_latency(
        "latency-project", min_latency_ms=20, max_latency_ms=40, slowest_first=False
    )
    recent_slow = query_project_latency(
        "latency-project", start=START + timedelta(minutes=4), min_latency_ms=1
    )

    assert [i["latencyMs"] for i in slowest.items] == [60, 50]
    assert [i["id"] for i in between.items] == [r["requestId"] for r in records[1:4]]
    assert [i["latencyMs"] for i in recent_slow.items] == [60, 50]
    rest = query_project_latency("latency-project", limit=2, token=slowest.next_token)
    assert [i["latencyMs"] for i in rest.items] == [40, 30]


def test_latency_sorts_numerically_as_text():
    latencies = [0.4, 9, 10, 99.6, 1000, 123456789]
    prefixes = [latency_sort_prefix(ms) for ms in latencies]
    assert prefixes == sorted(prefixes)
    assert latency_sort_prefix(10**12) == "9999999999"


def test_requests_without_user_or_project_are_findable(audit_table):
    record = make_record(project=None, user=None, request_type=None, status=400)
    ingest_record(record)

    assert [i["id"] for i in query_user(None).items] == [record["requestId"]]
    assert [i["id"] for i in query_project_latency(None).items] == [record["requestId"]]
    assert get_item(record["requestId"])["userIdPk"] == "user#-"


def test_a_token_of_another_query_is_refused(audit_table):
    ingest_minutes(3, user="token-user")
    token = query_user("token-user", limit=1).next_token
    assert token

    with pytest.raises(ValueError, match="not a page token of this query"):
        query_status(200, token=token)
    with pytest.raises(ValueError, match="not a page token of this query"):
        query_user("token-user", token="garbage!")
