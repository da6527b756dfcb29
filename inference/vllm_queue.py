"""vLLM's queue as CloudWatch metrics, one series of datapoints per task.

    python -m inference.vllm_queue [METRICS_URL]   (default http://127.0.0.1:8000/metrics)

Every ``serving.QUEUE_INTERVAL_SECONDS`` it reads vLLM's own Prometheus ``/metrics``, sums
``vllm:num_requests_waiting`` and ``vllm:num_requests_running`` over their label sets (one per
served model name and engine) and prints one embedded-metric-format line: ``RequestsWaiting``,
``RequestsRunning`` and ``RequestsInFlight`` (the two together, what scaling follows) under
``serving.NAMESPACE``, dimension ``Environment``. The task's awslogs driver ships the line and
CloudWatch Logs turns it into metrics.

It is a small process of its own, started by the entrypoint beside ``vllm serve``, rather than
a thread of the serving process: there is one per task however many API server processes vLLM
runs (a thread in each would count the task several times in the per-task Average that
target tracking holds), it takes nothing from the serving process's GIL or event loop but the
scrape itself, it reads exactly what a Prometheus scraper would, and it keeps reporting with
the audit middleware off. It stops once the process that started it is gone (the entrypoint
execs ``vllm serve``, so that is the server) and with its process group.

When ``/metrics`` cannot be read (vLLM still loading, restarting or stuck) it writes no
datapoint. A 0 would say the task is idle and let the policy scale in just when a server is
in trouble; a missing datapoint leaves the task out of the Average, and with no datapoint at
all Application Auto Scaling does not scale until data comes back. It warns once per outage,
not every interval, and says when it reads again.
"""

import logging
import os
import sys
import threading
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from centralllm import serving
from inference import metrics

log = logging.getLogger("inference.vllm_queue")

DEFAULT_URL = "http://127.0.0.1:8000/metrics"
WAITING = "vllm:num_requests_waiting"
RUNNING = "vllm:num_requests_running"
# A scrape slower than this is an outage: the next interval is due soon after.
READ_TIMEOUT_SECONDS = 5


class Unreadable(Exception):
    """vLLM's /metrics did not answer, or not with both gauges."""


def read_queue(url: str, timeout: float = READ_TIMEOUT_SECONDS) -> tuple[float, float]:
    """Requests waiting and running on vLLM at ``url``, each summed over its label sets."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (our URL)
            text = response.read().decode()
    except (OSError, ValueError) as exc:  # refused, timed out, an HTTP error, not UTF-8
        raise Unreadable(str(exc)) from exc
    totals: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            if family.name in (WAITING, RUNNING):
                totals[family.name] = sum(sample.value for sample in family.samples)
    except ValueError as exc:
        raise Unreadable(f"not Prometheus text ({exc})") from exc
    missing = [name for name in (WAITING, RUNNING) if name not in totals]
    if missing:
        raise Unreadable(f"no {' or '.join(missing)} in what it serves")
    return totals[WAITING], totals[RUNNING]


class QueueReporter:
    """Reads the queue and prints its line; nothing, and one warning per outage, when it cannot."""

    def __init__(self, url: str) -> None:
        self.url = url
        # "starting", "waiting" (for the first reading, said once), then "up" or "down".
        self.state = "starting"

    def report(self) -> bool:
        """One reading; True when a line was written."""
        try:
            waiting, running = read_queue(self.url)
        except Unreadable as exc:
            if self.state == "up":
                log.warning(
                    "cannot read vLLM's queue at %s (%s); no datapoints until it answers",
                    *(self.url, exc),
                )
                self.state = "down"
            elif self.state == "starting":
                log.info("waiting for vLLM's queue at %s (%s)", self.url, exc)
                self.state = "waiting"
            return False
        if self.state == "down":
            log.warning("vLLM's queue at %s can be read again", self.url)
        self.state = "up"
        line = metrics.emf_line(
            serving.NAMESPACE,
            {
                serving.REQUESTS_WAITING: (waiting, "Count"),
                serving.REQUESTS_RUNNING: (running, "Count"),
                serving.REQUESTS_IN_FLIGHT: (waiting + running, "Count"),
            },
            event="vllm_queue",
        )
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        return True

    def run(self, interval: float, stop: threading.Event) -> None:
        """Report every ``interval`` seconds until ``stop`` is set or the parent is gone."""
        parent = os.getppid()
        while os.getppid() == parent:
            self.report()
            if stop.wait(interval):
                return


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="vllm-queue: %(levelname)s %(message)s")
    url = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_URL
    QueueReporter(url).run(serving.QUEUE_INTERVAL_SECONDS, threading.Event())


if __name__ == "__main__":
    main()
