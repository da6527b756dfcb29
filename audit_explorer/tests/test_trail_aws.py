"""Where the local AWS cannot stand in: on real AWS a redrive invokes the ingest Lambda, and
the check reads API Gateway's request count from CloudWatch. Botocore's Stubber answers
with the responses AWS documents."""

import io
import json
from datetime import UTC, date, datetime

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from audit_explorer import completeness, dead_letters
from provisioning.models import Environment
from provisioning.resources.base import Context

REGION = "ap-southeast-2"  # no other test uses it: clients are shared per region


@pytest.fixture
def real_ctx():
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
    ctx = Context(spec)
    yield ctx
    ctx.close()


def payload(value) -> StreamingBody:
    data = json.dumps(value).encode()
    return StreamingBody(io.BytesIO(data), len(data))


def test_a_redrive_on_aws_invokes_the_function_and_reports_its_error(real_ctx):
    event = dead_letters.s3_event("central-llm-audit-prod", ["logs/2026/11/20/r1.json"])
    expected = {
        "FunctionName": "llm-audit-ingest-prod",
        "InvocationType": "RequestResponse",
        "Payload": json.dumps(event).encode(),
    }
    with Stubber(real_ctx.client("lambda")) as stubber:
        summary = {"ingested": 1, "duplicates": 0, "ignored": 0}
        stubber.add_response("invoke", {"StatusCode": 200, "Payload": payload(summary)}, expected)
        stubber.add_response(
            "invoke",
            {
                "StatusCode": 200,
                "FunctionError": "Unhandled",
                "ExecutedVersion": "$LATEST",
                "Payload": payload(
                    {
                        "errorMessage": "s3://central-llm-audit-prod/logs/2026/11/20/r1.json: "
                        "invalid audit record: not JSON",
                        "errorType": "InvalidRecord",
                        "requestId": "c1a7e1b2-0000-4000-8000-000000000000",
                        "stackTrace": ['  File "/var/task/llm_audit_ingest/handler.py"'],
                    }
                ),
            },
            expected,
        )
        assert dead_letters.redrive(real_ctx, event) == summary
        with pytest.raises(dead_letters.RedriveFailed, match="invalid audit record: not JSON"):
            dead_letters.redrive(real_ctx, event)
        stubber.assert_no_pending_responses()


def test_the_check_reads_the_stages_request_count(real_ctx):
    day = date(2026, 11, 20)
    with Stubber(real_ctx.client("cloudwatch")) as stubber:
        stubber.add_response(
            "get_metric_statistics",
            {
                "Label": "Count",
                "Datapoints": [
                    {
                        "Timestamp": datetime(2026, 11, 20, tzinfo=UTC),
                        "Sum": 10_482.0,
                        "Unit": "Count",
                    }
                ],
            },
            {
                "Namespace": "AWS/ApiGateway",
                "MetricName": "Count",
                "Dimensions": [
                    {"Name": "ApiName", "Value": "central-llm-rest-api-prod"},
                    {"Name": "Stage", "Value": "prod"},
                ],
                "StartTime": datetime(2026, 11, 20, tzinfo=UTC),
                "EndTime": datetime(2026, 11, 21, tzinfo=UTC),
                "Period": 86400,
                "Statistics": ["Sum"],
            },
        )
        stubber.add_response("get_metric_statistics", {"Label": "Count", "Datapoints": []})
        assert completeness.gateway_count(real_ctx, day) == 10_482
        assert completeness.gateway_count(real_ctx, day) == 0  # no traffic: no datapoint
