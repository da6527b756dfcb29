"""The audit record: one JSON object per request to the model, written by the serving
middleware to ``logs/YYYY/MM/DD/<requestId>.json`` in the audit bucket and read by the
``llm-audit-ingest`` Lambda. This module is the only definition of its shape.

The serving deployment is described from these environment variables (all optional):

- ``IMAGE_TAG``                 the inference image tag (the commit CodeBuild tagged it with)
- ``TASK_DEFINITION_REVISION``  the ECS task definition revision, e.g. ``central-llm-service:42``
- ``VLLM_VERSION``              the vLLM version; falls back to the installed ``vllm`` package
- ``SERVED_MODEL_NAME``         the model name clients ask for; falls back to ``MODEL_ID``
- ``HOSTNAME``                  the host or task; falls back to the machine's host name
"""

import json
import math
import os
import re
import socket
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

SCHEMA_VERSION: int = 1

DEFAULT_AUDIT_BUCKET = "central-llm-audit"
DEFAULT_RAW_BUCKET = "central-llm-audit-raw"
DEFAULT_TABLE_NAME = "CentralLLMAudit"

# The request headers that say who asked (API Gateway requires the first three, and so does
# the serving middleware), and the one the gateway fills with the caller's API key id.
SOURCE_HEADER = "x-llm-source"  # the project
USER_HEADER = "x-llm-user"
REQUEST_TYPE_HEADER = "x-llm-request-type"
REQUIRED_HEADERS = (SOURCE_HEADER, USER_HEADER, REQUEST_TYPE_HEADER)
API_KEY_ID_HEADER = "x-api-key-id"
# API Gateway's own request id (an integration mapping from context.requestId, which replaces
# any value a client sent); it names the record.
REQUEST_ID_HEADER = "x-request-id"
# A value only the gateway knows, set by the integration on every request it passes on: the
# serving middleware trusts x-request-id and x-api-key-id only when it comes with them. The
# engine keeps it in Secrets Manager; ECS hands it to the task in this environment variable.
GATEWAY_SECRET_HEADER = "x-llm-gateway-secret"  # noqa: S105 (a name, not a secret)
GATEWAY_SECRET_ENV = "AUDIT_GATEWAY_SECRET"  # noqa: S105
# In the audit bucket, outside logs/ (no ingest): which projects each API key may file under,
# published by the console, re-read by every serving host (``ATTRIBUTION_SECONDS``).
ATTRIBUTION_KEY = "config/attribution.json"
ATTRIBUTION_SECONDS = 30

# The most UTF-8 bytes each header may hold, and the record field it becomes. They keep every
# key built from them (``user#<user>``, ``rollup#user.7#<user>``, ``project#<project>``)
# far inside DynamoDB's key size limits (2048 bytes for a partition key). A longer value gets
# a 400 at the serving middleware, and a record holding one is refused by the ingest.
HEADER_LIMITS = {
    SOURCE_HEADER: ("project", 128),
    USER_HEADER: ("user", 256),
    REQUEST_TYPE_HEADER: ("requestType", 64),
    API_KEY_ID_HEADER: ("apiKeyId", 128),
}


def overlong_header(values: Mapping[str, str | None]) -> str | None:
    """The first header of ``values`` (header name to value) longer than its limit."""
    for header, (_, limit) in HEADER_LIMITS.items():
        value = values.get(header)
        if value is not None and len(value.encode()) > limit:
            return header
    return None


OUTCOMES = ("ok", "client_error", "server_error", "cancelled")

# What a record may say about itself besides its outcome, in ``flags``.
FLAGS = {
    "untrusted_source": "came without the gateway's secret: its request id is the middleware's"
    " own and its API key id is not known",
    "audit_conflict": "its request id already named a stored record with other content: stored"
    " under a new id, the first record left as it was",
    "truncated": "the response was longer than the audit captures: the record holds its start",
    "ttft_unusable": "its time to first token was not a number from 0 to its latency (a clock"
    " gone wrong, a writer not ours): read as none, the request kept",
}

