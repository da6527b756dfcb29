import pytest
from django.urls import reverse

from provisioning.models import Environment

pytestmark = pytest.mark.django_db


def test_viewers_see_every_environment(client, viewer):
    Environment.objects.create(
        name="staging", suffix="-staging", account_id="123456789012", region="eu-west-1"
    )
    client.force_login(viewer)
    response = client.get(reverse("provisioning:environments"))
    assert response.status_code == 200
    page = response.content.decode()
    assert '<td><a href="/environments/local/">local</a></td>' in page
    assert '<td><a href="/environments/staging/">staging</a></td>' in page
    assert "<code>123456789012</code>" in page
    assert "<code>-staging</code>" in page


def test_users_without_a_role_are_refused(client, django_user_model):
    user = django_user_model.objects.create_user(username="nobody", password="x-password-123")
    client.force_login(user)
    assert client.get(reverse("provisioning:environments")).status_code == 403
