"""The apply and the destroy of a local environment under AWS as documented, timed.

    .venv/bin/python bench/provisioning_life.py [--scale 0.01] [--seed 19] [--throttle-rate 0.05]

Starts its own Redis, local AWS (DynamoDB in DynamoDB Local) and SQLite database, declares a
local environment with a unique suffix, then applies it from nothing and destroys it (audit
data included) under ``devtools.aws_rules.AwsRules``: the local AWS with AWS's transitional
states, lagging reads, refused first attempts and throttling put back, on a virtual clock.
Each virtual second of waiting also sleeps ``--scale`` of a second for real (0.01: AWS-like
latencies at 1 %).

For the apply and for the destroy: wall time, the AWS-like time (virtual seconds the run
waited, as AWS would have made it wait), AWS calls by operation (read and mutating), the rules
that fired, the retries by reason and the waits by what they waited for. Last, the same apply
on real AWS on paper: the sum of each resource's documented ``typical_create_seconds``, beside
the AWS-like time each step took here.
"""

import argparse
import re
import sys
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools import services

TOP_OPERATIONS = 12
FEW = 3  # outcomes shared by this many resources or fewer name them
_RETRY = re.compile(r"^(?P<why>.*?); retrying in (?P<delay>\d+)s")
_WAITING = "waiting for "


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale",
        type=float,
        default=0.01,
        help="real seconds slept per virtual second of waiting (default 0.01)",
    )
    parser.add_argument("--seed", type=int, default=19, help="seed of the rules' durations")
    parser.add_argument(
        "--throttle-rate",
        type=float,
        default=0.05,
        help="share of mutating calls (and API Gateway's) answered with throttling (default 0.05)",
    )
    args = parser.parse_args(argv)
    with services.for_benchmark():
        return _bench(args)


@dataclass
class Phase:
    """What one run (apply or destroy) did, measured."""

    label: str
    wall_seconds: float = 0.0
    aws_seconds: float = 0.0
    calls: Counter = field(default_factory=Counter)
    reached: Counter = field(default_factory=Counter)  # engine.counting_calls: read, mutating
    fired: Counter = field(default_factory=Counter)
    messages: list[tuple[str, str]] = field(default_factory=list)  # (step, text)
    step_seconds: dict[str, float] = field(default_factory=dict)  # AWS-like seconds per step
    outcomes: dict[str, str] = field(default_factory=dict)
    error: str = ""


def _progress(clock: Callable[[], float]) -> Any:
    """A Progress that keeps the messages and each step's AWS-like duration (from ``clock``)."""
    from provisioning.resources.base import Progress

    class Collected(Progress):
        def __init__(self) -> None:
            self.messages: list[tuple[str, str]] = []
            self.step_seconds: dict[str, float] = {}
            self._started: dict[str, float] = {}

        def started(self, step: str, title: str) -> None:
            self._started[step] = clock()

        def message(self, step: str, text: str) -> None:
            self.messages.append((step, text))

        def finished(self, step: str, outcome: str) -> None:
            self.step_seconds[step] = clock() - self._started.pop(step, clock())

        def failed(self, step: str, error: str) -> None:
            self.finished(step, error)

    return Collected()


def _measure(label: str, rules: Any, region: str, run: Callable[[Any], Any]) -> Phase:
    """Run ``run(progress)`` and measure it; an exception is recorded, not raised."""
    from provisioning import engine

    phase = Phase(label)
    progress = _progress(lambda: rules.now)
    now, calls, fired = rules.now, Counter(rules.calls), Counter(rules.fired)
    started = time.perf_counter()
    with engine.counting_calls(region) as reached:
        try:
            result = run(progress)
            phase.outcomes = dict(result.outcomes)
        except Exception as exc:
            traceback.print_exc()
            phase.error = f"{type(exc).__name__}: {exc}"
    phase.wall_seconds = time.perf_counter() - started
    phase.aws_seconds = rules.now - now
    phase.calls = Counter(rules.calls) - calls
    phase.fired = Counter(rules.fired) - fired
    phase.reached = Counter(reached)
    phase.messages = progress.messages
    phase.step_seconds = progress.step_seconds
    return phase


def _bench(args: argparse.Namespace) -> int:
    import django

    django.setup()
    from django.core.management import call_command

    from devtools.aws_rules import RULES, AwsRules
    from provisioning import engine
    from provisioning.models import Environment

    call_command("migrate", verbosity=0)
    tag = uuid.uuid4().hex[:8]
    environment = Environment.objects.create(name=f"bench-{tag}", suffix=f"-b{tag}", is_local=True)
    name, region = environment.name, environment.region
    spec = environment.spec()
    print(
        f"environment {name} (suffix {environment.suffix}, {region}), "
        f"{len(engine.ordered(spec))} resources; seed {args.seed}, scale {args.scale}, "
        f"throttle rate {args.throttle_rate}"
    )

    rules_options = {"seed": args.seed, "scale": args.scale, "throttle_rate": args.throttle_rate}
    with AwsRules(region, **rules_options) as rules:
        applied = _measure(
            "apply", rules, region, lambda progress: engine.apply(environment, progress)
        )
        destroyed = _measure(
            "destroy",
            rules,
            region,
            lambda progress: engine.destroy(
                environment,
                progress,
                confirm=name,
                delete_data=True,
                confirm_data=engine.data_confirmation(name),
            ),
        )
        still_deleting = sorted(rules.deferred_ids())

    for phase in (applied, destroyed):
        _report(phase, args.scale)
    if still_deleting:
        print(f"\nstill being deleted by AWS when destroy returned: {', '.join(still_deleting)}")
    never = sorted(set(RULES) - set(applied.fired) - set(destroyed.fired))
    print(f"\nrules that never fired: {', '.join(never) or 'none'}")
    _on_paper(spec, applied)
    return 1 if applied.error or destroyed.error else 0