# Error messages come from upstream exceptions; an audit record is not the place for a stack dump.
MAX_ERROR_MESSAGE_CHARS = 2000

_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
# The request id becomes part of an S3 key and of DynamoDB keys: no slashes, no control
# characters, and not the prefix of rollup items. Anything else (spaces, '+', a gateway's own
# format) is accepted.
_REQUEST_ID = re.compile(r"^(?!rollup#)[^/\x00-\x1f\x7f]{1,200}$")


_STR = (str,)
_OPT_STR = (str, type(None))
_NUMBER = (int, float)
_OPT_NUMBER = (int, float, type(None))

# Every field must be present (null where allowed), so a writer cannot silently drop one.
FIELDS: dict[str, tuple] = {
    "schemaVersion": (int,),
    "requestId": _STR,
    "createdAt": _STR,
    "project": _OPT_STR,
    "user": _OPT_STR,
    "requestType": _OPT_STR,
    "apiKeyId": _OPT_STR,
    "method": _STR,
    "path": _STR,
    "model": _OPT_STR,
    "stream": (bool,),
    "status": (int,),
    "outcome": _STR,
    "latencyMs": _NUMBER,
    "ttftMs": _OPT_NUMBER,
    "usage": (dict, type(None)),
    "error": (dict, type(None)),
    "deployment": (dict,),
    "prompt": _OPT_STR,
    "completion": _OPT_STR,
    "rawKey": _STR,
}
USAGE_FIELDS: dict[str, tuple] = {
    "promptTokens": (int,),
    "completionTokens": (int,),
    "totalTokens": (int,),
}
ERROR_FIELDS: dict[str, tuple] = {"type": _STR, "message": _STR}
DEPLOYMENT_FIELDS: dict[str, tuple] = {
    "imageTag": _OPT_STR,
    "taskDefinitionRevision": _OPT_STR,
    "vllmVersion": _OPT_STR,
    "model": _OPT_STR,
    "host": _OPT_STR,
}


class InvalidRecord(ValueError):
    """A record that does not follow the contract; the message is the reason, for an operator."""


# Names come from the environment when asked for, never at import: a process may set its
# environment after importing this (tests, the local consumer).
def audit_bucket(environ: Mapping[str, str] = os.environ) -> str:
    return environ.get("AUDIT_BUCKET") or DEFAULT_AUDIT_BUCKET


def raw_bucket(environ: Mapping[str, str] = os.environ) -> str:
    return environ.get("RAW_BUCKET") or DEFAULT_RAW_BUCKET


def table_name(environ: Mapping[str, str] = os.environ) -> str:
    return environ.get("TABLE_NAME") or DEFAULT_TABLE_NAME


def new_request_id() -> str:
    return str(uuid.uuid4())


def is_valid_request_id(value: str) -> bool:
    """Whether a request id can name a record: the ingest's rule, and the middleware's test of
    the gateway's id (it makes a ``new_request_id()`` for one that fails)."""
    return bool(_REQUEST_ID.match(value))


def outcome_for(status: int, *, cancelled: bool = False) -> str:
    if cancelled:
        return "cancelled"
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "client_error"
    return "ok"


def format_timestamp(moment: datetime) -> str:
    """UTC, ISO-8601 with milliseconds and a 'Z': ``2026-11-27T05:09:09.123Z``."""
    if moment.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _installed_vllm_version() -> str | None:
    try:
        return version("vllm")
    except PackageNotFoundError:
        return None


def deployment_from_env(environ: Mapping[str, str] = os.environ) -> dict:
    """What is serving: read once at start-up by the middleware, copied into every record."""
    return {
        "imageTag": environ.get("IMAGE_TAG") or None,
        "taskDefinitionRevision": environ.get("TASK_DEFINITION_REVISION") or None,
        "vllmVersion": environ.get("VLLM_VERSION") or _installed_vllm_version(),
        "model": environ.get("SERVED_MODEL_NAME") or environ.get("MODEL_ID") or None,
        "host": environ.get("HOSTNAME") or socket.gethostname(),
    }


