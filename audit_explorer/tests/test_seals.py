"""Tamper evidence: a checked day is sealed (every object's SHA-256, a Merkle root, signed), and
a later check names each object changed, vanished or added since, and a seal that was itself
altered. Against the local AWS over HTTP, through check runs and the day page."""

import base64
import hashlib
import json
from datetime import UTC, date, datetime

import pytest
from botocore.stub import Stubber
from django.urls import reverse

from audit_explorer import audit_runs, seals
from audit_explorer.models import AuditDay
from centralllm.audit.contract import dumps, record_key
from centralllm.audit.tests.conftest import make_record
from provisioning import jobs, runs
from provisioning.models import Environment, Run
from provisioning.resources.base import Context

DAY = date(2026, 11, 21)
SEAL = "seals/2026/11/21.json"


def at(hour: int) -> datetime:
    return datetime(DAY.year, DAY.month, DAY.day, hour, 5, 9, 125000, tzinfo=UTC)


def upload(ctx: Context, record: dict) -> str:
    ctx.client("s3").put_object(
        Bucket=ctx.name("AuditBucket"), Key=record_key(record), Body=dumps(record)
    )
    return record_key(record)


def sha(record: dict) -> str:
    return hashlib.sha256(dumps(record)).hexdigest()


def check(ctx: Context, actor=None, **parameters) -> Run:
    started = runs.start(
        ctx.environment,
        "check",
        actor=actor,
        parameters={"day": str(DAY), **parameters},
        enqueue=False,
    )
    jobs.execute(started.pk)
    started.refresh_from_db()
    assert started.status == Run.Status.SUCCEEDED, started.explanation
    return started


def read(ctx: Context, key: str) -> bytes:
    return ctx.client("s3").get_object(Bucket=ctx.name("AuditBucket"), Key=key)["Body"].read()


def day_page(client, ctx: Context) -> str:
    url = reverse("audit_explorer:audit-day", args=[ctx.environment.name, str(DAY)])
    return client.get(url).content.decode()


def test_a_later_check_names_each_object_changed_vanished_or_added_since_sealing(
    trail, client, operator
):
    s3, bucket = trail.client("s3"), trail.name("AuditBucket")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    records = [make_record(created_at=at(hour)) for hour in (1, 2, 3, 4)]
    keys = [upload(trail, record) for record in records]
    client.force_login(operator)
    seal_url = reverse("audit_explorer:audit-day-seal", args=[trail.environment.name, str(DAY)])
    refused = client.post(seal_url, follow=True).content.decode()
    assert "2026-11-21 has no seal yet: checking it seals it." in refused

    sealed = check(trail, operator)
    day = AuditDay.objects.get(environment=trail.environment, day=DAY)
    assert day.seal_status == "sealed" and day.seal["objects"] == 4
    assert f"Sealed 4 objects at {day.seal['sealedAt']}." in sealed.explanation
    seal = json.loads(read(trail, SEAL))
    assert [(entry["key"], entry["sha256"]) for entry in seal["objects"]] == sorted(
        (record_key(record), sha(record)) for record in records
    )
    assert all(entry["versionId"] for entry in seal["objects"])
    assert seal["statement"]["merkleRoot"] == day.seal["root"]
    assert seal["signature"]["keyId"] == f"local-default:{trail.environment.name}"
    assert f"Merkle root <code>{day.seal['root']}</code>" in day_page(client, trail)

    verified = seal_or_check(trail)  # the check run's seal step, alone
    assert verified == f"Seal verified: all 4 objects as sealed at {day.seal['sealedAt']}."
    day.refresh_from_db()
    assert day.seal_status == "verified" and day.seal_checked_at is not None

    # Someone rewrites one record, deletes another and slips in a third after sealing.
    forged = {**records[0], "project": "someone-else"}
    s3.put_object(Bucket=bucket, Key=keys[0], Body=dumps(forged))
    s3.delete_object(Bucket=bucket, Key=keys[1])
    late = make_record(created_at=at(5))
    added = upload(trail, late)
    assert "1 changed, 1 vanished, 1 added" in check(trail).explanation
    day.refresh_from_db()
    assert day.seal_status == "changed"
    [changed] = day.seal["changed"]
    assert (changed["key"], changed["expected"], changed["found"]) == (
        keys[0],
        sha(records[0]),
        sha(forged),
    )
    assert changed["expectedVersion"] != changed["foundVersion"]  # the sealed one is kept
    assert [row["key"] for row in day.seal["vanished"]] == [keys[1]]
    assert [(row["key"], row["found"]) for row in day.seal["added"]] == [(added, sha(late))]

    page = day_page(client, trail)
    assert f'data-changed="{keys[0]}"' in page
    assert sha(records[0]) in page and sha(forged) in page
    assert f'data-vanished="{keys[1]}"' in page and f'data-added="{added}"' in page
    assert "changed since sealed" in page  # the badge

    # Sealing again keeps the seal that no longer matches, numbered, and says so.
    first_seal = read(trail, SEAL)
    response = client.post(seal_url)
    again = Run.objects.filter(environment=trail.environment).latest("pk")
    assert response.url == reverse("provisioning:run", args=[again.pk])
    assert again.parameters == {"day": str(DAY), "reseal": True}
    jobs.execute(again.pk)
    again.refresh_from_db()
    kept = "seals/2026/11/21.1.json"
    assert f"is kept as {kept}" in again.explanation
    assert read(trail, kept) == first_seal
    day.refresh_from_db()
    assert day.seal_status == "sealed" and day.seal["objects"] == 4
    assert day.seal["kept"] == [
        {
            "key": kept,
            "why": "1 changed, 1 vanished, 1 added since",
            "sealedAt": seal["statement"]["sealedAt"],
        }
    ]
    assert f'data-kept="{kept}"' in day_page(client, trail)
    assert seal_or_check(trail).startswith("Seal verified: all 4 objects")


