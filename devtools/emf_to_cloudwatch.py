"""CloudWatch Logs' metric extraction, locally: embedded-metric-format lines in, PutMetricData out.

    python -m devtools.emf_to_cloudwatch var/log/model.log   (follows the file from its end)
    python -m devtools.vllm_local serve | python -m devtools.emf_to_cloudwatch -   (stdin)

On AWS a serving task's awslogs driver sends its output to CloudWatch Logs, which turns every
embedded-metric-format document in it into metrics (the serving ones: ``centralllm.serving``;
the audit's: ``inference.metrics``). The local AWS has no such step; this is it, so that the
console's pages and alarms read datapoints from the local AWS with the same code as on AWS.
`make run` with SERVE_MODEL=1 runs it on the model's output (var/log/model.log).

Where it differs from CloudWatch Logs:

- It reads lines that are a whole JSON object with ``_aws``; one that breaks the
  specification is skipped with a warning (CloudWatch drops it too, and counts it in
  ``AWS/Logs`` ``EMFValidationErrors``). Other lines are ignored.
- The lines are not kept as log events: no log group, nothing for Logs Insights.
- Following a file, it starts at its end: lines written while it was not running are never
  published (the awslogs driver buffers them). A file that is cut shorter is read from its
  start again.
- Best effort: a PutMetricData the local AWS refuses is dropped with a warning, not retried.
- It publishes each line as it comes, one call per namespace; fine for a few lines a
  minute, no log shipper.

And what the local AWS (moto) does with the datapoints: it keeps every value as sent and
answers GetMetricData with Sum, Average, Minimum, Maximum and SampleCount, but no percentile
(a ``p95`` query fails), and it never evaluates alarms on them by itself.
"""

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from centralllm import aws
from devtools import logs

log = logging.getLogger("devtools.emf_to_cloudwatch")

# The specification's limits (Specification: Embedded metric format, CloudWatch User Guide).
MAX_METRICS = 100  # MetricDefinitions per directive
MAX_VALUES = 100  # members of a numeric array target
MAX_DIMENSIONS = 9  # keys per DimensionSet
PUT_LIMIT = 1000  # MetricDatum per PutMetricData
POLL_SECONDS = 0.5


class InvalidDocument(ValueError):
    """A line with ``_aws`` that is no valid embedded-metric-format document."""


def metric_data(document: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The MetricData of each namespace an EMF document declares, as PutMetricData takes them."""
    meta = document.get("_aws")
    if not isinstance(meta, dict) or not isinstance(meta.get("CloudWatchMetrics"), list):
        raise InvalidDocument("_aws.CloudWatchMetrics must be an array")
    timestamp = meta.get("Timestamp")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool):
        raise InvalidDocument("_aws.Timestamp must be milliseconds since the epoch")
    when = datetime.fromtimestamp(timestamp / 1000, UTC)
    data: dict[str, list[dict[str, Any]]] = {}
    for directive in meta["CloudWatchMetrics"]:
        namespace = directive.get("Namespace")
        definitions = directive.get("Metrics")
        if not isinstance(namespace, str) or not namespace:
            raise InvalidDocument("a directive needs a Namespace")
        if not isinstance(definitions, list) or len(definitions) > MAX_METRICS:
            raise InvalidDocument(f"Metrics must be an array of at most {MAX_METRICS}")
        for dimensions in _dimension_sets(document, directive.get("Dimensions")):
            for definition in definitions:
                datum = _datum(document, definition)
                if datum:
                    datum.update(Dimensions=dimensions, Timestamp=when)
                    data.setdefault(namespace, []).append(datum)
    return data


def _dimension_sets(document: dict, sets: Any) -> list[list[dict[str, str]]]:
    if not isinstance(sets, list) or not sets:
        raise InvalidDocument("Dimensions must be an array of dimension sets")
    found = []
    for keys in sets:
        if not isinstance(keys, list) or len(keys) > MAX_DIMENSIONS:
            raise InvalidDocument(f"a dimension set holds at most {MAX_DIMENSIONS} keys")
        for key in keys:
            if not isinstance(document.get(key), str):
                raise InvalidDocument(f"dimension {key!r} must be a string member of the root")
        found.append([{"Name": key, "Value": document[key]} for key in keys])
    return found


def _datum(document: dict, definition: Any) -> dict[str, Any] | None:
    """One MetricDatum without dimensions and time; None for an empty array of values."""
    name = definition.get("Name") if isinstance(definition, dict) else None
    if not isinstance(name, str) or name not in document:
        raise InvalidDocument(f"metric {name!r} is not a member of the root")
    value = document[name]
    datum: dict[str, Any] = {"MetricName": name, "Unit": definition.get("Unit") or "None"}
    if _is_number(value):
        datum["Value"] = value
    elif isinstance(value, list) and len(value) <= MAX_VALUES and all(map(_is_number, value)):
        if not value:
            return None
        datum["Values"] = value
    else:
        raise InvalidDocument(f"metric {name!r} must be a number or at most {MAX_VALUES} numbers")
    return datum


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def publish(line: str) -> int:
    """Put the metrics of one line, if it is an EMF document; how many datums were put."""
    try:
        document = json.loads(line)
    except ValueError:
        return 0
    if not isinstance(document, dict) or "_aws" not in document:
        return 0
    try:
        data = metric_data(document)
    except InvalidDocument as exc:
        log.warning("skipped an invalid embedded-metric document (%s): %.200s", exc, line)
        return 0
    cloudwatch = aws.client("cloudwatch", max_attempts=2)
    put = 0
    for namespace, datums in data.items():
        for start in range(0, len(datums), PUT_LIMIT):
            batch = datums[start : start + PUT_LIMIT]
            try:
                cloudwatch.put_metric_data(Namespace=namespace, MetricData=batch)
            except (BotoCoreError, ClientError) as exc:
                log.warning("PutMetricData to %s failed (%s); dropped", namespace, exc)
                continue
            put += len(batch)
    return put


def follow(path: Path) -> Iterator[str]:
    """The lines added to ``path`` after this call, for ever."""
    tail = logs.LogTail(path)

    def lines() -> Iterator[str]:
        while True:
            if path.exists() and path.stat().st_size < tail.offset:
                tail.offset, tail.partial = 0, b""  # cut shorter (or replaced): from the start
            yield from tail.new_lines()
            time.sleep(POLL_SECONDS)

    return lines()


def run(lines: Iterable[str]) -> None:
    for line in lines:
        if line.startswith("{"):
            publish(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.emf_to_cloudwatch", description=__doc__.splitlines()[0]
    )
    parser.add_argument("source", help="a log file to follow, or - for standard input")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="emf-to-cloudwatch: %(levelname)s %(message)s")
    run(sys.stdin if args.source == "-" else follow(Path(args.source)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
