"""The action log and the permissions' holder now belong to the core app: state only."""

from django.db import migrations


def sync(apps, schema_editor):
    """A database that came through 0007 holds each permission twice (its roles were synced
    under core's name before core took the old rows over): grant the roles again."""
    from console.roles import sync_roles

    sync_roles(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("console", "0007_policy_and_queue_permissions"),
        ("core", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel("Action"), migrations.DeleteModel("Role")],
            database_operations=[],
        ),
        migrations.RunPython(sync, migrations.RunPython.noop),
    ]
