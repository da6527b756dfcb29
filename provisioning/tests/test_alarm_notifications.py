"""Alarms notify the environment's SNS topic, which e-mails the declared address. moto confirms
an e-mail subscription at once; real AWS's unconfirmed ones (PendingConfirmation, which cannot
be unsubscribed) come from a Stubber."""

from dataclasses import replace

import pytest
from botocore.stub import Stubber
from django.core.exceptions import ValidationError
from django.urls import reverse

from centralllm import aws
from provisioning import engine, state
from provisioning.models import Environment
from provisioning.resources.base import Context
from provisioning.resources.cloudwatch import TOPIC
from provisioning.resources.sns import PENDING_CONFIRMATION, AlarmTopic
from provisioning.tests.test_gpu_instances import apply_only

# Regions no other test uses, so the stubbed clients are ours alone.
TOPIC_REGION, PAGE_REGION = "eu-south-2", "af-south-1"
ACCOUNT = "123456789012"
ALARMS = ("cloudwatch.dlq_alarm", "cloudwatch.audit_backlog_alarm")


def test_every_alarm_notifies_the_topic_into_alarm_and_back_to_ok():
    ctx = Context(Environment(name="alarms", suffix="-al", is_local=True).spec())
    ctx.outputs[TOPIC] = {"arn": "arn:aws:sns:eu-central-1:123456789012:central-llm-alarms-al"}
    try:
        # The guide's three, the spool backlog, the quarantine and the two rollouts watch.
        assert len(state.ALARMS) == 7
        for cls in state.ALARMS:
            desired = cls(ctx).desired()
            assert TOPIC in cls.depends_on, cls.key
            assert desired["ActionsEnabled"] is True, cls.key
            assert desired["AlarmActions"] == desired["OKActions"] == [ctx.outputs[TOPIC]["arn"]]
    finally:
        ctx.close()


@pytest.mark.django_db
def test_applied_to_moto_and_changes_behind_our_back_are_drift_and_repaired(
    environment, client, viewer
):
    environment.alarm_email = "ops@example.com"
    environment.save()
    apply_only(environment.spec(), *ALARMS)
    sns, cloudwatch = aws.client("sns"), aws.client("cloudwatch")
    topic = f"arn:aws:sns:{environment.region}:{ACCOUNT}:central-llm-alarms{environment.suffix}"

    def emails() -> list[str]:
        found = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
        return [item["Endpoint"] for item in found if item["Protocol"] == "email"]

    def alarm(name: str) -> dict:
        return cloudwatch.describe_alarms(AlarmNames=[name + environment.suffix])["MetricAlarms"][0]

    assert emails() == ["ops@example.com"]
    for name in ("llm-audit-dlq-depth", "llm-audit-spool-backlog"):
        assert alarm(name)["AlarmActions"] == alarm(name)["OKActions"] == [topic]

    # By hand: one alarm's actions disabled, another's removed; the address changed.
    cloudwatch.disable_alarm_actions(AlarmNames=[f"llm-audit-dlq-depth{environment.suffix}"])
    backlog = alarm("llm-audit-spool-backlog")
    kept = ("Namespace", "MetricName", "Dimensions", "Statistic", "Period", "EvaluationPeriods")
    cloudwatch.put_metric_alarm(
        AlarmName=backlog["AlarmName"],
        Threshold=backlog["Threshold"],
        ComparisonOperator=backlog["ComparisonOperator"],
        TreatMissingData=backlog["TreatMissingData"],
        **{key: backlog[key] for key in kept},
    )
    environment.alarm_email = "oncall@example.com"
    environment.save()

    keys = {TOPIC, *ALARMS}
    drifted = {c.key: c.fields for c in engine.drift(environment) if c.key in keys}
    assert drifted == {
        TOPIC: {"emails": (["ops@example.com"], ["oncall@example.com"])},
        "cloudwatch.dlq_alarm": {"ActionsEnabled": (False, True)},
        "cloudwatch.audit_backlog_alarm": {
            "AlarmActions": ([], [topic]),
            "OKActions": ([], [topic]),
        },
    }
    for key in (TOPIC, *ALARMS):
        assert engine.apply_one(environment, key).startswith("updated")
    assert emails() == ["oncall@example.com"]  # and the old address unsubscribed
    assert alarm("llm-audit-spool-backlog")["OKActions"] == [topic]

    client.force_login(viewer)
    page = client.get(reverse("provisioning:environment", args=[environment.name]))
    assert (
        f"Alarms notify <strong>central-llm-alarms{environment.suffix}</strong>: "
        "e-mail to oncall@example.com</li>"
    ) in page.content.decode()

    environment.alarm_email = ""
    environment.save()
    assert engine.apply_one(environment, TOPIC) == "updated emails"
    assert emails() == []


