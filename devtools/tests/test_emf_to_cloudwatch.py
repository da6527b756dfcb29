"""CloudWatch Logs' extraction stand-in: the serving hosts' lines, followed in their log, become
datapoints in the session's moto server, read back with GetMetricData as the pages read them."""

import json
import logging
import time
from datetime import UTC, datetime, timedelta

from centralllm import aws, serving
from devtools.emf_to_cloudwatch import follow, publish
from devtools.testing import unique
from inference import metrics
from inference.answers import AnswerMetrics


def datapoint(environment: str, name: str, stat: str) -> float:
    """``stat`` of ``name`` over the last ten minutes, in one period."""
    now = datetime.now(UTC)
    query = {
        "Id": "m",
        "MetricStat": {
            "Metric": {
                "Namespace": serving.NAMESPACE,
                "MetricName": name,
                "Dimensions": serving.dimensions(environment),
            },
            "Period": 900,
            "Stat": stat,
        },
    }
    # Ending a minute ahead: the local AWS drops the end's fraction of a second, which left
    # out a datapoint put in the same second as the read.
    result = aws.client("cloudwatch").get_metric_data(
        MetricDataQueries=[query],
        StartTime=now - timedelta(minutes=10),
        EndTime=now + timedelta(minutes=1),
    )["MetricDataResults"][0]
    assert len(result["Values"]) == 1, f"{name}: {result}"
    return result["Values"][0]


def test_the_hosts_lines_in_their_log_become_datapoints(tmp_path, monkeypatch, capsys, caplog):
    environment = unique("serving")
    monkeypatch.setenv("AUDIT_ENVIRONMENT", environment)
    log = tmp_path / "model.log"
    queue = {
        serving.REQUESTS_WAITING: (5, "Count"),
        serving.REQUESTS_RUNNING: (12, "Count"),
        serving.REQUESTS_IN_FLIGHT: (17, "Count"),
    }
    earlier = metrics.emf_line(serving.NAMESPACE, queue, event="vllm_queue")
    log.write_text(f"{earlier}\n")  # an earlier run's: before the stand-in started
    lines = follow(log)
    answers = AnswerMetrics()
    for number in range(1, 151):
        answers.add(200, float(number))
    answers.add(500, None)
    answers.flush()  # two lines: 100 values with the counts, then 50
    invalid = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {"Namespace": serving.NAMESPACE, "Dimensions": [["Environment"]], "Metrics": [{}]}
            ],
        },
        "Environment": environment,
    }
    with log.open("a") as out:
        out.write("INFO 12-05 06:33:01 [api_server.py:1] Starting vLLM API server\n")
        out.write(capsys.readouterr().out)
        out.write(metrics.emf_line(serving.NAMESPACE, queue, event="vllm_queue") + "\n")
        out.write(json.dumps(invalid) + "\n")
        out.write('{"_aws": "still being written')

    with caplog.at_level(logging.WARNING, logger="devtools.emf_to_cloudwatch"):
        assert [publish(next(lines)) for _ in range(5)] == [0, 3, 1, 3, 0]
    assert "invalid embedded-metric document" in caplog.text

    assert datapoint(environment, serving.RESPONSES, "Sum") == 151
    assert datapoint(environment, serving.SERVER_ERRORS, "Sum") == 1
    assert datapoint(environment, serving.TIME_TO_FIRST_TOKEN, "SampleCount") == 150
    assert datapoint(environment, serving.TIME_TO_FIRST_TOKEN, "Maximum") == 150
    # One line: the earlier run's was not published again.
    assert datapoint(environment, serving.REQUESTS_IN_FLIGHT, "SampleCount") == 1

    # A log cut shorter (a new run truncated it) is read from its start.
    log.write_text("a new run\n")
    assert next(lines) == "a new run"
