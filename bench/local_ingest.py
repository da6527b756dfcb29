"""Benchmark of the local ingest (the stand-in for S3 → Lambda) with concurrent pollers.

    .venv/bin/python bench/local_ingest.py [--records 300] [--concurrency 1 4]

Starts its own moto server and DynamoDB Local, makes the audit bucket notify the local queue,
puts ``--records`` records in S3, then drains the queue with ``consume`` at each concurrency
(``LOCAL_INGEST_CONCURRENCY``), into DynamoDB Local. Prints records per second for each.
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools import services


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args(argv)
    local_aws = services.LocalAWS(dynamodb_local=True).start()
    os.environ.update(local_aws.env())
    os.environ.setdefault("AWS_REGION", "eu-central-1")
    try:
        return _bench(args)
    finally:
        local_aws.stop()


def _bench(args) -> int:
    from audit_explorer import demo
    from centralllm import aws
    from centralllm.audit import contract
    from devtools.testing import create_audit_table, create_bucket, unique
    from llm_audit_ingest.local import consume, ensure_local_notification

    bucket = create_bucket(unique("bench-audit"))
    os.environ.update(AUDIT_BUCKET=bucket, TABLE_NAME=create_audit_table(unique("bench")))
    os.environ["LOCAL_INGEST_QUEUE"] = unique("bench-ingest")
    ensure_local_notification(bucket, os.environ["LOCAL_INGEST_QUEUE"])
    consume(once=True, retry_delays=(0, 0))  # moto's s3:TestEvent
    s3 = aws.client("s3")
    for run, concurrency in enumerate(args.concurrency):
        for record in demo.records(args.records, days=1, seed=100 + run):
            s3.put_object(
                Bucket=bucket, Key=contract.record_key(record), Body=contract.dumps(record)
            )
        os.environ["LOCAL_INGEST_CONCURRENCY"] = str(concurrency)
        started = time.perf_counter()
        handled = consume(once=True, retry_delays=(0, 0))
        seconds = time.perf_counter() - started
        print(
            f"{concurrency} poller(s): {handled} events in {seconds:.1f} s,"
            f" {handled / seconds:.1f} records/s (the last second is the empty queue's wait)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
