import os
import uuid
from collections.abc import Callable, Iterator

import pytest
from botocore.stub import Stubber

from provisioning.models import Environment
from provisioning.resources.base import Context, Progress


@pytest.fixture
def environment(db) -> Environment:
    """A local environment of its own: a unique suffix keeps it apart on the shared moto server."""
    tag = uuid.uuid4().hex[:8]
    return Environment.objects.create(name=f"test-{tag}", suffix=f"-t{tag}", is_local=True)


class Messages(Progress):
    """Keeps the progress messages, for a test to read."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, step: str, text: str) -> None:
        self.lines.append(text)


Stubbed = tuple[Context, Stubber, list[float]]


@pytest.fixture
def stubbed() -> Iterator[Callable[[str, str], Stubbed]]:
    """``stubbed(service, region)``: a run context whose ``service`` client a Stubber answers,
    with real AWS's behaviour where moto's differs; sleeps are recorded, not slept. Clients are
    shared process-wide, so each test file uses a region no other test uses."""
    opened: list[tuple[Context, Stubber]] = []

    def make(service: str, region: str) -> Stubbed:
        spec = Environment(name="stub", suffix="-stub", is_local=True, region=region).spec()
        sleeps: list[float] = []
        ctx = Context(spec, Messages(), sleep=sleeps.append)
        stubber = Stubber(ctx.client(service))
        stubber.activate()
        opened.append((ctx, stubber))
        return ctx, stubber, sleeps

    yield make
    for ctx, stubber in opened:
        stubber.deactivate()
        ctx.close()
        stubber.assert_no_pending_responses()


@pytest.fixture
def real_aws(monkeypatch) -> None:
    """No AWS endpoint, as against real AWS: ``aws.is_stand_in()`` is false. Clients built
    afterwards would reach AWS itself, so every call must be stubbed or refused."""
    for name in [name for name in os.environ if name.startswith("AWS_ENDPOINT_URL")]:
        monkeypatch.delenv(name)
