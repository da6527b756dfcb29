"""How far behind the audit is: on vLLM's ``/metrics`` and as CloudWatch metrics; and the
one writer of the image's CloudWatch embedded metric lines (``emf_line``).

The backlog is read from the spool directory itself by whoever asks (see
``writer.spool_backlog``): each spool file's name holds its record count and the time of its
oldest request, so a scrape lists one directory and reads no file, and the figures stay true
when the uploader is dead or stuck, which is when they matter. The uploader's running totals
(records delivered, failed deliveries) are in ``COUNTERS_FILE`` in the same directory,
written by the uploader and read by the serving process's collector. Records are lost only
in the serving process (the disk fails and memory is full), so the writer counts those.

CloudWatch gets the same figures as embedded metric format lines on stdout (``emf_line``):
the task's awslogs driver sends them to CloudWatch Logs, which turns them into metrics. The
serving metrics (``centralllm.serving``: vLLM's queue, what clients got) take the same path
under their own namespace.
"""

import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from centralllm import serving

if TYPE_CHECKING:
    from inference.writer import AuditWriter

NAMESPACE = "CentralLLM/Audit"
COUNTERS_FILE = "uploader-counters.json"


def environment() -> str:
    """The ``Environment`` dimension of every metric the image publishes."""
    return os.environ.get("AUDIT_ENVIRONMENT") or "default"


def emf_line(
    namespace: str, values: Mapping[str, tuple[float | list[float], str]], **fields: Any
) -> str:
    """One embedded-metric-format document under ``namespace``, its one dimension the
    environment: ``values`` maps a metric name to (value, unit), the value a number or a list
    of at most 100 numbers (the format's limit per metric and document); ``fields`` are logged
    beside them (searchable in Logs Insights, not metrics)."""
    metrics = [{"Name": name, "Unit": unit} for name, (_, unit) in values.items()]
    document = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {"Namespace": namespace, "Dimensions": [[serving.DIMENSION]], "Metrics": metrics}
            ],
        },
        serving.DIMENSION: environment(),
        **fields,
        **{name: value for name, (value, _) in values.items()},
    }
    return json.dumps(document)


def read_counters(spool_dir: Path) -> dict[str, int]:
    """The uploader's running totals; zero before its first delivery."""
    try:
        counters = json.loads((spool_dir / COUNTERS_FILE).read_bytes())
    except (OSError, ValueError):
        counters = {}
    return {name: int(counters.get(name, 0)) for name in ("delivered", "failures", "quarantined")}


class AuditCollector:
    """The audit's figures on ``/metrics``: prometheus_client calls ``collect`` per scrape."""

    def __init__(self, writer: "AuditWriter") -> None:
        self.writer = writer

    def collect(self) -> Iterator[Metric]:
        spooled, held, oldest = self.writer.backlog()
        counters = read_counters(self.writer.spool_dir)
        yield GaugeMetricFamily(
            "llm_audit_spool_records", "Audit records in the spool, not yet in S3", spooled
        )
        yield GaugeMetricFamily(
            "llm_audit_held_records",
            "Audit records held in memory because the spool cannot be written",
            held,
        )
        yield GaugeMetricFamily(
            "llm_audit_oldest_unsent_seconds",
            "Age of the oldest audit record not yet in S3 (spool or memory); 0 when none waits",
            oldest,
        )
        yield CounterMetricFamily(
            "llm_audit_delivered_records",
            "Audit records the uploader put to S3",
            counters["delivered"],
        )
        yield CounterMetricFamily(
            "llm_audit_delivery_failures",
            "Audit records whose delivery failed and waits for a retry",
            counters["failures"],
        )
        yield CounterMetricFamily(
            "llm_audit_quarantined_records",
            "Audit records that could not be built or encoded, set aside in the spool's "
            "quarantine with their reason instead of holding up the others",
            counters["quarantined"],
        )
        yield CounterMetricFamily(
            "llm_audit_lost_records",
            "Audit records lost: the spool could not be written and memory was full",
            self.writer.lost,
        )
