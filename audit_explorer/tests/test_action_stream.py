"""The action log to the audit buckets: which buckets, the line, write-once batches, several
workers at once, and the lag shown with its reason."""

import re
from datetime import timedelta
from unittest.mock import ANY

import pytest
from botocore.stub import Stubber
from django.urls import reverse
from django.utils import timezone

from audit_explorer import action_stream
from audit_explorer.models import ActionBatch, ActionShipment
from console import alerts
from core import actions
from core.models import Action
from devtools.testing import at_once, shipped_actions
from provisioning.models import Environment

pytestmark = pytest.mark.django_db


def _bucket(environment: Environment) -> str:
    [(_, name)] = action_stream.audit_buckets(environment)
    return name


def _ids(bucket: str) -> list[int]:
    return sorted(line["id"] for lines in shipped_actions(bucket).values() for line in lines)


def test_an_environments_actions_go_to_its_bucket_and_the_consoles_own_to_every_bucket(
    bucketed_environment, admin_user, settings
):
    settings.CONSOLE_HOST_NAME = "console.example.com"
    berlin, paris = bucketed_environment("berlin"), bucketed_environment("paris")
    unapplied = Environment.objects.create(name="unapplied", suffix="-unapplied", is_local=True)
    quota = actions.record(
        "environment.update", berlin, actor=admin_user,
        before={"quota_limit": 10}, after={"quota_limit": 20},
    )  # fmt: skip
    key = actions.record_about(
        "api_key.disable", "apigateway.api_key", "k1", "key one", actor=admin_user, within=paris
    )
    preference = actions.record_about(
        "preference.timezone", "auth.user", str(admin_user.pk), "ada", actor=admin_user,
        after={"timezone": "Europe/Berlin"},
    )  # fmt: skip
    actions.record("environment.update", unapplied, actor=admin_user)

    assert action_stream.ship() == 2  # one object per bucket

    [(key_name, lines)] = shipped_actions(_bucket(berlin)).items()
    assert re.fullmatch(rf"actions/{quota.at:%Y/%m/%d}/\d{{6}}-[0-9a-f]{{32}}\.jsonl", key_name)
    assert [line["id"] for line in lines] == [quota.pk, preference.pk]
    assert lines[0] == {
        "id": quota.pk,
        "at": quota.at.isoformat().replace("+00:00", "Z"),
        "actor_name": "ada",
        "verb": "environment.update",
        "object_type": "provisioning.environment",
        "object_id": str(berlin.pk),
        "object_repr": str(berlin),
        "parameters": {},
        "before": {"quota_limit": 10},
        "after": {"quota_limit": 20},
        "host": "console.example.com",
    }
    assert _ids(_bucket(paris)) == [key.pk, preference.pk]
    assert not ActionShipment.objects.filter(environment=unapplied).exists()
    assert action_stream.ship() == 0  # nothing twice


def test_a_batch_put_again_after_its_worker_died_finds_its_object_and_writes_no_second(
    bucketed_environment, admin_user
):
    environment = bucketed_environment("crash")
    made = actions.record("environment.update", environment, actor=admin_user)
    assert action_stream.ship() == 1
    # As a worker leaves it that died after its PUT, before it noted the batch shipped.
    ActionBatch.objects.update(shipped_at=None, next_try_at=timezone.now())

    assert action_stream.ship() == 1  # S3 answered 412: it is there

    assert [len(lines) for lines in shipped_actions(_bucket(environment)).values()] == [1]
    assert _ids(_bucket(environment)) == [made.pk]


def _put_request(batch: ActionBatch) -> dict:
    return {
        "Bucket": batch.bucket,
        "Key": batch.key,
        "Body": ANY,
        "ContentType": "application/x-ndjson",
        "IfNoneMatch": "*",
        "ChecksumAlgorithm": "CRC32",
    }


