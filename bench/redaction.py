"""Redaction against hostile text: each built-in rule and a custom rule, ms per record.

    .venv/bin/python bench/redaction.py [--repeat 3]

Two figures per rule and text: ``redact()`` on the whole text (what the rules cost on their
own, 1 MB of text crafted against each), and the ingest's real path, ``item_from_record``,
which redacts only the preview and its margin. Normal text is 10 KB of chat with a few
addresses, keys and card numbers in it. No AWS and no database: the rules are plain Python.
"""

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from centralllm.audit import items
from centralllm.audit.redaction import parse_rules, redact
from centralllm.audit.tests.conftest import make_record

MB = 1_000_000
# Cubic on Python's engine (68 s on 2,560 digits); custom rules run on RE2.
CUSTOM = {"name": "ticket", "pattern": r"TCK-\d*\d*x"}
# Text crafted against each rule: what made the earlier patterns quadratic.
HOSTILE = {
    "letters (email)": "a" * MB,
    "key + spaces (api_key)": ("key" + " " * 15_000) * (MB // 15_003),
    "key repeated (api_key)": "key" * (MB // 3) + "1",
    "labels (email)": "a@" + "b." * (MB // 2),
    "digit groups (card)": "1 " * (MB // 2),
    "TCK- repeated (custom)": "TCK-" * (MB // 4),
    "TCK- and digits (custom)": "TCK-" + "1" * MB,
}
NORMAL = (
    "Please summarise the thread below. Ann (ann@example.com) says the deploy failed; "
    "Bob pasted api_key=sk-live-4f9a8b7c6d5e4f3a2b1c and card 4111 1111 1111 1111 by "
    "mistake, see TCK-4821. "
) * 50  # about 10 KB


def best_ms(work: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs")
    args = parser.parse_args()
    rules_json = json.dumps(["email", "api_key", "card", CUSTOM])
    os.environ["REDACTION_RULES"] = rules_json
    rules = parse_rules(rules_json)
    print(f"rules: {rules_json}; preview {items.max_preview_chars()} characters")
    print(f"{'text':28} {'size':>9} {'redact() whole':>16} {'ingest (preview)':>18}")
    for name, text in {**HOSTILE, "normal chat": NORMAL}.items():
        record = make_record(prompt=text, completion="ok")
        whole = best_ms(lambda text=text: redact(text, rules), args.repeat)
        ingest = best_ms(lambda record=record: items.item_from_record(record), args.repeat)
        print(f"{name:28} {len(text):>9,} {whole:>13.1f} ms {ingest:>15.2f} ms")


if __name__ == "__main__":
    main()
