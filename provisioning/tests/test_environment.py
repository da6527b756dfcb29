"""The Environment model: defaults from the guide, validation with clear messages."""

import pytest
from django.core.exceptions import ValidationError

from provisioning.models import Environment

REAL = {
    "name": "staging",
    "suffix": "-staging",
    "account_id": "123456789012",
    "vpc_id": "vpc-0abc",
    "subnet_ids": "subnet-aaa, subnet-bbb",
    "security_group_id": "sg-0abc",
}


@pytest.mark.django_db
def test_the_local_environment_exists_by_default():
    local = Environment.objects.get(name="local")
    assert local.is_local
    assert local.suffix == ""


def test_defaults_are_the_guides():
    spec = Environment(**REAL).spec()
    assert (spec.throttle_burst_limit, spec.throttle_rate_limit) == (50, 100)
    assert spec.quota_limit == 100_000
    assert spec.subnet_ids == ("subnet-aaa", "subnet-bbb")
    assert spec.region == "eu-central-1"


def errors_of(**fields) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        Environment(**{**REAL, **fields}).spec()
    return caught.value.message_dict


def test_a_real_aws_environment_needs_its_network_and_account():
    errors = errors_of(vpc_id="", subnet_ids="", security_group_id="", account_id="")
    assert errors["vpc_id"] == ["A real-AWS environment needs its VPC."]
    assert errors["subnet_ids"] == ["A real-AWS environment needs at least one subnet."]
    assert "security_group_id" in errors
    assert "account_id" in errors


def test_a_local_environment_may_use_the_default_vpc():
    Environment(name="dev", is_local=True).spec()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("quota_limit", -1, "Must be zero or more."),
        ("throttle_burst_limit", -5, "Must be zero or more."),
        ("desired_count", -1, "Between the min and max tasks (1 to 4)."),
        ("min_tasks", 0, "Must be one or more."),
        ("target_requests_per_task", 0, "Must be one or more."),
        ("scale_in_cooldown_seconds", -1, "Must be zero or more."),
        ("alarm_dlq_messages", 0, "Must be one or more."),
        ("suffix", "staging", "Use '' or a suffix like '-staging' (a-z, 0-9)."),
        ("subnet_ids", "subnet-a, net-b", "Every subnet id starts with 'subnet-'."),
        ("account_id", "1234", "An AWS account id is 12 digits."),
    ],
)
def test_wrong_values_are_refused_with_a_clear_message(field, value, message):
    assert errors_of(**{field: value})[field] == [message]


def test_scaling_defaults_start_at_one_task_and_may_reach_four():
    spec = Environment(**REAL).spec()
    assert (spec.desired_count, spec.min_tasks, spec.max_tasks) == (1, 1, 4)
    assert spec.target_requests_per_task == 16
    assert (spec.scale_out_cooldown_seconds, spec.scale_in_cooldown_seconds) == (60, 300)


def test_the_max_tasks_are_at_least_the_min_and_the_starting_count_within_them():
    assert errors_of(min_tasks=3, max_tasks=2, desired_count=3)["max_tasks"] == [
        "At least the min tasks (3)."
    ]
    assert errors_of(min_tasks=2, max_tasks=4, desired_count=1)["desired_count"] == [
        "Between the min and max tasks (2 to 4)."
    ]
    assert errors_of(desired_count=5)["desired_count"] == [
        "Between the min and max tasks (1 to 4)."
    ]
