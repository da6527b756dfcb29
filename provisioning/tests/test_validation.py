"""The guide's validation checklist as a run: each check with its evidence."""

import threading

import pytest

from devtools import services, vllm_local
from inference.tests.test_vllm_local import serve_tiny_model
from llm_audit_ingest import local as local_ingest
from provisioning import engine, runs
from provisioning.jobs import execute
from provisioning.models import Environment, Run


def validate(environment) -> Run:
    run = runs.start(environment, "validate", actor=None, enqueue=False)
    execute(run.pk)
    run.refresh_from_db()
    return run


def outcomes(run: Run) -> dict[str, str]:
    return dict(run.steps.values_list("key", "outcome"))


@pytest.mark.django_db
def test_without_a_local_model_the_completion_is_skipped_and_says_why(environment, settings):
    settings.LOCAL_MODEL_URL = ""
    engine.apply(environment)

    run = validate(environment)

    assert run.status == "succeeded", run.explanation
    found = outcomes(run)
    assert found["completion"].startswith("skipped: no model is served locally")
    for key in ("audit_object", "ingest_log", "audit_item"):
        assert found[key] == "skipped: did not run: there is no request to follow"
    assert found["service"].startswith("pass: 1 running of 1 desired, 1 deployment(s)")
    assert run.explanation == "Validated: 1 checks passed, 4 skipped."


@pytest.mark.django_db
def test_a_stopped_model_fails_the_completion_readably(environment, settings):
    settings.LOCAL_MODEL_URL = f"http://127.0.0.1:{services.free_port()}"
    engine.apply(environment)

    run = validate(environment)

    assert run.status == "failed"
    assert run.explanation == "Validation failed: A chat completion through the endpoint."
    found = outcomes(run)
    assert found["completion"].startswith(f"fail: {settings.LOCAL_MODEL_URL}/v1/chat/completions")
    assert "did not answer" in found["completion"] and "refused" in found["completion"]
    assert found["audit_item"] == "skipped: did not run: there is no request to follow"


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.skipif(not vllm_local.is_set_up(), reason="needs `make vllm-env`")
@pytest.mark.django_db(transaction=True)
def test_all_five_checks_pass_against_a_real_vllm_then_fail_when_it_stops(
    tmp_path_factory, settings, monkeypatch
):
    environment = Environment.objects.create(name="checked", suffix="-chk", is_local=True)
    engine.apply(environment)
    # The local audit path of this environment, as `make run` runs it for `local`.
    for name, value in {
        "LOCAL_INGEST_QUEUE": "llm-audit-ingest-local-chk",
        "DLQ_NAME": "llm-audit-dlq-chk",
        "TABLE_NAME": "CentralLLMAudit-chk",
        "INGEST_LOG_GROUP": "/aws/lambda/llm-audit-ingest-chk",
    }.items():
        monkeypatch.setenv(name, value)
    stop = threading.Event()
    consumer = threading.Thread(
        target=local_ingest.consume, kwargs={"stop": stop, "wait_seconds": 1}
    )
    consumer.start()
    try:
        served = serve_tiny_model(
            tmp_path_factory, "central-llm-audit-chk", "central-llm-audit-raw-chk"
        )
        server = next(served)
        settings.LOCAL_MODEL_URL = server.url
        run = validate(environment)
        served.close()  # the model stops
        stopped = validate(environment)
    finally:
        stop.set()
        consumer.join(30)

    assert run.status == "succeeded", outcomes(run)
    found = outcomes(run)
    assert all(outcome.startswith("pass: ") for outcome in found.values()), found
    request_id = found["completion"].split()[2]
    assert "s3://central-llm-audit-chk/logs/" in found["audit_object"]
    assert f"/{request_id}.json" in found["audit_object"]
    assert "/aws/lambda/llm-audit-ingest-chk" in found["ingest_log"]
    assert request_id in found["ingest_log"] and "audit_ingested" in found["ingest_log"]
    assert (
        f"{request_id} at " in found["audit_item"] and "project#smoke-test" in found["audit_item"]
    )
    assert run.explanation == "Validated: 5 checks passed."

    assert stopped.status == "failed"
    assert outcomes(stopped)["completion"].startswith("fail: ")
    assert "did not answer" in outcomes(stopped)["completion"]
    assert (
        outcomes(stopped)["audit_object"] == "skipped: did not run: there is no request to follow"
    )
