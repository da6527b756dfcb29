"""The guide's validation checklist as a run: each check with its evidence."""

import io
import json
import threading
import urllib.request
from datetime import UTC, datetime

import pytest
from botocore.stub import Stubber

from centralllm import aws
from centralllm.audit import contract
from devtools import local_gateway, services, vllm_local
from devtools.tests.local_api import audited_model, gateway
from inference.tests import fake_vllm
from inference.tests.conftest import create_buckets
from inference.tests.test_vllm_local import serve_tiny_model
from llm_audit_ingest import local as local_ingest
from provisioning import engine, runs, validation
from provisioning.jobs import execute
from provisioning.models import Environment, Run
from provisioning.resources.base import Context


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
    assert run.explanation == (
        "Validated: 1 of 5 checks passed, 4 skipped: no model is served locally (start it with "
        "SERVE_MODEL=1)."
    )
    assert run.result["skipped"] == 4


@pytest.mark.django_db
def test_a_local_completion_goes_through_the_local_api_with_the_environments_key(
    environment, tmp_path
):
    """As against AWS through API Gateway: the local API (devtools.local_gateway) lets it
    through only with a key of the environment's plan, and hands the model the key's id."""
    engine.apply(environment)
    [key] = aws.client("apigateway").get_api_keys(nameQuery=environment.resource_name("ApiKey"))[
        "items"
    ]
    secret = local_gateway.gateway_secret(environment.suffix)

    with (
        audited_model(create_buckets(), secret, tmp_path / "spool") as model,
        gateway(environment.suffix, model) as local_api,
        Context(environment.spec()) as ctx,
    ):
        check = validation.Validation(ctx, model_url=model, local_api_url=local_api)
        outcome = check.check("completion")

    assert outcome.status == "pass", outcome
    request_id = outcome.evidence.split()[1]
    assert fake_vllm.SEEN[request_id]["headers"][contract.API_KEY_ID_HEADER] == key["id"]


@pytest.mark.django_db
def test_a_stopped_model_fails_the_completion_readably(environment, settings):
    settings.LOCAL_MODEL_URL = f"http://127.0.0.1:{services.free_port()}"
    engine.apply(environment)

    with gateway(environment.suffix, settings.LOCAL_MODEL_URL) as local_api:
        settings.LOCAL_API_URL = local_api
        run = validate(environment)

    assert run.status == "failed"
    assert run.explanation == "Validation failed: A chat completion through the endpoint."
    found = outcomes(run)
    # The local API let the environment's key through, and found no model behind it.
    assert found["completion"].startswith(
        f"fail: {local_api}/v1/chat/completions answered HTTP 503"
    )
    assert f"The model at {settings.LOCAL_MODEL_URL} does not answer" in found["completion"]
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
    # The model trusts the local API of this environment, as `make run` serves them.
    monkeypatch.setenv(contract.GATEWAY_SECRET_ENV, local_gateway.gateway_secret("-chk"))
    consumer.start()
    try:
        served = serve_tiny_model(
            tmp_path_factory, "central-llm-audit-chk", "central-llm-audit-raw-chk"
        )
        server = next(served)
        settings.LOCAL_MODEL_URL = server.url
        with gateway("-chk", server.url) as local_api:
            settings.LOCAL_API_URL = local_api
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
    assert run.explanation == "Validated: all 5 checks passed."

    assert stopped.status == "failed"
    assert outcomes(stopped)["completion"].startswith("fail: ")
    assert "does not answer" in outcomes(stopped)["completion"]
    assert (
        outcomes(stopped)["audit_object"] == "skipped: did not run: there is no request to follow"
    )


# Real AWS's answers, through botocore's Stubber: moto's get_api_keys matches names exactly
# and its log pages are never empty, so neither shows what follows.
REGION = "ap-southeast-4"  # no other test file uses it: clients are shared process-wide
SENT_AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
REQUEST_ID = "6f1c2a9e-7d3b-4e8a-9c1f-2b5d8e0a4c71"
KEY_NAME, PLAN_NAME = "central-llm-generic-key-prod", "central-llm-usage-plan-prod"


