"""The action log and the permissions' holder now belong to the core app: state only."""

from django.db import migrations


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
    ]
