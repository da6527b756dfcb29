"""A local environment runs only against the local AWS: it declares production's names, so
against real AWS it would take over (or destroy) another deployment's resources."""

import pytest

from centralllm import aws
from core.refusals import Refused
from provisioning import engine
from provisioning.jobs import execute
from provisioning.models import Run


def no_aws_call(model, **kwargs) -> None:
    raise AssertionError(f"{model.name} was sent to AWS")


RUNS = {
    "plan": engine.plan,
    "drift": engine.drift,
    "apply": engine.apply,
    "apply_one": lambda environment: engine.apply_one(environment, "iam.task_role"),
    "destroy": lambda environment: engine.destroy(environment, confirm=environment.name),
}


@pytest.mark.parametrize("run", RUNS.values(), ids=RUNS.keys())
def test_without_an_endpoint_a_local_environment_is_refused_before_any_call(
    environment, real_aws, run
):
    with (
        engine.on_every_call(environment.region, no_aws_call),
        pytest.raises(Refused, match="every service would be answered by AWS") as refused,
    ):
        run(environment)
    assert "start the local AWS (make run)" in str(refused.value)


def test_one_service_sent_to_aws_is_named(environment, real_aws, monkeypatch):
    # DynamoDB Local on this machine, everything else on AWS's own endpoints.
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000")
    with pytest.raises(Refused) as refused:
        engine.plan(environment)
    assert "apigateway" in str(refused.value) and "dynamodb" not in str(refused.value)


@pytest.mark.parametrize(
    ("endpoint", "local"),
    [
        ("http://127.0.0.1:5100", True),
        ("http://localhost:5100", True),
        ("http://[::1]:5100", True),
        ("http://local-aws:5000", True),  # docker compose's service
        ("https://iam.amazonaws.com", False),
        ("http://10.0.0.5:5000", False),
        (None, False),
    ],
)
def test_what_counts_as_the_local_aws(real_aws, monkeypatch, endpoint, local):
    if endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    assert aws.serves_locally("iam") is local


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["rollout", "validate"])
def test_rollouts_and_validations_of_a_local_environment_are_refused_too(
    environment, real_aws, kind
):
    run = Run.objects.create(environment=environment, kind=kind, status="queued")
    with engine.on_every_call(environment.region, no_aws_call):
        execute(run.pk)
    run.refresh_from_db()
    assert run.status == "failed" and "is a local environment" in run.explanation
