import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.apps import apps
from django.utils import timezone

from api_access import api_keys
from audit_explorer import audit_runs
from audit_explorer.models import AuditDay, DeadLetter
from centralllm.audit.ingest import ingest_record
from centralllm.audit.tests.conftest import make_record
from console.provider import parse_role_groups
from console.roles import sync_roles
from devtools.oidc_provider import OIDCProvider
from provisioning import runs
from provisioning.models import Environment, Release, Run

DIGEST = "sha256:" + "ab12cd34" * 8


def make_key(environment, actor, name: str, requests: int = 0, expires=None) -> str:
    """A key on the plan, made as the keys page makes it, with ``requests`` ingested today."""
    key_id, _ = api_keys.create(
        environment,
        name=name,
        project="billing",
        owner="bea",
        expires=expires,
        actor=actor,
        request_id=str(uuid.uuid4()),
    )
    for _ in range(requests):
        ingest_record(make_record(api_key_id=key_id, created_at=datetime.now(UTC)))
    return key_id


@pytest.fixture
def troubled(keyed, admin_user) -> Environment:
    """``keyed`` with a key at 90% of its quota, a dead letter waiting, yesterday incomplete
    and a stalled drift; its live image rolled out 3 days ago."""
    make_key(keyed, admin_user, "busy", requests=9)
    DeadLetter.objects.create(
        environment=keyed,
        message_id="m-1",
        body="{}",
        keys=["logs/2026/11/27/r1.json"],
        error="ValidationError: no request_id",
        failed_at=timezone.now(),
    )
    AuditDay.objects.create(
        environment=keyed, day=audit_runs.today() - timedelta(days=1), complete=False,
        missing_count=2, objects_count=2, items_count=0, rollup_count=0,
    )  # fmt: skip
    drift = runs.start(keyed, "drift", actor=None, enqueue=False)
    runs.log(drift, "waiting for the NLB to become active")
    quiet_since = timezone.now() - timedelta(minutes=5)
    Run.objects.filter(pk=drift.pk).update(status="running", heartbeat_at=quiet_since)
    rollout = Run.objects.create(
        environment=keyed, kind="rollout", status="succeeded", started_by_name="otto"
    )
    Release.objects.create(
        environment=keyed,
        run=rollout,
        image_tag="main",
        image_digest=DIGEST,
        task_definition="arn:aws:ecs:eu-central-1:123456789012:task-definition/vllm:3",
        outcome=Release.Outcome.LIVE,
        finished_at=timezone.now() - timedelta(days=3),
    )
    return keyed


def _started_provider(tmp_path_factory, console_url: str) -> OIDCProvider:
    callback = f"{console_url}/oidc/callback/"
    folder = tmp_path_factory.mktemp("oidc-provider")
    return OIDCProvider(folder, redirect_uris=[callback]).start()


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory) -> OIDCProvider:
    """A real OpenID provider for the session, in a folder of its own, whose client returns
    to the test client (``testserver``)."""
    provider = _started_provider(tmp_path_factory, "http://testserver")
    yield provider
    provider.stop()


@pytest.fixture(scope="session")
def browser_oidc_provider(live_server, tmp_path_factory) -> OIDCProvider:
    """The same, returning to the live server: a provider of its own, so that the tests of
    the test client need no live server (which makes every test using it transactional)."""
    provider = _started_provider(tmp_path_factory, live_server.url)
    yield provider
    provider.stop()


def _sign_in_through(settings, provider: OIDCProvider) -> OIDCProvider:
    """The console signs in through ``provider``, its endpoints discovered, as
    CONSOLE_OIDC_ISSUER and the others set them."""
    sync_roles(apps)  # transactional tests flush the groups the migration made
    settings.CONSOLE_OIDC_ISSUER = provider.issuer
    settings.CONSOLE_OIDC_PROVIDER_NAME = "Test provider"
    settings.OIDC_RP_CLIENT_ID = provider.client_id
    settings.OIDC_RP_CLIENT_SECRET = provider.client_secret
    settings.OIDC_RP_SCOPES = "openid email profile groups"
    settings.CONSOLE_OIDC_ROLE_GROUPS = parse_role_groups(
        "viewer:llm-viewers,viewer:auditors,operator:llm-operators,admin:llm-admins"
    )
    return provider


@pytest.fixture
def signin_with_provider(settings, oidc_provider) -> OIDCProvider:
    return _sign_in_through(settings, oidc_provider)


@pytest.fixture
def browser_signin_with_provider(settings, browser_oidc_provider) -> OIDCProvider:
    return _sign_in_through(settings, browser_oidc_provider)
