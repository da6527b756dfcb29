"""Every audit page reads one environment's trail: its table and buckets, named as provisioning
names them; the environment is chosen on the page and remembered per user."""

import re
from datetime import UTC, datetime
from html import unescape
from urllib.parse import urljoin, urlsplit

import pytest
from django.urls import reverse

from centralllm.audit.ingest import ingest_record
from centralllm.audit.tests.conftest import make_record
from provisioning.models import Environment

pytestmark = pytest.mark.django_db
HOME = reverse("audit_explorer:home")


def ids(page: str) -> list[str]:
    return re.findall(r'data-request-id="([^"]+)"', page)


def ingest(environment: Environment, request_id: str) -> None:
    record = make_record(
        request_id=request_id, user="ann", project="alpha", created_at=datetime.now(UTC)
    )
    ingest_record(record, table=environment.resource_name("AuditTable"))


def get(client, **params) -> str:
    response = client.get(HOME, params)
    assert response.status_code == 200
    return response.content.decode()


def test_each_environment_is_searched_in_its_own_table(
    client, viewer, audited_environment, monkeypatch
):
    """Issue 21, item 3: the explorer read the console's own TABLE_NAME whatever the
    environment, so staging could not be searched at all."""
    staging, prod = audited_environment("staging"), audited_environment("prod")
    monkeypatch.setenv("TABLE_NAME", prod.resource_name("AuditTable"))  # beside prod
    ingest(staging, "s1")
    client.force_login(viewer)

    page = get(client, environment=staging.name, user="ann")
    assert ids(page) == ["s1"]
    assert "<strong>1</strong> requests (user ann" in page  # the summary, from its rollups
    assert ids(get(client, environment=prod.name, user="ann")) == []

    record = reverse("audit_explorer:record", args=["s1"])
    assert client.get(record, {"environment": staging.name}).status_code == 200
    assert client.get(record, {"environment": prod.name}).status_code == 404
    export = reverse("audit_explorer:export")
    streamed = client.get(export, {"environment": staging.name, "user": "ann"})
    assert b",s1," in b"".join(streamed.streaming_content)
    streamed = client.get(export, {"environment": prod.name, "user": "ann"})
    assert b",s1," not in b"".join(streamed.streaming_content)


def test_the_chosen_environment_is_remembered_across_sessions(client, viewer, audited_environment):
    staging, _ = audited_environment("staging"), audited_environment("prod")
    ingest(staging, "s1")
    client.force_login(viewer)
    assert "Choose the environment whose audit trail to read" in get(client, user="ann")

    get(client, environment=staging.name)
    client.logout()
    client.force_login(viewer)

    page = get(client, user="ann")
    assert ids(page) == ["s1"]
    assert f'<option value="{staging.name}" selected>' in page
    assert f"environment={staging.name}" in page  # its links keep to it


def test_the_only_environment_is_read_unasked_and_none_is_said(client, viewer, audited_environment):
    Environment.objects.all().delete()
    client.force_login(viewer)
    assert "No environment yet" in get(client, user="ann")

    only = audited_environment("only")
    ingest(only, "o1")
    assert ids(get(client, user="ann")) == ["o1"]


def test_a_project_or_user_named_like_a_path_links_nowhere_else(client, viewer, audited):
    """Issue 21, item 8: project and user values went into link paths, so a project named
    ../../environments/prod/destroy/ made a link that browsers resolve to the destroy page."""
    hostile = "../../environments/prod/destroy/"
    record = make_record(
        request_id="h1", project=hostile, user=hostile, created_at=datetime.now(UTC)
    )
    ingest_record(record)
    client.force_login(viewer)

    for params in ({"user": hostile}, {"project": hostile}, {}):  # {}: the overview
        assert_links_stay(client, HOME, params)
    assert_links_stay(client, reverse("audit_explorer:record", args=["h1"]), {})
    for params in ({"user": hostile}, {"project": hostile}):
        assert_links_stay(client, reverse("audit_explorer:traffic"), params)


def assert_links_stay(client, url: str, params: dict) -> None:
    """No link of the page opens the destroy page; the caller's value is in a query string."""
    page = client.get(url, params).content.decode()
    hrefs = [unescape(href) for href in re.findall(r'href="([^"]*)"', page)]
    opened = {urlsplit(urljoin(f"http://testserver{url}", href)).path for href in hrefs}
    assert not any(path.endswith("/destroy/") for path in opened), (url, params)
    assert any("=..%2F..%2Fenvironments%2Fprod%2Fdestroy%2F" in href for href in hrefs)
