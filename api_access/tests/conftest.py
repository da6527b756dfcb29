import pytest

from centralllm import aws
from devtools.testing import create_bucket, unique
from provisioning.models import Environment, Run, RunStep


@pytest.fixture
def keyed(audited) -> Environment:
    """An environment whose last apply left a usage plan and an audit bucket (made here,
    straight in moto), with its audit table."""
    environment = audited
    plan = aws.client("apigateway").create_usage_plan(
        name=unique("plan"), quota={"limit": 1000, "period": "MONTH"}
    )
    run = Run.objects.create(environment=environment, kind="apply", status="succeeded")
    RunStep.objects.create(
        run=run, position=1, key="apigateway.usage_plan", title="plan", outputs={"id": plan["id"]}
    )
    bucket = create_bucket(unique("audit").lower())
    RunStep.objects.create(
        run=run, position=2, key="s3.audit_bucket", title="bucket", outputs={"name": bucket}
    )
    environment.quota_limit = 10
    environment.save()
    return environment
