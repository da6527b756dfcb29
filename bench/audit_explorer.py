"""Audit explorer benchmark at volume: results page, summary and export over a big table.

    .venv/bin/python bench/audit_explorer.py [--records 100000] [--repeat 15] [--exports 3]

Starts its own Redis and local AWS (DynamoDB in DynamoDB Local), and a SQLite database in a
temporary folder. First the real ingest over a small sample (bench/ingest.py's run, its own
table), then ``--records`` demo records of one project bulk-loaded into a fresh table
(devtools.audit_volume). Measured through Django's test client, medians over ``--repeat``:

- a results page of 50 rows over the whole range (GET /audit/?project=...): server time,
  time inside DynamoDB calls (botocore's whole call: request building, the wire, parsing)
  and the rest, ours (target: at most 30 ms), and the DynamoDB calls it makes;
- the summary of 30 days of rollups (``search.summary``): total and ours (target: 100 ms);
- the project's page over 30 days with ten releases (speed and their before/after);
- the CSV export of every row, ``--exports`` times: rows per second and RSS growth, then
  once more under tracemalloc for Python's peak (tracemalloc slows it down).
"""

import argparse
import cProfile
import os
import statistics
import sys
import time
import tracemalloc
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools import services

SUFFIX = "-bench"  # of the environment the pages read: its table is CentralLLMAudit-bench
PROJECT = "volume"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=300, help="records of real ingest")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--exports", type=int, default=3)
    args = parser.parse_args(argv)

    with services.for_benchmark() as local_aws:
        return _bench(args, local_aws)


def _bench(args, local_aws: services.LocalAWS) -> int:
    from bench import ingest as ingest_bench

    print(f"real ingest, {args.sample} records (bench/ingest.py, an empty table of its own)")
    os.environ.update(TABLE_NAME="bench-audit", AUDIT_BUCKET="bench-audit")
    ingest_bench.run(args.sample, local_aws)

    from audit_explorer import demo
    from devtools.audit_volume import bulk_load
    from devtools.testing import create_audit_table
    from provisioning.resources.base import resource_name

    table = os.environ["TABLE_NAME"] = create_audit_table(resource_name("AuditTable", SUFFIX))
    now = datetime.now(UTC)
    records = demo.records(args.records, days=30, now=now)
    started = time.perf_counter()
    bulk_load(({**record, "project": PROJECT} for record in records), table=table)
    seconds = time.perf_counter() - started
    print(f"\nbulk load: {args.records} records in {seconds:.0f} s, {args.records / seconds:.0f}/s")

    client, dynamodb = _client(), DynamoDBTime()
    whole = {"project": PROJECT, "start": (now - timedelta(days=31)).isoformat()}
    _page(client, whole, args.repeat, dynamodb)
    _summary(now, args.repeat, dynamodb)
    _traffic(client, now, args.repeat, dynamodb)
    _export(client, {**whole, "format": "csv"}, args.records, args.exports)
    return 0


class DynamoDBTime:
    """Time and calls inside the DynamoDB client, from its first event to its last, and the
    part of it on the wire (request sent to response read, before botocore parses it)."""

    def __init__(self) -> None:
        from centralllm import aws

        self.reset()
        events = aws.client("dynamodb").meta.events
        events.register("provide-client-params.dynamodb", self._begin)
        events.register("before-send.dynamodb", self._send)
        events.register("before-parse.dynamodb", self._received)
        events.register("after-call.dynamodb", self._end)

    def reset(self) -> None:
        self.seconds, self.wire, self.calls = 0.0, 0.0, Counter()
        self._started = self._sent = 0.0

    def _begin(self, params, model, **_) -> None:
        self._started = time.perf_counter()
        self.calls[(model.name, _target(params))] += 1

    def _send(self, **_) -> None:
        self._sent = time.perf_counter()

    def _received(self, **_) -> None:
        self.wire += time.perf_counter() - self._sent

    def _end(self, **_) -> None:
        self.seconds += time.perf_counter() - self._started


def _target(params: dict) -> str:
    """What a call reads: its index, or the rollups of a dimension (``rollup#user.3#ann``)."""
    if params.get("IndexName"):
        return f"on {params['IndexName']}"
    key = params.get("ExpressionAttributeValues", {}).get(":id", {}).get("S", "")
    if key.startswith("rollup#"):
        return f"on {key.split('#')[1].partition('.')[0]} rollups"
    return f"on {params.get('TableName')}"


def _client():
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from conftest import make_user
    from console.roles import VIEWER
    from provisioning.models import Environment

    call_command("migrate", verbosity=0)
    # The only environment, so the pages read it unasked.
    Environment.objects.filter(name="local").update(suffix=SUFFIX)
    client = Client()
    client.force_login(make_user(get_user_model(), "bench-viewer", VIEWER))
    return client


