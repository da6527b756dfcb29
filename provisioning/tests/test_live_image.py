"""What the dashboard says an environment's service runs: the image its last rollout put live,
else the declared image its task definition was applied with, else nothing."""

from datetime import timedelta

import pytest
from django.utils import timezone

from provisioning import state
from provisioning.models import Release, ResourceState, Run

pytestmark = pytest.mark.django_db


def test_the_live_release_else_the_applied_task_definition(environment):
    assert state.live_image(environment) is None

    apply = Run.objects.create(environment=environment, kind="apply", status="succeeded")
    ResourceState.objects.create(
        environment=environment, key="ecs.task_definition", title="ECS task definition",
        state="present", seen_at=timezone.now(), run=apply,
    )  # fmt: skip
    repository = environment.resource_name("EcrRepository")
    declared = f"{repository}:{environment.image_tag}"
    assert state.live_image(environment) == state.LiveImage(declared, "", None, apply)

    rollout = Run.objects.create(environment=environment, kind="rollout", status="succeeded")
    live_since = timezone.now() - timedelta(days=3)
    for outcome, tag in ((Release.Outcome.REPLACED, "v1"), (Release.Outcome.LIVE, "v2")):
        Release.objects.create(
            environment=environment, run=rollout, image_tag=tag, image_digest="sha256:" + "e" * 64,
            task_definition="arn:aws:ecs:eu-central-1:1:task-definition/vllm:2", outcome=outcome,
            finished_at=live_since,
        )  # fmt: skip
    live = state.live_image(environment)
    assert (live.image, live.since, live.run) == (f"{repository}:v2", live_since, rollout)
    assert live.short_digest == "sha256:eeeeeeee…"
