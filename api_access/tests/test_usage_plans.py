"""Usage plans through the pages, against the local AWS (moto server): throttle and quota
changes, temporary increases and their scheduled revert, the environment lock, the roles."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from api_access import usage_plans
from api_access.models import QuotaIncrease
from centralllm import aws
from core.models import Action
from devtools.testing import at_once
from provisioning import engine
from provisioning.models import Environment, Run

pytestmark = pytest.mark.django_db

PLAN = {"rate": "20", "burst": "40", "quota_limit": "5000", "quota_period": "WEEK"}


@pytest.fixture(scope="module")
def deployed() -> tuple[str, str]:
    """An environment applied once for the module, in AWS only: each test declares it again."""
    tag = uuid.uuid4().hex[:8]
    name, suffix = f"plans-{tag}", f"-p{tag}"
    engine.apply(Environment(name=name, suffix=suffix, is_local=True).spec())
    return name, suffix


@pytest.fixture
def environment(db, deployed) -> Environment:
    name, suffix = deployed
    environment = Environment.objects.create(name=name, suffix=suffix, is_local=True)
    engine.apply_one(environment, "apigateway.usage_plan")  # undo what an earlier test set
    return environment


@pytest.fixture
def undeployed(db) -> Environment:
    """Never applied: enough where nothing reaches AWS."""
    return Environment.objects.create(name="nowhere", suffix="-nowhere", is_local=True)


def in_aws(environment: Environment) -> dict:
    plans = aws.client("apigateway").get_paginator("get_usage_plans").paginate()
    name = f"central-llm-usage-plan{environment.suffix}"
    return next(item for page in plans for item in page["items"] if item["name"] == name)


def test_an_admin_changes_throttle_and_quota(client, admin_user, environment):
    client.force_login(admin_user)

    response = client.post(reverse("usage-plan-change", args=[environment.name]), PLAN)

    assert response.status_code == 302
    plan = in_aws(environment)
    assert plan["throttle"] == {"burstLimit": 40, "rateLimit": 20.0}
    assert plan["quota"]["limit"] == 5000 and plan["quota"]["period"] == "WEEK"
    action = Action.objects.get(verb="usage_plan.change")
    assert action.actor_name == "ada"
    assert action.before == {"throttle_burst_limit": 50, "throttle_rate_limit": 100,
                             "quota_limit": 100_000, "quota_period": "MONTH"}  # fmt: skip
    assert action.after == {"throttle_burst_limit": 40, "throttle_rate_limit": 20,
                            "quota_limit": 5000, "quota_period": "WEEK"}  # fmt: skip
    page = client.get(response["Location"]).content.decode()
    assert "changed in AWS" in page and "Drifted" not in page


def test_a_temporary_increase_is_taken_back_at_the_end_of_its_period(
    client, admin_user, environment
):
    client.force_login(admin_user)
    url = reverse("usage-plan-increase", args=[environment.name])

    client.post(url, {"extra": "500", "reason": "launch week"})

    assert in_aws(environment)["quota"]["limit"] == 100_500
    increase = QuotaIncrease.objects.get()
    assert increase.until == usage_plans.period_end(timezone.now(), "MONTH")
    assert increase.until.day == 1 and increase.until.hour == 0
    granted = Action.objects.get(verb="usage_plan.increase")
    assert granted.actor_name == "ada" and granted.parameters["reason"] == "launch week"
    assert (granted.before, granted.after) == ({"quota": 100_000}, {"quota": 100_500})
    page = client.get(reverse("usage-plan", args=[environment.name])).content.decode()
    assert "launch week" in page and "not yet" in page
    assert "1: +500 requests" in client.get(reverse("usage-plans")).content.decode()

    assert usage_plans.revert_due_increases(now=increase.until - timedelta(seconds=1)) == 0
    assert usage_plans.revert_due_increases(now=increase.until + timedelta(seconds=1)) == 1

    assert in_aws(environment)["quota"]["limit"] == 100_000
    increase.refresh_from_db()
    assert increase.reverted_at is not None
    reverted = Action.objects.get(verb="usage_plan.revert")
    assert reverted.actor is None and reverted.actor_name.startswith("command")
    assert reverted.parameters["scheduled"] is True
    assert (reverted.before, reverted.after) == ({"quota": 100_500}, {"quota": 100_000})
    assert usage_plans.revert_due_increases(now=increase.until + timedelta(days=1)) == 0
    live, _ = usage_plans.live(environment)
    assert engine.diff(usage_plans.declared(environment), live) == {}


@pytest.mark.django_db(transaction=True)
def test_two_schedulers_take_an_increase_back_once(admin_user, environment):
    increase = usage_plans.grant_increase(environment, extra=10, reason="demo", actor=admin_user)
    after = increase.until + timedelta(minutes=1)

    counts = at_once(lambda: usage_plans.revert_due_increases(now=after))

    assert sorted(counts) == [0, 1]
    assert Action.objects.filter(verb="usage_plan.revert").count() == 1
    assert in_aws(environment)["quota"]["limit"] == 100_000


def test_nothing_changes_while_an_apply_holds_the_environment(client, admin_user, environment):
    run = Run.objects.create(
        environment=environment, kind="apply", status="running", started_by_name="otto"
    )
    client.force_login(admin_user)

    changed = client.post(reverse("usage-plan-change", args=[environment.name]), PLAN)
    increased = client.post(
        reverse("usage-plan-increase", args=[environment.name]), {"extra": "5", "reason": "x"}
    )

    for response in (changed, increased):
        assert response.status_code == 200
        assert f"is held by apply #{run.pk}, started by otto" in response.content.decode()
    environment.refresh_from_db()
    assert environment.throttle_rate_limit == 100
    assert in_aws(environment)["throttle"]["rateLimit"] == 100.0
    assert not QuotaIncrease.objects.exists() and not Action.objects.exists()


def test_the_role_matrix(client, viewer, operator, admin_user, undeployed):
    reads = [reverse("usage-plans"), reverse("usage-plan", args=[undeployed.name])]
    changes = [reverse(name, args=[undeployed.name])
               for name in ("usage-plan-change", "usage-plan-increase")]  # fmt: skip
    client.force_login(viewer)
    assert [client.get(url).status_code for url in reads] == [403, 403]
    assert [client.post(url, PLAN).status_code for url in changes] == [403, 403]
    client.force_login(operator)
    assert [client.get(url).status_code for url in reads] == [200, 200]
    assert "Save and apply" not in client.get(reads[1]).content.decode()
    assert [client.post(url, PLAN).status_code for url in changes] == [403, 403]
    client.force_login(admin_user)
    assert [client.get(url).status_code for url in reads] == [200, 200]
    page = client.get(reads[1]).content.decode()
    assert "Save and apply" in page and "not in AWS: apply the environment first" in page
    # Allowed, and refused only because nothing of it is in AWS yet.
    refused = client.post(changes[0], PLAN).content.decode()
    assert "API Gateway" in refused and "is missing: apply the environment first" in refused


@pytest.mark.parametrize(
    ("view", "fields", "message"),
    [
        ("usage-plan-change", {"rate": ""}, "This field is required."),
        ("usage-plan-change", {"burst": "-1"}, "The burst is between 0 and 2147483647, not -1."),
        ("usage-plan-change", {"rate": "-5"}, "The rate is between 0 and 2147483647, not -5."),
        ("usage-plan-change", {"rate": "ten"}, "Enter a whole number."),
        ("usage-plan-change", {"quota_limit": str(2**31)}, "The quota is between 0 and"),
        ("usage-plan-change", {"quota_period": "YEAR"}, "YEAR is not one of the available"),
        ("usage-plan-change", {"burst": "0"}, "A burst of 0 lets no request through"),
        ("usage-plan-increase", {"extra": "0"}, "An increase is 1 request or more."),
        ("usage-plan-increase", {"extra": "-3"}, "The increase is between 0 and"),
        ("usage-plan-increase", {"extra": "lots"}, "Enter a whole number."),
        ("usage-plan-increase", {"reason": "   "}, "This field is required."),
    ],
)
def test_bad_input_changes_nothing(client, admin_user, undeployed, view, fields, message):
    client.force_login(admin_user)
    data = {**PLAN, "extra": "100", "reason": "why", **fields}

    response = client.post(reverse(view, args=[undeployed.name]), data)

    assert response.status_code == 200
    assert message in response.content.decode()
    assert Environment.objects.get(pk=undeployed.pk).throttle_rate_limit == 100
    assert not QuotaIncrease.objects.exists() and not Action.objects.exists()


@pytest.mark.parametrize(
    ("period", "moment", "end"),
    [
        ("DAY", datetime(2025, 3, 9, 23, 59, tzinfo=UTC), datetime(2025, 3, 10, tzinfo=UTC)),
        ("WEEK", datetime(2025, 3, 12, 8, tzinfo=UTC), datetime(2025, 3, 16, tzinfo=UTC)),
        ("WEEK", datetime(2025, 3, 16, 0, tzinfo=UTC), datetime(2025, 3, 23, tzinfo=UTC)),
        ("MONTH", datetime(2025, 12, 31, 23, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)),
        ("MONTH", datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)),
    ],
)
def test_an_increase_lasts_until_the_quota_period_ends(period, moment, end):
    assert usage_plans.period_end(moment, period) == end


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_admin_grants_an_increase_in_the_browser(page, live_server, admin_user, environment):
    page.goto(f"{live_server.url}/login/?next=/usage-plans/")
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill("ada-password-123")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name=environment.name).click()

    page.get_by_label("Extra requests").fill("2500")
    page.get_by_label("Reason").fill("quarter-end batch")
    page.get_by_role("button", name="Grant the increase").click()

    expect(page.locator(".messages")).to_contain_text("increased until the end of its period")
    expect(page.locator("table[data-increases]")).to_contain_text("quarter-end batch")
    expect(page.locator("table[data-plan]")).to_contain_text("102500")
    assert in_aws(environment)["quota"]["limit"] == 102_500
    page.screenshot(path="var/usage-plan.png", full_page=True)
