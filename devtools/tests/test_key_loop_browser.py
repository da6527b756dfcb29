"""README's key loop in chromium, against the local API: an admin makes a key on the keys page,
calls the model with it through the local API, finds the call under the key and the project,
rotates the key, and the old key is refused once its grace period is over.

The environment is applied to the local AWS by an apply run, as `make run` applies `local`.
The model is the vLLM imitation behind the real audit middleware (a real vLLM needs the `vllm`
marker), and the ingest Lambda's handler is called with the S3 event of the record, as the
local consumer calls it."""

import re
import time
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone
from playwright.sync_api import expect

from api_access import api_keys
from centralllm.audit.tests.conftest import s3_event
from devtools import local_gateway
from devtools.testing import log_in
from devtools.tests.local_api import audited_model, gateway
from inference.tests.conftest import HEADERS, Buckets
from llm_audit_ingest.handler import lambda_handler
from provisioning import runs
from provisioning.jobs import execute

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def fact(page, name: str):
    """The value beside ``name`` in the key page's facts."""
    return page.locator("dl.facts dt", has_text=name).locator("xpath=following-sibling::dd[1]")


CHAT = {"model": "ministral-8b-instruct", "messages": [{"role": "user", "content": "ping"}]}


def test_a_key_made_in_the_console_calls_the_model_until_its_rotation_retires_it(
    page, live_server, admin_user, audited, tmp_path
):
    environment = audited
    applied = runs.start(environment, "apply", actor=None, enqueue=False)
    execute(applied.pk)  # as `make run` applies `local` (manage.py env apply records its run)
    buckets = Buckets(
        audit=environment.resource_name("AuditBucket"), raw=environment.resource_name("RawBucket")
    )
    secret = local_gateway.gateway_secret(environment.suffix)
    headers = {**HEADERS, "x-llm-source": "search", "x-llm-user": "ivo"}

    with (
        audited_model(buckets, secret, tmp_path / "spool") as model,
        gateway(environment.suffix, model, cache_seconds=1) as local_api,
    ):

        def call(key: str) -> httpx.Response:
            sent = {**headers, "x-api-key": key}
            return httpx.post(f"{local_api}/v1/chat/completions", json=CHAT, headers=sent)

        log_in(page, live_server.url, "ada")
        page.goto(f"{live_server.url}/api-keys/{environment.name}/new")
        page.get_by_label("Name").fill("search-app")
        page.get_by_label("Owner project").fill("search")
        page.get_by_label("Owner person").fill("ivo")
        page.get_by_role("button", name="Create the key").click()
        old_value = page.locator("#key-value").inner_text()
        old_id = page.url.split("/keys/")[1].split("/")[0]

        answer = call(old_value)
        assert answer.status_code == 200, answer.text
        request_id = answer.headers["x-request-id"]
        buckets.record(request_id)  # the middleware's record reaches the audit bucket
        [record_key] = [key for key in buckets.records() if key.endswith(f"/{request_id}.json")]
        assert lambda_handler(s3_event(buckets.audit, record_key), None)["ingested"] == 1

        # The call under the key, and under the project in the audit explorer.
        page.goto(f"{live_server.url}/api-keys/{environment.name}/keys/{old_id}/")
        expect(fact(page, "This quota period")).to_contain_text(re.compile(r"^1 of [\d,]+ "))
        projects = page.locator("section.impact table").first
        expect(projects.locator("tbody tr")).to_have_text(re.compile(r"^search\s*1$"))
        page.goto(
            f"{live_server.url}/audit/?environment={environment.name}&project=search"
            f"&api_key={old_id}"
        )
        expect(page.locator(f'[data-request-id="{request_id}"]').first).to_be_visible()

        # Rotate with the shortest grace period: both keys work through it.
        page.goto(f"{live_server.url}/api-keys/{environment.name}/keys/{old_id}/")
        page.get_by_role("link", name="Rotate").click()
        page.get_by_label("Grace period (hours)").fill("1")
        page.get_by_label("Quiet time before disabling (minutes)").fill("0")
        page.get_by_role("button", name="Rotate").click()
        new_value = page.locator("#key-value").inner_text()
        assert new_value != old_value
        assert call(new_value).status_code == 200
        assert call(old_value).status_code == 200

        # The scheduler's run once the hour is over disables the old key; the local API
        # refuses it after its short delay, as API Gateway does.
        an_hour_later = timezone.now() + timedelta(hours=1, minutes=1)
        assert api_keys.finish_due_rotations(now=an_hour_later) == 1
        deadline = time.monotonic() + 5
        while (refused := call(old_value)).status_code != 403 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (refused.status_code, refused.json()) == (403, {"message": "Forbidden"})
        assert call(new_value).status_code == 200

    page.goto(f"{live_server.url}/api-keys/{environment.name}/keys/{old_id}/")
    expect(fact(page, "Enabled")).to_have_text("no")
    expect(page.locator("tr[data-rotation]")).to_have_attribute("data-status", "done")
