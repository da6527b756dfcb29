"""Attribution end to end (issue 20): an admin binds a key to projects on its page; a serving
host (the audit middleware under uvicorn, in front of the vLLM imitation) refuses the key's
requests for any other project within a minute; the explorer shows the refusal. Real HTTP
throughout: the console's pages, the local AWS, the middleware's port."""

import time
import uuid

import httpx
import pytest
from django.urls import reverse

from api_access import api_keys
from centralllm.audit.tests.conftest import s3_event
from devtools.testing import create_bucket, unique
from inference.attribution import Attribution
from inference.middleware import AuditMiddleware
from inference.tests import fake_vllm
from inference.tests.conftest import FROM_GATEWAY, GATEWAY_SECRET, Buckets, new_writer, serve
from llm_audit_ingest.handler import lambda_handler

pytestmark = pytest.mark.django_db

CHAT = {"model": "ministral-8b-instruct", "messages": [{"role": "user", "content": "ping"}]}


def test_a_binding_set_in_the_console_is_enforced_and_its_refusals_found(
    client, admin_user, keyed, tmp_path
):
    client.force_login(admin_user)
    created = client.post(
        reverse("api-key-create", args=[keyed.name]),
        {"request_id": str(uuid.uuid4()), "name": "etl", "project": "billing", "owner": "bea"},
    )
    key_id = created["Location"].split("/keys/")[1].split("/")[0]
    bucket = api_keys._output(keyed, "s3.audit_bucket", "name", "audit bucket")
    buckets = Buckets(audit=bucket, raw=create_bucket(unique("raw").lower()))
    spool = tmp_path / "spool"
    # Re-read every second rather than every 30: the test waits for it all the same.
    attribution = Attribution(bucket, spool, every_seconds=1)
    writer = new_writer(buckets, spool, flush_seconds=5)
    middleware = AuditMiddleware(
        fake_vllm.app, writer=writer, gateway_secret=GATEWAY_SECRET, attribution=attribution
    )
    headers = {
        **FROM_GATEWAY,
        "x-api-key-id": key_id,
        "x-llm-source": "reports",
        "x-llm-user": "etl-bot",
        "x-llm-request-type": "batch",
    }

    def status_within_a_minute(wanted: int) -> httpx.Response:
        deadline = time.monotonic() + 60
        chat = f"{url}/v1/chat/completions"
        while (response := httpx.post(chat, json=CHAT, headers=headers)).status_code != wanted:
            assert time.monotonic() < deadline, f"still {response.status_code} after a minute"
            time.sleep(0.2)
        return response

    try:
        with serve(middleware) as url:
            # Made for billing alone: reports is refused.
            refused = status_within_a_minute(403)
            client.post(
                reverse("api-key-projects", args=[keyed.name, key_id]),
                {"projects": "billing reports"},
            )
            status_within_a_minute(200)
    finally:
        writer.close()
        attribution.stop()

    request_id = refused.headers["x-request-id"]
    record_key = next(key for key in buckets.records() if key.endswith(f"/{request_id}.json"))
    assert lambda_handler(s3_event(bucket, record_key), None)["ingested"] == 1

    page = client.get(reverse("audit_explorer:home"), {"project": "reports"}).content.decode()
    assert f'data-request-id="{request_id}"' in page
    assert '403 <small class="error-type">attribution_refused</small>' in page
    record = client.get(reverse("audit_explorer:record", args=[request_id])).content.decode()
    assert "may not file requests under project" in record
