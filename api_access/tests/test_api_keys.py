"""API key management against the local AWS (moto server): create, list, disable, enable,
rotate, delete, expiry; the value is shown once and kept nowhere; the role matrix."""

import json
import logging
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from botocore.stub import Stubber
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from api_access import api_keys
from api_access.models import KeyRotation
from centralllm import aws
from centralllm.audit import contract
from centralllm.audit.ingest import ingest_record
from centralllm.audit.tests.conftest import make_record
from core.models import Action
from provisioning import runs
from provisioning.jobs import execute
from provisioning.models import Environment, Run

pytestmark = pytest.mark.django_db


def create(client, environment, **fields) -> tuple[str, str]:
    """Create through the page; the key id and the page that shows its value."""
    data = {"request_id": str(uuid.uuid4()), "name": "billing", "project": "billing",
            "owner": "bea", **fields}  # fmt: skip
    response = client.post(reverse("api-key-create", args=[environment.name]), data)
    assert response.status_code == 302, response.content.decode()
    key_id = response["Location"].split("/keys/")[1].split("/")[0]
    return key_id, client.get(response["Location"]).content.decode()


def shown_value(page: str) -> str | None:
    found = re.search(r'<code id="key-value">([^<]+)</code>', page)
    return found.group(1) if found else None


def test_a_new_key_is_shown_once_and_kept_nowhere(client, admin_user, keyed, caplog):
    client.force_login(admin_user)
    caplog.set_level(logging.DEBUG)
    key_id, page = create(client, keyed, expires=(timezone.now().date() + timedelta(days=30)))
    value = shown_value(page)
    real = aws.client("apigateway").get_api_key(apiKey=key_id, includeValue=True)["value"]
    assert value == real and len(value) >= 20
    again = client.get(reverse("api-key-created", args=[keyed.name, key_id])).content.decode()
    assert value not in again and "shown once already" in again

    listing = client.get(reverse("api-key-list", args=[keyed.name])).content.decode()
    assert key_id in listing and f"…{value[-4:]}" in listing and value not in listing
    detail = client.get(reverse("api-key-detail", args=[keyed.name, key_id])).content.decode()
    assert "billing · bea" in detail and value not in detail
    for table in connection.introspection.table_names():  # no row of any table holds it
        with connection.cursor() as cursor:
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - our own table names
            assert value not in json.dumps(cursor.fetchall(), default=str), table
    assert value not in caplog.text
    action = Action.objects.get(verb="api_key.create")
    assert action.object_id == key_id and action.actor_name == "ada"


def test_a_retried_create_gives_the_same_key(client, admin_user, keyed):
    client.force_login(admin_user)
    request_id = str(uuid.uuid4())
    first, _ = create(client, keyed, request_id=request_id)
    second, _ = create(client, keyed, request_id=request_id)
    assert first == second
    names = [key.name for key in api_keys.keys_of(keyed)]
    assert names == ["billing"]


def test_disable_shows_what_would_break_then_enable_and_delete_with_the_name(
    client, admin_user, keyed
):
    client.force_login(admin_user)
    key_id, _ = create(client, keyed)
    for user in ("ann", "ann", "bob"):
        ingest_record(
            make_record(api_key_id=key_id, user=user, created_at=datetime.now(UTC), project="p1")
        )
    disable = reverse("api-key-disable", args=[keyed.name, key_id])
    page = client.get(disable).content.decode()
    assert "made <strong>3</strong> requests" in page
    assert "<td>ann</td><td>2</td>" in page and "<td>p1</td><td>3</td>" in page
    client.post(disable)
    assert aws.client("apigateway").get_api_key(apiKey=key_id)["enabled"] is False
    client.post(reverse("api-key-enable", args=[keyed.name, key_id]))
    assert aws.client("apigateway").get_api_key(apiKey=key_id)["enabled"] is True

    delete = reverse("api-key-delete", args=[keyed.name, key_id])
    refused = client.post(delete, {"name": "not it"}, follow=True).content.decode()
    assert "Type the key&#x27;s name, billing, to delete it" in refused
    assert key_id in [key.id for key in api_keys.keys_of(keyed)]
    client.post(delete, {"name": "billing"})
    assert key_id not in [key.id for key in api_keys.keys_of(keyed)]
    verbs = list(Action.objects.order_by("pk").values_list("verb", flat=True))
    assert verbs == ["api_key.create", "api_key.disable", "api_key.enable", "api_key.delete"]
    before = Action.objects.get(verb="api_key.disable")
    assert (before.before, before.after) == ({"enabled": True}, {"enabled": False})


