"""The REST API and usage plan as real AWS has them (botocore's Stubber): moto drops the
integration's transfer mode and VPC link and cannot invoke a stage, so the exact requests the
engine sends are what is checked here."""

import json
from dataclasses import replace

import pytest
from botocore.stub import Stubber

from provisioning import engine
from provisioning.resources.apigateway import RestApi, UsagePlan, deployment_description
from provisioning.resources.base import ProvisioningError
from provisioning.resources.secretsmanager import GatewaySecret, fingerprint

# A region no other test uses, so the stubbed client is ours alone.
REGION = "il-central-1"
API = "a1b2c3"
PROXY = "r-proxy"
LINK = "vl-new"
DNS = "central-llm-nlb-stub-0123.elb.il-central-1.amazonaws.com"
BACKEND = f"http://{DNS}:80/v1/{{proxy}}"
TARGET = {"restApiId": API, "resourceId": PROXY, "httpMethod": "ANY"}

# What clients must send, and what the backend receives (centralllm.audit.contract's names).
METHOD_PARAMETERS = {
    "method.request.path.proxy": True,
    "method.request.header.x-llm-source": True,
    "method.request.header.x-llm-user": True,
    "method.request.header.x-llm-request-type": True,
}
# The gateway's secret, as token_urlsafe makes them, and where Secrets Manager keeps it.
SECRET = "Zq3-x_9PfWm2Lr7TkB0vYc8NdJ4sHa6Ue1Go5Ki2Vw3"
SECRET_ARN = (
    f"arn:aws:secretsmanager:{REGION}:123456789012:secret:central-llm/gateway-secret-stub-AbCdEf"
)
# A static value is single-quoted ("Set up data mappings for REST APIs":
# https://docs.aws.amazon.com/apigateway/latest/developerguide/rest-api-parameter-mapping.html).
INTEGRATION_PARAMETERS = {
    "integration.request.path.proxy": "method.request.path.proxy",
    "integration.request.header.x-request-id": "context.requestId",
    "integration.request.header.x-api-key-id": "context.identity.apiKeyId",
    "integration.request.header.x-llm-gateway-secret": f"'{SECRET}'",
}
SECRET_HEADER = "integration.request.header.x-llm-gateway-secret"


@pytest.fixture
def api(stubbed, real_aws):
    ctx, stubber, _ = stubbed("apigateway", REGION)
    ctx.outputs["elbv2.load_balancer"] = {"dns": DNS}
    ctx.outputs["apigateway.vpc_link"] = {"id": LINK}
    ctx.outputs[GatewaySecret.key] = {"arn": SECRET_ARN, "fingerprint": fingerprint(SECRET)}
    secrets = Stubber(ctx.client("secretsmanager"))
    with secrets:
        yield RestApi(ctx), stubber, secrets
        secrets.assert_no_pending_responses()


def integration(**changed) -> dict:
    """An integration as GetMethod returns it, by default the declared one (None: left out)."""
    found = {
        "type": "HTTP_PROXY",
        "httpMethod": "ANY",
        "uri": BACKEND,
        "connectionType": "VPC_LINK",
        "connectionId": LINK,
        "requestParameters": INTEGRATION_PARAMETERS,
        "passthroughBehavior": "WHEN_NO_MATCH",
        "cacheNamespace": PROXY,
        "cacheKeyParameters": [],
        "timeoutInMillis": 900_000,
        "responseTransferMode": "STREAM",
        **changed,
    }
    return {key: value for key, value in found.items() if value is not None}


def answer_read(stubber, *, method: dict, endpoint: str = "REGIONAL") -> None:
    stubber.add_response(
        "get_rest_apis",
        {
            "items": [
                {
                    "id": API,
                    "name": "central-llm-rest-api-stub",
                    "apiKeySource": "HEADER",
                    "endpointConfiguration": {"types": [endpoint]},
                }
            ]
        },
        {},
    )
    resources = {"/": "r-root", "/v1": "r-v1", "/v1/{proxy+}": PROXY}
    stubber.add_response(
        "get_resources",
        {"items": [{"id": rid, "path": path} for path, rid in resources.items()]},
        {"restApiId": API, "limit": 500},
    )
    validator = {
        "id": "val1",
        "name": "required-headers",
        "validateRequestBody": False,
        "validateRequestParameters": True,
    }
    stubber.add_response("get_request_validators", {"items": [validator]}, {"restApiId": API})
    stubber.add_response("get_method", method, TARGET)


def method(**integration_changes) -> dict:
    return {
        "httpMethod": "ANY",
        "authorizationType": "NONE",
        "apiKeyRequired": True,
        "requestValidatorId": "val1",
        "requestParameters": METHOD_PARAMETERS,
        "methodIntegration": integration(**integration_changes),
    }


