"""SQS: the audit dead-letter queue, and locally the queue that stands in for the ingest Lambda."""

from botocore.exceptions import ClientError

from provisioning.resources.base import Resource, Spec, error_code, ignoring, retrying

FOURTEEN_DAYS = str(14 * 24 * 3600)


def _deleted_recently(exc: ClientError) -> bool:
    # SQS refuses a queue's name for 60 seconds after the queue is deleted.
    return error_code(exc) in (
        "AWS.SimpleQueueService.QueueDeletedRecently",
        "QueueDeletedRecently",
    )


class Queue(Resource):
    service = "sqs"
    attributes: dict[str, str] = {}

    def desired(self) -> dict:
        return {"attributes": self.attributes}

    def _url(self) -> str | None:
        found = ignoring(
            lambda: self.client.get_queue_url(QueueName=self.name),
            "AWS.SimpleQueueService.NonExistentQueue",
            "QueueDoesNotExist",
        )
        return found["QueueUrl"] if found else None

    def read(self) -> dict | None:
        url = self._url()
        if url is None:
            return None
        found = self.client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
        attributes = found["Attributes"]
        return {
            "url": url,
            "arn": attributes["QueueArn"],
            "attributes": {name: attributes.get(name) for name in self.attributes},
        }

    def create(self, desired: dict) -> None:
        retrying(
            self.ctx,
            lambda: self.client.create_queue(QueueName=self.name, Attributes=desired["attributes"]),
            retry_if=_deleted_recently,
            why="a queue of this name was deleted less than a minute ago",
        )

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        self.client.set_queue_attributes(QueueUrl=current["url"], Attributes=desired["attributes"])

    def delete(self, current: dict) -> None:
        self.client.delete_queue(QueueUrl=current["url"])

    def outputs(self, current: dict) -> dict:
        return {"name": self.name, "url": current["url"], "arn": current["arn"]}


class DeadLetterQueue(Queue):
    key = "sqs.dlq"
    title = "SQS audit dead-letter queue"
    base_name = "DlqName"
    # Failed audit events wait as long as SQS allows, for an operator to replay them.
    attributes = {"MessageRetentionPeriod": FOURTEEN_DAYS}


class LocalIngestQueue(Queue):
    """Locally the Lambda cannot run, so new audit records are queued for the local consumer."""

    key = "sqs.local_ingest_queue"
    title = "SQS local ingest queue"
    base_name = "LocalIngestQueue"
    attributes = {"MessageRetentionPeriod": FOURTEEN_DAYS}

    @classmethod
    def wanted(cls, spec: Spec) -> bool:
        return spec.is_local
