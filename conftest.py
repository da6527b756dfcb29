import os
import subprocess
import sys
import time
import uuid
from importlib import import_module

import django_rq
import pytest
from django.apps import apps
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.db import connection
from django.utils import timezone
from playwright.sync_api import sync_playwright
from rq import Worker

from centralllm import aws
from console.roles import ADMIN, OPERATOR, VIEWER, sync_roles
from devtools.browser import launch_chromium
from devtools.testing import (
    create_audit_table,
    create_bucket,
    password_of,
    test_database_url,
    unique,
)
from provisioning.models import Environment, ResourceState


@pytest.fixture(autouse=True)
def _data_the_migrations_made(request):
    """A test in a transaction finds what the migrations made (the ``local`` environment, the
    role groups), as Django promises. A transactional test's flush deletes it, and under
    pytest-xdist a worker may run a file of those before a file of these."""
    for fixture in ("db", "transactional_db"):
        if fixture in request.fixturenames:
            request.getfixturevalue(fixture)
    if request.node.get_closest_marker("django_db") is None and "db" not in request.fixturenames:
        return
    if not connection.in_atomic_block:
        return  # transactional: it starts from whatever the last flush left, as it always did
    if not Group.objects.filter(name=ADMIN).exists():
        sync_roles(apps)
    import_module("provisioning.migrations.0002_local_environment").create_local(apps, None)


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Every test starts with an empty cache: user ids are reused between tests, and the
    permissions kept for one would leak into the next."""
    cache.clear()


@pytest.fixture
def redis_conn():
    """The real Redis of the test session, emptied before and after each test."""
    connection = django_rq.get_connection("default")
    connection.flushdb()
    yield connection
    connection.flushdb()


@pytest.fixture
def rq_worker(redis_conn):
    """A real `manage.py rqworker` process, registered with Redis before the test starts."""
    process = subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", "default", "provisioning", "audit"],
        env={**os.environ, "DATABASE_URL": test_database_url()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not Worker.all(connection=redis_conn):
        assert process.poll() is None, "the worker exited"
        assert time.monotonic() < deadline, "the worker did not register within 30 s"
        time.sleep(0.2)
    yield process
    process.terminate()
    process.wait(10)


@pytest.fixture
def audit_bucket(monkeypatch) -> str:
    name = create_bucket(unique("central-llm-audit"))
    monkeypatch.setenv("AUDIT_BUCKET", name)
    return name


@pytest.fixture
def audit_table(monkeypatch) -> str:
    name = create_audit_table(unique("audit"))
    monkeypatch.setenv("TABLE_NAME", name)
    yield name
    aws.client("dynamodb").delete_table(TableName=name)


@pytest.fixture
def audited_environment(db):
    """Makes environments, each with its own audit table named as provisioning names it (the
    guide's name and the environment's suffix); the tables are dropped afterwards."""
    tables = []

    def make(name: str) -> Environment:
        tag = uuid.uuid4().hex[:8]
        environment = Environment.objects.create(
            name=f"{name}-{tag}", suffix=f"-{tag}", is_local=True, region=aws.region()
        )
        tables.append(create_audit_table(environment.resource_name("AuditTable")))
        return environment

    yield make
    for table in tables:
        aws.client("dynamodb").delete_table(TableName=table)


@pytest.fixture
def audited(audited_environment, monkeypatch) -> Environment:
    """The only environment (the migrations' ``local`` is removed), so the audit pages read it
    unasked; with its own audit table, where the ingest writes (as its Lambda would)."""
    Environment.objects.filter(name="local").delete()
    environment = audited_environment("audited")
    monkeypatch.setenv("TABLE_NAME", environment.resource_name("AuditTable"))
    return environment


@pytest.fixture
def keyed(audited) -> Environment:
    """An environment whose usage plan and audit bucket (made here, straight in moto) a run
    saw in AWS, with its audit table: the API key pages' and the dashboard's alerts'."""
    environment = audited
    plan = aws.client("apigateway").create_usage_plan(
        name=unique("plan"), quota={"limit": 1000, "period": "MONTH"}
    )
    bucket = create_bucket(unique("audit").lower())
    seen = {"apigateway.usage_plan": {"id": plan["id"]}, "s3.audit_bucket": {"name": bucket}}
    for key, outputs in seen.items():
        ResourceState.objects.create(
            environment=environment,
            key=key,
            title=key,
            state="present",
            outputs=outputs,
            seen_at=timezone.now(),
        )
    environment.quota_limit = 10
    environment.save()
    return environment


def make_user(django_user_model, username: str, role: str | None):
    user = django_user_model.objects.create_user(
        username=username, password=password_of(username), is_staff=role == ADMIN
    )
    if role:
        # Transactional tests flush the groups the migration made.
        sync_roles(apps)
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def viewer(django_user_model):
    return make_user(django_user_model, "vera", VIEWER)


@pytest.fixture
def operator(django_user_model):
    return make_user(django_user_model, "otto", OPERATOR)


@pytest.fixture
def admin_user(django_user_model):
    return make_user(django_user_model, "ada", ADMIN)


@pytest.fixture
def page(monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the live server's ORM calls
    # happen in another thread, so Django's async-safety guard does not apply to them.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page()
        # Chromium reports what the Content-Security-Policy refused on the console: every
        # browser test also holds that no page needs an inline script or style.
        refused = []
        page.on("console", lambda message: refused.append(message.text))
        yield page
        browser.close()
    refused = [text for text in refused if "Content Security Policy" in text]
    assert not refused, f"the Content-Security-Policy refused: {refused}"


# Fixtures through which a test reaches the database (pytest-django's, and ours built on them).
_DATABASE_FIXTURES = {"db", "transactional_db", "django_db_reset_sequences", "live_server"}


def pytest_collection_modifyitems(config, items):
    """With ONLY_DATABASE_TESTS=1 (CI's PostgreSQL pass) keep the tests that touch the
    database: the others already ran on SQLite and would ask PostgreSQL nothing."""
    if os.environ.get("ONLY_DATABASE_TESTS") != "1":
        return
    kept, skipped = [], []
    for item in items:
        marked = item.get_closest_marker("django_db")
        (kept if marked or _DATABASE_FIXTURES & set(item.fixturenames) else skipped).append(item)
    config.hook.pytest_deselected(items=skipped)
    items[:] = kept
