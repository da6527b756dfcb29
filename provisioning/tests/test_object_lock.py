"""S3 Object Lock on the audit bucket, an option per environment (issue 20): set on the form
(compliance only once confirmed), applied by the audit bucket, shown on the environment page.

AWS enables Object Lock on an existing, versioned bucket with PutObjectLockConfiguration
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock-configure.html) and changes
or removes its default retention whenever asked, but never turns it off. moto sets and changes
it only on an empty bucket: what AWS does with a bucket holding records is checked with
botocore's Stubber and AWS's documented answers."""

import pytest
from django.urls import reverse

from centralllm import aws
from provisioning import engine
from provisioning.models import Environment
from provisioning.resources.base import Context, ProvisioningError
from provisioning.resources.s3 import AuditBucket, declared_lock

pytestmark = pytest.mark.django_db
REGION = "eu-north-1"  # no other test file uses it: clients are shared process-wide
BUCKET = "central-llm-audit-stub"
GOVERNANCE = {"mode": "GOVERNANCE", "days": 30}
COMPLIANCE = {"mode": "COMPLIANCE", "days": 365}


def edit(client, environment, **changes):
    url = reverse("provisioning:environment-edit", args=[environment.name])
    form = client.get(url).context["form"]
    data = {name: value for name, value in form.initial.items() if value is not None}
    return client.post(url, {**data, **changes})


def test_compliance_mode_is_saved_only_once_its_consequences_are_confirmed(
    client, admin_user, environment
):
    client.force_login(admin_user)
    page = client.get(reverse("provisioning:environment-edit", args=[environment.name]))
    assert "not even the AWS account&#x27;s root user" in page.content.decode()

    refused = edit(client, environment, object_lock_mode="COMPLIANCE", object_lock_days=365)
    assert refused.status_code == 200
    assert "tick the box to confirm" in refused.content.decode()
    environment.refresh_from_db()
    assert environment.object_lock == "off"

    saved = edit(
        client,
        environment,
        object_lock_mode="COMPLIANCE",
        object_lock_days=365,
        confirm_compliance="on",
    )
    assert saved.status_code == 302
    environment.refresh_from_db()
    assert environment.object_lock == "compliance, 365 days"
    # Other edits leave it as confirmed; more days is another irreversible step.
    assert edit(client, environment, desired_count=2).status_code == 302
    assert edit(client, environment, object_lock_days=400).status_code == 200
    # Governance mode can be bypassed by those allowed to: no confirmation.
    assert edit(client, environment, object_lock_mode="GOVERNANCE").status_code == 302


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ({"object_lock_mode": "GOVERNANCE", "object_lock_days": 0}, "one day or more"),
        # A locked object outlives the lifecycle's expiry: records hidden but kept.
        (
            {"object_lock_mode": "GOVERNANCE", "object_lock_days": 500},
            "Records expire after 400 days: lock them at most as long",
        ),
    ],
)
def test_a_lock_that_cannot_work_is_refused(declared, message):
    environment = Environment(name="locked", is_local=True, **declared)
    with pytest.raises(Exception, match=message):
        environment.spec()


def test_records_kept_for_ever_may_be_locked_for_long():
    declared = {"audit_retention_days": 0, "object_lock_mode": "COMPLIANCE"}
    spec = Environment(name="locked", is_local=True, object_lock_days=3650, **declared).spec()
    assert declared_lock(spec) == {"mode": "COMPLIANCE", "days": 3650}


def test_the_bucket_is_locked_by_an_apply_and_the_page_shows_it(client, viewer, environment):
    environment.object_lock_mode, environment.object_lock_days = "GOVERNANCE", 1
    environment.save()
    spec = environment.spec()
    assert engine.apply_one(spec, AuditBucket.key) == "created"

    s3 = aws.client("s3")
    bucket = f"central-llm-audit{spec.suffix}"
    config = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert config["ObjectLockEnabled"] == "Enabled"
    assert config["Rule"]["DefaultRetention"]["Mode"] == "GOVERNANCE"
    assert config["Rule"]["DefaultRetention"]["Days"] == 1
    # The retention still expires records: under versioning an expiry leaves a noncurrent
    # version, removed 7 days later (once its lock has ended), and then its delete marker.
    rules = {
        rule["ID"]: rule for rule in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    }
    assert rules["audit-records"]["Expiration"] == {"Days": 400}
    assert rules["audit-records"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 7}
    client.force_login(viewer)
    page = client.get(reverse("provisioning:environment", args=[environment.name]))
    lock = page.content.decode().split("data-object-lock>")[1].split("</p>")[0]
    assert "<strong>governance, 1 day</strong>" in lock and "in AWS now" not in lock

    # A record written now is locked; destroying the data bypasses governance mode.
    s3.put_object(Bucket=bucket, Key="logs/2026/12/04/r1.json", Body=b"{}")
    ctx = Context(spec)
    try:
        audit = AuditBucket(ctx)
        current = audit.read()
        assert engine.diff(audit.desired(), current) == {}
        audit.delete(current)
    finally:
        ctx.close()
    assert bucket not in [item["Name"] for item in s3.list_buckets()["Buckets"]]


