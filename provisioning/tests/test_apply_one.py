"""apply_one against the moto server: one resource brought to its declared state, cheaply."""

import pytest

from centralllm import aws
from core.refusals import Refused
from provisioning import engine

USAGE_PLAN = "apigateway.usage_plan"


def test_one_resource_is_updated_reading_only_its_dependencies(environment):
    spec = environment.spec()
    with engine.counting_calls(spec.region) as full:
        engine.apply(environment)
    environment.throttle_rate_limit = 7

    with engine.counting_calls(spec.region) as one:
        outcome = engine.apply_one(environment, USAGE_PLAN)

    assert outcome == "updated rate_limit"
    plans = aws.client("apigateway", region_name=spec.region).get_usage_plans()["items"]
    plan = next(item for item in plans if item["name"] == f"central-llm-usage-plan{spec.suffix}")
    assert plan["throttle"]["rateLimit"] == 7.0
    assert one["mutating"] == 1
    assert sum(one.values()) * 3 < sum(full.values()), (one, full)
    assert USAGE_PLAN not in {change.key for change in engine.drift(environment)}


def test_a_missing_dependency_is_refused_before_any_change(environment):
    with (
        engine.counting_calls(environment.region) as calls,
        pytest.raises(Refused, match="is missing: apply the environment first"),
    ):
        engine.apply_one(environment, USAGE_PLAN)
    assert calls["mutating"] == 0
