"""What clients got, counted by the audit middleware and written as embedded-metric-format lines
(inference.answers), through real requests to the vLLM imitation under uvicorn."""

import io
import logging
import sys
import time

import httpx

from inference.answers import AnswerMetrics
from inference.middleware import AuditMiddleware
from inference.tests import fake_vllm
from inference.tests.conftest import FROM_GATEWAY, GATEWAY_SECRET, HEADERS, emf_documents, serve

CHAT = {"model": "ministral-8b-instruct", "messages": [{"role": "user", "content": "ping"}]}
# A caller who would like to be a metric: a dimension of its own, or another environment.
HOSTILE = {
    **HEADERS,
    "x-llm-source": 'evil"},"Environment":"production","_aws":{"x":"',
    "x-llm-user": "mallory-the-dimension",
    "x-api-key-id": "key-of-mallory",
}
SERVING = "CentralLLM/Serving"


def test_responses_errors_and_ttft_reach_the_lines_and_nothing_of_the_caller(
    writer, capsys, monkeypatch
):
    monkeypatch.setenv("AUDIT_ENVIRONMENT", "staging")
    answers = AnswerMetrics(interval_seconds=3600)  # flushed here, and once more at shutdown
    app = AuditMiddleware(
        fake_vllm.app, writer=writer, gateway_secret=GATEWAY_SECRET, answers=answers
    )
    with serve(app) as url:
        chat = f"{url}/v1/chat/completions"
        assert httpx.post(chat, json=CHAT, headers={**HOSTILE, **FROM_GATEWAY}).status_code == 200
        started = time.perf_counter()
        # Like a model: 0.2 s before the first chunk, then the rest.
        streamed = {**CHAT, "stream": True, "delay": 0.2, "chunk_delay": 0.05}
        with httpx.stream("POST", chat, json=streamed, headers=HOSTILE) as response:
            assert response.status_code == 200
            response.read()
        elapsed_ms = (time.perf_counter() - started) * 1000
        assert httpx.post(f"{url}/v1/fail", json=CHAT, headers=HEADERS).status_code == 500
        assert httpx.post(chat, json=CHAT).status_code == 400  # no headers: refused, a response
        assert httpx.get(f"{url}/health").status_code == 200  # not audited, not counted
        answers.flush()

    output = capsys.readouterr().out
    counted, idle = emf_documents(output, "serving_answers")  # the second: the shutdown's
    assert counted["_aws"]["CloudWatchMetrics"] == [
        {
            "Namespace": SERVING,
            "Dimensions": [["Environment"]],
            "Metrics": [
                {"Name": "Responses", "Unit": "Count"},
                {"Name": "ServerErrors", "Unit": "Count"},
                {"Name": "TimeToFirstToken", "Unit": "Milliseconds"},
            ],
        }
    ]
    assert set(counted) == {
        *("_aws", "Environment", "event"),
        *("Responses", "ServerErrors", "TimeToFirstToken"),
    }
    assert counted["Environment"] == "staging"
    assert (counted["Responses"], counted["ServerErrors"]) == (4, 1)
    (ttft,) = counted["TimeToFirstToken"]  # the stream's; a plain answer has no first token
    assert 200 <= ttft < elapsed_ms
    assert (idle["Responses"], idle["ServerErrors"]) == (0, 0)
    for hostile in ("evil", "mallory", "key-of-mallory", "production"):
        assert hostile not in output


def test_an_interval_holds_at_most_100_values_per_line(capsys):
    """The specification: "Numeric array metric targets MUST NOT have more than 100 members"."""
    answers = AnswerMetrics()
    for number in range(250):
        answers.add(200, float(number))
    answers.add(503, None)
    answers.flush()

    first, *rest = emf_documents(capsys.readouterr().out, "serving_answers")
    assert (first["Responses"], first["ServerErrors"]) == (251, 1)
    assert [len(document["TimeToFirstToken"]) for document in (first, *rest)] == [100, 100, 50]
    # The counts once, in the first line: CloudWatch adds up every line's.
    assert all("Responses" not in document for document in rest)
    values = [value for document in (first, *rest) for value in document["TimeToFirstToken"]]
    assert sorted(values) == [float(number) for number in range(250)]


def test_idle_intervals_say_zero_and_a_broken_stdout_never_reaches_a_request(
    writer, capsys, monkeypatch, caplog
):
    answers = AnswerMetrics(interval_seconds=0.1)
    with serve(AuditMiddleware(fake_vllm.app, writer=writer, answers=answers)) as url:
        time.sleep(0.35)
        idle = emf_documents(capsys.readouterr().out, "serving_answers")
        broken = io.StringIO()
        broken.close()
        monkeypatch.setattr(sys, "stdout", broken)
        for _ in range(3):
            response = httpx.post(f"{url}/v1/chat/completions", json=CHAT, headers=HEADERS)
            assert response.status_code == 200
        time.sleep(0.35)  # several flushes fail meanwhile

    assert len(idle) >= 2
    assert all((document["Responses"], document["ServerErrors"]) == (0, 0) for document in idle)
    assert all("TimeToFirstToken" not in document for document in idle)
    failed = [record for record in caplog.records if record.name == "inference.answers"]
    assert len(failed) == 1 and failed[0].levelno == logging.ERROR  # said once