def test_usage_this_period_and_quota_warnings(client, admin_user, keyed):
    client.force_login(admin_user)
    busy, _ = create(client, keyed, name="busy")
    quiet, _ = create(client, keyed, name="quiet")
    for _ in range(9):  # of a quota of 10
        ingest_record(make_record(api_key_id=busy, created_at=datetime.now(UTC)))
    page = client.get(reverse("api-key-list", args=[keyed.name])).content.decode()
    assert "9 of 10 (90%)" in page and "at 80% of the quota" in page
    assert "0 of 10 (0%)" in page
    found = client.get(reverse("api-key-list", args=[keyed.name]), {"q": "qui"}).content.decode()
    assert quiet in found and busy not in found

    api_keys.check_keys()  # the scheduled job notes the alerts for the dashboard
    dashboard = client.get(reverse("dashboard")).content.decode()
    assert "busy" in dashboard and "at 90% of its quota" in dashboard


def test_a_keys_usage_is_read_from_its_own_environment(
    client, admin_user, keyed, audited_environment, monkeypatch
):
    """Issue 21, item 3: usage was read from the console's own TABLE_NAME, so one
    environment's keys showed another's usage."""
    other = audited_environment("prod")
    monkeypatch.setenv("TABLE_NAME", other.resource_name("AuditTable"))  # beside prod
    client.force_login(admin_user)
    key_id, _ = create(client, keyed)
    for environment, requests in ((keyed, 3), (other, 5)):
        for _ in range(requests):
            record = make_record(api_key_id=key_id, created_at=datetime.now(UTC))
            ingest_record(record, table=environment.resource_name("AuditTable"))

    listing = client.get(reverse("api-key-list", args=[keyed.name])).content.decode()
    assert "3 of 10 (30%)" in listing
    disable = client.get(reverse("api-key-disable", args=[keyed.name, key_id])).content.decode()
    assert "made <strong>3</strong> requests" in disable
    assert "These would be refused" in disable
    detail = client.get(reverse("api-key-detail", args=[keyed.name, key_id])).content.decode()
    assert "3 of 10 requests (30%)" in detail
    # Its page shows its traffic without the disable page's warning: nothing is refused there.
    assert "made <strong>3</strong> requests" in detail and "would be refused" not in detail
    assert f"<td>{datetime.now(UTC):%Y-%m-%d}</td><td>3</td>" in detail  # by day
    # Requests, errors, tokens, then p50 and p95 as durations (records of 123.4 ms).
    assert re.search(r"<td>3</td><td>0</td><td>63</td><td>1\d\d ms</td><td>1\d\d ms</td>", detail)


def test_rotation_keeps_both_keys_through_the_grace_then_disables_the_quiet_old_one(
    client, admin_user, keyed
):
    client.force_login(admin_user)
    old, _ = create(client, keyed)
    rotation_id = str(uuid.uuid4())
    url = reverse("api-key-rotate", args=[keyed.name, old])
    form = {"rotation_id": rotation_id, "grace_hours": "2", "quiet_minutes": "30"}
    response = client.post(url, form)
    new = response["Location"].split("/keys/")[1].split("/")[0]
    assert shown_value(client.get(response["Location"]).content.decode())
    retried = client.post(url, form)  # a double click or a dropped response
    assert retried["Location"].split("/keys/")[1].split("/")[0] == new
    assert KeyRotation.objects.count() == 1 and len(api_keys.keys_of(keyed)) == 2

    gateway = aws.client("apigateway")
    assert gateway.get_api_key(apiKey=new)["tags"]["central-llm:rotated-from"] == old
    assert gateway.get_api_key(apiKey=old)["enabled"] is True  # both work in the grace period
    assert api_keys.finish_due_rotations() == 0

    later = timezone.now() + timedelta(hours=2, minutes=1)
    # A caller still on the old key near the grace period's end.
    ingest_record(make_record(api_key_id=old, created_at=later - timedelta(minutes=10)))
    assert api_keys.finish_due_rotations(now=later) == 0  # grace over, but used 10 minutes ago
    rotation = KeyRotation.objects.get()
    assert rotation.old_key_last_used  # the old key's last use, shown with the rotation
    assert api_keys.finish_due_rotations(now=later + timedelta(minutes=30)) == 1
    assert gateway.get_api_key(apiKey=old)["enabled"] is False
    assert gateway.get_api_key(apiKey=new)["enabled"] is True
    rotation.refresh_from_db()
    assert rotation.status == "done" and "quiet" in rotation.outcome

    detail = client.get(reverse("api-key-detail", args=[keyed.name, new])).content.decode()
    assert f'data-rotation="{rotation.pk}" data-status="done"' in detail


