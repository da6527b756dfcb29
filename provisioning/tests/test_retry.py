"""Retrying a run asks what starting it asks: the kind's permission, and a destroy's typed
phrases, whoever retries it and from wherever."""

import re

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from conftest import make_user
from core.refusals import Refused
from provisioning import engine, runs
from provisioning.models import Environment, Run


@pytest.fixture
def provisioner(django_user_model):
    """May plan, apply and destroy, but not roll out."""
    user = make_user(django_user_model, "pia", None)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="core", codename__in=["view_state", "start_provisioning"]
        )
    )
    return user


def failed(environment: Environment, kind: str, **parameters) -> Run:
    return Run.objects.create(
        environment=environment,
        kind=kind,
        status="failed",
        parameters=parameters,
        started_by_name="otto",
    )


def retry_url(run: Run) -> str:
    return reverse("provisioning:run-retry", args=[run.pk])


@pytest.mark.django_db
def test_a_rollout_is_refused_as_a_retry_as_it_is_new(client, provisioner, environment):
    rollout = failed(environment, "rollout", source_version="main")
    client.force_login(provisioner)

    started = client.post(
        reverse("provisioning:run-start", args=[environment.name]), {"kind": "rollout"}
    )
    retried = client.post(retry_url(rollout))

    assert (started.status_code, retried.status_code) == (403, 403)
    assert list(environment.runs.all()) == [rollout]


@pytest.mark.django_db
def test_the_permission_is_checked_whoever_starts_or_retries(provisioner, viewer, environment):
    rollout = failed(environment, "rollout", source_version="main")

    with pytest.raises(PermissionDenied):
        runs.retry(rollout, actor=provisioner)
    with pytest.raises(PermissionDenied):
        runs.start(environment, "rollout", actor=provisioner, parameters={"source_version": "v"})
    with pytest.raises(PermissionDenied):
        runs.start(environment, "check", actor=viewer, parameters={"day": "2026-01-01"})
    assert list(environment.runs.all()) == [rollout]
    # The scheduler and the env command act as the system, as before.
    assert runs.retry(rollout, actor=None).retry_of == rollout


@pytest.mark.django_db
def test_a_retried_destroy_asks_for_the_typed_phrases_again(client, operator, environment):
    name, phrase = environment.name, engine.data_confirmation(environment.name)
    destroy = failed(environment, "destroy", confirm=name, delete_data=True, confirm_data=phrase)
    client.force_login(operator)

    run_page = client.get(reverse("provisioning:run", args=[destroy.pk])).content.decode()
    form = client.get(retry_url(destroy))
    bare = client.post(retry_url(destroy))
    wrong = client.post(retry_url(destroy), {"confirm": name, "delete_data": "on"})

    assert f'href="{retry_url(destroy)}"' in run_page
    assert form.status_code == 200 and phrase in form.content.decode()
    assert re.search(r'name="delete_data"[^>]* checked', form.content.decode())
    assert bare.status_code == wrong.status_code == 200
    assert "Deleting the audit data not confirmed" in wrong.content.decode()
    assert list(environment.runs.all()) == [destroy]

    typed = {"confirm": name, "delete_data": "on", "confirm_data": phrase}
    retried = client.post(retry_url(destroy), typed)

    retry = Run.objects.get(retry_of=destroy)
    assert retried["Location"] == reverse("provisioning:run", args=[retry.pk])
    assert (retry.kind, retry.parameters) == ("destroy", destroy.parameters)


@pytest.mark.django_db
def test_a_destroy_retried_without_its_phrases_is_refused_from_any_caller(environment):
    destroy = failed(environment, "destroy", confirm=environment.name)

    with pytest.raises(Refused, match="Destroy not confirmed"):
        runs.retry(destroy, actor=None)
    retry = runs.retry(destroy, actor=None, parameters={"confirm": environment.name})

    assert retry.parameters == {"confirm": environment.name}
