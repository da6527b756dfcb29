import os
import urllib.request
import uuid

from centralllm import aws


def test_client_factory_talks_to_the_local_aws_over_http():
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    bucket = f"factory-{uuid.uuid4().hex[:12]}"
    s3 = aws.client("s3")

    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": aws.region()})

    assert s3.meta.endpoint_url == endpoint
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    # The bucket lives in the server process, not in this one: plain HTTP sees it too.
    with urllib.request.urlopen(f"{endpoint}/{bucket}") as response:
        assert response.status == 200


def test_clients_use_adaptive_retries_and_are_built_once():
    sqs = aws.client("sqs")

    assert sqs.meta.config.retries["mode"] == "adaptive"
    assert aws.client("sqs") is sqs
    assert aws.client("sqs", max_attempts=1) is not sqs
