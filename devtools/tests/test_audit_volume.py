"""bulk_load leaves a table as real ingest does: the same items, the same rollup totals."""

import pytest
from boto3.dynamodb.types import TypeDeserializer
from botocore.stub import Stubber

from audit_explorer import demo
from centralllm import aws
from centralllm.audit.ingest import ingest_record, write_actions
from devtools.audit_volume import bulk_load
from devtools.testing import create_audit_table, unique


@pytest.fixture
def bulk_table() -> str:
    name = create_audit_table(unique("audit-bulk"))
    yield name
    aws.client("dynamodb").delete_table(TableName=name)


def scan(table: str) -> dict[tuple[str, str], dict]:
    """Every item of the table by key, numbers as exact Decimals.

    Numbers are compared by value: DynamoDB Local's ADD keeps a sum's trailing zeros
    ("7828.210") where its Put (and AWS, always) trims them ("7828.21").
    """
    pages = aws.client("dynamodb").get_paginator("scan").paginate(TableName=table)
    exact = TypeDeserializer().deserialize
    return {
        (item["id"]["S"], item["createdAt"]["S"]): {name: exact(v) for name, v in item.items()}
        for page in pages
        for item in page["Items"]
    }


def test_bulk_load_writes_what_ingest_writes(audit_table, bulk_table):
    # One day: a rollup collects several records, so the totals are really added up.
    records = list(demo.records(200, days=1, seed=11))
    for record in records:
        assert ingest_record(record, table=audit_table)

    assert bulk_load(iter(records), table=bulk_table) == 200

    ingested, loaded = scan(audit_table), scan(bulk_table)
    assert {(record["requestId"], record["createdAt"]) for record in records} <= ingested.keys()
    rollups = [key for key in ingested if key[0].startswith("rollup#")]
    assert max(ingested[key]["requests"] for key in rollups) > 5
    assert loaded.keys() == ingested.keys()
    for key, item in ingested.items():
        assert loaded[key] == item, key


def test_unprocessed_items_are_sent_again():
    # DynamoDB Local never throttles; AWS returns what it did not write (documented response).
    record = next(demo.records(1, days=1))
    puts = [
        {"PutRequest": {"Item": action["Put"]["Item"]}}
        for action in write_actions(record, table="any")
        if "Put" in action
    ]
    with Stubber(aws.client("dynamodb")) as stubber:
        stubber.add_response("batch_write_item", {"UnprocessedItems": {"any": puts}})
        stubber.add_response("batch_write_item", {}, {"RequestItems": {"any": puts}})
        assert bulk_load([record], table="any") == 1
        stubber.assert_no_pending_responses()
