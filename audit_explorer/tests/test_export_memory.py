"""The streamed export at volume through the real view, memory flat throughout.

20,000 rows keep CI within its time (seeding 30,000 took 150 s of a 45-minute budget); the
benchmark (bench/audit_explorer.py) exports 100,000 and reports the same flat peak. The
records are bulk-loaded (devtools.audit_volume): real ingest would take an hour.
"""

import time
import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from audit_explorer import demo
from devtools.audit_volume import bulk_load

pytestmark = [pytest.mark.django_db, pytest.mark.slow]
ROWS = 20_000
EARLY_ROWS = 10_000
PROJECT = "volume"


def test_an_export_keeps_memory_flat_from_the_first_10000_rows_on(client, viewer, audited):
    now = datetime.now(UTC)
    records = demo.records(ROWS, days=30, now=now)
    started = time.perf_counter()
    bulk_load(
        ({**record, "project": PROJECT} for record in records),
        table=audited.resource_name("AuditTable"),
    )
    seeded = time.perf_counter() - started

    client.force_login(viewer)
    search = {
        "project": PROJECT,
        "start": (now - timedelta(days=31)).isoformat(),
        "end": (now + timedelta(minutes=1)).isoformat(),
        "format": "csv",
    }
    started = time.perf_counter()
    tracemalloc.start()
    try:
        response = client.get(reverse("audit_explorer:export"), search)
        assert response.streaming and response["Content-Type"] == "text/csv"
        lines, early_peak = 0, None
        for chunk in response.streaming_content:
            lines += chunk.count(b"\r\n")  # no field of these records holds a line break
            if early_peak is None and lines > EARLY_ROWS:
                early_peak = tracemalloc.get_traced_memory()[1]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    exported = time.perf_counter() - started
    print(
        f"seeded {ROWS} records in {seeded:.0f} s, exported in {exported:.0f} s;"
        f" peak {early_peak / 2**20:.1f} MiB after {EARLY_ROWS} rows, {peak / 2**20:.1f} at the end"
    )

    assert lines == ROWS + 1  # and the header
    assert peak - early_peak < 2 * 2**20