@pytest.fixture
def on_aws():
    """A Validation of a real-AWS environment whose API Gateway and Logs clients Stubbers
    answer; sleeps are recorded, not slept."""
    spec = Environment(
        name="prod",
        suffix="-prod",
        is_local=False,
        region=REGION,
        account_id="123456789012",
        vpc_id="vpc-1",
        subnet_ids="subnet-1",
        security_group_id="sg-1",
    ).spec()
    sleeps: list[float] = []
    ctx = Context(spec, sleep=sleeps.append)
    stubbers = {service: Stubber(ctx.client(service)) for service in ("apigateway", "logs")}
    for stubber in stubbers.values():
        stubber.activate()
    yield (
        validation.Validation(ctx, model_url=None, wait_seconds=60, poll_seconds=5),
        stubbers,
        sleeps,
    )
    for stubber in stubbers.values():
        stubber.deactivate()
    ctx.close()
    for stubber in stubbers.values():
        stubber.assert_no_pending_responses()


def api_key(name: str, key_id: str, *, enabled: bool = True) -> dict:
    """An item of GetApiKeys with includeValues
    (https://docs.aws.amazon.com/apigateway/latest/api/API_GetApiKeys.html)."""
    return {
        "id": key_id,
        "value": f"value-of-{key_id}",
        "name": name,
        "enabled": enabled,
        "createdDate": SENT_AT,
        "lastUpdatedDate": SENT_AT,
        "stageKeys": [],
    }


def answer_api_and_keys(stubbers: dict, *pages: list[dict]) -> None:
    gateway = stubbers["apigateway"]
    gateway.add_response(
        "get_rest_apis",
        {
            "items": [
                {
                    "id": "a1b2c3d4e5",
                    "name": "central-llm-rest-api-prod",
                    "createdDate": SENT_AT,
                    "apiKeySource": "HEADER",
                    "endpointConfiguration": {"types": ["REGIONAL"]},
                }
            ]
        },
        {},
    )
    asked = {"nameQuery": KEY_NAME, "includeValues": True}
    for number, items in enumerate(pages):
        answer = {"items": items}
        if number < len(pages) - 1:
            answer["position"] = f"page-{number + 1}"
        gateway.add_response(
            "get_api_keys", answer, asked | ({"position": f"page-{number}"} if number else {})
        )


def answer_plan(stubbers: dict) -> None:
    """GetUsagePlans (https://docs.aws.amazon.com/apigateway/latest/api/API_GetUsagePlans.html)."""
    stubbers["apigateway"].add_response(
        "get_usage_plans",
        {
            "items": [
                {
                    "id": "plan-other",
                    "name": "central-llm-usage-plan-prod-eu",
                    "apiStages": [{"apiId": "zz9y8x7w6v", "stage": "prod"}],
                },
                {
                    "id": "plan-prod",
                    "name": PLAN_NAME,
                    "apiStages": [{"apiId": "a1b2c3d4e5", "stage": "prod"}],
                    "throttle": {"burstLimit": 50, "rateLimit": 100.0},
                    "quota": {"limit": 100000, "offset": 0, "period": "MONTH"},
                },
            ]
        },
        {},
    )


class Answer(io.BytesIO):
    """What urlopen returns: the body, and the headers the serving middleware sets."""

    headers = {"x-request-id": REQUEST_ID}


def test_the_key_named_exactly_is_used_not_a_prefix_match_listed_first(on_aws, monkeypatch):
    """AWS's get_api_keys(nameQuery=) matches prefixes and pages with ``position`` (issue 19,
    item 8; https://docs.aws.amazon.com/apigateway/latest/api/API_GetApiKeys.html): another
    environment's key comes first, ours on the second page."""
    check, stubbers, _ = on_aws
    answer_api_and_keys(
        stubbers,
        [api_key(f"{KEY_NAME}-eu", "key-prod-eu")],
        [api_key(KEY_NAME, "key-prod")],
    )
    answer_plan(stubbers)
    stubbers["apigateway"].add_response(
        "get_usage_plan_key",
        {"id": "key-prod", "type": "API_KEY", "value": "value-of-key-prod", "name": KEY_NAME},
        {"usagePlanId": "plan-prod", "keyId": "key-prod"},
    )
    sent = []

    def urlopen(request, timeout):
        sent.append((request.full_url, request.get_header("X-api-key")))
        return Answer(json.dumps({"choices": [{"message": {"content": "OK."}}]}).encode())

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)

    outcome = check.check("completion")

    assert outcome.status == "pass", outcome
    assert sent == [
        (
            f"https://a1b2c3d4e5.execute-api.{REGION}.amazonaws.com/prod/v1/chat/completions",
            "value-of-key-prod",
        )
    ]


