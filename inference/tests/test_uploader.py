"""The uploader on its own: partly delivered spool files, and PUTs signed as S3 checks them."""

import json
import os
import time

import httpx
import pytest

from centralllm import aws
from devtools.testing import unique
from inference.s3 import ObjectExists, PutClient, S3Error
from inference.tests import fake_vllm
from inference.tests.conftest import HEADERS, new_uploader
from inference.writer import SPOOL_SUFFIX, spooled_request_ids


def test_a_partly_delivered_file_keeps_only_the_records_not_stored(tmp_path, buckets, monkeypatch):
    spool = tmp_path / "spool"
    # One thread: the records are tried in order, so which one fails decides the rest.
    uploader = new_uploader(buckets, spool, concurrency=1)
    fake_vllm.spool_chats(spool, ["first", "second", "third"], time.time(), HEADERS)
    put = uploader._s3.put

    def second_record_fails(bucket: str, key: str, body: bytes, content_type: str) -> None:
        if bucket == buckets.audit and key.endswith("/second.json"):
            raise S3Error("HTTP 503 SlowDown")
        put(bucket, key, body, content_type)

    monkeypatch.setattr(uploader._s3, "put", second_record_fails)
    assert not uploader.deliver()
    assert spooled_request_ids(spool) == ["second", "third"]
    assert uploader.counters == {"delivered": 1, "failures": 1, "quarantined": 0}

    monkeypatch.setattr(uploader._s3, "put", put)
    time.sleep(0.1)  # the backoff
    assert uploader.deliver()
    assert not spooled_request_ids(spool)
    delivered = sorted(key.rsplit("/", 1)[1] for key in buckets.records())
    assert delivered == ["first.json", "second.json", "third.json"]


def test_a_lone_surrogate_in_a_body_neither_stops_delivery_nor_loses_its_record(tmp_path, buckets):
    """JSON's "\\ud800" escape parses into a lone surrogate, which UTF-8 cannot encode: once
    taken for an S3 failure and retried before every other record for ever (issue 20)."""
    spool = tmp_path / "spool"
    uploader = new_uploader(buckets, spool)
    hostile = (
        b'{"model": "ministral-8b-instruct", "unknown": "\\ud800", '
        b'"messages": [{"role": "user", "content": "hide \\udfff me"}]}'
    )
    fake_vllm.spool_chats(
        spool, ["before", "hostile", "after"], time.time(), HEADERS, bodies={"hostile": hostile}
    )

    assert uploader.deliver()
    assert not spooled_request_ids(spool)
    assert uploader.counters == {"delivered": 3, "failures": 0, "quarantined": 0}
    [key] = [key for key in buckets.records() if key.endswith("/hostile.json")]
    record = buckets.read(buckets.audit, key)
    assert record["prompt"] == "user: hide \ufffd me"
    raw = buckets.read(buckets.raw, record["rawKey"])
    assert raw["request"]["body"]["unknown"] == "\ufffd"


def test_a_record_that_cannot_be_built_is_quarantined_alone_with_its_reason(tmp_path, buckets):
    spool = tmp_path / "spool"
    uploader = new_uploader(buckets, spool)
    fake_vllm.spool_chats(spool, ["first", "broken", "third"], time.time(), HEADERS)
    [path] = spool.glob(f"*{SPOOL_SUFFIX}")
    # A header without its status, as no middleware writes it: not S3's fault, never retried.
    data = path.read_bytes()
    broken = data.index(b'"requestId": "broken"')
    status = data.index(b'"status": 200, ', broken)
    path.write_bytes(data[:status] + data[status + len(b'"status": 200, ') :])

    assert uploader.deliver()
    assert not spooled_request_ids(spool)
    assert uploader.counters == {"delivered": 2, "failures": 0, "quarantined": 1}
    delivered = sorted(key.rsplit("/", 1)[1] for key in buckets.records())
    assert delivered == ["first.json", "third.json"]
    [reason] = (spool / "quarantine").glob("*.reason")
    assert reason.read_text() == "KeyError: 'status'\n"
    [entry] = [p for p in (spool / "quarantine").iterdir() if p.suffix != ".reason"]
    assert b'"requestId": "broken"' in entry.read_bytes()


def _moto_checks_signatures(after: float) -> None:
    """From ``after`` more requests on, moto checks every request's signature and
    permissions as AWS does (``inf``: never)."""
    url = f"{os.environ['AWS_ENDPOINT_URL']}/moto-api/reset-auth"
    httpx.post(url, content=str(after)).raise_for_status()


def test_puts_are_signed_as_s3_checks_them(buckets, monkeypatch):
    iam = aws.client("iam")
    user = unique("audit-uploader")
    iam.create_user(UserName=user)
    policy = {"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}
    iam.put_user_policy(
        UserName=user,
        PolicyName="put",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [policy]}),
    )
    key = iam.create_access_key(UserName=user)["AccessKey"]
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    client = PutClient()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    impostor = PutClient()
    # Request ids may hold spaces and "+": the key is encoded as S3 signs it.
    object_key = "logs/2026/12/02/a b+c~d.json"

    _moto_checks_signatures(after=0)
    try:
        client.put(buckets.audit, object_key, b'{"ok": true}', "application/json")
        with pytest.raises(S3Error, match="HTTP 403 SignatureDoesNotMatch"):
            impostor.put(buckets.audit, object_key, b"{}", "application/json")
    finally:
        _moto_checks_signatures(after=float("inf"))
    assert buckets.read(buckets.audit, object_key) == {"ok": True}


