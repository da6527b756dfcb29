import pytest
from django.urls import reverse
from django.utils import timezone

from core.models import Action
from provisioning import state
from provisioning.models import Environment, ResourceState, Run

pytestmark = pytest.mark.django_db


def test_an_operator_copies_an_environment_into_staging(client, operator):
    client.force_login(operator)
    form = client.get(reverse("provisioning:environment-create"), {"copy": "local"})
    assert form.status_code == 200 and "copied from local" in form.content.decode()
    initial = form.context["form"].initial
    assert initial["is_local"] is True and "name" not in initial

    response = client.post(
        reverse("provisioning:environment-create"),
        {**initial, "name": "staging", "suffix": "-staging"},
    )

    assert response["Location"] == reverse("provisioning:environment", args=["staging"])
    staging = Environment.objects.get(name="staging")
    assert staging.suffix == "-staging" and staging.is_local
    action = Action.objects.get(verb="environment.create")
    assert action.actor_name == "otto" and action.after["suffix"] == "-staging"


def test_the_models_validation_is_shown_on_the_form(client, operator):
    client.force_login(operator)
    local = Environment.objects.get(name="local")
    response = client.post(
        reverse("provisioning:environment-edit", args=["local"]),
        {"name": "local", "region": "eu-central-1", "suffix": "Bad Suffix", "is_local": ""},
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert "A real-AWS environment needs its VPC." in page
    assert "Use &#x27;&#x27; or a suffix like &#x27;-staging&#x27;" in page
    local.refresh_from_db()
    assert local.is_local and local.suffix == ""
    assert not Action.objects.exists()


def test_an_edit_records_what_changed_before_and_after(client, operator):
    client.force_login(operator)
    form = client.get(reverse("provisioning:environment-edit", args=["local"])).context["form"]
    data = {name: value for name, value in form.initial.items() if value is not None}
    data["desired_count"] = 3

    client.post(reverse("provisioning:environment-edit", args=["local"]), data)

    action = Action.objects.get(verb="environment.update")
    assert action.before == {"desired_count": 1} and action.after == {"desired_count": 3}


def test_delete_waits_until_a_destroy_left_nothing_it_deletes(client, operator):
    environment = Environment.objects.create(name="gone", suffix="-gone", is_local=True)
    seen = {"environment": environment, "state": "present", "seen_at": timezone.now()}
    service = ResourceState.objects.create(key="ecs.service", title="ECS service", **seen)
    ResourceState.objects.create(key="s3.audit_bucket", title="S3 audit bucket", kept=True, **seen)
    client.force_login(operator)
    url = reverse("provisioning:environment-delete", args=["gone"])

    client.post(url, {"confirm": "gone"})
    assert Environment.objects.filter(name="gone").exists()
    ResourceState.objects.filter(pk=service.pk).update(state="unknown")  # a destroy that failed
    client.post(url, {"confirm": "gone"})
    assert Environment.objects.filter(name="gone").exists()

    ResourceState.objects.filter(pk=service.pk).update(state="missing")
    client.post(url, {"confirm": "wrong"})
    assert Environment.objects.filter(name="gone").exists()
    page = client.get(reverse("provisioning:environment", args=["gone"])).content.decode()
    assert "Nothing of it is left in AWS but what a destroy keeps: S3 audit bucket." in page
    client.post(url, {"confirm": "gone"})
    assert not Environment.objects.filter(name="gone").exists()
    assert not ResourceState.objects.exists()
    assert Action.objects.get(verb="environment.delete").before["suffix"] == "-gone"


def test_destroy_needs_the_name_typed(client, operator):
    client.force_login(operator)
    response = client.post(reverse("provisioning:run-destroy", args=["local"]), {"confirm": "x"})
    assert response.status_code == 200
    assert "Destroy not confirmed: type the environment&#x27;s name" in response.content.decode()
    response = client.post(
        reverse("provisioning:run-destroy", args=["local"]),
        {"confirm": "local", "delete_data": "on", "confirm_data": "yes"},
    )
    assert "Deleting the audit data not confirmed" in response.content.decode()
    assert not Run.objects.exists()


def test_history_filters_by_person_and_kind(client, viewer):
    local = Environment.objects.get(name="local")
    Run.objects.create(environment=local, kind="plan", started_by_name="otto")
    Run.objects.create(environment=local, kind="drift", started_by_name="ada")
    client.force_login(viewer)

    page = client.get(reverse("provisioning:runs"), {"person": "ada"}).content.decode()

    assert "drift #" in page and "plan #" not in page
    page = client.get(reverse("provisioning:runs"), {"kind": "plan"}).content.decode()
    assert "plan #" in page and "drift #" not in page


def test_admins_browse_the_action_log(client, operator, admin_user):
    client.force_login(operator)
    form = client.get(reverse("provisioning:environment-edit", args=["local"])).context["form"]
    data = {name: value for name, value in form.initial.items() if value is not None}
    client.post(
        reverse("provisioning:environment-edit", args=["local"]), {**data, "desired_count": 4}
    )
    client.force_login(admin_user)

    page = client.get(reverse("actions"), {"verb": "environment."}).content.decode()

    assert "environment.update" in page and "otto" in page
    assert "&#x27;desired_count&#x27;: 1" in page and "&#x27;desired_count&#x27;: 4" in page


GOVERNED_VALUES = {
    "quota_limit": 2_000_000_000,
    "throttle_rate_limit": 100_000,
    "audit_retention_days": 1,
    "raw_retention_days": 1,
    "redaction_rules": '[{"name": "all", "pattern": "."}]',
    "hf_token_secret_arn": "arn:aws:secretsmanager:eu-central-1:123456789012:secret:other-x",
}


def test_an_operator_cannot_change_what_only_admins_may(client, operator):
    """The usage plan pages refuse an operator these; the environment form did not."""
    client.force_login(operator)
    edit = reverse("provisioning:environment-edit", args=["local"])
    form = client.get(edit).context["form"]
    data = {name: value for name, value in form.initial.items() if value is not None}

    client.post(edit, {**data, **GOVERNED_VALUES, "desired_count": 2})

    local = Environment.objects.get(name="local")
    assert local.desired_count == 2  # the rest of the edit is saved
    assert (local.quota_limit, local.throttle_rate_limit) == (100_000, 100)
    assert (local.audit_retention_days, local.raw_retention_days) == (400, 90)
    assert local.redaction_rules == "" and local.hf_token_secret_arn == ""
    assert "Only an admin changes this." in client.get(edit).content.decode()


def test_an_operator_creating_an_environment_gets_the_governed_defaults(client, operator):
    client.force_login(operator)
    initial = client.get(reverse("provisioning:environment-create"), {"copy": "local"})
    data = {**initial.context["form"].initial, "name": "staging", "suffix": "-staging"}

    client.post(reverse("provisioning:environment-create"), {**data, **GOVERNED_VALUES})

    staging = Environment.objects.get(name="staging")
    assert (staging.quota_limit, staging.audit_retention_days) == (100_000, 400)
    assert staging.hf_token_secret_arn == ""


def test_an_admin_changes_the_governed_settings(client, admin_user):
    client.force_login(admin_user)
    edit = reverse("provisioning:environment-edit", args=["local"])
    form = client.get(edit).context["form"]
    data = {name: value for name, value in form.initial.items() if value is not None}

    client.post(edit, {**data, "quota_limit": 5000, "raw_retention_days": 30})

    local = Environment.objects.get(name="local")
    assert (local.quota_limit, local.raw_retention_days) == (5000, 30)
    action = Action.objects.get(verb="environment.update")
    assert action.actor_name == "ada" and action.after["quota_limit"] == 5000


def test_an_environment_never_applied_shows_no_service_and_no_aws_error(client, viewer):
    """ECS answers ClusterNotFoundException before the first apply: once shown raw on the
    page, now the plain "No ECS service yet"."""
    environment = Environment.objects.create(name="fresh", suffix="-fresh0", is_local=True)
    live = state.read_live(environment)
    assert live["service"] == {"exists": False}
    client.force_login(viewer)
    page = client.get(reverse("provisioning:environment", args=["fresh"])).content
    assert b"ClusterNotFoundException" not in page