def test_the_local_aws_refusing_a_bucket_with_objects_is_explained(environment):
    spec = environment.spec()
    engine.apply_one(spec, AuditBucket.key)
    bucket = f"central-llm-audit{spec.suffix}"
    aws.client("s3").put_object(Bucket=bucket, Key="logs/2026/12/04/r1.json", Body=b"{}")
    environment.object_lock_mode, environment.object_lock_days = "GOVERNANCE", 1

    with pytest.raises(ProvisioningError, match=r"the local AWS \(moto\) sets Object Lock only"):
        engine.apply_one(environment, AuditBucket.key)


@pytest.fixture
def audit(stubbed, real_aws):
    ctx, stubber, _ = stubbed("s3", REGION)
    return AuditBucket(ctx), stubber


def test_aws_locks_a_bucket_that_already_holds_records(audit):
    """No emptiness needed since November 2023: PutObjectLockConfiguration with
    ObjectLockEnabled=Enabled on a versioned bucket (object-lock-configure.html)."""
    bucket, stubber = audit
    stubber.add_response(
        "put_object_lock_configuration",
        {},
        {
            "Bucket": BUCKET,
            "ObjectLockConfiguration": {
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 365}},
            },
        },
    )
    bucket.update({"object_lock": COMPLIANCE}, {"object_lock": "off"}, ["object_lock"])
    assert bucket.ctx.progress.lines == []


def test_off_after_compliance_removes_the_default_retention_and_says_what_stays(audit):
    bucket, stubber = audit
    # Without a Rule: the bucket keeps Object Lock, with no default retention.
    stubber.add_response(
        "put_object_lock_configuration",
        {},
        {"Bucket": BUCKET, "ObjectLockConfiguration": {"ObjectLockEnabled": "Enabled"}},
    )
    bucket.update({"object_lock": "off"}, {"object_lock": COMPLIANCE}, ["object_lock"])

    said = " ".join(bucket.ctx.progress.lines)
    assert "S3 cannot turn Object Lock off once it is on" in said
    assert "new objects are no longer locked" in said
    assert "nobody, not even the account's root user, can shorten it" in said


def answer_read(stubber, lock: dict | None) -> None:
    """The audit bucket as AWS reports it, with ``lock`` as GetObjectLockConfiguration's
    answer (None: never enabled, ObjectLockConfigurationNotFoundError)."""
    bucket = {"Bucket": BUCKET}
    stubber.add_response("head_bucket", {}, bucket)
    rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    encryption = {"ServerSideEncryptionConfiguration": {"Rules": [rule]}}
    stubber.add_response("get_bucket_encryption", encryption, bucket)
    block = {"PublicAccessBlockConfiguration": {}}
    stubber.add_response("get_public_access_block", block, bucket)
    stubber.add_response("get_bucket_lifecycle_configuration", {"Rules": []}, bucket)
    stubber.add_response("get_bucket_versioning", {"Status": "Enabled"}, bucket)
    if lock is None:
        stubber.add_client_error(
            "get_object_lock_configuration",
            "ObjectLockConfigurationNotFoundError",
            "Object Lock configuration does not exist for this bucket",
            404,
            expected_params=bucket,
        )
    else:
        stubber.add_response(
            "get_object_lock_configuration", {"ObjectLockConfiguration": lock}, bucket
        )


@pytest.mark.parametrize(
    ("lock", "read"),
    [
        (None, "off"),
        # Turned "off" as far as S3 allows: enabled, no default retention. No drift.
        ({"ObjectLockEnabled": "Enabled"}, "off"),
        (
            {
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 30}},
            },
            GOVERNANCE,
        ),
    ],
    ids=["never enabled", "enabled without a default retention", "governance"],
)
def test_the_lock_is_read_as_declared(audit, lock, read):
    bucket, stubber = audit
    answer_read(stubber, lock)
    assert bucket.read()["object_lock"] == read


def test_destroying_records_under_compliance_mode_says_why_they_stay(audit):
    bucket, stubber = audit
    version = {"Key": "logs/2026/12/04/r1.json", "VersionId": "v1"}
    stubber.add_response("list_object_versions", {"Versions": [version]}, {"Bucket": BUCKET})
    # DeleteObjects answers 200 with a per-key error for a locked version (API_DeleteObjects).
    stubber.add_response(
        "delete_objects",
        {"Errors": [{**version, "Code": "AccessDenied", "Message": "Access Denied"}]},
        {
            "Bucket": BUCKET,
            "Delete": {"Objects": [version], "Quiet": True},
            "BypassGovernanceRetention": True,
        },
    )
    with pytest.raises(ProvisioningError) as refused:
        bucket.delete({"object_lock": COMPLIANCE})
    assert str(refused.value).startswith(
        f"1 object versions of {BUCKET} could not be deleted (e.g. logs/2026/12/04/r1.json: "
        "AccessDenied Access Denied), so the bucket stays: S3 Object Lock in compliance mode"
    )
