"""Test helpers: AWS resources on the session's local AWS, with names no other test shares,
the test database's URL for worker processes, and racing threads."""

import threading
import uuid
from collections.abc import Callable
from typing import TypeVar

from django.db import connection

from centralllm import aws
from centralllm.audit.table import create_table_request


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_bucket(name: str) -> str:
    aws.client("s3").create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": aws.region()}
    )
    return name


def create_audit_table(name: str) -> str:
    """The audit table with its indexes, as the contract defines it."""
    aws.client("dynamodb").create_table(**create_table_request(name))
    return name


def test_database_url() -> str:
    """The test database, for a worker process of the test's own."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


test_database_url.__test__ = False  # a helper: pytest collected it where a test module imports it


T = TypeVar("T")


def at_once(function: Callable[[], T], times: int = 2) -> list[T]:
    """What ``function()`` returned in each of ``times`` threads released together (each on
    a database connection of its own, closed after)."""
    barrier = threading.Barrier(times)
    results: list[T] = []

    def race() -> None:
        barrier.wait()
        try:
            results.append(function())
        finally:
            connection.close()

    threads = [threading.Thread(target=race) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def password_of(username: str) -> str:
    """The password the tests' users are made with (conftest.make_user)."""
    return f"{username}-password-123"


def log_in(page, base_url: str, username: str) -> None:
    """Sign in through the login form in the browser, as a person would, and wait for it."""
    from playwright.sync_api import expect

    page.goto(f"{base_url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password_of(username))
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