def test_a_disabled_key_fails_with_what_to_do(on_aws):
    """``enabled``: "Specifies whether the API Key can be used by callers"
    (https://docs.aws.amazon.com/apigateway/latest/api/API_ApiKey.html)."""
    check, stubbers, _ = on_aws
    answer_api_and_keys(stubbers, [api_key(KEY_NAME, "key-prod", enabled=False)])

    outcome = check.check("completion")

    assert outcome == validation.Outcome(
        "fail",
        f"API key {KEY_NAME} (key-prod) is disabled: the gateway refuses it; apply the "
        "environment to enable it again",
    )


def test_a_key_not_on_the_environments_plan_fails_with_what_to_do(on_aws):
    """A key opens a stage only through a usage plan that holds it
    (https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-api-usage-plans.html);
    GetUsagePlanKey answers NotFoundException for a key not on the plan
    (https://docs.aws.amazon.com/apigateway/latest/api/API_GetUsagePlanKey.html)."""
    check, stubbers, _ = on_aws
    answer_api_and_keys(stubbers, [api_key(KEY_NAME, "key-prod")])
    answer_plan(stubbers)
    stubbers["apigateway"].add_client_error(
        "get_usage_plan_key",
        service_error_code="NotFoundException",
        service_message="Invalid Usage Plan Key identifier specified",
        http_status_code=404,
        expected_params={"usagePlanId": "plan-prod", "keyId": "key-prod"},
    )

    outcome = check.check("completion")

    assert outcome == validation.Outcome(
        "fail",
        f"API key {KEY_NAME} (key-prod) is not on usage plan {PLAN_NAME} (plan-prod): the "
        "gateway refuses it; apply the environment to put it back",
    )


def log_page(asked: dict, events: list[dict], next_token: str = "") -> tuple[dict, dict]:
    answer = {"events": events, "searchedLogStreams": []}
    if next_token:
        answer["nextToken"] = next_token
    return answer, asked


def test_an_empty_log_page_with_a_token_is_followed_on_every_poll(on_aws):
    """FilterLogEvents "can return empty results while there are more log events available
    through the token" (https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/
    API_FilterLogEvents.html): the first poll reads two pages and finds nothing yet, the
    second finds the line on its second page."""
    check, stubbers, sleeps = on_aws
    check.request_id, check.sent_at = REQUEST_ID, SENT_AT
    asked = {
        "logGroupName": "/aws/lambda/llm-audit-ingest-prod",
        "startTime": int(SENT_AT.timestamp() * 1000) - 60_000,
        "filterPattern": f'"{REQUEST_ID}"',
    }
    line = {
        "logStreamName": "2026/03/02/[$LATEST]0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "timestamp": int(SENT_AT.timestamp() * 1000) + 2_000,
        "message": f'{{"event": "audit_ingested", "id": "{REQUEST_ID}"}}',
        "ingestionTime": int(SENT_AT.timestamp() * 1000) + 2_500,
        "eventId": "38123456789012345678901234567890123456789012345678901234",
    }
    logs = stubbers["logs"]
    for poll in ("first", "second"):
        logs.add_response("filter_log_events", *log_page(asked, [], f"{poll}-token"))
        events = [line] if poll == "second" else []
        logs.add_response(
            "filter_log_events", *log_page({**asked, "nextToken": f"{poll}-token"}, events)
        )

    outcome = check.check("ingest_log")

    assert outcome.status == "pass", outcome
    assert outcome.evidence.startswith("/aws/lambda/llm-audit-ingest-prod 2026/03/02/")
    assert "10:00:02" in outcome.evidence and "audit_ingested" in outcome.evidence
    assert sleeps == [5]  # one wait between the two polls
