import uuid

import pytest

from provisioning.models import Environment


@pytest.fixture
def environment(db) -> Environment:
    """A local environment of its own: a unique suffix keeps it apart on the shared moto server."""
    tag = uuid.uuid4().hex[:8]
    return Environment.objects.create(name=f"test-{tag}", suffix=f"-t{tag}", is_local=True)
