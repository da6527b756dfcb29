"""Key rotations and quota increases move here from the console app: state only, their
tables keep their console_ names and their rows."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from core.moves import move_content_types


def move_permissions(apps, schema_editor):
    move_content_types(apps, "console", "api_access", ["keyrotation", "quotaincrease"])


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("provisioning", "0010_object_lock"),
        ("console", "0008_action_and_role_move_to_core"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="KeyRotation",
                    fields=[
                        ("id", models.UUIDField(primary_key=True, serialize=False)),
                        ("old_key_id", models.CharField(max_length=64)),
                        ("old_key_name", models.CharField(max_length=128)),
                        ("new_key_id", models.CharField(blank=True, max_length=64)),
                        ("grace_until", models.DateTimeField()),
                        ("quiet_minutes", models.PositiveIntegerField()),
                        (
                            "status",
                            models.CharField(
                                choices=[("grace", "Grace"), ("done", "Done")],
                                default="grace",
                                max_length=8,
                            ),
                        ),
                        (
                            "old_key_last_used",
                            models.CharField(blank=True, help_text="Hour, UTC.", max_length=32),
                        ),
                        ("outcome", models.CharField(blank=True, max_length=200)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("finished_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "created_by",
                            models.ForeignKey(
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "environment",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="key_rotations",
                                to="provisioning.environment",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "console_keyrotation",
                        "ordering": ["-created_at"],
                    },
                ),
                migrations.CreateModel(
                    name="QuotaIncrease",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("extra", models.PositiveIntegerField()),
                        ("reason", models.CharField(max_length=300)),
                        ("until", models.DateTimeField()),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("reverted_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "created_by",
                            models.ForeignKey(
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "environment",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="quota_increases",
                                to="provisioning.environment",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "console_quotaincrease",
                        "ordering": ["-created_at"],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_permissions, migrations.RunPython.noop),
    ]
