"""The serving hosts' own metrics in CloudWatch: the one contract between the hosts that publish
them (``inference/``), the engine that scales and alarms on them (``provisioning/``) and the
pages that chart them.

Each serving task writes embedded-metric-format lines on stdout; the task's awslogs driver
sends them to CloudWatch Logs, which turns them into metrics under ``NAMESPACE`` with one
dimension, ``DIMENSION``, the environment's name (the hosts' ``AUDIT_ENVIRONMENT``).
"""

NAMESPACE = "CentralLLM/Serving"
DIMENSION = "Environment"

# vLLM's queue, read from its /metrics by each task every ``QUEUE_INTERVAL_SECONDS``: one
# datapoint per task, so the metric's Average over tasks is the load per task, which the
# target-tracking policy holds at the environment's target.
REQUESTS_WAITING = "RequestsWaiting"  # vllm:num_requests_waiting
REQUESTS_RUNNING = "RequestsRunning"  # vllm:num_requests_running
REQUESTS_IN_FLIGHT = "RequestsInFlight"  # waiting + running: what scaling follows
QUEUE_INTERVAL_SECONDS = 15

# What clients got, from the audit middleware, aggregated per task every
# ``ANSWER_INTERVAL_SECONDS``: times to first token as values with counts (CloudWatch computes
# percentiles from them), and the responses and the 5xx among them, whose ratio is the error rate.
TIME_TO_FIRST_TOKEN = "TimeToFirstToken"  # noqa: S105 (a metric, in milliseconds)
RESPONSES = "Responses"
SERVER_ERRORS = "ServerErrors"
ANSWER_INTERVAL_SECONDS = 10


def dimensions(environment: str) -> list[dict[str, str]]:
    """The dimensions of every serving metric of ``environment``, as CloudWatch's API takes them."""
    return [{"Name": DIMENSION, "Value": environment}]
