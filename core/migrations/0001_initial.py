"""The action log and the permissions' holder move here from the console app: state only,
the table stays ``console_action`` and the permissions keep their rows (and so every group's
grants); only their content type now says ``core``."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from core.moves import move_content_types


def move_permissions(apps, schema_editor):
    move_content_types(apps, "console", "core", ["role", "action"])


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("console", "0007_policy_and_queue_permissions"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Role",
                    fields=[
                        (
                            "id",
                            models.AutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                    ],
                    options={
                        "managed": False,
                        "default_permissions": (),
                        "permissions": [
                            ("view_audit", "Can read audit records"),
                            (
                                "view_raw_audit",
                                "Can read the full prompts and completions of audit records",
                            ),
                            ("view_state", "Can read deployment state and runs"),
                            ("start_provisioning", "Can plan and apply environments"),
                            ("start_rollout", "Can roll out and roll back the serving image"),
                            (
                                "view_api_keys",
                                "Can see API keys (never their values) and usage plans",
                            ),
                            ("manage_api_keys", "Can create, disable and delete API keys"),
                            ("manage_users", "Can manage users and their roles"),
                            (
                                "change_policy",
                                "Can change environments' quotas, retention, redaction rules and secrets",
                            ),
                            (
                                "manage_queues",
                                "Can see and change the job queues and their workers",
                            ),
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="Action",
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
                        ("at", models.DateTimeField(auto_now_add=True, db_index=True)),
                        ("actor_name", models.CharField(max_length=150)),
                        ("verb", models.CharField(db_index=True, max_length=60)),
                        ("object_type", models.CharField(max_length=60)),
                        ("object_id", models.CharField(max_length=60)),
                        ("object_repr", models.CharField(max_length=200)),
                        ("parameters", models.JSONField(blank=True, default=dict)),
                        ("before", models.JSONField(blank=True, null=True)),
                        ("after", models.JSONField(blank=True, null=True)),
                        (
                            "actor",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={
                        "db_table": "console_action",
                        "ordering": ["-at", "-id"],
                        "indexes": [
                            models.Index(
                                fields=["object_type", "object_id"],
                                name="console_act_object__ef31fb_idx",
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_permissions, migrations.RunPython.noop),
    ]