def _report(phase: Phase, scale: float) -> None:
    from provisioning.resources.base import duration, is_read_only

    print(f"\n{phase.label}: {'FAILED: ' + phase.error if phase.error else 'succeeded'}")
    slept = phase.aws_seconds * scale
    print(f"  wall time        {phase.wall_seconds:.1f} s (of which {slept:.1f} s scaled waiting)")
    print(f"  AWS-like time    {duration(phase.aws_seconds)}")
    if phase.outcomes:
        print("  outcomes         " + _outcomes(phase.outcomes))
    total = sum(phase.calls.values())
    reads = sum(n for operation, n in phase.calls.items() if is_read_only(_operation(operation)))
    answered = total - sum(phase.reached.values())
    print(
        f"  AWS calls        {total}: {reads} read, {total - reads} mutating"
        f" ({answered} answered by the rules in AWS's place)"
    )
    for operation, n in phase.calls.most_common(TOP_OPERATIONS):
        print(f"    {n:>5}  {operation}")
    if len(phase.calls) > TOP_OPERATIONS:
        rest = sum(n for _, n in phase.calls.most_common()[TOP_OPERATIONS:])
        print(f"    {rest:>5}  ({len(phase.calls) - TOP_OPERATIONS} other operations)")
    print("  rules fired      " + (_counts(phase.fired) or "none"))
    retries, delays = _retries(phase.messages)
    print("  retries" + ("" if retries else "          none"))
    for why, n in retries.most_common():
        print(f"    {n:>5}  {why} (waited {duration(delays[why])})")
    waits = _waits(phase.messages)
    print("  waits (polls)" + ("" if waits else "    none"))
    for what, n in waits.most_common():
        print(f"    {n:>5}  {what}")


def _outcomes(outcomes: dict[str, str]) -> str:
    """Outcomes counted by their text; the resources are named where they are few."""
    by_text: dict[str, list[str]] = {}
    for key, outcome in outcomes.items():
        by_text.setdefault(outcome, []).append(key)
    parts = []
    for text, keys in sorted(by_text.items(), key=lambda item: -len(item[1])):
        named = f" ({', '.join(keys)})" if len(keys) <= FEW else ""
        parts.append(f"{text!r} {len(keys)}{named}")
    return "; ".join(parts)


def _operation(name: str) -> str:
    """``"elasticloadbalancing.DescribeLoadBalancers"`` -> ``"DescribeLoadBalancers"``."""
    return name.rpartition(".")[2]


def _counts(counter: Counter) -> str:
    return ", ".join(f"{key} {n}" for key, n in counter.most_common())


def _retries(messages: list[tuple[str, str]]) -> tuple[Counter, Counter]:
    """Retries by reason (the text before "; retrying in"), and the seconds they waited."""
    retries: Counter = Counter()
    delays: Counter = Counter()
    for _step, text in messages:
        found = _RETRY.match(text)
        if found:
            retries[found["why"]] += 1
            delays[found["why"]] += int(found["delay"])
    return retries, delays


def _waits(messages: list[tuple[str, str]]) -> Counter:
    """Polls of each wait by what it waited for (between "waiting for " and ":"), with the
    step; a wait that says no duration (the table's) counts by its whole text."""
    waits: Counter = Counter()
    for step, text in messages:
        if text.startswith(_WAITING):
            what = text[len(_WAITING) :].partition(":")[0]
            waits[f"{what} [{step}]"] += 1
    return waits


def _on_paper(spec: Any, applied: Phase) -> None:
    """The apply on real AWS from the documented waits: resources are applied one after the
    other, so their typical creation times add up."""
    from provisioning import engine
    from provisioning.resources.base import duration

    print("\napply on real AWS, from the documented typical creation times:")
    resources = engine.ordered(spec)
    typical = {cls.key: float(getattr(cls, "typical_create_seconds", 0) or 0) for cls in resources}
    if not any(typical.values()):
        print("  no resource declares typical_create_seconds yet")
    else:
        print(f"    {'resource':<34}{'documented':>12}{'AWS-like here':>16}")
        for cls in resources:
            if typical[cls.key]:
                here = applied.step_seconds.get(cls.key)
                measured = duration(here) if here is not None else "-"
                print(f"    {cls.key:<34}{duration(typical[cls.key]):>12}{measured:>16}")
    print(
        f"  total: {duration(sum(typical.values()))} documented"
        f" ({sum(1 for seconds in typical.values() if seconds)} of {len(resources)} resources"
        f" declare one), {duration(applied.aws_seconds)} AWS-like here"
    )


if __name__ == "__main__":
    sys.exit(main())