def test_s3s_documented_answers_to_a_conditional_write(bucketed_environment, admin_user):
    """AWS's answers as https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-
    writes.html documents them: 409 ConditionalRequestConflict when a write to the same key
    races ours (moto never answers it): tried again later; 412 PreconditionFailed when the
    key holds an object: ours, so the batch is shipped."""
    environment = bucketed_environment("stubbed")
    actions.record("environment.update", environment, actor=admin_user)
    s3 = action_stream.s3_client(environment.region)
    with Stubber(s3) as stubber:
        stubber.add_client_error(
            "put_object", "ConditionalRequestConflict", "A conflicting operation occurred.", 409
        )
        assert action_stream.ship() == 0
        batch = ActionBatch.objects.get()
        stubber.assert_no_pending_responses()

        assert batch.attempts == 1 and batch.shipped_at is None
        assert "ConditionalRequestConflict" in batch.last_error
        waited = (batch.next_try_at - timezone.now()).total_seconds()
        assert action_stream.SHIP_SECONDS - 2 < waited <= action_stream.SHIP_SECONDS
        assert action_stream.ship() == 0  # not due yet: no request (the Stubber has none)

        ActionBatch.objects.update(next_try_at=timezone.now())
        stubber.add_client_error(
            "put_object",
            "PreconditionFailed",
            "At least one of the pre-conditions you specified did not hold",
            412,
            expected_params=_put_request(batch),
        )
        assert action_stream.ship() == 1
    batch.refresh_from_db()
    assert batch.shipped_at is not None


def test_retries_back_off_up_to_a_limit(bucketed_environment, admin_user):
    environment = bucketed_environment("backoff")
    actions.record("environment.update", environment, actor=admin_user)
    waits = []
    with Stubber(action_stream.s3_client(environment.region)) as stubber:
        for _ in range(4):
            stubber.add_client_error("put_object", "InternalError", "We encountered an error.", 500)
            ActionBatch.objects.update(next_try_at=timezone.now())
            action_stream.ship()
            batch = ActionBatch.objects.get()
            waits.append(round((batch.next_try_at - timezone.now()).total_seconds()))
    assert waits == [10, 20, 30, 30]
    assert batch.attempts == 4


@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_ship_every_action_once(bucketed_environment, admin_user, monkeypatch):
    monkeypatch.setattr(action_stream, "BATCH_ACTIONS", 4)
    first, second = bucketed_environment("first"), bucketed_environment("second")
    made = [actions.record("environment.update", first, actor=admin_user) for _ in range(9)]
    made += [actions.record("user.update", admin_user, actor=admin_user) for _ in range(9)]

    shipped = sum(at_once(action_stream.ship))
    shipped += action_stream.ship()  # what a pass left for the next

    everywhere = [action.pk for action in made[9:]]
    assert _ids(_bucket(first)) == sorted(action.pk for action in made)
    assert _ids(_bucket(second)) == everywhere
    assert (
        shipped == ActionBatch.objects.count() == 5 + 3
    )  # 18 lines for the first, 9 for the second
    assert not ActionShipment.objects.filter(batch=None).exists()


def test_a_lag_shows_with_the_last_s3_error_on_the_action_log_and_the_dashboard(
    bucketed_environment, admin_user, client
):
    environment = bucketed_environment("lagging")
    environment.resources.update(outputs={"name": "central-llm-audit-deleted-by-hand"})
    actions.record("environment.update", environment, actor=admin_user)
    action_stream.ship()
    assert not action_stream.lags()  # just made: no lag yet
    Action.objects.update(at=timezone.now() - timedelta(minutes=6))
    client.force_login(admin_user)

    page = client.get(reverse("actions")).content.decode()

    [lag] = re.findall(r"<p [^>]*data-action-lag>(.*?)</p>", page, re.S)
    assert "central-llm-audit-deleted-by-hand" in lag and "NoSuchBucket" in lag
    [alert] = [a for a in alerts.gather([environment], admin_user) if "action log" in a.text]
    assert alert.url == reverse("actions")
    assert "1 action of the action log waits for audit bucket" in alert.text
    assert "6 min ago" in alert.text and "NoSuchBucket" in alert.text


def test_waiting_actions_that_no_put_failed_point_at_the_scheduler(
    bucketed_environment, admin_user
):
    environment = bucketed_environment("unscheduled")
    actions.record("environment.update", environment, actor=admin_user)
    Action.objects.update(at=timezone.now() - timedelta(minutes=6))

    [lag] = action_stream.lags(environment)

    assert lag.waiting == 1 and "rqcron console.cron" in lag.error
