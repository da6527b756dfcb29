"""What clients got from this serving process, as the CloudWatch metrics that rollouts watch.

The audit middleware hands every answered ``/v1`` request to ``AnswerMetrics.add`` on the event
loop (a lock and an append), and a thread of its own prints what each
``serving.ANSWER_INTERVAL_SECONDS`` held as embedded-metric-format lines under
``serving.NAMESPACE``, dimension ``Environment``:

- ``Responses`` (Count): the responses sent, whatever their status. An interval without any
  says 0, so that the error rate's metric math sees traffic stop rather than data go missing.
- ``ServerErrors`` (Count): the 5xx among them, a request the app failed without answering
  included (the server answers it with a 500). A client that went away before any response
  got none, and is in neither count.
- ``TimeToFirstToken`` (Milliseconds): one value per streamed response, as the audit record's
  ``ttftMs`` (a plain response's first bytes are its whole answer). CloudWatch computes the
  percentiles (p95) from the values. The format takes at most 100 values per metric and
  document ("Numeric array metric targets MUST NOT have more than 100 members",
  https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html)
  and has no value/count form (that is PutMetricData's ``Values``/``Counts``), so the values
  go in lines of at most 100: the first line holds the counts too, the others only values. An
  interval keeps at most ``MAX_TTFT_VALUES``, beyond that a uniform sample (a reservoir), so
  memory and lines stay bounded whatever the load.

Nothing of a request but its status and timing reaches these lines: no project, user, header
or path, as dimension or as field; the one dimension is the environment. A flush that fails
(stdout closed, say) is logged once and dropped; requests never wait on it.
"""

import logging
import random
import sys
import threading

from centralllm import serving
from inference import metrics

log = logging.getLogger(__name__)

EMF_VALUES_LIMIT = 100  # values per metric and document, the format's limit
MAX_TTFT_VALUES = 10 * EMF_VALUES_LIMIT


class AnswerMetrics:
    def __init__(self, interval_seconds: float = serving.ANSWER_INTERVAL_SECONDS) -> None:
        self.interval_seconds = interval_seconds
        self._lock = threading.Lock()
        self._responses = 0
        self._server_errors = 0
        self._streams = 0  # streamed responses this interval, sampled or not
        self._ttft_ms: list[float] = []
        self._failing = False  # the last flush failed: said once, not every interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="answer-metrics", daemon=True)

    def add(self, status: int | None, ttft_ms: float | None) -> None:
        """One request's answer: its status (None: the client got none) and, for a stream,
        its time to first token. On the event loop: kept cheap."""
        if status is None:
            return
        with self._lock:
            self._responses += 1
            self._server_errors += status >= 500
            if ttft_ms is None:
                return
            self._streams += 1
            if len(self._ttft_ms) < MAX_TTFT_VALUES:
                self._ttft_ms.append(ttft_ms)
            else:
                kept = random.randrange(self._streams)  # noqa: S311 (a sample, not a secret)
                if kept < MAX_TTFT_VALUES:
                    self._ttft_ms[kept] = ttft_ms

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after one last flush (at shutdown)."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def flush(self) -> None:
        """Print the interval's lines and start the next interval."""
        with self._lock:
            responses, server_errors, values = self._responses, self._server_errors, self._ttft_ms
            self._responses = self._server_errors = self._streams = 0
            self._ttft_ms = []
        lines = []
        for start in range(0, max(len(values), 1), EMF_VALUES_LIMIT):
            chunk = values[start : start + EMF_VALUES_LIMIT]
            figures: dict = {}
            if start == 0:
                figures[serving.RESPONSES] = (responses, "Count")
                figures[serving.SERVER_ERRORS] = (server_errors, "Count")
            if chunk:
                ttft = [round(value, 3) for value in chunk]
                figures[serving.TIME_TO_FIRST_TOKEN] = (ttft, "Milliseconds")
            lines.append(metrics.emf_line(serving.NAMESPACE, figures, event="serving_answers"))
        try:
            sys.stdout.write("".join(line + "\n" for line in lines))
            sys.stdout.flush()
        except Exception as exc:  # stdout closed or broken: the metrics wait for no one
            if not self._failing:
                log.error("serving metrics: cannot write to stdout (%s); dropped", exc)
            self._failing = True
        else:
            self._failing = False

    def _run(self) -> None:
        while not self._stopped.wait(self.interval_seconds):
            self.flush()
        self.flush()