def seal_or_check(ctx: Context, **options) -> str:
    """The check run's seal step alone, on a day checked before."""
    checked, _ = AuditDay.objects.get_or_create(
        environment=ctx.environment,
        day=DAY,
        defaults={"complete": True, "objects_count": 2, "items_count": 2, "rollup_count": 2},
    )
    return audit_runs.seal_and_keep(ctx, checked, **options)


def test_a_seal_that_was_altered_or_removed_is_reported_as_failing(trail, client, operator):
    records = [make_record(created_at=at(hour)) for hour in (7, 8)]
    keys = [upload(trail, record) for record in records]
    assert seal_or_check(trail).startswith("Sealed 2 objects")
    first = read(trail, SEAL)

    # Rewritten with care: the object, its entry, the list's digest and the Merkle root all
    # agree again; only the signature cannot be made without the key.
    forged = {**records[0], "user": "nobody"}
    trail.client("s3").put_object(Bucket=trail.name("AuditBucket"), Key=keys[0], Body=dumps(forged))
    seal = json.loads(first)
    for entry in seal["objects"]:
        if entry["key"] == keys[0]:
            entry["sha256"] = sha(forged)
    seal["statement"]["manifestSha256"] = hashlib.sha256(
        seals.canonical(seal["objects"])
    ).hexdigest()
    seal["statement"]["merkleRoot"] = seals.merkle_root(seal["objects"])
    put_seal(trail, seals.canonical(seal))

    assert seal_or_check(trail) == (
        "The seal fails: its signature does not match its statement: the seal was altered."
    )
    day = AuditDay.objects.get(environment=trail.environment, day=DAY)
    assert day.seal_status == "tampered" and day.seal["changed"] == []
    client.force_login(operator)
    page = day_page(client, trail)
    assert 'data-seal="tampered"' in page and "seal fails" in page
    assert "its signature does not match its statement" in page

    # Sealed again, the failing seal is kept as evidence; removed, the seal is missed.
    resealed = seal_or_check(trail, reseal=True)
    assert "the seal was altered) is kept as seals/2026/11/21.1.json" in resealed
    trail.client("s3").delete_object(Bucket=trail.name("AuditBucket"), Key=SEAL)
    assert seal_or_check(trail) == f"The seal fails: {SEAL} is gone."
    # A validly signed seal, but not the one this console wrote last: the first, put back.
    put_seal(trail, first)
    assert "it is not the seal this console wrote" in seal_or_check(trail)


def put_seal(ctx: Context, body: bytes) -> None:
    ctx.client("s3").put_object(Bucket=ctx.name("AuditBucket"), Key=SEAL, Body=body)


