"""An environment's redaction rules: checked on the form, passed to the ingest Lambda."""

import pytest
from django.urls import reverse

from provisioning.models import Environment
from provisioning.resources.base import Context
from provisioning.resources.lambda_ import Function

pytestmark = pytest.mark.django_db
RULES = '["email", {"name": "ticket", "pattern": "TCK-\\\\d+"}]'


def edit(client, **changes):
    url = reverse("provisioning:environment-edit", args=["local"])
    form = client.get(url).context["form"]
    data = {name: value for name, value in form.initial.items() if value is not None}
    return client.post(url, {**data, **changes})


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ('["email", "phone"]', "unknown rule &#x27;phone&#x27;"),
        ('[{"name": "ticket", "pattern": "TCK-("}]', "RE2 cannot take pattern &#x27;TCK-(&#x27;"),
        ('["email"', "not valid JSON"),
        # Custom patterns run on RE2: one it cannot take is refused on save, with the reason.
        ('[{"name": "t", "pattern": "(\\\\w+)\\\\1"}]', "invalid escape sequence"),
    ],
)
def test_the_form_refuses_a_bad_rule_set(client, admin_user, rules, message):
    client.force_login(admin_user)
    response = edit(client, redaction_rules=rules)

    assert response.status_code == 200 and message in response.content.decode()
    assert Environment.objects.get(name="local").redaction_rules == ""


def test_the_lambda_gets_the_rules_the_form_saved(client, admin_user):
    client.force_login(admin_user)
    assert edit(client, redaction_rules=RULES).status_code == 302

    ctx = Context(Environment.objects.get(name="local").spec())
    ctx.outputs.update(
        {
            "iam.lambda_role": {"arn": "arn:aws:iam::123456789012:role/r"},
            "dynamodb.audit_table": {"name": "CentralLLMAudit"},
            "sqs.dlq": {"arn": "arn:aws:sqs:eu-central-1:123456789012:dlq"},
        }
    )
    try:
        environment = Function(ctx).desired()["environment"]
    finally:
        ctx.close()
    assert environment["REDACTION_RULES"] == RULES
