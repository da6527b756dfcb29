"""Permissions are kept in Redis between requests, and dropped the moment a role changes."""

import time

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from console import idle, timezones
from console.roles import OPERATOR, VIEWER

pytestmark = pytest.mark.django_db
PAGE = reverse("provisioning:environments")


def test_a_warm_request_checks_permissions_without_the_database(client, viewer):
    client.force_login(viewer)
    session = client.session
    session[timezones.SESSION_KEY] = "UTC"  # read once per session: not what this counts
    session[idle.LAST_USED] = int(time.time())  # saved at most once a minute: nor this
    session.save()
    with CaptureQueriesContext(connection) as cold:
        client.get(PAGE)
    with CaptureQueriesContext(connection) as warm:
        client.get(PAGE)

    assert len(cold) - len(warm) == 2  # the user's and the groups' permissions
    assert not [query for query in warm if "auth_permission" in query["sql"]]


def test_removing_a_role_is_refused_at_once(client, viewer):
    client.force_login(viewer)
    assert client.get(PAGE).status_code == 200

    viewer.groups.remove(Group.objects.get(name=VIEWER))

    assert client.get(PAGE).status_code == 403


def test_a_role_given_from_the_group_side_counts_at_once(client, viewer):
    client.force_login(viewer)
    create = reverse("provisioning:environment-create")
    assert client.get(create).status_code == 403

    Group.objects.get(name=OPERATOR).user_set.add(viewer)

    assert client.get(create).status_code == 200
    Group.objects.get(name=OPERATOR).user_set.clear()
    assert client.get(create).status_code == 403


def test_deleting_a_group_is_refused_at_once(client, viewer):
    """The cascade removes the memberships without an m2m signal."""
    client.force_login(viewer)
    assert client.get(PAGE).status_code == 200

    Group.objects.get(name=VIEWER).delete()

    assert client.get(PAGE).status_code == 403