def test_a_rotated_key_gets_a_fresh_expiry_not_the_old_one(client, admin_user, keyed):
    client.force_login(admin_user)
    expires = timezone.now().date() + timedelta(days=30)
    old, _ = create(client, keyed, expires=expires)
    form = client.get(reverse("api-key-rotate", args=[keyed.name, old])).content.decode()
    assert f'name="expires" type="date" value="{expires.isoformat()}"' in form  # 30 days again


def test_a_forced_rotation_disables_the_old_key_at_once(client, admin_user, keyed):
    client.force_login(admin_user)
    old, _ = create(client, keyed)
    client.post(
        reverse("api-key-rotate", args=[keyed.name, old]),
        {"rotation_id": str(uuid.uuid4()), "grace_hours": "24", "quiet_minutes": "30"},
    )
    rotation = KeyRotation.objects.get()
    client.post(reverse("api-key-rotation-finish", args=[keyed.name, rotation.pk]))
    assert aws.client("apigateway").get_api_key(apiKey=old)["enabled"] is False
    rotation.refresh_from_db()
    assert rotation.outcome == "forced by ada"
    assert Action.objects.filter(verb="api_key.rotation_done", actor_name="ada").exists()


def test_expired_keys_are_disabled_by_the_schedule(client, admin_user, keyed):
    client.force_login(admin_user)
    key_id, _ = create(client, keyed, expires=timezone.now().date() + timedelta(days=1))
    assert api_keys.disable_expired_keys() == 0
    api_keys.check_keys()
    dashboard = client.get(reverse("dashboard")).content.decode()
    assert "billing" in dashboard and "expires" in dashboard

    tomorrow = timezone.now() + timedelta(days=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(api_keys.timezone, "now", lambda: tomorrow)
        assert api_keys.disable_expired_keys() == 1
    assert aws.client("apigateway").get_api_key(apiKey=key_id)["enabled"] is False
    action = Action.objects.get(verb="api_key.disable")
    assert action.parameters == {"reason": "expired (scheduled)"}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": ""}, "Give the key a name"),
        ({"owner": ""}, "Say which project and which person own the key"),
        ({"expires": "2020-01-01"}, "The expiry must be a day after today"),
        ({"expires": "soon"}, "is not a date like 2027-03-31"),
        ({"request_id": "x"}, "missing its request id"),
    ],
)
def test_bad_input_changes_nothing(client, admin_user, keyed, fields, message):
    client.force_login(admin_user)
    data = {"request_id": str(uuid.uuid4()), "name": "n", "project": "p", "owner": "o", **fields}
    page = client.post(reverse("api-key-create", args=[keyed.name]), data).content.decode()
    assert message in page.replace("&#x27;", "'")
    assert api_keys.keys_of(keyed) == []


def test_a_key_of_another_environment_is_not_found_here(client, admin_user, keyed):
    client.force_login(admin_user)
    key_id, _ = create(client, keyed)
    other = Environment.objects.create(name="other-env", suffix="-o", is_local=True)
    page = client.get(reverse("api-key-detail", args=[other.name, key_id]), follow=True)
    assert "has no usage plan: apply the environment first" in page.content.decode()
    response = client.post(reverse("api-key-disable", args=[other.name, key_id]), follow=True)
    assert aws.client("apigateway").get_api_key(apiKey=key_id)["enabled"] is True
    assert response.status_code == 200


def _run(environment: Environment, kind: str, **parameters) -> Run:
    started = runs.start(environment, kind, actor=None, parameters=parameters, enqueue=False)
    execute(started.pk)
    started.refresh_from_db()
    assert started.status == "succeeded", started.explanation
    return started


def test_after_a_destroy_the_keys_page_says_to_apply_first(client, admin_user):
    tag = uuid.uuid4().hex[:8]
    environment = Environment.objects.create(name=f"gone-{tag}", suffix=f"-g{tag}", is_local=True)
    _run(environment, "apply")
    plans = aws.client("apigateway").get_usage_plans()["items"]
    made = next(plan for plan in plans if plan["name"] == f"central-llm-usage-plan-g{tag}")
    assert api_keys.plan_id(environment) == made["id"]

    _run(environment, "destroy", confirm=environment.name)

    client.force_login(admin_user)
    page = client.get(reverse("api-key-list", args=[environment.name])).content.decode()
    assert f"{environment.name} has no usage plan: apply the environment first." in page
    assert made["id"] not in page


