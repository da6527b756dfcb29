"""Cost apportioning at volume: 30 days of hourly rollups for 100 projects.

    .venv/bin/python bench/costs.py [--days 30] [--projects 100] [--repeat 3]

Starts its own Redis and local AWS (DynamoDB in DynamoDB Local) and a SQLite database in a
temporary folder; bulk-loads one record per project and hour of the last ``--days`` days
(devtools.audit_volume: the table as real ingest leaves it), the hours 02-04 UTC left
without traffic (idle), and one GroupInServiceInstances datapoint per hour into the local
CloudWatch. Then measures, medians over ``--repeat``, the ledger of the whole range
(``costs.ledger.compute``: every hour's cost split among the projects): wall time, DynamoDB
calls and CloudWatch calls, first cold (nothing kept: 8 x (5 status classes + projects)
Queries, and more pages where a key's month passes 1 MB), then with every day kept
(``costs.usage``): unchanged, after new records in the last hour, and after those and late
records half the range back (as a redrive brings them), each ingested as the Lambda does
before each run. A kept ledger must equal one read afresh. Then the month's chargeback CSV
built from it, whose rows must add up to the ledger's total.
"""

import argparse
import statistics
import sys
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.audit_explorer import DynamoDBTime, _client
from devtools import services

IDLE_HOURS = (2, 3, 4)  # UTC hours without traffic


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--projects", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with services.for_benchmark():
        return _bench(args)


def _bench(args) -> int:
    from audit_explorer import demo
    from centralllm import aws
    from centralllm.audit.contract import format_timestamp
    from centralllm.audit.ingest import ingest_record
    from devtools.audit_volume import bulk_load
    from devtools.testing import create_audit_table

    _client()  # Django set up, migrated, the local environment renamed to the bench table
    from costs import chargeback, gpu_hours, prices
    from costs import ledger as ledgers
    from costs.models import KeptDay
    from provisioning.models import Environment

    environment = Environment.objects.get(name="local")
    table = create_audit_table(environment.resource_name("AuditTable"))
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(days=args.days)
    hours = [start + timedelta(hours=n) for n in range(args.days * 24)]
    busy = [hour for hour in hours if hour.hour not in IDLE_HOURS]
    projects = [f"project-{n:03d}" for n in range(args.projects)]
    shapes = demo.records(len(busy) * len(projects), days=1, now=now)

    def records():
        for n, record in enumerate(shapes):
            hour, project = busy[n // len(projects)], projects[n % len(projects)]
            created = hour + timedelta(minutes=n % 60)
            yield {**record, "project": project, "createdAt": format_timestamp(created)}

    started = time.perf_counter()
    loaded = bulk_load(records(), table=table)
    print(f"bulk load: {loaded} records in {time.perf_counter() - started:.0f} s")
    cloudwatch = aws.client("cloudwatch")
    datapoints = [
        {
            "MetricName": gpu_hours.METRIC,
            "Dimensions": [
                {"Name": "AutoScalingGroupName", "Value": gpu_hours.group_name(environment)}
            ],
            "Timestamp": hour + timedelta(minutes=30),
            "Value": 1 + (8 <= hour.hour < 20),  # two instances by day
        }
        for hour in hours
    ]
    for first in range(0, len(datapoints), 1000):
        cloudwatch.put_metric_data(
            Namespace=gpu_hours.NAMESPACE, MetricData=datapoints[first : first + 1000]
        )
    print(f"{len(hours)} hours ({len(busy)} with traffic) x {len(projects)} projects")

    price = prices.hourly_price(environment)
    dynamodb, cloudwatch_calls = DynamoDBTime(), []
    cloudwatch.meta.events.register(
        "before-call.cloudwatch.GetMetricData", lambda **_: cloudwatch_calls.append(1)
    )
    end = now - timedelta(seconds=1)
    late = 0

    def arrive(at: datetime, count: int) -> None:
        """``count`` records of as many projects ingested as the Lambda would, at ``at``."""
        nonlocal late
        for n, record in enumerate(demo.records(count, days=1, seed=late + 1, now=now)):
            ingest_record(
                {
                    **record,
                    "requestId": f"late-{late}-{n}",
                    "project": projects[n % len(projects)],
                    "createdAt": format_timestamp(at + timedelta(minutes=n % 60)),
                },
                table=table,
            )
        late += 1

    def measure(title: str, before=lambda: None) -> ledgers.Ledger:
        runs = []
        for _ in range(args.repeat):
            before()
            dynamodb.reset()
            cloudwatch_calls.clear()
            began = time.perf_counter()
            found = ledgers.compute(environment, start, end, price)
            runs.append((time.perf_counter() - began, dynamodb.seconds, dict(dynamodb.calls)))
        calls = Counter()
        for (operation, _), n in runs[-1][2].items():
            calls[operation] += n
        seconds = statistics.median(run[0] for run in runs)
        print(f"\n{title}: {seconds:.2f} s (median of {args.repeat})")
        print(f"  DynamoDB calls: {', '.join(f'{n} {op}' for op, n in sorted(calls.items()))}")
        print(f"  inside them, summed over the reader threads: {runs[-1][1]:.2f} s")
        print(f"  CloudWatch GetMetricData calls: {len(cloudwatch_calls)}")
        return found

    def forget() -> None:
        KeptDay.objects.filter(environment=environment).delete()

    ledger = measure(f"ledger of {args.days} days, cold (nothing kept)", forget)
    print(f"  bound: 8 x (5 + {len(projects)}) Queries + pages")
    print(f"  {len(ledger.charges)} hourly shares; total {ledger.total} USD, idle {ledger.idle}")
    measure(f"ledger of {args.days} days, every day kept, nothing changed")
    newest = hours[-1]
    measure(
        f"ledger of {args.days} days, kept, {args.projects} new records in its last hour",
        lambda: arrive(newest, args.projects),
    )
    measure(
        f"ledger of {args.days} days, kept, {args.projects} new records in its last hour "
        f"and 10 late ones {args.days // 2} days back (a redrive)",
        lambda: (arrive(newest, args.projects), arrive(hours[len(hours) // 2], 10)),
    )
    kept = ledgers.compute(environment, start, end, price)
    forget()
    ledger = ledgers.compute(environment, start, end, price)
    assert kept == ledger, "a kept ledger differs from a fresh one"
    print("\nthe kept ledger equals one read afresh, share for share")

    began = time.perf_counter()
    month = start.date().replace(day=1)
    whole = replace(ledger, start=start, end=end)
    rows = list(chargeback.rows(whole, month, gpu_hours.group_name(environment)))
    text = chargeback.csv_text(rows)
    print(f"\nchargeback CSV of the range: {len(rows)} rows, {len(text) / 1e6:.1f} MB,")
    print(f"  {(time.perf_counter() - began) * 1000:.0f} ms from the ledger")
    exported = sum(Decimal(row["EffectiveCost"]) for row in rows)
    assert exported == ledger.total, (exported, ledger.total)
    print(f"  rows add up to the ledger's total exactly: {exported} USD")
    return 0


if __name__ == "__main__":
    sys.exit(main())
