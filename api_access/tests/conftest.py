import pytest
from django.utils import timezone

from centralllm import aws
from devtools.testing import create_bucket, unique
from provisioning.models import Environment, ResourceState


@pytest.fixture
def keyed(audited) -> Environment:
    """An environment whose usage plan and audit bucket (made here, straight in moto) a run
    saw in AWS, with its audit table."""
    environment = audited
    plan = aws.client("apigateway").create_usage_plan(
        name=unique("plan"), quota={"limit": 1000, "period": "MONTH"}
    )
    bucket = create_bucket(unique("audit").lower())
    seen = {"apigateway.usage_plan": {"id": plan["id"]}, "s3.audit_bucket": {"name": bucket}}
    for key, outputs in seen.items():
        ResourceState.objects.create(
            environment=environment,
            key=key,
            title=key,
            state="present",
            outputs=outputs,
            seen_at=timezone.now(),
        )
    environment.quota_limit = 10
    environment.save()
    return environment