def _usage(usage: Mapping | None) -> dict | None:
    """Token usage from OpenAI's ``usage`` object (snake_case) or the record's own (camelCase)."""
    if usage is None:
        return None
    prompt = usage.get("prompt_tokens", usage.get("promptTokens")) or 0
    completion = usage.get("completion_tokens", usage.get("completionTokens")) or 0
    total = usage.get("total_tokens", usage.get("totalTokens")) or prompt + completion
    return {"promptTokens": prompt, "completionTokens": completion, "totalTokens": total}


def _error(error: Mapping | None) -> dict | None:
    if error is None:
        return None
    message = str(error.get("message") or "")[:MAX_ERROR_MESSAGE_CHARS]
    return {"type": str(error.get("type") or "error"), "message": message}


def _day_path(created_at: str) -> str:
    return f"{created_at[0:4]}/{created_at[5:7]}/{created_at[8:10]}"


def record_key(record: dict) -> str:
    return f"logs/{_day_path(record['createdAt'])}/{record['requestId']}.json"


def raw_key(record: dict) -> str:
    return f"raw/{_day_path(record['createdAt'])}/{record['requestId']}.json"


def build_record(
    *,
    request_id: str,
    created_at: datetime,
    project: str | None,
    user: str | None,
    request_type: str | None,
    api_key_id: str | None,
    method: str,
    path: str,
    model: str | None,
    stream: bool,
    status: int,
    cancelled: bool,
    latency_ms: float,
    ttft_ms: float | None,
    usage: dict | None,
    error: dict | None,
    deployment: dict,
    prompt: str | None,
    completion: str | None,
    flags: tuple[str, ...] = (),
) -> dict:
    """The audit record of one request.

    ``project``, ``user`` and ``request_type`` are the ``x-llm-source``, ``x-llm-user`` and
    ``x-llm-request-type`` headers; they are None only on the 400 that rejects a request
    lacking them. ``usage`` may be OpenAI's ``usage`` object as the model returned it.
    """
    record = {
        "schemaVersion": SCHEMA_VERSION,
        "requestId": request_id,
        "createdAt": format_timestamp(created_at),
        "project": project,
        "user": user,
        "requestType": request_type,
        "apiKeyId": api_key_id,
        "method": method,
        "path": path,
        "model": model,
        "stream": stream,
        "status": status,
        "outcome": outcome_for(status, cancelled=cancelled),
        "latencyMs": round(latency_ms, 3),
        "ttftMs": None if ttft_ms is None else round(ttft_ms, 3),
        "usage": _usage(usage),
        "error": _error(error),
        "deployment": {name: deployment.get(name) for name in DEPLOYMENT_FIELDS},
        "prompt": prompt,
        "completion": completion,
        "flags": sorted(set(flags)),
    }
    record["rawKey"] = raw_key(record)
    return validate_record(record)


def dumps(record: dict) -> bytes:
    try:
        return _dumps(record)
    except UnicodeEncodeError:
        # A lone surrogate (JSON's "\ud800" escape: valid JSON, but no UTF-8) would leave the
        # record unstorable, and any caller can send one: replaced, the record still goes.
        return _dumps(encodable(record))


