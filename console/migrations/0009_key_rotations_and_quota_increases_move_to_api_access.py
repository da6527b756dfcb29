"""Key rotations and quota increases now belong to the api_access app: state only."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("console", "0008_action_and_role_move_to_core"),
        ("api_access", "0001_moved_from_console"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel("KeyRotation"),
                migrations.DeleteModel("QuotaIncrease"),
            ],
            database_operations=[],
        ),
    ]
