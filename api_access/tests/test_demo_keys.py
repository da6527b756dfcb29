"""Demo traffic under the environment's real API keys: one per demo project, made once."""

import io

import pytest
from django.core.management import call_command

from api_access import api_keys
from audit_explorer import demo
from core.models import Action
from devtools.testing import create_bucket

pytestmark = pytest.mark.django_db


def test_demo_traffic_files_each_project_under_a_key_of_its_own_made_once(keyed, redis_conn):
    create_bucket(keyed.resource_name("AuditBucket"))
    out = io.StringIO()
    call_command("demo_traffic", environment=keyed.name, records=40, days=2, stdout=out)
    api_keys.forget(keyed)
    keys = {key.project: key for key in api_keys.keys_of(keyed)}

    assert set(keys) == set(demo.projects())
    for project, key in keys.items():
        assert (key.name, key.owner, key.projects, key.enabled) == (
            project,
            "demo",
            (project,),
            True,
        )
    made = Action.objects.filter(verb="api_key.create")
    assert made.count() == len(keys) and made.first().actor_name.startswith("command")

    # Another load finds the same keys rather than making more.
    call_command("demo_traffic", environment=keyed.name, records=40, days=2, new=True, stdout=out)
    api_keys.forget(keyed)
    assert len(api_keys.keys_of(keyed)) == len(keys) and made.count() == len(keys)
    # Each key's page counts its project's requests (from the rollups, by key id).
    requests = {
        project: sum(day["requests"] for day in api_keys.daily_usage(keyed, key, days=4))
        for project, key in keys.items()
    }
    assert sum(requests.values()) == 80 and all(requests.values())