def _dumps(record: dict) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def encodable(value: Any) -> Any:
    """``value`` with every lone surrogate, in keys and values, replaced by U+FFFD."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {encodable(key): encodable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [encodable(item) for item in value]
    return value


_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    dict: "an object",
    type(None): "null",
}


def _check_fields(data: dict, fields: dict[str, tuple], where: str) -> None:
    missing = [name for name in fields if name not in data]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise InvalidRecord(f"missing field{plural} {', '.join(where + name for name in missing)}")
    for name, types in fields.items():
        value = data[name]
        # bool is an int in Python; a JSON true is never a valid count or status.
        wrong_bool = isinstance(value, bool) and bool not in types
        if wrong_bool or not isinstance(value, types):
            expected = " or ".join(dict.fromkeys(_TYPE_NAMES[t] for t in types))
            raise InvalidRecord(
                f"field {where}{name} must be {expected}, got {json.dumps(value)[:80]}"
            )


def validate_record(data: Any) -> dict:
    """The record in ``data`` (a dict, or JSON text or bytes), checked against the contract.

    Raises InvalidRecord saying what is wrong: not JSON, unknown schema version, missing
    field, bad type or value. Unknown extra fields are ignored and not returned.
    """
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidRecord(f"not valid JSON: {exc}") from None
        except RecursionError:
            raise InvalidRecord("nested too deeply to be an audit record") from None
    if not isinstance(data, dict):
        raise InvalidRecord(f"the record must be a JSON object, got {type(data).__name__}")
    if "schemaVersion" not in data:
        raise InvalidRecord("missing field schemaVersion")
    if data["schemaVersion"] != SCHEMA_VERSION:
        raise InvalidRecord(
            f"unknown schema version {json.dumps(data['schemaVersion'])[:40]}"
            f" (this ingest understands {SCHEMA_VERSION})"
        )
    _check_fields(data, FIELDS, "")
    for name, fields in (("usage", USAGE_FIELDS), ("error", ERROR_FIELDS)):
        if data[name] is not None:
            _check_fields(data[name], fields, f"{name}.")
    _check_fields(data["deployment"], DEPLOYMENT_FIELDS, "deployment.")

    for header, (name, limit) in HEADER_LIMITS.items():
        # Measured as ``encodable`` will leave it: a lone surrogate is three bytes, as U+FFFD.
        size = None if data[name] is None else len(data[name].encode(errors="surrogatepass"))
        if size is not None and size > limit:
            raise InvalidRecord(f"{name} ({header}) is {size} bytes: at most {limit}")
    if not is_valid_request_id(data["requestId"]):
        raise InvalidRecord(
            f"requestId {data['requestId'][:80]!r} must be 1-200 characters without '/'"
            " or control characters, not starting with 'rollup#'"
        )
    if not _TIMESTAMP.match(data["createdAt"]):
        raise InvalidRecord(
            f"createdAt {data['createdAt'][:40]!r} must be UTC ISO-8601 with milliseconds,"
            " like 2026-11-27T05:09:09.123Z"
        )
    try:
        parse_timestamp(data["createdAt"])
    except ValueError:
        raise InvalidRecord(f"createdAt {data['createdAt']!r} is not a real date") from None
    if not 100 <= data["status"] <= 599:
        raise InvalidRecord(f"status {data['status']} is not an HTTP status")
    if data["outcome"] not in OUTCOMES:
        allowed = ", ".join(OUTCOMES)
        raise InvalidRecord(f"outcome {data['outcome'][:40]!r} must be one of {allowed}")
    if not 0 <= data["latencyMs"] < math.inf:
        raise InvalidRecord(
            f"latencyMs must be a finite number of at least 0, got {data['latencyMs']}"
        )
    if data["rawKey"] != raw_key(data):
        # The explorer serves the raw bodies from here: never another request's.
        raise InvalidRecord(
            f"rawKey {data['rawKey'][:80]!r} is not this record's: {raw_key(data)!r}"
        )

    # Added to schema 1 later: a record written before it has none.
    flags = data.get("flags", [])
    if not isinstance(flags, list) or not all(
        isinstance(flag, str) and flag in FLAGS for flag in flags
    ):
        raise InvalidRecord(
            f"flags must be a list of {', '.join(FLAGS)}, got {json.dumps(flags)[:80]}"
        )

    record = {name: data[name] for name in FIELDS}
    # A bad time to first token is no reason to lose the audit of who asked what (a bad
    # latencyMs is: it orders a project's index): read as none, and said so. The serving
    # middleware never writes one (both are read from one monotonic clock).
    if record["ttftMs"] is not None and not 0 <= record["ttftMs"] <= record["latencyMs"]:
        record["ttftMs"] = None
        flags = [*flags, "ttft_unusable"]
    record["flags"] = sorted(set(flags))
    record["deployment"] = {name: data["deployment"][name] for name in DEPLOYMENT_FIELDS}
    for name, fields in (("usage", USAGE_FIELDS), ("error", ERROR_FIELDS)):
        if record[name] is not None:
            record[name] = {field: data[name][field] for field in fields}
    return record
