"""A redacted preview says so, and by which rules, in the results and on the record page."""

import pytest
from django.urls import reverse

from audit_explorer.tests.conftest import NOW
from centralllm.audit.ingest import ingest_record
from centralllm.audit.tests.conftest import make_record

pytestmark = pytest.mark.django_db


def test_a_redacted_preview_names_its_rules(client, viewer, audited, monkeypatch):
    monkeypatch.setenv("REDACTION_RULES", '["email", "card"]')
    prompt = "ann@example.com, bob@example.com, 4111 1111 1111 1111"
    for request_id, text in (("red1", prompt), ("plain1", "hello")):
        ingest_record(
            make_record(request_id=request_id, project="redacted", prompt=text, created_at=NOW)
        )
    client.force_login(viewer)

    results = client.get(reverse("audit_explorer:home"), {"project": "redacted"}).content.decode()
    record = client.get(reverse("audit_explorer:record", args=["red1"])).content.decode()
    plain = client.get(reverse("audit_explorer:record", args=["plain1"])).content.decode()

    note = "redacted: card \N{MULTIPLICATION SIGN}1, email \N{MULTIPLICATION SIGN}2"
    assert results.count(note) == 1 and "ann@example.com" not in results
    assert note in record and "[redacted:email]" in record
    assert "redacted:" not in plain
