"""Tamper evidence for a day of the audit trail: a signed seal of every audit object.

A day's seal is written to the audit bucket at ``seals/YYYY/MM/DD.json``: outside ``logs/``,
so the ingest's notification (``logs`` only, ``provisioning.resources.s3``) never fires for
it. It holds

- ``objects``: every object under ``logs/YYYY/MM/DD/`` as it was read when sealing: its key,
  the SHA-256 of its bytes, its size and, in a versioned bucket, its version id;
- ``statement``, what is signed: environment, bucket, day, when, the counts, the SHA-256 of
  the canonical ``objects`` list, and a Merkle root over the (key, SHA-256) leaves sorted by
  key (RFC 6962's tree hash, so one object's presence can be shown to an auditor with the
  statement and log2(n) hashes instead of the whole list);
- ``signature`` over the canonical JSON of the statement: an asymmetric KMS key
  (``AUDIT_SEAL_KMS_KEY``; KMS Sign and Verify, and anyone with the public key can verify it
  outside AWS), or HMAC-SHA256 with ``AUDIT_SEAL_KEY``. A local environment with neither
  uses a key derived from its name: anyone can derive it, so its seals only stand in.

Checking verifies the seal's signature first: a seal that fails is reported as tampered
and its list is not trusted. Then every object is read again and each one changed, vanished
or added since sealing is named. A new seal never replaces one silently: the one before is
kept beside it as ``seals/YYYY/MM/DD.<n>.json``.

Cost: one GET per object (and one LIST per 1,000), each time a day is sealed or checked.
"""

import base64
import hashlib
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

from botocore.exceptions import ClientError
from django.conf import settings

from audit_explorer.completeness import day_prefix
from centralllm.audit.contract import format_timestamp
from provisioning.resources.base import Context, ProvisioningError, error_code

VERSION = 1
# Objects read at once: a moderate number, under the 10 connections botocore keeps per
# client (more threads would wait for a connection). bench/seal.py compares 1, 4 and 8.
THREADS = 8
PAGE = 1000  # ListObjectsV2's largest page, and the objects read between two checkpoints
CHUNK = 64 * 1024
PROGRESS_SECONDS = 2
# Asymmetric KMS signing algorithms, preferred first (ECC_NIST_P256 keys offer the first).
KMS_ALGORITHMS = ("ECDSA_SHA_256", "RSASSA_PSS_SHA_256", "ECDSA_SHA_384", "RSASSA_PSS_SHA_384")
MIN_HMAC_KEY = 32


class NoSealKey(Exception):
    """No key to sign seals with; the message says how to configure one."""


class Status:
    SEALED = "sealed"  # sealed now
    VERIFIED = "verified"  # checked again: every object as sealed
    CHANGED = "changed"  # checked again: objects changed, vanished or were added
    TAMPERED = "tampered"  # the seal itself fails: signature, list, or gone


def seal_key(day: date) -> str:
    return f"seals/{day:%Y/%m/%d}.json"


def kept_key(day: date, number: int) -> str:
    return f"seals/{day:%Y/%m/%d}.{number}.json"