def _timed(call, repeat: int, dynamodb: DynamoDBTime) -> dict[str, float]:
    """Median ms of ``call``: in all, inside DynamoDB calls, on their wire, and the rest."""
    call()  # warm-up
    runs = []
    for _ in range(repeat):
        dynamodb.reset()
        started = time.perf_counter()
        call()
        total = time.perf_counter() - started
        runs.append({"total": total, "calls": dynamodb.seconds, "wire": dynamodb.wire})
    median = {name: statistics.median(run[name] * 1000 for run in runs) for name in runs[0]}
    median["ours"] = statistics.median((run["total"] - run["calls"]) * 1000 for run in runs)
    return median


def _print_times(ms: dict[str, float], target: int) -> None:
    print(f"  in all {ms['total']:.1f} ms; inside DynamoDB calls {ms['calls']:.1f} ms")
    print(f"    ({ms['wire']:.1f} ms on the wire, the rest botocore building and parsing)")
    print(f"  ours, outside the calls: {ms['ours']:.1f} ms (target <= {target} ms)")


def _page(client, search: dict, repeat: int, dynamodb: DynamoDBTime) -> None:
    from django.urls import reverse

    url = reverse("audit_explorer:home")

    def get() -> None:
        response = client.get(url, search)
        assert response.status_code == 200 and response.content.count(b"data-request-id=") == 50

    ms = _timed(get, repeat, dynamodb)
    if os.environ.get("BENCH_PROFILE"):
        cProfile.runctx("get()", globals(), {"get": get}, sort="cumulative")
    print(f"\nresults page, 50 rows: GET {url}?project={PROJECT}&start=<31 days ago>")
    _print_times(ms, 30)
    calls = ", ".join(f"{n} {name} {where}" for (name, where), n in sorted(dynamodb.calls.items()))
    print(f"  DynamoDB calls per page: {sum(dynamodb.calls.values())}: {calls}")


def _summary(now: datetime, repeat: int, dynamodb: DynamoDBTime) -> None:
    from audit_explorer import search as audit_search
    from provisioning.models import Environment

    start = (now - timedelta(days=30)).isoformat()
    found = audit_search.parse({"project": PROJECT, "start": start})
    environment = Environment.objects.get(name="local")
    ms = _timed(lambda: audit_search.summary(found, environment=environment), repeat, dynamodb)
    calls = ", ".join(f"{n} {name} {where}" for (name, where), n in sorted(dynamodb.calls.items()))
    requests = audit_search.summary(found, environment=environment)["requests"]
    print(f"\nsummary, 30 days of rollups (search.summary, {requests} requests)")
    _print_times(ms, 100)
    print(f"  DynamoDB calls: {calls}")


def _traffic(client, now: datetime, repeat: int, dynamodb: DynamoDBTime) -> None:
    """The project's page over 30 days, with ten releases in it to judge (issue 23)."""
    from django.urls import reverse

    from provisioning.models import Environment, Release

    environment = Environment.objects.get(name="local")
    for n in range(10):
        release = Release.objects.create(
            environment=environment, image_tag=f"v{n}", outcome=Release.Outcome.REPLACED
        )
        went_live = now - timedelta(days=3 * n + 1)
        Release.objects.filter(pk=release.pk).update(
            started_at=went_live - timedelta(minutes=15), finished_at=went_live
        )
    url, query = reverse("audit_explorer:traffic"), {"project": PROJECT, "range": "30d"}

    def get() -> None:
        assert client.get(url, query).status_code == 200

    ms = _timed(get, repeat, dynamodb)
    calls = ", ".join(f"{n} {name} {where}" for (name, where), n in sorted(dynamodb.calls.items()))
    print(f"\nproject page, 30 days, 10 releases: GET {url}?project={PROJECT}&range=30d")
    _print_times(ms, 100)
    print(f"  DynamoDB calls: {calls}")


def _rss() -> int:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) * 1024


def _export(client, search: dict, expected: int, runs: int) -> None:
    from django.urls import reverse

    url = reverse("audit_explorer:export")

    def export() -> tuple[float, int]:
        """Seconds and RSS growth of one export, read chunk by chunk as a browser would."""
        before, highest, lines = _rss(), 0, 0
        started = time.perf_counter()
        response = client.get(url, search)
        assert response.streaming, "the export was not streamed"
        for chunk in response.streaming_content:
            lines += chunk.count(b"\r\n")
            if lines % 1000 == 0:
                highest = max(highest, _rss())
        seconds = time.perf_counter() - started
        assert lines == expected + 1, f"{lines - 1} rows exported, not {expected}"
        return seconds, max(highest, _rss()) - before

    timings = [export() for _ in range(runs)]
    seconds = statistics.median(t for t, _ in timings)
    growth = ", ".join(f"{g / 2**20:.1f}" for _, g in timings)
    print(f"\nCSV export of all {expected} rows (GET {url}), {runs} runs")
    print(f"  {seconds:.1f} s, {expected / seconds:.0f} rows/s; RSS growth MiB per run: {growth}")
    tracemalloc.start()
    try:
        traced_seconds, _ = export()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"  under tracemalloc: peak {peak / 2**20:.1f} MiB ({traced_seconds:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
