"""Ingest benchmark: records per second through ``lambda_handler`` against the local AWS
(S3 in moto, DynamoDB in DynamoDB Local), and the handler's own CPU time per record.

    .venv/bin/python bench/ingest.py [--records 200]

Starts its own local AWS (devtools.services.LocalAWS). Writing the audit objects to S3 is
set-up, not measured. Measured: one S3 event per record through the handler, as Lambda
delivers them (S3 GetObject, validation, one TransactWriteItems of the item and four
rollups). The wall-clock rate is the stand-ins'; the rate over the first and the last tenth
of the records shows whether it slows as the table grows (moto's DynamoDB did). The
handler's CPU ms per record is ours, and is what a Lambda bills.
"""

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools import services


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU of another process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200)
    args = parser.parse_args()

    local_aws = services.LocalAWS().start()
    try:
        os.environ.update(local_aws.env())
        os.environ.update(TABLE_NAME="bench-audit", AUDIT_BUCKET="bench-audit")
        return run(args.records, local_aws)
    finally:
        local_aws.stop()


def run(count: int, local_aws: services.LocalAWS) -> int:
    from centralllm import aws
    from centralllm.audit.contract import dumps, validate_record
    from centralllm.audit.items import item_from_record, serialize
    from centralllm.audit.rollups import rollup_updates
    from centralllm.audit.tests.conftest import make_record, put_record, s3_event
    from devtools.testing import create_audit_table, create_bucket
    from llm_audit_ingest.handler import lambda_handler

    create_audit_table("bench-audit")
    create_bucket("bench-audit")
    events, bodies = [], []
    for n in range(count):
        record = make_record(project=f"project-{n % 5}", user=f"user-{n % 50}", prompt="p" * 3000)
        events.append(s3_event("bench-audit", put_record("bench-audit", record)))
        bodies.append(dumps(record))
    contract_cpu = time.process_time()
    for body in bodies:
        record = validate_record(body)
        serialize(item_from_record(record))
        rollup_updates(record, table="bench-audit")
    contract_cpu = time.process_time() - contract_cpu

    calls: dict[str, list[float]] = {}
    started: list[float] = []
    for service in ("s3", "dynamodb"):
        events_of = aws.client(service).meta.events
        events_of.register("before-call.*.*", lambda **_: started.append(time.perf_counter()))
        events_of.register(
            "after-call.*.*",
            lambda model, **_: calls.setdefault(model.name, []).append(
                time.perf_counter() - started.pop()
            ),
        )
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        lambda_handler(events[0], None)  # warm-up: imports, connections
    calls.clear()

    moto_cpu = cpu_seconds_of(local_aws.process.popen.pid)
    cpu, durations = time.process_time(), []
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # the log lines
        for event in events[1:]:
            begin = time.perf_counter()
            lambda_handler(event, None)
            durations.append(time.perf_counter() - begin)
    cpu = time.process_time() - cpu
    moto_cpu = cpu_seconds_of(local_aws.process.popen.pid) - moto_cpu

    measured = len(durations)
    tenth = max(1, measured // 10)
    print(f"records ingested:            {measured}")
    first, last = tenth / sum(durations[:tenth]), tenth / sum(durations[-tenth:])
    print(f"records per second:          {measured / sum(durations):.1f}")
    print(f"  first tenth / last tenth:  {first:.1f} / {last:.1f}")
    print(f"handler CPU ms per record:   {cpu / measured * 1000:.2f}")
    print(f"  of which the contract:     {contract_cpu / count * 1000:.2f}")
    print("    (validate, item, rollups; the rest is botocore and the log line)")
    print(f"moto server CPU ms / record: {moto_cpu / measured * 1000:.2f}")
    print(f"AWS calls per record:        {sum(map(len, calls.values())) / measured:.1f}")
    for name, timings in sorted(calls.items()):
        mean_ms = sum(timings) / len(timings) * 1000
        print(f"  {name}: {len(timings)} calls, {mean_ms:.1f} ms each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