def canonical(value: Any) -> bytes:
    """The one byte string of a JSON value that is signed and hashed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def leaf_hash(key: str, sha256: str) -> bytes:
    # RFC 6962 section 2.1: leaves are hashed with 0x00 before them, inner nodes with 0x01,
    # so a leaf can never pass for a node. The digest has a fixed length: key || digest is
    # unambiguous.
    return hashlib.sha256(b"\x00" + key.encode() + bytes.fromhex(sha256)).digest()


def merkle_root(entries: list[dict]) -> str:
    """RFC 6962's Merkle tree hash over the entries' (key, sha256), sorted by key. Built
    level by level: a last node without a pair goes up unchanged, which is the RFC's split
    at the largest power of two."""
    level = [leaf_hash(e["key"], e["sha256"]) for e in sorted(entries, key=_by_key)]
    if not level:
        return hashlib.sha256(b"").hexdigest()
    while len(level) > 1:
        paired = [
            hashlib.sha256(b"\x01" + level[n] + level[n + 1]).digest()
            for n in range(0, len(level) - 1, 2)
        ]
        level = paired + level[len(paired) * 2 :]
    return level[0].hex()


def _by_key(entry: dict) -> bytes:
    return entry["key"].encode()  # S3's order: UTF-8 bytes


# Signing --------------------------------------------------------------------------------


class Signer(Protocol):
    algorithm: str
    key_id: str

    def sign(self, message: bytes) -> bytes: ...

    def verify(self, message: bytes, signature: bytes) -> bool: ...


class HmacSigner:
    algorithm = "HMAC_SHA_256"

    def __init__(self, secret: bytes, key_id: str) -> None:
        self._secret, self.key_id = secret, key_id

    def sign(self, message: bytes) -> bytes:
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def verify(self, message: bytes, signature: bytes) -> bool:
        return hmac.compare_digest(self.sign(message), signature)


class KmsSigner:
    """An asymmetric KMS key (KeyUsage SIGN_VERIFY): the private key never leaves KMS, and
    the public key (GetPublicKey) verifies a seal anywhere. Messages are the canonical
    statement itself (``MessageType`` RAW, under KMS's 4,096 bytes)."""

    def __init__(self, ctx: Context, key: str) -> None:
        self._kms = ctx.client("kms")
        metadata = self._kms.describe_key(KeyId=key)["KeyMetadata"]
        if metadata.get("KeyUsage") != "SIGN_VERIFY":
            raise NoSealKey(
                f"AUDIT_SEAL_KMS_KEY {key} is not a signing key (KeyUsage "
                f"{metadata.get('KeyUsage')}): use an asymmetric SIGN_VERIFY key, e.g. "
                "ECC_NIST_P256."
            )
        offered = metadata.get("SigningAlgorithms", [])
        self.key_id = metadata["Arn"]
        self.algorithm = next((name for name in KMS_ALGORITHMS if name in offered), "")
        if not self.algorithm:
            raise NoSealKey(f"AUDIT_SEAL_KMS_KEY {key} offers none of {', '.join(KMS_ALGORITHMS)}.")

    def sign(self, message: bytes) -> bytes:
        return self._kms.sign(
            KeyId=self.key_id, Message=message, MessageType="RAW", SigningAlgorithm=self.algorithm
        )["Signature"]

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            answer = self._kms.verify(
                KeyId=self.key_id,
                Message=message,
                MessageType="RAW",
                Signature=signature,
                SigningAlgorithm=self.algorithm,
            )
        except ClientError as exc:
            # AWS answers a signature that does not verify with this error; the local
            # stand-in answers SignatureValid false.
            if error_code(exc) == "KMSInvalidSignatureException":
                return False
            raise
        return bool(answer["SignatureValid"])


def key_problem(is_local: bool) -> str:
    """Why seals cannot be signed in such an environment; empty when they can (no AWS call)."""
    if settings.AUDIT_SEAL_KMS_KEY or is_local:
        return ""
    if not settings.AUDIT_SEAL_KEY:
        return (
            "no seal key is configured: set AUDIT_SEAL_KMS_KEY to an asymmetric KMS signing "
            "key (or AUDIT_SEAL_KEY to an HMAC key)"
        )
    if len(settings.AUDIT_SEAL_KEY) < MIN_HMAC_KEY:
        return f"AUDIT_SEAL_KEY is shorter than {MIN_HMAC_KEY} characters"
    return ""


def signer_for(ctx: Context) -> Signer:
    """The configured key: the KMS key, else the HMAC key, else (a local environment only) a
    key derived from the environment's name, which is no secret."""
    problem = key_problem(ctx.spec.is_local)
    if problem:
        raise NoSealKey(problem)
    if settings.AUDIT_SEAL_KMS_KEY:
        return KmsSigner(ctx, settings.AUDIT_SEAL_KMS_KEY)
    if settings.AUDIT_SEAL_KEY:
        if len(settings.AUDIT_SEAL_KEY) < MIN_HMAC_KEY:
            raise NoSealKey(f"AUDIT_SEAL_KEY is shorter than {MIN_HMAC_KEY} characters")
        secret = settings.AUDIT_SEAL_KEY.encode()
        # Names the key without revealing it: an HMAC of a fixed text under the key.
        fingerprint = hmac.new(secret, b"central-llm audit seal key id", hashlib.sha256)
        return HmacSigner(secret, f"hmac:{fingerprint.hexdigest()[:16]}")
    derived = hashlib.sha256(f"central-llm local audit seal key: {ctx.spec.name}".encode())
    return HmacSigner(derived.digest(), f"local-default:{ctx.spec.name}")


# Reading the day's objects ----------------------------------------------------------------


def read_objects(ctx: Context, day: date, *, threads: int = THREADS) -> list[dict]:
    """Every object of the day with the SHA-256 of its bytes, read whole (streamed, never
    held), ``threads`` at a time; says how far it is every few seconds."""
    s3, bucket = ctx.client("s3"), ctx.name("AuditBucket")
    keys = [
        listed["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=day_prefix(day), PaginationConfig={"PageSize": PAGE}
        )
        for listed in page.get("Contents", [])
    ]
    entries: list[dict] = []
    said, started = time.monotonic(), time.monotonic()
    pool = ThreadPoolExecutor(threads, thread_name_prefix="seal")
    try:
        for first in range(0, len(keys), PAGE):
            ctx.progress.checkpoint()
            batch = keys[first : first + PAGE]
            read = pool.map(lambda key: _read_object(s3, bucket, key), batch)
            entries.extend(entry for entry in read if entry is not None)
            if time.monotonic() - said >= PROGRESS_SECONDS:
                rate = (first + len(batch)) / (time.monotonic() - started)
                ctx.say(f"{first + len(batch)} of {len(keys)} objects read ({rate:.0f}/s)")
                said = time.monotonic()
    finally:
        pool.shutdown(cancel_futures=True)
    return entries


def _read_object(s3: Any, bucket: str, key: str) -> dict | None:
    # The bytes themselves, not the ETag: an ETag is an MD5 only for some uploads, and MD5
    # collisions can be made.
    try:
        found = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in ("NoSuchKey", "404"):
            return None  # deleted since the listing: not there now
        raise
    digest, size = hashlib.sha256(), 0
    for chunk in found["Body"].iter_chunks(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    entry = {"key": key, "sha256": digest.hexdigest(), "size": size}
    if found.get("VersionId") not in (None, "null"):
        entry["versionId"] = found["VersionId"]
    return entry


# Seals ------------------------------------------------------------------------------------


def make_seal(ctx: Context, day: date, entries: list[dict], signer: Signer, now: datetime) -> dict:
    entries = sorted(entries, key=_by_key)
    statement = {
        "version": VERSION,
        "environment": ctx.spec.name,
        "bucket": ctx.name("AuditBucket"),
        "prefix": day_prefix(day),
        "day": str(day),
        "sealedAt": format_timestamp(now),
        "objects": len(entries),
        "bytes": sum(entry["size"] for entry in entries),
        "manifestSha256": hashlib.sha256(canonical(entries)).hexdigest(),
        "merkleRoot": merkle_root(entries),
    }
    signature = signer.sign(canonical(statement))
    return {
        "statement": statement,
        "signature": {
            "algorithm": signer.algorithm,
            "keyId": signer.key_id,
            "value": base64.b64encode(signature).decode(),
        },
        "objects": entries,
    }


def open_seal(raw: bytes, signer: Signer) -> tuple[dict | None, str]:
    """The seal, if it holds: ``(seal, "")``; else ``(None, why it fails)``. The signature
    is checked first; then that the object list is the one the statement names."""
    try:
        seal = json.loads(raw)
        statement, signature, entries = seal["statement"], seal["signature"], seal["objects"]
        value = base64.b64decode(signature["value"], validate=True)
        named = (signature["keyId"], signature["algorithm"])
    except (ValueError, KeyError, TypeError) as exc:
        return None, f"it is not a readable seal ({type(exc).__name__}: {exc})"
    if named != (signer.key_id, signer.algorithm):
        return None, (
            f"it is signed with {named[1]} key {named[0]}, not the seal key "
            f"({signer.algorithm} {signer.key_id})"
        )
    if not signer.verify(canonical(statement), value):
        return None, "its signature does not match its statement: the seal was altered"
    try:
        digest = hashlib.sha256(canonical(entries)).hexdigest()
        root = merkle_root(entries)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return None, f"its object list is unreadable ({type(exc).__name__}: {exc})"
    if digest != statement.get("manifestSha256") or root != statement.get("merkleRoot"):
        return None, "its object list is not the one its signed statement names"
    return seal, ""


def differences(sealed: list[dict], current: list[dict]) -> dict[str, list[dict]]:
    """What changed since sealing: objects whose bytes differ, vanished, added."""
    now = {entry["key"]: entry for entry in current}
    changed, vanished = [], []
    for entry in sorted(sealed, key=_by_key):
        found = now.pop(entry["key"], None)
        if found is None:
            vanished.append(
                {"key": entry["key"], "expected": entry["sha256"], "size": entry["size"]}
            )
        elif found["sha256"] != entry["sha256"]:
            changed.append(
                {
                    "key": entry["key"],
                    "expected": entry["sha256"],
                    "found": found["sha256"],
                    "expectedVersion": entry.get("versionId", ""),
                    "foundVersion": found.get("versionId", ""),
                }
            )
    added = [
        {"key": entry["key"], "found": entry["sha256"], "size": entry["size"]}
        for entry in sorted(now.values(), key=_by_key)
    ]
    return {"changed": changed, "vanished": vanished, "added": added}


@dataclass
class SealCheck:
    """What sealing or checking a day found."""

    status: str
    key: str
    statement: dict = field(default_factory=dict)  # of the seal that holds now, if any
    signed_with: str = ""
    problem: str = ""  # why the seal fails (TAMPERED)
    changed: list[dict] = field(default_factory=list)
    vanished: list[dict] = field(default_factory=list)
    added: list[dict] = field(default_factory=list)
    kept: dict | None = None  # the seal replaced by a new one: where it is kept, and why

    def describe(self) -> str:
        if self.status == Status.TAMPERED:
            return f"The seal fails: {self.problem}."
        sealed_at, count = self.statement.get("sealedAt", ""), self.statement.get("objects")
        if self.status == Status.VERIFIED:
            return f"Seal verified: all {count} objects as sealed at {sealed_at}."
        if self.status == Status.CHANGED:
            return (
                f"Changed since sealed at {sealed_at}: {len(self.changed)} changed, "
                f"{len(self.vanished)} vanished, {len(self.added)} added."
            )
        kept = ""
        if self.kept and self.kept["key"]:
            kept = f" The seal before ({self.kept['why']}) is kept as {self.kept['key']}."
        elif self.kept:
            kept = f" There was no seal before to keep ({self.kept['why']})."
        return f"Sealed {count} objects at {sealed_at}.{kept}"


def seal_or_verify(
    ctx: Context,
    day: date,
    *,
    expected_root: str = "",
    reseal: bool = False,
    threads: int = THREADS,
) -> SealCheck:
    """Verify the day's seal against its objects, or seal the day when it has none.

    ``expected_root``: the Merkle root of the seal this console wrote last, if any: a seal
    that is gone or names another root is tampered with. ``reseal``: seal the day as it is
    now although a seal exists; the old seal is kept beside it, numbered. A seal that still
    verifies against unchanged objects is left as it is."""
    signer = signer_for(ctx)
    key = seal_key(day)
    found = _read_seal(ctx, key)
    seal, problem = None, ""
    if found is not None:
        seal, problem = open_seal(found[0], signer)
        root = seal["statement"]["merkleRoot"] if seal else ""
        if seal and expected_root and root != expected_root:
            seal = None
            problem = f"it is not the seal this console wrote (root {root}, not {expected_root})"
    elif expected_root:
        problem = f"{key} is gone"
    if problem and not reseal:
        return SealCheck(Status.TAMPERED, key, problem=problem)  # its list is not to be trusted

    entries = read_objects(ctx, day, threads=threads)
    before = SealCheck(Status.TAMPERED, key, problem=problem) if problem else None
    if seal is not None:
        before = SealCheck(
            Status.VERIFIED,
            key,
            statement=seal["statement"],
            signed_with=_signed_with(seal["signature"]),
            **differences(seal["objects"], entries),
        )
        if before.changed or before.vanished or before.added:
            before.status = Status.CHANGED
        if not reseal or before.status == Status.VERIFIED:
            return before

    kept = None
    if before is not None:
        kept = {"key": _keep(ctx, day, found[0]) if found else "", "why": _why_replaced(before)}
    new = make_seal(ctx, day, entries, signer, datetime.now(UTC))
    _write(ctx, key, canonical(new), etag=found[1] if found else None)
    return SealCheck(
        Status.SEALED,
        key,
        statement=new["statement"],
        signed_with=_signed_with(new["signature"]),
        kept=kept,
    )


def _signed_with(signature: dict) -> str:
    return f"{signature['algorithm']} {signature['keyId']}"


def _why_replaced(verdict: SealCheck) -> str:
    if verdict.status == Status.TAMPERED:
        return f"it failed: {verdict.problem}"
    return (
        f"{len(verdict.changed)} changed, {len(verdict.vanished)} vanished, "
        f"{len(verdict.added)} added since"
    )


def _read_seal(ctx: Context, key: str) -> tuple[bytes, str] | None:
    try:
        found = ctx.client("s3").get_object(Bucket=ctx.name("AuditBucket"), Key=key)
    except ClientError as exc:
        if error_code(exc) in ("NoSuchKey", "404"):
            return None
        raise
    return found["Body"].read(), found["ETag"]


def _write(ctx: Context, key: str, body: bytes, *, etag: str | None) -> None:
    """Write the seal only over the one that was read (or where there was none): two checks
    of one day at once must not both seal it."""
    condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
    try:
        ctx.client("s3").put_object(
            Bucket=ctx.name("AuditBucket"),
            Key=key,
            Body=body,
            ContentType="application/json",
            **condition,
        )
    except ClientError as exc:
        # S3 answers a failed If-Match with 412, or 404 when the seal was deleted meanwhile.
        if error_code(exc) in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"):
            raise ProvisioningError(
                f"{key} was written by someone else while this run sealed the day: check it again"
            ) from exc
        raise


def _keep(ctx: Context, day: date, raw: bytes) -> str:
    """Keep the seal about to be replaced under the next free number; returns its key."""
    s3, bucket = ctx.client("s3"), ctx.name("AuditBucket")
    stem = f"seals/{day:%Y/%m/%d}."
    numbers = [
        int(middle)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=stem)
        for listed in page.get("Contents", [])
        if (middle := listed["Key"][len(stem) :].removesuffix(".json")).isdigit()
    ]
    number = max(numbers, default=0) + 1
    for _ in range(10):
        try:
            s3.put_object(
                Bucket=bucket,
                Key=kept_key(day, number),
                Body=raw,
                ContentType="application/json",
                IfNoneMatch="*",  # never over another kept seal
            )
            return kept_key(day, number)
        except ClientError as exc:
            if error_code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise
            number += 1
    raise ProvisioningError(f"no free number to keep the seal of {day} under")
