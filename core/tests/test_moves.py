"""Upgrading a database from before the action log and the roles moved to core keeps every
role's grants (the last release had console's migrations up to 0006)."""

import pytest
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from console.roles import ADMIN, ROLE_PERMISSIONS

BEFORE_THE_MOVE = [("console", "0006_view_api_keys_permission")]


@pytest.mark.django_db(transaction=True)
def test_an_upgrade_from_before_the_move_keeps_every_role_grant():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE_THE_MOVE)
    # As that release left it: the permissions under console's content type.
    ContentType.objects.filter(app_label="core").update(app_label="console")
    ContentType.objects.clear_cache()

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    ContentType.objects.clear_cache()

    granted = Group.objects.get(name=ADMIN).permissions.values_list(
        "content_type__app_label", "codename"
    )
    assert sorted(granted) == sorted(
        tuple(permission.split(".")) for permission in ROLE_PERMISSIONS[ADMIN]
    )
