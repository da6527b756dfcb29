"""The dashboard's alert sources, each against the real local services: keys and usage in the
local AWS (moto's API Gateway, DynamoDB Local's rollups), the dead-letter queue in moto's SQS,
rotations, audit days and runs in the database; and a source that cannot be read."""

import uuid
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from api_access.models import KeyRotation
from audit_explorer import audit_runs
from audit_explorer.models import AuditDay, DeadLetter
from centralllm import aws
from console import alerts
from console.alerts import CRITICAL, WARNING, Alert
from console.tests.conftest import make_key
from provisioning import runs
from provisioning.models import Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def aws_calls():
    """``aws_calls(service)``: the operations that service's shared client makes from then on."""
    watched = []

    def watch(service: str) -> list[str]:
        made: list[str] = []
        client = aws.client(service)
        client.meta.events.register(
            "before-call", lambda model, **_: made.append(model.name), unique_id="alerts-test"
        )
        watched.append(client)
        return made

    yield watch
    for client in watched:
        client.meta.events.unregister("before-call", unique_id="alerts-test")


def test_keys_at_80_and_95_percent_of_the_quota_and_expiring(keyed, admin_user, aws_calls):
    full = make_key(keyed, admin_user, "full", requests=10)  # of a quota of 10
    busy = make_key(keyed, admin_user, "busy", requests=8)
    make_key(keyed, admin_user, "quiet", requests=1)
    soon = make_key(keyed, admin_user, "soon", expires=timezone.now().date() + timedelta(days=3))
    by_key = {alert.url.split("/keys/")[1].strip("/"): alert for alert in alerts.keys(keyed)}

    assert set(by_key) == {full, busy, soon}
    assert by_key[full].severity == CRITICAL and "is at 100% of its quota" in by_key[full].text
    assert by_key[busy].severity == WARNING and "is at 80% of its quota" in by_key[busy].text
    expires = timezone.now().date() + timedelta(days=3)
    assert by_key[soon].text.endswith(f"expires on {expires}: rotate it")
    assert by_key[busy].url == reverse("api-key-detail", args=[keyed.name, busy])

    # Noted now, as the scheduler notes it every minute: the next dashboards read no AWS.
    gateway, dynamodb = aws_calls("apigateway"), aws_calls("dynamodb")
    assert len(alerts.keys(keyed)) == 3
    assert gateway == [] and dynamodb == []


def test_a_never_applied_environment_has_no_key_alerts(audited_environment):
    assert alerts.keys(audited_environment("bare")) == []


def test_rotations_ending_within_a_day_or_overdue(audited_environment):
    environment = audited_environment("rotating")
    now = timezone.now()

    def rotation(name: str, grace: timedelta, quiet: int = 30, **fields) -> KeyRotation:
        return KeyRotation.objects.create(
            id=uuid.uuid4(),
            environment=environment,
            old_key_id=f"id-{name}",
            old_key_name=name,
            grace_until=now + grace,
            quiet_minutes=quiet,
            **fields,
        )

    rotation("ending", timedelta(hours=3))
    rotation("overdue", -timedelta(hours=2), old_key_last_used="2026-11-27T05")
    rotation("quieting", -timedelta(minutes=10))  # in its quiet time: the scheduler will do it
    rotation("later", timedelta(days=3))
    rotation("done", -timedelta(hours=2), status=KeyRotation.Status.DONE)

    found = {
        alert.url.split("/keys/")[1].strip("/"): alert for alert in alerts.rotations(environment)
    }

    assert set(found) == {"id-ending", "id-overdue"}
    assert (
        "the old key of ending (id-ending) is disabled in 2 h, once quiet"
        in found["id-ending"].text
    )
    overdue = found["id-overdue"].text
    assert "still enabled, its grace over 2 h ago" in overdue and "last: 2026-11-27T05" in overdue


def test_dead_letters_waiting_and_in_the_queue(audited_environment):
    environment = audited_environment("letters")
    sqs = environment.client("sqs")
    url = sqs.create_queue(QueueName=environment.resource_name("DlqName"))["QueueUrl"]
    for n in range(2):
        sqs.send_message(QueueUrl=url, MessageBody=f'{{"Records": [], "n": {n}}}')
    for status in (DeadLetter.Status.WAITING, DeadLetter.Status.REDRIVEN):
        DeadLetter.objects.create(
            environment=environment,
            message_id=status,
            body="{}",
            status=status,
            failed_at=timezone.now(),
        )

    assert alerts.dead_letters(environment) == [
        Alert(
            WARNING,
            environment.name,
            "1 dead letter waits for a redrive or a discard; "
            "2 more in the dead-letter queue, not collected yet",
            reverse("audit_explorer:dead-letters", args=[environment.name]),
        )
    ]


