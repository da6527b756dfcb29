"""Benchmark of the provisioning engine.

    .venv/bin/python bench/provision.py [--rounds 3]

Starts its own moto server, then plans and applies a full local environment: wall time and
AWS calls (mutating and read-only) of a plan on an empty account, the first apply, a plan
of the converged environment and a no-op apply (whose target is reads only, as few as
possible). moto's own speed is not ours: the call counts are the figures to watch.
"""

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools import services


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark of the provisioning engine.")
    parser.add_argument("--rounds", type=int, default=3, help="environments to apply (default 3)")
    rounds = parser.parse_args(argv).rounds

    local_aws = services.LocalAWS().start()
    os.environ.update(local_aws.env())
    os.environ.setdefault("AWS_REGION", "eu-central-1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    os.environ.setdefault("DJANGO_DEBUG", "true")
    try:
        import django

        django.setup()
        from provisioning import engine
        from provisioning.models import Environment

        figures: dict[str, list[tuple[float, int, int]]] = {}
        for _round in range(rounds):
            tag = uuid.uuid4().hex[:8]
            spec = Environment(name=f"bench-{tag}", suffix=f"-b{tag}", is_local=True).spec()
            steps = {
                "plan (empty account)": lambda spec=spec: engine.plan(spec),
                "apply (create all)": lambda spec=spec: engine.apply(spec),
                "plan (converged)": lambda spec=spec: engine.plan(spec),
                "apply (no-op)": lambda spec=spec: engine.apply(spec),
            }
            for label, step in steps.items():
                with engine.counting_calls(spec.region) as calls:
                    started = time.perf_counter()
                    step()
                    elapsed = time.perf_counter() - started
                figures.setdefault(label, []).append((elapsed, calls["mutating"], calls["read"]))
        resources = len(engine.ordered(spec))
    finally:
        local_aws.stop()

    print(f"{resources} resources, {rounds} environments, moto server over HTTP on loopback")
    print(f"{'step':<24}{'wall time (median)':>20}{'mutating calls':>16}{'read calls':>12}")
    for label, rows in figures.items():
        times = sorted(row[0] for row in rows)
        _, mutating, reads = rows[-1]
        print(f"{label:<24}{times[len(times) // 2]:>19.2f}s{mutating:>16}{reads:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
