"""Completeness check of one day of audit records in the local AWS, and its cost on AWS.

    .venv/bin/python bench/audit_trail.py [--records 100000] [--missing 100]

Starts its own Redis, local AWS (DynamoDB in DynamoDB Local) and SQLite database. One day of
``--records`` demo records is written to the audit bucket (one object each, 16 writers) and,
all but ``--missing`` of them, bulk-loaded into the table with their rollups
(devtools.audit_volume, the ingest's own actions). Then ``completeness.check_day`` runs as a
check run would: wall time and each step's, AWS calls by operation, DynamoDB read units; then
once more under tracemalloc for Python's peak memory (tracemalloc slows it down). Last, the
same check on paper at 10 million records a day, priced with AWS's on-demand list prices
(us-east-1).
"""

import argparse
import sys
import time
import tracemalloc
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from datetime import time as day_time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools import services

# USD, us-east-1 on-demand list prices: an S3 LIST request, a DynamoDB read request unit.
LIST_PRICE = 0.005 / 1000
READ_UNIT_PRICE = 0.125 / 1_000_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--missing", type=int, default=100)
    args = parser.parse_args(argv)
    with services.for_benchmark():
        return _bench(args)


def _bench(args) -> int:
    import django

    django.setup()
    from django.core.management import call_command

    from audit_explorer import completeness, demo
    from centralllm.audit.contract import dumps, record_key
    from centralllm.audit.table import create_table_request
    from devtools.audit_volume import bulk_load
    from provisioning.models import Environment
    from provisioning.resources.base import Context, Progress

    call_command("migrate", verbosity=0)
    environment = Environment.objects.create(name="bench", suffix="-bench", is_local=True)
    ctx = Context(environment.spec())
    ctx.client("s3").create_bucket(
        Bucket=ctx.name("AuditBucket"),
        CreateBucketConfiguration={"LocationConstraint": environment.region},
    )
    ctx.client("dynamodb").create_table(**create_table_request(ctx.name("AuditTable")))

    day = (datetime.now(UTC) - timedelta(days=2)).date()
    end_of_day = datetime.combine(day, day_time(23, 59, 59), tzinfo=UTC)
    records = list(demo.records(args.records, days=1, now=end_of_day))
    started = time.perf_counter()
    s3, bucket = ctx.client("s3"), ctx.name("AuditBucket")
    with ThreadPoolExecutor(10) as pool:  # botocore's pool keeps 10 connections
        for _ in pool.map(
            lambda r: s3.put_object(Bucket=bucket, Key=record_key(r), Body=dumps(r)), records
        ):
            pass
    print(f"{len(records)} objects put in {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    bulk_load(records[args.missing :], table=ctx.name("AuditTable"))
    loaded = len(records) - args.missing
    print(f"{loaded} items bulk-loaded in {time.perf_counter() - started:.0f} s")
    del records

    calls = Counter()
    for service in ("s3", "dynamodb", "cloudwatch"):
        ctx.client(service).meta.events.register(
            "before-call", lambda model, **_: calls.update([model.name]), unique_id="bench"
        )

    class StepTimes(Progress):
        def __init__(self) -> None:
            self.seconds: dict[str, float] = {}

        def started(self, step: str, title: str) -> None:
            self.seconds[step] = time.perf_counter()

        def finished(self, step: str, outcome: str) -> None:
            self.seconds[step] = time.perf_counter() - self.seconds[step]

    steps = StepTimes()
    ctx.progress = steps
    started = time.perf_counter()
    check = completeness.check_day(ctx, day, dead_lettered=set())
    seconds = time.perf_counter() - started
    print(f"\ncompleteness check of {day}: {seconds:.1f} s wall")
    print("  steps: " + ", ".join(f"{key} {took:.1f} s" for key, took in steps.seconds.items()))
    print(
        f"  objects {check.objects}, items {check.items}, rollups {check.rollups}, "
        f"missing {len(check.missing)}, extra {len(check.extra)}, complete {check.complete}"
    )
    print("  AWS calls: " + ", ".join(f"{name} {n}" for name, n in sorted(calls.items())))
    print(f"  DynamoDB read units for the items: {check.read_units:.0f}")
    calls_once = Counter(calls)

    tracemalloc.start()
    completeness.check_day(ctx, day, dead_lettered=set())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"  peak memory: {peak / 2**20:.0f} MiB of Python objects (tracemalloc)")
    calls = calls_once
    _on_paper(args.records, calls, check.read_units, peak)
    return 0 if len(check.missing) == args.missing else 1


def _on_paper(records: int, calls: Counter, read_units: float, peak: int) -> None:
    """The same check at 10 million records a day, scaled from what was measured: calls and
    read units grow with the records; the rollup queries (40 a day) do not."""
    scale = 10_000_000 / records
    lists = round(calls["ListObjectsV2"] * scale)
    queries = round((calls["Query"] - 40) * scale) + 40
    units = read_units * scale
    cost = lists * LIST_PRICE + units * READ_UNIT_PRICE  # the rest is cents
    print("\non paper, 10,000,000 records a day on AWS:")
    list_cost = lists * LIST_PRICE
    print(f"  S3 ListObjectsV2: {lists} calls (1,000 keys each): ${list_cost:.2f}")
    print(
        f"  DynamoDB Query: {queries} calls, {units:,.0f} read units:"
        f" ${units * READ_UNIT_PRICE:.2f}"
    )
    print("  CloudWatch GetMetricStatistics: 1 call ($0.00001); SQS: a call per 10 dead letters")
    print(f"  about ${cost:.2f} a day, ${cost * 30:.0f} a month")
    print(f"  memory: about {peak * scale / 2**30:.1f} GiB (one entry per object of the day)")


if __name__ == "__main__":
    sys.exit(main())