def topic_answers(stubber: Stubber, arn: str, subscriptions: list[tuple[str, str, str]]) -> None:
    """GetTopicAttributes and ListSubscriptionsByTopic as AWS answers them; a subscription is
    (protocol, endpoint, its ARN or PendingConfirmation)."""
    stubber.add_response(
        "get_topic_attributes",
        {
            "Attributes": {
                "TopicArn": arn,
                "Owner": ACCOUNT,
                "DisplayName": "",
                "SubscriptionsConfirmed": str(
                    sum(sub_arn != PENDING_CONFIRMATION for _, _, sub_arn in subscriptions)
                ),
                "SubscriptionsPending": str(
                    sum(sub_arn == PENDING_CONFIRMATION for _, _, sub_arn in subscriptions)
                ),
                "SubscriptionsDeleted": "0",
            }
        },
        {"TopicArn": arn},
    )
    stubber.add_response(
        "list_subscriptions_by_topic",
        {
            "Subscriptions": [
                {
                    "SubscriptionArn": sub_arn,
                    "Owner": ACCOUNT,
                    "Protocol": protocol,
                    "Endpoint": endpoint,
                    "TopicArn": arn,
                }
                for protocol, endpoint, sub_arn in subscriptions
            ]
        },
        {"TopicArn": arn},
    )


@pytest.fixture
def topic(stubbed):
    """The topic of a real-AWS environment (its ARN from the declared account, no STS call)."""

    def make(alarm_email: str) -> tuple[AlarmTopic, Stubber, str]:
        ctx, stubber, _sleeps = stubbed("sns", TOPIC_REGION)
        ctx.spec = replace(ctx.spec, account_id=ACCOUNT, alarm_email=alarm_email)
        resource = AlarmTopic(ctx)
        return resource, stubber, f"arn:aws:sns:{TOPIC_REGION}:{ACCOUNT}:central-llm-alarms-stub"

    return make


def test_a_declared_address_awaiting_confirmation_is_not_drift(topic):
    resource, stubber, arn = topic("ops@example.com")
    topic_answers(stubber, arn, [("email", "ops@example.com", PENDING_CONFIRMATION)])

    current = resource.read()

    assert engine.diff(resource.desired(), current) == {}
    assert current["subscriptions"][0]["pending"] is True


def test_a_changed_address_is_subscribed_and_the_confirmed_old_one_unsubscribed(topic):
    resource, stubber, arn = topic("new@example.com")
    former = f"{arn}:0b1f7c2e-0000-4000-8000-000000000001"
    hook = f"{arn}:0b1f7c2e-0000-4000-8000-000000000002"
    topic_answers(
        stubber,
        arn,
        [
            ("email", "former@example.com", former),
            # Never confirmed: gets nothing, cannot be unsubscribed, gone after 48 hours.
            ("email", "typo@example.con", PENDING_CONFIRMATION),
            ("https", "https://hooks.example.com/alarms", hook),  # made by hand: left alone
        ],
    )
    stubber.add_response(
        "subscribe",
        {"SubscriptionArn": "pending confirmation"},
        {"TopicArn": arn, "Protocol": "email", "Endpoint": "new@example.com"},
    )
    stubber.add_response("unsubscribe", {}, {"SubscriptionArn": former})

    current = resource.read()
    fields = engine.diff(resource.desired(), current)
    assert fields == {"emails": (["former@example.com"], ["new@example.com"])}
    resource.update(resource.desired(), current, list(fields))


@pytest.mark.django_db
def test_the_environment_page_says_where_alarms_go_and_what_awaits_confirmation(client, viewer):
    environment = Environment.objects.create(
        name="notified", suffix="-ntf", is_local=True, region=PAGE_REGION
    )
    sns = aws.client("sns", region_name=PAGE_REGION)
    arn = f"arn:aws:sns:{PAGE_REGION}:{ACCOUNT}:central-llm-alarms-ntf"
    with Stubber(sns) as stubber:
        topic_answers(stubber, arn, [("email", "ops@example.com", PENDING_CONFIRMATION)])
        client.force_login(viewer)
        page = client.get(reverse("provisioning:environment", args=["notified"]))
        stubber.assert_no_pending_responses()

    assert (
        "Alarms notify <strong>central-llm-alarms-ntf</strong>: "
        "e-mail to ops@example.com (pending confirmation)</li>"
    ) in page.content.decode()
    assert state.live(environment)["notifications"]["subscriptions"] == [
        {"kind": "e-mail", "endpoint": "ops@example.com", "pending": True}
    ]


def test_the_alarm_email_is_optional_and_must_be_an_address():
    assert Environment(name="quiet", is_local=True).spec().alarm_email == ""
    with pytest.raises(ValidationError) as caught:
        Environment(name="typo", is_local=True, alarm_email="ops at example.com").spec()
    assert caught.value.message_dict == {"alarm_email": ["Enter a valid email address."]}
