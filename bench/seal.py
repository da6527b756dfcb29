"""Sealing one day of audit objects in the local AWS, and checking the seal: objects/s.

    .venv/bin/python bench/seal.py [--objects 5000] [--threads 1,4,8,16]

Starts its own Redis and local AWS (moto only: sealing reads S3 and nothing else). One day
of ``--objects`` demo records is put into a versioned audit bucket (10 writers), then the
day is sealed (``seals.seal_or_verify``: list, read and hash every object, sign, write the
seal) and its seal checked again, once per ``--threads`` value: wall time, objects/s, this
process's CPU per object, GETs and LISTs, the seal's size. The local stand-in answers a few
hundred requests a second on its own (fewer on a busy machine), so the rates are mostly the
stand-in's; the CPU per object is ours, and the GET count is what S3 bills.
Last, the same on paper at 10 million objects a day, with AWS's list prices (us-east-1).
"""

import argparse
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from datetime import time as day_time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools import services

# USD, us-east-1 list prices of S3 Standard requests.
GET_PRICE = 0.0004 / 1000
LIST_PRICE = 0.005 / 1000
PER_DAY = 10_000_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=5000)
    parser.add_argument("--threads", default="1,4,8")
    args = parser.parse_args(argv)
    with services.for_benchmark(dynamodb_local=False):
        return _bench(args.objects, [int(n) for n in args.threads.split(",")])


def _bench(count: int, thread_counts: list[int]) -> int:
    import django

    django.setup()
    from audit_explorer import demo, seals
    from centralllm.audit.contract import dumps, record_key
    from provisioning.models import Environment
    from provisioning.resources.base import Context

    ctx = Context(Environment(name="bench", suffix="-bench", is_local=True).spec())
    s3, bucket = ctx.client("s3"), ctx.name("AuditBucket")
    s3.create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": ctx.spec.region}
    )
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    day = (datetime.now(UTC) - timedelta(days=2)).date()
    end_of_day = datetime.combine(day, day_time(23, 59, 59), tzinfo=UTC)
    records = list(demo.records(count, days=1, now=end_of_day))
    started = time.perf_counter()
    with ThreadPoolExecutor(10) as pool:  # botocore's pool keeps 10 connections
        for _ in pool.map(
            lambda r: s3.put_object(Bucket=bucket, Key=record_key(r), Body=dumps(r)), records
        ):
            pass
    size = sum(len(dumps(record)) for record in records)
    print(
        f"{count} objects put ({size / count:.0f} bytes each) in "
        f"{time.perf_counter() - started:.1f} s"
    )

    calls, lock = Counter(), threading.Lock()

    def tally(model, **_):
        with lock:  # from the pool's threads
            calls[model.name] += 1

    s3.meta.events.register("before-call.s3", tally, unique_id="bench-seal")
    print(
        f"{'threads':>7} {'what':>7} {'seconds':>8} {'objects/s':>10} {'CPU ms/object':>14} "
        f"{'GETs':>6} {'LISTs':>6}"
    )
    rates, cpu_per_object = {}, {}
    for threads in thread_counts:
        s3.delete_object(Bucket=bucket, Key=seals.seal_key(day))  # each round seals anew
        root = ""
        for what in ("seal", "check"):
            calls.clear()
            started, cpu = time.perf_counter(), time.process_time()
            found = seals.seal_or_verify(ctx, day, expected_root=root, threads=threads)
            root = found.statement["merkleRoot"]
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            assert found.status in ("sealed", "verified"), found.describe()
            gets, lists = calls["GetObject"], calls["ListObjectsV2"]
            rates[threads, what], cpu_per_object[threads, what] = count / seconds, cpu / count
            print(
                f"{threads:>7} {what:>7} {seconds:>8.2f} {count / seconds:>10.0f} "
                f"{cpu / count * 1000:>14.2f} {gets:>6} {lists:>6}"
            )
    seal = s3.get_object(Bucket=bucket, Key=seals.seal_key(day))["Body"].read()
    print(f"seal: {len(seal)} bytes, {len(seal) / count:.0f} per object")

    best = max(rates.values())
    print(
        f"\nAt {PER_DAY:,} objects a day: {PER_DAY:,} GETs (${PER_DAY * GET_PRICE:.2f}) and "
        f"{PER_DAY // 1000:,} LISTs (${PER_DAY // 1000 * LIST_PRICE:.2f}) per seal or check; "
        f"a seal of {len(seal) / count * PER_DAY / 1e9:.1f} GB; "
        f"{PER_DAY / best / 3600:.1f} h at the best rate here ({best:.0f} objects/s), "
        f"{PER_DAY * min(cpu_per_object.values()) / 3600:.1f} h of this process's CPU."
    )
    ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
