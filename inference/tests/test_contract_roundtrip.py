"""One contract end to end: what the middleware writes, the Lambda's handler ingests, and the
explorer's queries find."""

import httpx

from centralllm.audit import contract, items, rollups
from centralllm.audit.tests.conftest import s3_event
from inference.tests.conftest import FROM_GATEWAY, HEADERS
from llm_audit_ingest.handler import lambda_handler


def test_a_record_from_the_middleware_is_ingested_and_found_by_every_index(
    audited_url, buckets, audit_table
):
    headers = {**HEADERS, **FROM_GATEWAY, "x-api-key-id": "key-7"}
    chat = {"model": "ministral-8b-instruct", "messages": [{"role": "user", "content": "ping"}]}
    ok = httpx.post(f"{audited_url}/v1/chat/completions", json=chat, headers=headers)
    error = httpx.post(f"{audited_url}/v1/fail", json=chat, headers=headers)
    assert (ok.status_code, error.status_code) == (200, 500)
    ids = {ok.headers["x-request-id"], error.headers["x-request-id"]}
    for key in buckets.wait_for_records(2):
        lambda_handler(s3_event(buckets.audit, key), None)

    by_user = {item["id"] for item in items.query_user("qa").items}
    by_ok_status = {item["id"] for item in items.query_status(200).items}
    by_project = [item["id"] for item in items.query_project_latency("smoke-test").items]
    by_error_status = {item["id"] for item in items.query_status(500).items}
    assert by_user == ids
    assert by_ok_status == {ok.headers["x-request-id"]}
    assert by_error_status == {error.headers["x-request-id"]}
    assert set(by_project) == ids
    first = contract.parse_timestamp(items.get_item(by_project[0])["createdAt"])
    summary = rollups.summarize(rollups.read_rollups("project", "smoke-test", first, first))
    assert summary["requests"] == 2
    assert summary["errors"] == 1
    assert rollups.summarize(rollups.read_rollups("apiKey", "key-7", first, first))["requests"] == 2
