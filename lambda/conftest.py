import pytest

from centralllm.audit.local_ingest import load_lambda_handler


@pytest.fixture(scope="session")
def lambda_handler():
    """The handler exactly as Lambda loads it: ``handler.lambda_handler`` from its file."""
    return load_lambda_handler()