def test_a_kms_signing_key_seals_and_a_seal_signed_otherwise_fails(trail, settings):
    kms = trail.client("kms")
    key = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256")["KeyMetadata"]
    alias = f"alias/audit-seal-{trail.environment.name}"
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    upload(trail, make_record(created_at=at(9)))

    settings.AUDIT_SEAL_KMS_KEY = alias
    sealed = seals.seal_or_verify(trail, DAY)
    assert sealed.status == "sealed" and sealed.signed_with == f"ECDSA_SHA_256 {key['Arn']}"
    verified = seals.seal_or_verify(trail, DAY, expected_root=sealed.statement["merkleRoot"])
    assert verified.status == "verified"

    seal = json.loads(read(trail, SEAL))
    seal["statement"]["objects"] = 0
    put_seal(trail, seals.canonical(seal))
    assert "signature does not match" in seals.seal_or_verify(trail, DAY).problem

    # Back on the HMAC key, a KMS seal is not trusted, whatever its signature.
    settings.AUDIT_SEAL_KMS_KEY = ""
    failed = seals.seal_or_verify(trail, DAY)
    assert failed.problem.startswith(f"it is signed with ECDSA_SHA_256 key {key['Arn']}, not")

    encrypting = kms.create_key(KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
    settings.AUDIT_SEAL_KMS_KEY = encrypting
    with pytest.raises(seals.NoSealKey, match="is not a signing key"):
        seals.seal_or_verify(trail, DAY)


def test_on_aws_a_signature_kms_refuses_fails_and_no_key_means_no_seal(settings):
    """AWS answers Verify of a bad signature with KMSInvalidSignatureException (the local
    stand-in answers SignatureValid false): the Stubber gives AWS's answer."""
    spec = Environment(
        name="prod",
        suffix="-prod",
        is_local=False,
        region="ca-central-1",  # no other test uses it: clients are shared per region
        account_id="123456789012",
        vpc_id="vpc-1",
        subnet_ids="subnet-1",
        security_group_id="sg-1",
    ).spec()
    ctx = Context(spec)
    settings.AUDIT_SEAL_KMS_KEY, settings.AUDIT_SEAL_KEY = "", ""
    with pytest.raises(seals.NoSealKey, match="no seal key is configured"):
        seals.signer_for(ctx)
    settings.AUDIT_SEAL_KEY = "short"
    assert "shorter than 32 characters" in seals.key_problem(is_local=False)

    arn = "arn:aws:kms:ca-central-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    settings.AUDIT_SEAL_KMS_KEY = "alias/central-llm-audit-seal"
    with Stubber(ctx.client("kms")) as stubber:
        stubber.add_response(
            "describe_key",
            {
                "KeyMetadata": {
                    "KeyId": arn.rpartition("/")[2],
                    "Arn": arn,
                    "KeyUsage": "SIGN_VERIFY",
                    "KeySpec": "ECC_NIST_P256",
                    "SigningAlgorithms": ["ECDSA_SHA_256"],
                }
            },
            {"KeyId": "alias/central-llm-audit-seal"},
        )
        stubber.add_client_error(
            "verify",
            service_error_code="KMSInvalidSignatureException",
            http_status_code=400,
            expected_params={
                "KeyId": arn,
                "Message": b"{}",
                "MessageType": "RAW",
                "Signature": b"forged",
                "SigningAlgorithm": "ECDSA_SHA_256",
            },
        )
        signer = seals.signer_for(ctx)
        assert signer.verify(b"{}", b"forged") is False
    ctx.close()


def rfc6962(leaves: list[bytes]) -> bytes:
    """RFC 6962's definition, recursive, as the reference."""
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    split = 1 << ((len(leaves) - 1).bit_length() - 1)  # the largest power of two below n
    return hashlib.sha256(b"\x01" + rfc6962(leaves[:split]) + rfc6962(leaves[split:])).digest()


def test_the_merkle_root_is_rfc_6962s_and_an_edited_list_fails_to_open():
    for count in range(1, 12):
        entries = [
            {
                "key": f"logs/2026/11/21/{n:02d}.json",
                "sha256": hashlib.sha256(bytes([n])).hexdigest(),
            }
            for n in range(count)
        ]
        leaves = [e["key"].encode() + bytes.fromhex(e["sha256"]) for e in entries]
        assert seals.merkle_root(entries[::-1]) == rfc6962(leaves).hex(), count
    assert seals.merkle_root([]) == hashlib.sha256(b"").hexdigest()

    signer = seals.HmacSigner(b"k" * 32, "hmac:test")
    ctx = Context(Environment(name="unit", suffix="-unit", is_local=True).spec())
    entries = [{"key": "logs/2026/11/21/a.json", "sha256": "00" * 32, "size": 3}]
    raw = seals.canonical(seals.make_seal(ctx, DAY, entries, signer, datetime.now(UTC)))
    assert seals.open_seal(raw, signer)[1] == ""
    edited = json.loads(raw)
    edited["objects"][0]["sha256"] = "11" * 32  # the list alone, the signed statement as it was
    assert seals.open_seal(seals.canonical(edited), signer)[1] == (
        "its object list is not the one its signed statement names"
    )
    edited["signature"]["value"] = base64.b64encode(b"x").decode()
    assert "signature does not match" in seals.open_seal(seals.canonical(edited), signer)[1]
    assert "not a readable seal" in seals.open_seal(b"[]", signer)[1]
