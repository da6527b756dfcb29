"""The console's metrics for Prometheus at /metrics (docs/metrics.md).

Three parts: requests per view (django-prometheus's middleware; under gunicorn every worker's,
gathered from ``PROMETHEUS_MULTIPROC_DIR``), RQ's queues and workers (django-rq's collector),
and the console's state, read at each scrape from the database and Redis only: runs, the
oldest queued job, dead letters, audit days incomplete, keys near their quota and the last
reading of each environment's state in AWS. A scrape makes no AWS call: a figure that only a
check or a page reads from AWS comes with the time it was read, so a stale one shows.

Who may scrape: ``settings.METRICS_TOKEN`` and ``settings.METRICS_NETWORKS``.
"""

import ipaddress
import logging
import os
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import django_rq
from django.conf import settings
from django.db.models import Count, Max, Q
from django.http import HttpRequest
from django_rq.contrib.prometheus import RQCollector
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from api_access import api_keys
from audit_explorer import audit_runs
from audit_explorer.models import DeadLetter
from console.alerts import RECENT_DAYS
from provisioning import state
from provisioning.models import Environment, Run

log = logging.getLogger(__name__)


class Refusal(NamedTuple):
    status: int
    text: str


OFF = Refusal(
    404,
    "Metrics are off: set CONSOLE_METRICS_TOKEN or CONSOLE_METRICS_NETWORKS (docs/metrics.md).",
)


def refusal(request: HttpRequest) -> Refusal | None:
    """Why ``request`` may not read the metrics; None when it may. Each restriction that is
    set must be met. With none set the endpoint is off (404: nothing is served here until an
    operator decides who may read it)."""
    token, networks = settings.METRICS_TOKEN, settings.METRICS_NETWORKS
    if not token and not networks:
        return OFF
    if networks and not _from_networks(request, networks):
        return Refusal(403, "This address may not read the metrics.")
    if token and not _has_token(request, token):
        return Refusal(401, "Send the metrics token: Authorization: Bearer <token>.")
    return None


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _from_networks(request: HttpRequest, networks: list[Network]) -> bool:
    """Whether the connecting address is in ``networks``. A request that names a forwarded
    address came through a proxy (a load balancer adds the header): the connecting address
    is the proxy's, not the scraper's, and the header is the client's to write, so neither
    vouches for the scraper. Prometheus scrapes each task directly."""
    if "X-Forwarded-For" in request.headers or "Forwarded" in request.headers:
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False  # a Unix socket, or no address at all
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
    return any(address in network for network in networks)


def _has_token(request: HttpRequest, token: str) -> bool:
    scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
    # Compared as bytes: compare_digest refuses strings with non-ASCII characters.
    return scheme.lower() == "bearer" and secrets.compare_digest(
        sent.strip().encode(), token.encode()
    )


def exposition(accept: str) -> tuple[bytes, str]:
    """The metrics in the format ``accept`` asks for (Prometheus text or OpenMetrics), and
    its content type."""
    registry = CollectorRegistry(auto_describe=False)
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        MultiProcessCollector(registry)  # every worker's requests, from their files
    else:
        registry.register(REGISTRY)  # this process's: runserver, tests
    registry.register(ConsoleCollector())
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


