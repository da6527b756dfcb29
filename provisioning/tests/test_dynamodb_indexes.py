"""Adding GSIs one at a time, as real AWS requires (moto builds them at once: Stubber here)."""

import pytest
from botocore.stub import Stubber

from centralllm.audit import table
from provisioning.resources.dynamodb import AuditTable

# A region no other test uses, so the stubbed client is ours alone.
REGION = "ap-southeast-2"
USER, STATUS, LATENCY = (index["IndexName"] for index in table.GLOBAL_SECONDARY_INDEXES)


def described(table_status: str = "ACTIVE", **indexes: str) -> dict:
    """A DescribeTable answer shaped like real AWS's, with each index's status."""
    return {
        "Table": {
            "TableName": "CentralLLMAudit-stub",
            "TableStatus": table_status,
            "KeySchema": table.KEY_SCHEMA,
            "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": name,
                    "IndexStatus": status,
                    # AWS backfills a new index from the existing items while it is CREATING.
                    "Backfilling": status == "CREATING",
                    "KeySchema": [{"AttributeName": f"{name}Pk", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "ALL"},
                }
                for name, status in indexes.items()
            ],
        }
    }


@pytest.fixture
def resource(stubbed):
    ctx, stubber, sleeps = stubbed("dynamodb", REGION)
    return AuditTable(ctx), stubber, sleeps


def expect_update(stubber: Stubber, index: dict, error: str = "") -> None:
    params = {"TableName": "CentralLLMAudit-stub", **table.gsi_update(index)}
    if error:
        stubber.add_client_error(
            "update_table",
            service_error_code=error,
            service_message="Subscriber limit exceeded: Only 1 online index can be created "
            "or deleted simultaneously per table",
            expected_params=params,
        )
    else:
        answer = {"TableDescription": described("UPDATING")["Table"]}
        stubber.add_response("update_table", answer, params)


def test_missing_indexes_are_added_one_at_a_time_each_waited_for(resource):
    audit_table, stubber, sleeps = resource
    name = "CentralLLMAudit-stub"
    stubber.add_response("describe_table", described(**{USER: "ACTIVE"}), {"TableName": name})
    expect_update(stubber, table.GLOBAL_SECONDARY_INDEXES[1])
    # The second index is not requested before the first is built.
    stubber.add_response(
        "describe_table", described("UPDATING", **{USER: "ACTIVE", STATUS: "CREATING"})
    )
    stubber.add_response("describe_table", described(**{USER: "ACTIVE", STATUS: "CREATING"}))
    stubber.add_response("describe_table", described(**{USER: "ACTIVE", STATUS: "ACTIVE"}))
    stubber.add_response("describe_table", described(**{USER: "ACTIVE", STATUS: "ACTIVE"}))
    expect_update(stubber, table.GLOBAL_SECONDARY_INDEXES[2])
    stubber.add_response(
        "describe_table", described(**{USER: "ACTIVE", STATUS: "ACTIVE", LATENCY: "ACTIVE"})
    )

    current = {"indexes": [USER]}
    audit_table.update(audit_table.desired(), current, ["indexes"])

    assert sleeps == [AuditTable.poll_seconds] * 2
    lines = audit_table.ctx.progress.lines
    assert f"adding index {STATUS}" in lines
    usually = "usually under a minute, hours while an index backfills a large table"
    assert f"waiting for {STATUS} CREATING: 10 s; {usually}" in lines


def test_a_concurrent_index_build_is_waited_out_and_the_create_retried(resource):
    audit_table, stubber, sleeps = resource
    # Someone else's index is still building: AWS refuses a second one until it is done.
    stubber.add_response("describe_table", described(**{USER: "ACTIVE", STATUS: "ACTIVE"}))
    expect_update(stubber, table.GLOBAL_SECONDARY_INDEXES[2], error="LimitExceededException")
    stubber.add_response("describe_table", described(**{USER: "ACTIVE", STATUS: "CREATING"}))
    stubber.add_response("describe_table", described(**{USER: "ACTIVE", STATUS: "ACTIVE"}))
    expect_update(stubber, table.GLOBAL_SECONDARY_INDEXES[2])
    stubber.add_response(
        "describe_table", described(**{USER: "ACTIVE", STATUS: "ACTIVE", LATENCY: "ACTIVE"})
    )

    audit_table.update(audit_table.desired(), {"indexes": [USER, STATUS]}, ["indexes"])

    assert sleeps == [AuditTable.poll_seconds] * 2
    assert any("LimitExceededException" in line for line in audit_table.ctx.progress.lines)


def test_a_table_still_being_created_is_waited_for(resource):
    audit_table, stubber, sleeps = resource
    stubber.add_response("describe_table", described("CREATING"))
    stubber.add_response("describe_table", described("CREATING"))
    stubber.add_response("describe_table", described("ACTIVE"))

    audit_table.wait_until_active()

    assert sleeps == [AuditTable.poll_seconds] * 2