def test_an_unreadable_dead_letter_queue_is_an_alert_and_the_waiting_ones_still_show(
    audited_environment, monkeypatch
):
    environment = audited_environment("sqs-down")
    DeadLetter.objects.create(
        environment=environment, message_id="m", body="{}", failed_at=timezone.now()
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:1")  # SQS down, the rest up

    waiting, unreadable = alerts.dead_letters(environment)

    assert waiting.text == "1 dead letter waits for a redrive or a discard"
    assert unreadable.text.startswith("could not read dead letters: Could not connect")
    assert unreadable.url == waiting.url


def test_incomplete_or_changed_days_of_the_last_30(audited_environment):
    environment = audited_environment("days")
    today = audit_runs.today()

    def day(days_ago: int, **fields) -> AuditDay:
        counts = dict(objects_count=5, items_count=5, rollup_count=5)
        return AuditDay.objects.create(
            environment=environment, day=today - timedelta(days=days_ago), **{**counts, **fields}
        )

    day(40, complete=False, missing_count=9)  # outside the calendar
    day(2, complete=True)
    missing = day(1, complete=False, missing_count=3, dead_lettered=1, items_count=2)

    [alert] = alerts.audit_days(environment)
    assert alert.severity == CRITICAL
    assert alert.text == f"{missing.day} is incomplete: 3 missing (1 dead-lettered)"
    assert alert.url == reverse("audit_explorer:audit-day", args=[environment.name, missing.day])

    day(3, complete=True, seal_status="tampered")
    [alert] = alerts.audit_days(environment)
    assert alert.text.startswith(f"2 days of the last 30 need a look; the newest, {missing.day}")
    assert alert.url == reverse("audit_explorer:audit-days", args=[environment.name])


def test_a_stalled_run_with_what_it_last_said(audited_environment, settings):
    environment = audited_environment("stalled")
    settings.RUN_STALLED_SECONDS = 120
    stalled = runs.start(environment, "drift", actor=None, enqueue=False)
    runs.log(stalled, "waiting for the NLB to become active")
    quiet_since = timezone.now() - timedelta(minutes=5)
    Run.objects.filter(pk=stalled.pk).update(status="running", heartbeat_at=quiet_since)
    lively = runs.start(environment, "plan", actor=None, enqueue=False)
    Run.objects.filter(pk=lively.pk).update(status="running", heartbeat_at=timezone.now())

    assert alerts.stalled_runs(environment) == [
        Alert(
            WARNING,
            environment.name,
            f"drift #{stalled.pk} is stalled, last heard from 5 min ago; "
            "it last said: waiting for the NLB to become active",
            stalled.get_absolute_url(),
        )
    ]


def test_each_user_gets_what_they_may_follow_and_a_failing_source_is_its_own_alert(
    troubled, admin_user, viewer, aws_calls, monkeypatch
):
    found = alerts.gather([troubled], admin_user)
    assert [alert.severity for alert in found] == [CRITICAL, WARNING, WARNING, WARNING]
    day, key, letters, run = (alert.text for alert in found)  # the critical first
    assert day.endswith("is incomplete: 2 missing (0 dead-lettered)")
    assert key.endswith("is at 90% of its quota") and letters.startswith("1 dead letter waits")
    assert "is stalled" in run

    gateway = aws_calls("apigateway")
    assert [alert.text for alert in alerts.gather([troubled], viewer)] == [day, letters, run]
    assert gateway == []  # a source the viewer may not see is not even read

    cache.clear()  # Redis emptied: no note of the keys kept, and no list of them
    monkeypatch.setenv("AWS_ENDPOINT_URL_APIGATEWAY", "http://127.0.0.1:1")  # API Gateway down
    found = alerts.gather([troubled], admin_user)
    assert [alert.text for alert in found if "could not" not in alert.text] == [day, letters, run]
    [unreadable] = [alert for alert in found if "could not" in alert.text]
    assert unreadable.text.startswith("could not read API keys: Could not connect")
    assert unreadable.url == reverse("api-key-list", args=[troubled.name])
