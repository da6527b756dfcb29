"""Name lengths (issue 19, item 11): a suffix that makes a name longer than AWS allows is
refused on the environment form, before any apply could stop half-way at CreateLoadBalancer."""

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError

from provisioning.forms import EnvironmentForm
from provisioning.models import Environment
from provisioning.resources.base import (
    BASE_NAMES,
    MAX_SUFFIX_LENGTH,
    NAME_LIMITS,
    names_too_long,
    suggested_suffix,
)

REAL = {
    "name": "staging",
    "account_id": "123456789012",
    "vpc_id": "vpc-0abc",
    "subnet_ids": "subnet-aaa, subnet-bbb",
    "security_group_id": "sg-0abc",
}
LONGEST = "-" + "x" * (MAX_SUFFIX_LENGTH - 1)
ONE_TOO_MANY = LONGEST + "x"


def test_the_documented_limits():
    """ELB: "can have a maximum of 32 characters" (https://docs.aws.amazon.com/
    elasticloadbalancing/latest/APIReference/API_CreateLoadBalancer.html, and
    API_CreateTargetGroup.html); S3 buckets 63 (https://docs.aws.amazon.com/AmazonS3/latest/
    userguide/bucketnamingrules.html); IAM roles 64 (https://docs.aws.amazon.com/IAM/latest/
    APIReference/API_CreateRole.html); Lambda function names 64 (https://docs.aws.amazon.com/
    lambda/latest/api/API_CreateFunction.html); SQS queues 80 (https://docs.aws.amazon.com/
    AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html); DynamoDB tables 255
    (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/
    HowItWorks.NamingRulesDataTypes.html)."""
    assert NAME_LIMITS["LoadBalancer"] == NAME_LIMITS["TargetGroup"] == 32
    assert NAME_LIMITS["AuditBucket"] == NAME_LIMITS["RawBucket"] == 63
    assert NAME_LIMITS["TaskRole"] == NAME_LIMITS["CodeBuildRole"] == 64
    assert NAME_LIMITS["LambdaFunction"] == 64
    assert NAME_LIMITS["DlqName"] == 80
    assert NAME_LIMITS["AuditTable"] == 255
    # API Gateway documents no maximum for its names (CreateRestApi, CreateVpcLink,
    # CreateUsagePlan, CreateApiKey); every other name is limited.
    assert set(BASE_NAMES) - set(NAME_LIMITS) == {"RestApi", "VpcLink", "UsagePlan", "ApiKey"}


def test_the_target_group_sets_the_longest_suffix():
    assert MAX_SUFFIX_LENGTH == 32 - len("central-llm-vllm") == 16
    assert names_too_long("") == names_too_long("-staging") == names_too_long(LONGEST) == []


def test_a_suffix_too_long_names_each_name_and_its_limit():
    suffix = "-" + "x" * 19

    assert names_too_long(suffix) == [
        f"load balancer name central-llm-nlb{suffix} is 35 characters; ELB allows 32",
        f"target group name central-llm-vllm{suffix} is 36 characters; ELB allows 32",
    ]


@pytest.mark.parametrize(
    ("suffix", "suggested"),
    [("", "-789012"), ("-staging", "-staging-789012"), ("-abcdefghijk", "-789012")],
)
def test_a_suggested_suffix_for_names_another_account_holds_fits_every_name(suffix, suggested):
    """Bucket names are global (https://docs.aws.amazon.com/AmazonS3/latest/userguide/
    bucketnamingrules.html): the account's digits make them this account's own."""
    assert suggested_suffix(suffix, "123456789012") == suggested
    assert names_too_long(suggested) == []


def test_the_model_refuses_a_suffix_one_character_too_long():
    with pytest.raises(ValidationError) as caught:
        Environment(**REAL, suffix=ONE_TOO_MANY).spec()

    [message] = caught.value.message_dict["suffix"]
    assert message.startswith(f"A suffix may have at most {MAX_SUFFIX_LENGTH} characters: ")
    assert f"target group name central-llm-vllm{ONE_TOO_MANY} is 33 characters" in message
    Environment(**REAL, suffix=LONGEST).spec()  # the longest that fits is accepted


@pytest.mark.django_db
def test_the_environment_form_shows_why_the_suffix_is_refused():
    form = EnvironmentForm(
        data={**REAL, "suffix": ONE_TOO_MANY, "region": "eu-central-1"}, user=AnonymousUser()
    )

    assert not form.is_valid()
    [message] = form.errors["suffix"]
    assert f"at most {MAX_SUFFIX_LENGTH} characters" in message
    assert "ELB allows 32" in message
    assert not Environment.objects.filter(name="staging").exists()
