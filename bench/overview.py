"""The first pages an operator opens, at volume: the Audit overview and the dashboard.

    .venv/bin/python bench/overview.py [--records 20000] [--projects 100] [--repeat 10]

Starts its own Redis and local AWS (DynamoDB in DynamoDB Local) and a SQLite database in a
temporary folder, bulk-loads ``--records`` demo records of the last 24 hours spread over
``--projects`` projects (devtools.audit_volume: the table as real ingest leaves it), then
measures through Django's test client, as a viewer, medians over ``--repeat``:

- GET /audit/ cold (the overview's cache emptied before each run): server time, and the
  DynamoDB calls per page (overview.py states the bound: 40 + 8 x projects shown + 8 x
  statuses) with their time summed over the threads that make them;
- GET /audit/ warm (the overview kept for AWS_STATE_CACHE_SECONDS);
- GET / (the dashboard: alerts, live image and the last 24 hours per environment), cold.
"""

import argparse
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.audit_explorer import SUFFIX, DynamoDBTime, _client, _timed
from devtools import services


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--projects", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args(argv)
    with services.for_benchmark():
        return _bench(args)


def _bench(args) -> int:
    from audit_explorer import demo
    from devtools.audit_volume import bulk_load
    from devtools.testing import create_audit_table
    from provisioning.resources.base import resource_name

    table = os.environ["TABLE_NAME"] = create_audit_table(resource_name("AuditTable", SUFFIX))
    now = datetime.now(UTC)
    records = demo.records(args.records, days=1, now=now - timedelta(minutes=1))
    projects = [f"project-{n:03d}" for n in range(args.projects)]
    bulk_load(
        ({**record, "project": projects[n % len(projects)]} for n, record in enumerate(records)),
        table=table,
    )
    print(f"{args.records} records of the last 24 hours over {args.projects} projects")

    from django.core.cache import cache
    from django.urls import reverse

    client, dynamodb = _client(), DynamoDBTime()
    pages = {
        "Audit overview, cold": (reverse("audit_explorer:home"), True),
        "Audit overview, warm": (reverse("audit_explorer:home"), False),
        "dashboard, cold": (reverse("dashboard"), True),
    }
    for title, (url, cold) in pages.items():

        def get(url=url, cold=cold) -> None:
            if cold:
                cache.clear()
            response = client.get(url)
            assert response.status_code == 200, response.status_code

        ms = _timed(get, args.repeat, dynamodb)
        # The overview reads several keys at once: time inside the calls is summed over its
        # threads, so only the whole is a wall-clock figure.
        print(f"\n{title}: GET {url}")
        print(f"  in all {ms['total']:.1f} ms (target <= 1000 ms cold, 100 ms warm)")
        print(f"  DynamoDB calls per page: {sum(dynamodb.calls.values())}, {ms['calls']:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
