"""SQS refuses a queue's name for a minute after it is deleted (moto does not: Stubber here), so
an apply right after a destroy waits instead of failing."""

import pytest
from botocore.exceptions import ClientError

from provisioning.resources.sqs import DeadLetterQueue

# A region no other test uses, so the stubbed client is ours alone.
REGION = "ap-south-2"
DELETED_RECENTLY = "AWS.SimpleQueueService.QueueDeletedRecently"


@pytest.fixture
def queue(stubbed):
    ctx, stubber, sleeps = stubbed("sqs", REGION)
    return DeadLetterQueue(ctx), stubber, sleeps


def test_a_name_deleted_less_than_a_minute_ago_is_waited_for(queue):
    dlq, stubber, sleeps = queue
    for _attempt in range(2):
        stubber.add_client_error("create_queue", DELETED_RECENTLY, "wait 60 seconds", 400)
    stubber.add_response(
        "create_queue",
        {"QueueUrl": "https://sqs/llm-audit-dlq-stub"},
        {"QueueName": "llm-audit-dlq-stub", "Attributes": dlq.desired()["attributes"]},
    )

    dlq.create(dlq.desired())

    assert sleeps == [2, 4]


def test_other_errors_fail_at_once(queue):
    dlq, stubber, sleeps = queue
    stubber.add_client_error("create_queue", "InvalidAttributeValue", "bad retention", 400)

    with pytest.raises(ClientError, match="bad retention"):
        dlq.create(dlq.desired())
    assert sleeps == []
