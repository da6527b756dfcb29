import pytest

from centralllm.audit.local_ingest import load_lambda_handler
from centralllm.audit.tests.conftest import audit_bucket, audit_table  # noqa: F401 - fixtures


@pytest.fixture(scope="session")
def lambda_handler():
    """The handler exactly as Lambda loads it: ``handler.lambda_handler`` from its file."""
    return load_lambda_handler()
