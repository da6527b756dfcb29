"""`manage.py env plan|apply|destroy|drift <name>`."""

import io

import pytest
from django.core.management import CommandError, call_command

from centralllm import aws
from provisioning.models import Environment


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("env", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_an_unknown_environment_is_a_clear_error():
    with pytest.raises(CommandError, match=r"No environment named 'nowhere' \(known: local\)"):
        run("plan", "nowhere")


@pytest.mark.django_db
def test_an_invalid_environment_changes_nothing():
    Environment.objects.create(name="broken", suffix="-broken", quota_limit=-1)
    with pytest.raises(CommandError, match="quota_limit: Must be zero or more") as caught:
        run("apply", "broken")
    assert "vpc_id: A real-AWS environment needs its VPC." in str(caught.value)
    buckets = [bucket["Name"] for bucket in aws.client("s3").list_buckets()["Buckets"]]
    assert "central-llm-audit-broken" not in buckets


def test_plan_apply_drift_and_destroy_print_readably(environment):
    name = environment.name
    planned = run("plan", name)
    assert "create S3 audit bucket" in planned
    assert "resources to change." in planned

    applied = run("apply", name)
    assert "  S3 audit bucket: setting encryption, versioning" in applied
    assert "S3 audit bucket: created\n" in applied
    assert "API Gateway usage plan key: created\n" in applied
    assert f"apply of {name} done: 0 changing" not in applied
    again = run("apply", name)
    assert f"apply of {name} done: 0 changing and" in again
    assert "ECS service: unchanged\n" in again
    assert run("apply", name, "--verbosity", "0").startswith(f"apply of {name} done: 0 changing")
    assert run("drift", name) == "No changes: the environment matches its declaration.\n"

    with pytest.raises(CommandError, match="Destroy not confirmed"):
        run("destroy", name)
    destroyed = run("destroy", name, "--confirm", name)
    assert "kept (holds audit data)" in destroyed