def test_the_role_matrix(client, viewer, operator, admin_user, keyed):
    client.force_login(admin_user)
    key_id, _ = create(client, keyed)
    rotation = KeyRotation.objects.create(
        id=uuid.uuid4(), environment=keyed, old_key_id=key_id, old_key_name="billing",
        grace_until=timezone.now(), quiet_minutes=0,
    )  # fmt: skip
    args = [keyed.name, key_id]
    reads = [reverse("api-keys"), reverse("api-key-list", args=[keyed.name]),
             reverse("api-key-detail", args=args)]  # fmt: skip
    changes = [
        reverse("api-key-create", args=[keyed.name]),
        reverse("api-key-enable", args=args),
        reverse("api-key-disable", args=args),
        reverse("api-key-delete", args=args),
        reverse("api-key-rotate", args=args),
        reverse("api-key-rotation-finish", args=[keyed.name, rotation.pk]),
    ]
    client.force_login(viewer)
    assert [client.get(url).status_code for url in reads] == [403] * 3
    assert {client.post(url).status_code for url in changes} == {403}
    client.force_login(operator)
    assert [client.get(url).status_code for url in reads] == [200, 200, 200]
    assert {client.post(url).status_code for url in changes} == {403}
    client.force_login(admin_user)
    assert client.get(reverse("api-key-create", args=[keyed.name])).status_code == 200
    assert aws.client("apigateway").get_api_key(apiKey=key_id)["enabled"] is True


def test_api_gateways_own_figures_where_aws_keeps_them(client, admin_user, keyed):
    client.force_login(admin_user)
    key_id, _ = create(client, keyed)
    detail = client.get(reverse("api-key-detail", args=[keyed.name, key_id])).content.decode()
    assert "The local AWS does not keep API Gateway&#x27;s usage figures (GetUsage)" in detail

    # Real AWS answers GetUsage as documented: per key, [used, remaining] per day from startDate.
    key = api_keys.find(keyed, key_id)
    gateway = aws.client("apigateway")
    today = timezone.now().date()
    with Stubber(gateway) as stub:
        stub.add_response(
            "get_usage",
            {
                "usagePlanId": api_keys.plan_id(keyed),
                "startDate": (today - timedelta(days=1)).isoformat(),
                "endDate": today.isoformat(),
                "items": {key_id: [[120, 880], [40, 840]]},
            },
        )
        rows, note = api_keys.aws_usage(keyed, key, days=2)
    assert [(row["used"], row["remaining"]) for row in rows] == [(120, 880), (40, 840)]
    assert rows[1]["day"] == today and "lags real use" in note


def test_keys_are_put_on_the_plan_through_aws_refusing_concurrent_changes(keyed, monkeypatch):
    """API Gateway as documented, where moto is lenient: GetApiKeys pages on ``position``
    (https://docs.aws.amazon.com/apigateway/latest/api/API_GetApiKeys.html), and
    CreateUsagePlanKey runs one at a time per account and Region, refusing a call close behind
    another with ConflictException 409 (its errors:
    https://docs.aws.amazon.com/apigateway/latest/api/API_CreateUsagePlanKey.html; the message
    and the cause: AWS Support, quoted in serverless/serverless#12064), which the SDK does not
    retry. A load's keys, made one after the other, are all made; none is deleted."""
    monkeypatch.setattr(api_keys, "PLAN_KEY_FIRST_WAIT", 0)
    plan = api_keys.plan_id(keyed)
    listing = {"includeValues": False, "limit": 500}

    def key(name: str) -> dict:
        tags = {"central-llm:project": name, "central-llm:projects": name}
        return {"id": f"k-{name}", "name": name, "enabled": True, "tags": tags}

    def plan_keys(*names: str) -> dict:
        return {"items": [{"id": f"k-{n}", "type": "API_KEY", "name": n} for n in names]}

    def refused(stub: Stubber, name: str) -> None:
        stub.add_client_error(
            "create_usage_plan_key",
            service_error_code="ConflictException",
            service_message="Unable to complete operation due to concurrent modification. "
            "Please try again later.",
            http_status_code=409,
            expected_params={"usagePlanId": plan, "keyId": f"k-{name}", "keyType": "API_KEY"},
        )

    gateway = aws.client("apigateway")
    with Stubber(gateway) as stub:
        stub.add_response(
            "get_usage_plan_keys", plan_keys("alpha"), {"usagePlanId": plan, "limit": 500}
        )
        # alpha's key is on the second page: found, not made again.
        stub.add_response("get_api_keys", {"position": "p2", "items": []}, listing)
        stub.add_response("get_api_keys", {"items": [key("alpha")]}, {**listing, "position": "p2"})
        # beta: refused while another change ends, then made.
        stub.add_response("create_api_key", key("beta"))
        refused(stub, "beta")
        stub.add_client_error(
            "get_usage_plan_key", service_error_code="NotFoundException", http_status_code=404
        )
        stub.add_response("create_usage_plan_key", plan_keys("beta")["items"][0])
        # gamma: the SDK's repeat of a call that did get through is refused; the key is there.
        stub.add_response("create_api_key", key("gamma"))
        refused(stub, "gamma")
        stub.add_response("get_usage_plan_key", plan_keys("gamma")["items"][0])
        # Then the keys' projects are published, from a fresh listing.
        stub.add_response("get_usage_plan_keys", plan_keys("alpha", "beta", "gamma"))
        stub.add_response("get_api_keys", {"items": [key("alpha"), key("beta"), key("gamma")]})
        found = api_keys.keys_for_projects(
            keyed, ["alpha", "beta", "gamma"], owner="demo", actor=None
        )
        stub.assert_no_pending_responses()
    assert found == {"alpha": "k-alpha", "beta": "k-beta", "gamma": "k-gamma"}
    assert published(keyed) == {"k-alpha": ["alpha"], "k-beta": ["beta"], "k-gamma": ["gamma"]}
    made = Action.objects.filter(verb="api_key.create")
    assert sorted(made.values_list("object_id", flat=True)) == ["k-beta", "k-gamma"]