def test_aws_is_addressed_by_virtual_host(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert PutClient().address("central-llm-audit", "logs/2026/12/02/a b+c.json") == (
        "central-llm-audit.s3.eu-central-1.amazonaws.com",
        "/logs/2026/12/02/a%20b%2Bc.json",
    )


def test_a_second_exchange_under_a_taken_request_id_never_replaces_the_first(tmp_path, buckets):
    """Issue 20: the PUT was unconditional, so another exchange sent under a victim's request id
    replaced the victim's record and raw bodies. S3's conditional writes refuse a PUT with
    ``If-None-Match: *`` when the key exists (412 Precondition Failed):
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html"""
    spool = tmp_path / "spool"
    uploader = new_uploader(buckets, spool)
    fake_vllm.spool_chats(spool, ["victim"], time.time(), HEADERS)
    assert uploader.deliver()
    [victim_key] = buckets.records()
    victim = buckets.read(buckets.audit, victim_key)
    victim_raw = buckets.read(buckets.raw, victim["rawKey"])

    forged = {**HEADERS, "x-llm-source": "someone-else"}
    body = b'{"model": "m", "messages": [{"role": "user", "content": "forged"}]}'
    fake_vllm.spool_chats(spool, ["victim"], time.time(), forged, bodies={"victim": body})
    assert uploader.deliver()
    assert not spooled_request_ids(spool)

    assert buckets.read(buckets.audit, victim_key) == victim
    assert buckets.read(buckets.raw, victim["rawKey"]) == victim_raw
    [conflict_key] = [key for key in buckets.records() if key != victim_key]
    conflict = buckets.read(buckets.audit, conflict_key)
    assert conflict["flags"] == ["audit_conflict"]
    assert (conflict["project"], conflict["prompt"]) == ("someone-else", "user: forged")
    assert buckets.read(buckets.raw, conflict["rawKey"])["claimedRequestId"] == "victim"


def test_a_put_retried_after_it_arrived_is_no_conflict(tmp_path, buckets, monkeypatch):
    """The answer to a PUT that S3 stored can be lost: the retry finds its own bytes there."""
    spool = tmp_path / "spool"
    uploader = new_uploader(buckets, spool)
    fake_vllm.spool_chats(spool, ["once"], time.time(), HEADERS)
    put = uploader._s3.put

    def stored_but_answer_lost(bucket: str, key: str, body: bytes, content_type: str) -> None:
        put(bucket, key, body, content_type)
        if bucket == buckets.audit:
            raise S3Error("connection reset")

    monkeypatch.setattr(uploader._s3, "put", stored_but_answer_lost)
    assert not uploader.deliver()
    monkeypatch.setattr(uploader._s3, "put", put)
    time.sleep(0.1)  # the backoff
    assert uploader.deliver()
    [key] = buckets.records()
    assert key.endswith("/once.json")
    assert buckets.read(buckets.audit, key)["flags"] == []


def test_puts_reach_a_bucket_whose_object_lock_sets_a_default_retention(buckets):
    """S3 refuses an upload without Content-MD5 (or an SDK checksum) into a bucket with a
    default retention (MissingUploadObjectWithObjectLockHeaders): an environment with Object
    Lock on would have stopped audit delivery.
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock-managing.html"""
    locked = unique("locked").lower()
    s3 = aws.client("s3")
    s3.create_bucket(
        Bucket=locked,
        CreateBucketConfiguration={"LocationConstraint": aws.region()},
        ObjectLockEnabledForBucket=True,
    )
    s3.put_object_lock_configuration(
        Bucket=locked,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
        },
    )
    PutClient().put(locked, "logs/2026/12/04/locked.json", b'{"ok": true}', "application/json")
    assert buckets.read(locked, "logs/2026/12/04/locked.json") == {"ok": True}


def test_a_conditional_put_racing_another_is_tried_again_not_taken_for_a_taken_key(
    buckets, monkeypatch
):
    """S3 answers 409 ConditionalRequestConflict to a conditional write racing another one to
    the same key ("retry the request"), 412 only once the key is taken:
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html"""
    client = PutClient()
    conflict = (
        b"<Error><Code>ConditionalRequestConflict</Code><Message>A conflicting conditional "
        b"operation is currently in progress against this resource.</Message></Error>"
    )
    monkeypatch.setattr(client, "_send", lambda *args: (409, conflict))
    with pytest.raises(S3Error, match="HTTP 409 ConditionalRequestConflict") as raised:
        client.put(buckets.audit, "logs/2026/12/05/race.json", b"{}", "application/json")
    assert not isinstance(raised.value, ObjectExists)  # a failure to retry, not a conflict
