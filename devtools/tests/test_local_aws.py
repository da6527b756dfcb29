import os
import uuid

import pytest

from centralllm import aws
from devtools import services
from devtools.testing import create_audit_table, unique
from devtools.tests.test_local_codebuild import build, project
from llm_audit_ingest import local as local_ingest

KEY = "logs/2026/11/27/a b+c.json"  # a key that needs URL-encoding survives the replay


def test_local_aws_state_survives_a_restart(tmp_path, monkeypatch):
    bucket = f"kept-{uuid.uuid4().hex[:10]}"
    local_aws = services.LocalAWS(state_dir=tmp_path).start()
    for name, value in local_aws.env().items():
        monkeypatch.setenv(name, value)
    try:
        create_audit_table(bucket)
        aws.client("dynamodb").put_item(
            TableName=bucket, Item={"id": {"S": "kept"}, "createdAt": {"S": "2026-11-27"}}
        )
        s3 = aws.client("s3")
        location = {"LocationConstraint": aws.region()}
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration=location)
        queue = local_ingest.ensure_local_notification(bucket, bucket)
        s3.put_object(Bucket=bucket, Key=KEY, Body=b'{"kept": true}')
        s3.list_objects_v2(Bucket=bucket)  # read-only: left out of the replay
        assert "ObjectCreated" in _take_messages(queue)  # handled in this session
        # Random ids: left out, the local environment's apply creates it again.
        aws.client("apigateway").create_rest_api(name=bucket)
        # Task definitions are named by revision: kept, for a rollback after a restart.
        ecs = aws.client("ecs")
        container = {"name": "vllm", "image": "vllm:v1", "memory": 512}
        ecs.register_task_definition(family=bucket, containerDefinitions=[container])
        # A build is not replayed (it would run again), the image it pushed is.
        aws.client("ecr").create_repository(repositoryName=bucket)
        assert build(project(bucket), "v1")[0]["buildStatus"] == "SUCCEEDED"
        digest = aws.client("ecr").describe_images(repositoryName=bucket)["imageDetails"][0]
    finally:
        local_aws.stop()

    restarted = services.LocalAWS(port=local_aws.port, state_dir=tmp_path).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", restarted.dynamodb.url)
    try:
        body = aws.client("s3").get_object(Bucket=bucket, Key=KEY)["Body"]
        assert body.read() == b'{"kept": true}'
        assert aws.client("apigateway").get_rest_apis()["items"] == []
        assert aws.client("codebuild").list_builds()["ids"] == []
        found = aws.client("ecs").describe_task_definition(taskDefinition=f"{bucket}:1")
        assert found["taskDefinition"]["containerDefinitions"][0]["image"] == "vllm:v1"
        [image] = aws.client("ecr").describe_images(repositoryName=bucket)["imageDetails"]
        assert (image["imageTags"], image["imageDigest"]) == (["v1"], digest["imageDigest"])
        # DynamoDB Local kept its tables on disk (state_dir/dynamodb).
        item = aws.client("dynamodb").get_item(
            TableName=bucket, Key={"id": {"S": "kept"}, "createdAt": {"S": "2026-11-27"}}
        )
        assert item["Item"]["id"] == {"S": "kept"}
        # The object came back without notifying the ingest again; new objects still do.
        assert "ObjectCreated" not in _take_messages(queue)
        aws.client("s3").put_object(Bucket=bucket, Key="logs/new.json", Body=b"{}")
        assert "new.json" in _take_messages(queue)
    finally:
        restarted.stop()
    # Bucket, object, queue, its policy, the notification, the new object, the task definition,
    # the repository, the project and the image; not the deletes, not the build.
    assert services.compact_recording(tmp_path / "moto-recording.jsonl") == 10


def _take_messages(queue: str) -> str:
    """The bodies of the messages waiting in ``queue``, which are deleted."""
    sqs = aws.client("sqs")
    bodies = []
    while messages := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get(
        "Messages", []
    ):
        for message in messages:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return "\n".join(bodies)


def test_a_fresh_local_aws_without_state_starts_empty(monkeypatch):
    local_aws = services.LocalAWS().start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", local_aws.url)
    try:
        assert aws.client("s3").list_buckets()["Buckets"] == []
    finally:
        local_aws.stop()


def test_a_second_local_aws_on_a_taken_port_is_refused_with_a_reason():
    local_aws = services.LocalAWS().start()
    try:
        with pytest.raises(services.ServiceError, match=f"port {local_aws.port} is taken"):
            services.LocalAWS(port=local_aws.port).start()
        assert local_aws.alive()
    finally:
        local_aws.stop()


def test_dynamodb_is_served_by_dynamodb_local_and_everything_else_by_moto():
    local_aws = services.LocalAWS().start()
    try:
        env = local_aws.env()
        assert env["AWS_ENDPOINT_URL"] == local_aws.url
        assert env["AWS_ENDPOINT_URL_DYNAMODB"] == local_aws.dynamodb.url != local_aws.url
    finally:
        local_aws.stop()
    assert aws.client("dynamodb").meta.endpoint_url == os.environ["AWS_ENDPOINT_URL_DYNAMODB"]
    assert aws.client("s3").meta.endpoint_url == os.environ["AWS_ENDPOINT_URL"]
    # DynamoDB Local answers as AWS does: a Limit equal to the matches still gives a next key.
    name = unique("paging")
    create_audit_table(name)
    dynamodb = aws.client("dynamodb")
    for n in range(2):
        dynamodb.put_item(TableName=name, Item={"id": {"S": "p"}, "createdAt": {"S": f"t{n}"}})
    page = dynamodb.query(
        TableName=name,
        KeyConditionExpression="id = :id",
        ExpressionAttributeValues={":id": {"S": "p"}},
        Limit=2,
    )
    assert len(page["Items"]) == 2 and "LastEvaluatedKey" in page