def expect_method_replaced(stubber, secrets, *, replace: bool = True, value=SECRET) -> None:
    """The exact method and integration the engine puts, then the stage's redeployment."""
    secrets.add_response(
        "get_secret_value", {"ARN": SECRET_ARN, "SecretString": value}, {"SecretId": SECRET_ARN}
    )
    if replace:
        stubber.add_response("delete_method", {}, TARGET)
    stubber.add_response(
        "put_method",
        {"httpMethod": "ANY"},
        {
            **TARGET,
            "authorizationType": "NONE",
            "apiKeyRequired": True,
            "requestParameters": METHOD_PARAMETERS,
            "requestValidatorId": "val1",
        },
    )
    stubber.add_response(
        "put_integration",
        {"type": "HTTP_PROXY"},
        {
            **TARGET,
            "type": "HTTP_PROXY",
            "integrationHttpMethod": "ANY",
            "uri": BACKEND,
            "connectionType": "VPC_LINK",
            "connectionId": LINK,
            "responseTransferMode": "STREAM",
            "timeoutInMillis": 900_000,
            "requestParameters": {**INTEGRATION_PARAMETERS, SECRET_HEADER: f"'{value}'"},
        },
    )


STAGE = {"restApiId": API, "stageName": "prod"}


def no_stage(stubber) -> None:
    stubber.add_client_error(
        "get_stage", "NotFoundException", "Invalid stage identifier", expected_params=STAGE
    )


@pytest.mark.parametrize("reported_mode", ["BUFFERED", None], ids=["reported", "left out"])
def test_a_buffered_integration_is_drift_and_is_replaced_by_a_streamed_one(api, reported_mode):
    rest_api, stubber, secrets = api
    # What an integration made before streaming reports: AWS's defaults.
    answer_read(stubber, method=method(responseTransferMode=reported_mode, timeoutInMillis=29_000))

    current = rest_api.read()
    fields = engine.diff(rest_api.desired(), current)

    assert list(fields) == ["integration", "response_transfer_mode"]
    assert fields["response_transfer_mode"] == ("BUFFERED", "STREAM")
    found, declared = fields["integration"]
    assert {key for key in declared if found[key] != declared[key]} == {"timeoutInMillis"}
    assert (found["timeoutInMillis"], declared["timeoutInMillis"]) == (29_000, 900_000)

    expect_method_replaced(stubber, secrets)
    # The stage exists: callers get the streamed integration once it is deployed.
    stubber.add_response("get_stage", {"deploymentId": "d1", "stageName": "prod"}, STAGE)
    description = deployment_description(rest_api.desired())
    stubber.add_response("create_deployment", {"id": "d2"}, {**STAGE, "description": description})
    rest_api.update(rest_api.desired(), current, list(fields))


def test_the_declared_api_as_aws_reports_it_is_no_drift(api):
    rest_api, stubber, _secrets = api
    answer_read(stubber, method=method())

    assert engine.diff(rest_api.desired(), rest_api.read()) == {}


def test_plans_compare_the_gateway_secret_by_its_fingerprint_never_its_value(api):
    rest_api, stubber, _secrets = api
    answer_read(stubber, method=method())

    desired, current = rest_api.desired(), rest_api.read()

    assert engine.diff(desired, current) == {}
    for declared in (desired, current):
        parameters = declared["integration"]["requestParameters"]
        assert parameters[SECRET_HEADER] == fingerprint(SECRET)
        assert SECRET not in json.dumps(declared)
    assert fingerprint(SECRET).startswith("sha256:") and len(fingerprint(SECRET)) == 19


def test_a_new_secret_value_is_put_in_the_integration_by_the_update_alone(api):
    rest_api, stubber, secrets = api
    # The integration still sends the value of before (the secret was given a new one).
    old = "Old-value_0123456789abcdefghijklmnopqrstuvw"
    answer_read(
        stubber,
        method=method(requestParameters={**INTEGRATION_PARAMETERS, SECRET_HEADER: f"'{old}'"}),
    )

    current = rest_api.read()
    fields = engine.diff(rest_api.desired(), current)

    assert list(fields) == ["integration"]
    found, declared = fields["integration"]
    assert (
        found["requestParameters"][SECRET_HEADER],
        declared["requestParameters"][SECRET_HEADER],
    ) == (fingerprint(old), fingerprint(SECRET))
    assert old not in str(fields) and SECRET not in str(fields)
    # Only the request that puts the integration carries the value, read just before.
    expect_method_replaced(stubber, secrets)
    no_stage(stubber)
    rest_api.update(rest_api.desired(), current, list(fields))


def test_a_refusal_that_quotes_the_secret_is_not_repeated(api):
    rest_api, stubber, secrets = api
    answer_read(stubber, method=method(connectionId="vl-old"))
    current = rest_api.read()
    secrets.add_response("get_secret_value", {"ARN": SECRET_ARN, "SecretString": SECRET})
    stubber.add_response("delete_method", {}, TARGET)
    stubber.add_response("put_method", {"httpMethod": "ANY"})
    # API Gateway quotes a mapping expression it refuses.
    stubber.add_client_error(
        "put_integration",
        "BadRequestException",
        f"Invalid mapping expression specified: Validation Result: warnings : [], errors : "
        f"[Invalid mapping expression specified: '{SECRET}']",
    )

    with pytest.raises(ProvisioningError) as refused:
        rest_api.update(rest_api.desired(), current, ["vpc_link"])
    assert SECRET not in str(refused.value) and "not shown" in str(refused.value)