def published(environment: Environment) -> dict:
    """The bindings the serving hosts read, as the console last published them."""
    bucket = api_keys._output(environment, "s3.audit_bucket", "name", "audit bucket")
    found = aws.client("s3").get_object(Bucket=bucket, Key=contract.ATTRIBUTION_KEY)
    return json.loads(found["Body"].read())["keys"]


def test_a_new_key_files_under_its_owner_project_unless_told_more(client, admin_user, keyed):
    """Issue 20: attribution was self-asserted; a key is now bound to projects when made."""
    client.force_login(admin_user)
    own, _ = create(client, keyed, name="own")
    shared, _ = create(client, keyed, name="shared", projects="billing, reports  billing")
    assert api_keys.find(keyed, own).projects == ("billing",)
    assert api_keys.find(keyed, shared).projects == ("billing", "reports")
    assert published(keyed) == {own: ["billing"], shared: ["billing", "reports"]}


def test_an_unbound_key_is_flagged_and_bound_from_its_page(client, admin_user, keyed):
    client.force_login(admin_user)
    key_id, _ = create(client, keyed)
    arn = f"arn:aws:apigateway:{aws.region()}::/apikeys/{key_id}"
    aws.client("apigateway").untag_resource(resourceArn=arn, tagKeys=["central-llm:projects"])
    api_keys.forget(keyed)
    for project in ("p1", "p2", "p2"):
        ingest_record(make_record(api_key_id=key_id, project=project, created_at=datetime.now(UTC)))
    listing = client.get(reverse("api-key-list", args=[keyed.name])).content.decode()
    assert "not bound to projects" in listing
    detail = reverse("api-key-detail", args=[keyed.name, key_id])
    page = client.get(detail).content.decode()
    assert "any project" in page
    assert 'name="projects" value="billing p2 p1"' in page  # owner, then as seen, most first

    bind = reverse("api-key-projects", args=[keyed.name, key_id])
    refused = client.post(bind, {"projects": "p1 <p2>"}, follow=True).content.decode()
    assert "&#x27;&lt;p2&gt;&#x27; cannot be bound" in refused
    assert api_keys.find(keyed, key_id).projects is None

    client.post(bind, {"projects": "p1 p2"})
    assert api_keys.find(keyed, key_id).projects == ("p1", "p2")
    assert published(keyed) == {key_id: ["p1", "p2"]}
    action = Action.objects.get(verb="api_key.projects")
    assert (action.before, action.after) == ({"projects": None}, {"projects": ["p1", "p2"]})
    listing = client.get(reverse("api-key-list", args=[keyed.name])).content.decode()
    assert "not bound to projects" not in listing


def test_a_rotated_key_files_where_the_old_one_did(client, admin_user, keyed):
    client.force_login(admin_user)
    key_id, _ = create(client, keyed, projects="billing reports")
    old = api_keys.find(keyed, key_id)
    rotation, _ = api_keys.rotate(
        keyed, old, rotation_id=str(uuid.uuid4()), grace_hours=1, quiet_minutes=0,
        expires=None, actor=admin_user,
    )  # fmt: skip
    assert api_keys.find(keyed, rotation.new_key_id).projects == ("billing", "reports")
    assert published(keyed)[rotation.new_key_id] == ["billing", "reports"]
