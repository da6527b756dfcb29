"""The DynamoDB table ``CentralLLMAudit``: its keys, its three GSIs, and where rollups live.

Audit items (see ``items.py``) carry the GSI key attributes. Rollups (see ``rollups.py``) live
in the same table under the base key only: ``id = "rollup#<dimension>#<value>"`` and
``createdAt = <hour>`` such as ``2026-11-27T05``. They carry no GSI attribute, so no GSI ever
sees them, and a time range of one rollup is a single Query on the base key.

Hot keys are spread over write shards (docs/audit-contract.md explains the arithmetic): shard
0 keeps the plain key, shard k > 0 adds ``.k`` to the key's prefix (``status.3#200``,
``rollup#statusClass.3#2xx``). Readers query every shard and merge. Raising a shard count is
safe (old items sit in shards the readers still read); lowering it hides items.
"""

import zlib

from centralllm.audit.contract import table_name

BILLING_MODE = "PAY_PER_REQUEST"

KEY_SCHEMA = [
    {"AttributeName": "id", "KeyType": "HASH"},
    {"AttributeName": "createdAt", "KeyType": "RANGE"},
]
ATTRIBUTE_DEFINITIONS = [
    {"AttributeName": "id", "AttributeType": "S"},
    {"AttributeName": "createdAt", "AttributeType": "S"},
]

USER_TIME = "GSI_UserTime"
STATUS_TIME = "GSI_StatusTime"
PROJECT_LATENCY = "GSI_ProjectLatency"


def _index(name: str, hash_key: str, range_key: str) -> dict:
    return {
        "IndexName": name,
        "KeySchema": [
            {"AttributeName": hash_key, "KeyType": "HASH"},
            {"AttributeName": range_key, "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
        # Each index brings its own attribute definitions so provisioning can add them one
        # UpdateTable at a time, as AWS requires.
        "AttributeDefinitions": [
            {"AttributeName": hash_key, "AttributeType": "S"},
            {"AttributeName": range_key, "AttributeType": "S"},
        ],
    }


# In creation order (deployment guide, section 3.2).
GLOBAL_SECONDARY_INDEXES = [
    _index(USER_TIME, "userIdPk", "userIdSk"),
    _index(STATUS_TIME, "statusPk", "statusSk"),
    _index(PROJECT_LATENCY, "latencyPk", "latencySk"),
]

# Every request lands in one of a handful of status keys and status-class rollups, so those
# are spread over shards. User and project keys are hot only when one caller dominates.
STATUS_SHARDS = 8
ROLLUP_SHARDS = 8


def gsi_update(index: dict) -> dict:
    """UpdateTable arguments that add ``index`` (one of GLOBAL_SECONDARY_INDEXES)."""
    create = {name: index[name] for name in ("IndexName", "KeySchema", "Projection")}
    return {
        "AttributeDefinitions": index["AttributeDefinitions"],
        "GlobalSecondaryIndexUpdates": [{"Create": create}],
    }


def create_table_request(name: str | None = None) -> dict:
    """CreateTable arguments for the whole table, GSIs included (CreateTable takes them all)."""
    definitions = list(ATTRIBUTE_DEFINITIONS)
    for index in GLOBAL_SECONDARY_INDEXES:
        definitions += index["AttributeDefinitions"]
    return {
        "TableName": name or table_name(),
        "KeySchema": KEY_SCHEMA,
        "AttributeDefinitions": definitions,
        "BillingMode": BILLING_MODE,
        "GlobalSecondaryIndexes": [
            {key: value for key, value in index.items() if key != "AttributeDefinitions"}
            for index in GLOBAL_SECONDARY_INDEXES
        ],
    }


def shard_of(request_id: str, shards: int) -> int:
    """A stable shard for a request: the same record always lands in the same shard."""
    return zlib.crc32(request_id.encode()) % shards


def sharded(prefix: str, shard: int) -> str:
    return prefix if shard == 0 else f"{prefix}.{shard}"