def test_a_secret_an_api_gateway_static_value_cannot_carry_is_refused_before_any_put(api):
    rest_api, stubber, secrets = api
    answer_read(stubber, method=method(connectionId="vl-old"))
    current = rest_api.read()
    stubber.add_response("delete_method", {}, TARGET)
    stubber.add_response("put_method", {"httpMethod": "ANY"})
    # Put there by hand: a quote would end API Gateway's static value.
    secrets.add_response("get_secret_value", {"ARN": SECRET_ARN, "SecretString": "it's-mine"})

    with pytest.raises(ProvisioningError, match="cannot carry") as refused:
        rest_api.update(rest_api.desired(), current, ["vpc_link"])
    assert "it's-mine" not in str(refused.value)


def test_an_integration_on_another_vpc_link_is_drift(api):
    rest_api, stubber, secrets = api
    # The local AWS does not keep connectionId, so only real AWS can show this.
    answer_read(stubber, method=method(connectionId="vl-old"))

    current = rest_api.read()
    fields = engine.diff(rest_api.desired(), current)

    assert fields == {"vpc_link": ("vl-old", LINK)}
    expect_method_replaced(stubber, secrets)
    no_stage(stubber)
    rest_api.update(rest_api.desired(), current, list(fields))


def test_a_new_api_is_regional_with_the_validator_the_required_headers_and_the_mappings(api):
    rest_api, stubber, secrets = api
    stubber.add_response(
        "create_rest_api",
        {"id": API},
        {
            "name": "central-llm-rest-api-stub",
            "endpointConfiguration": {"types": ["REGIONAL"]},
            "apiKeySource": "HEADER",
        },
    )
    rest_api.create(rest_api.desired())

    # Then the engine reads it back (only the root resource) and update builds the rest.
    current = {
        "id": API,
        "resource_ids": {"/": "r-root"},
        "validator_id": None,
        "method": None,
    }
    for parent, part, made in (("r-root", "v1", "r-v1"), ("r-v1", "{proxy+}", PROXY)):
        stubber.add_response(
            "create_resource",
            {"id": made},
            {"restApiId": API, "parentId": parent, "pathPart": part},
        )
    stubber.add_response(
        "create_request_validator",
        {"id": "val1"},
        {
            "restApiId": API,
            "name": "required-headers",
            "validateRequestParameters": True,
            "validateRequestBody": False,
        },
    )
    expect_method_replaced(stubber, secrets, replace=False)
    no_stage(stubber)
    rest_api.update(rest_api.desired(), current, ["paths", "validator", "method", "integration"])


def test_an_edge_optimized_api_is_made_regional(api):
    rest_api, stubber, _secrets = api
    # Edge-optimized endpoints close a stream that is idle for 30 s.
    answer_read(stubber, method=method(), endpoint="EDGE")

    current = rest_api.read()
    fields = engine.diff(rest_api.desired(), current)

    assert fields == {"endpoint_types": (["EDGE"], ["REGIONAL"])}
    stubber.add_response(
        "update_rest_api",
        {"id": API},
        {
            "restApiId": API,
            "patchOperations": [
                {"op": "replace", "path": "/endpointConfiguration/types/EDGE", "value": "REGIONAL"}
            ],
        },
    )
    no_stage(stubber)
    rest_api.update(rest_api.desired(), current, list(fields))


@pytest.fixture
def usage_plan(stubbed):
    ctx, stubber, _ = stubbed("apigateway", REGION)
    ctx.spec = replace(
        ctx.spec,
        throttle_burst_limit=20,
        throttle_rate_limit=10,
        quota_limit=5_000,
        quota_period="WEEK",
        quota_extra=500,  # a temporary increase in force
    )
    ctx.outputs["apigateway.rest_api"] = {"id": API}
    return UsagePlan(ctx), stubber


def test_the_usage_plan_is_created_with_its_throttle_and_quota_period(usage_plan):
    plan, stubber = usage_plan
    stubber.add_response(
        "create_usage_plan",
        {"id": "up1"},
        {
            "name": "central-llm-usage-plan-stub",
            "apiStages": [{"apiId": API, "stage": "prod"}],
            "throttle": {"burstLimit": 20, "rateLimit": 10.0},
            "quota": {"limit": 5_500, "period": "WEEK"},
        },
    )
    plan.create(plan.desired())

    # Read back as AWS reports it (rateLimit a double, the offset 0): no drift.
    stubber.add_response(
        "get_usage_plans",
        {
            "items": [
                {
                    "id": "up1",
                    "name": "central-llm-usage-plan-stub",
                    "apiStages": [{"apiId": API, "stage": "prod"}],
                    "throttle": {"burstLimit": 20, "rateLimit": 10.0},
                    "quota": {"limit": 5_500, "offset": 0, "period": "WEEK"},
                }
            ]
        },
        {},
    )
    assert engine.diff(plan.desired(), plan.read()) == {}