class ConsoleCollector:
    """The console's state, read at each scrape. A source that cannot be read (database or
    Redis down) is left out and ``console_metrics_source_up`` says so; the others still show."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "console_metrics_source_up",
            "1 when this scrape read the source, 0 when it could not (its metrics are missing).",
            labels=["source"],
        )
        for source, read in SOURCES.items():
            try:
                families = read()
            except Exception as exc:  # one source down must not take the others with it
                log.warning("Metrics: could not read %s: %s", source, exc)
                up.add_metric([source], 0)
                continue
            up.add_metric([source], 1)
            yield from families
        yield up


def _gauge(name: str, help_text: str, *labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, labels=list(labels))


def runs() -> list[Metric]:
    counted = _gauge(
        "console_runs",
        "Runs in the database by environment, kind and status: the active ones and the "
        "history kept (a deleted run leaves the count).",
        "environment",
        "kind",
        "status",
    )
    grouped = (
        Run.objects.values_list("environment__name", "kind", "status")
        .annotate(count=Count("pk"))
        .order_by()
    )
    for environment, kind, status, count in grouped:
        counted.add_metric([environment, kind, status], count)
    return [counted]


def queues() -> list[Metric]:
    """django-rq's collector (rq_jobs by queue and status, rq_workers) and the age of the
    job at the head of each queue: the next to start, the oldest unless one was put first."""
    oldest = _gauge(
        "console_rq_oldest_queued_job_age_seconds",
        "Seconds the job at the head of the RQ queue (the next to start) has waited since it "
        'was enqueued; 0 when the queue is empty. The depth is rq_jobs{status="queued"}.',
        "queue",
    )
    now = datetime.now(UTC)
    for name in settings.RQ_QUEUES:
        head = django_rq.get_queue(name).get_jobs(0, 1)
        enqueued = head[0].enqueued_at if head else None
        oldest.add_metric([name], max((now - enqueued).total_seconds(), 0) if enqueued else 0)
    return [*RQCollector().collect(), oldest]


def dead_letters() -> list[Metric]:
    waiting = _gauge(
        "console_dead_letters_waiting",
        "Dead-lettered audit events collected from the dead-letter queue, waiting for a "
        "redrive or a discard (the database). Those not collected yet: "
        "console_dead_letter_queue_messages.",
        "environment",
    )
    counted = Environment.objects.annotate(
        waiting=Count("dead_letters", filter=Q(dead_letters__status=DeadLetter.Status.WAITING))
    )
    for environment in counted:
        waiting.add_metric([environment.name], environment.waiting)
    return [waiting]


def audit_days() -> list[Metric]:
    incomplete = _gauge(
        "console_audit_days_incomplete",
        f"Days of the last {RECENT_DAYS} whose last completeness check found records missing, "
        "extra or miscounted, as stored; when the newest check ran: "
        "console_audit_days_checked_timestamp_seconds.",
        "environment",
    )
    checked = _gauge(
        "console_audit_days_checked_timestamp_seconds",
        "When a completeness check last stored a day's result (Unix time); no sample when "
        "none ever ran. The check runs daily at 00:30 UTC: older means it stopped.",
        "environment",
    )
    since = audit_runs.today() - timedelta(days=RECENT_DAYS)
    counted = Environment.objects.annotate(
        incomplete=Count(
            "audit_days", filter=Q(audit_days__complete=False, audit_days__day__gte=since)
        ),
        checked=Max("audit_days__checked_at"),
    )
    for environment in counted:
        incomplete.add_metric([environment.name], environment.incomplete)
        if environment.checked:
            checked.add_metric([environment.name], environment.checked.timestamp())
    return [incomplete, checked]


def key_alerts() -> list[Metric]:
    """The note the keys' schedule keeps (``api_keys.check_keys``, every minute)."""
    near = _gauge(
        "console_api_keys_near_quota",
        'Enabled API keys at 80% (level="80", below 95%) or 95% (level="95") or more of their '
        "quota this period, as the keys' schedule last noted them; no sample without a note "
        "(no scheduler running). When: console_api_keys_noted_timestamp_seconds.",
        "environment",
        "level",
    )
    expiring = _gauge(
        "console_api_keys_expiring",
        "Enabled API keys expired or expiring within 7 days, as last noted.",
        "environment",
    )
    noted = _gauge(
        "console_api_keys_noted_timestamp_seconds",
        "When the keys' schedule last noted the keys' quota and expiry (Unix time; renewed "
        "every minute, dropped after 15 minutes without a scheduler).",
        "environment",
    )
    high, low = api_keys.WARNINGS
    for environment in Environment.objects.all():
        note = api_keys.noted_alerts(environment)
        if note is None:
            continue
        at_high = sum(quota["percent"] >= high for quota in note["quota"])
        near.add_metric([environment.name, str(high)], at_high)
        near.add_metric([environment.name, str(low)], len(note["quota"]) - at_high)
        expiring.add_metric([environment.name], len(note["expiring"]))
        if "at" in note:
            noted.add_metric([environment.name], datetime.fromisoformat(note["at"]).timestamp())
    return [near, expiring, noted]


def aws_state() -> list[Metric]:
    """The last reading of each environment's state in AWS (``state.last_known``)."""
    read_at = _gauge(
        "console_aws_state_read_timestamp_seconds",
        "When the console last read the environment's state in AWS (service, alarms, "
        "dead-letter queue) for its pages, kept AWS_STATE_CACHE_SECONDS for every viewer "
        "(Unix time). A scrape reads no AWS: with no one on the pages this grows old.",
        "environment",
    )
    in_queue = _gauge(
        "console_dead_letter_queue_messages",
        "Events in the environment's dead-letter queue, not collected yet (SQS's approximate "
        "count), as last read: see console_aws_state_read_timestamp_seconds for when.",
        "environment",
    )
    for environment in Environment.objects.all():
        last = state.last_known(environment)
        if last is None:
            continue
        read_at.add_metric([environment.name], last["read_at"].timestamp())
        queue = last.get("dlq") or {}
        if "error" not in queue:
            in_queue.add_metric([environment.name], queue.get("messages", 0))
    return [read_at, in_queue]


SOURCES: dict[str, Callable[[], list[Metric]]] = {
    "runs": runs,
    "queues": queues,
    "dead_letters": dead_letters,
    "audit_days": audit_days,
    "api_keys": key_alerts,
    "aws_state": aws_state,
}
