"""Benchmark of the environment page's live AWS state under many viewers.

    .venv/bin/python bench/environment_page.py [--viewers 20] [--seconds 30]

Starts its own Redis and moto server, applies a local environment, then has ``--viewers``
threads read the page's live state (``provisioning.state.live``, what every page view and
its 10-second refresh call) once a second each. Counted: the AWS calls made, per cache
period (``AWS_STATE_CACHE_SECONDS``). Target: one set of calls per period, however many
viewers.
"""

import argparse
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools import services


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args(argv)

    with services.for_benchmark():
        return _bench(args)


def _bench(args) -> int:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from provisioning import engine, state
    from provisioning.models import Environment

    call_command("migrate", verbosity=0)
    environment = Environment.objects.get(name="local")
    engine.apply(environment)
    period = settings.AWS_STATE_CACHE_SECONDS
    stop = time.monotonic() + args.seconds
    calls: Counter = Counter()
    reads = []

    def count(model, **kwargs) -> None:
        calls[model.name] += 1

    def viewer() -> None:
        try:
            while time.monotonic() < stop:
                started = time.perf_counter()
                assert "service" in state.live(environment)
                reads.append(time.perf_counter() - started)
                time.sleep(1)
        finally:
            connection.close()

    with engine.on_every_call(environment.region, count):
        threads = [threading.Thread(target=viewer) for _ in range(args.viewers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    periods = args.seconds / period
    total = sum(calls.values())
    reads.sort()
    print(
        f"{args.viewers} viewers, {len(reads)} page reads in {args.seconds:.0f}s, "
        f"cache period {period}s (~{periods:.1f} periods)"
    )
    print(f"AWS calls: {total} in all, {total / periods:.1f} per period: {dict(calls)}")
    print(
        f"read time p50 {reads[len(reads) // 2] * 1000:.1f} ms, "
        f"p99 {reads[int(len(reads) * 0.99)] * 1000:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
