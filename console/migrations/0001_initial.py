from django.db import migrations, models


def create_roles(apps, schema_editor):
    from console.roles import sync_roles

    sync_roles(apps)


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.CreateModel(
            name="Role",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
            ],
            options={
                "managed": False,
                "default_permissions": (),
                "permissions": [
                    ("view_audit", "Can read audit records"),
                    ("view_state", "Can read deployment state and runs"),
                    ("start_provisioning", "Can plan and apply environments"),
                    ("start_rollout", "Can roll out and roll back the serving image"),
                    ("manage_api_keys", "Can create, disable and delete API keys"),
                    ("manage_users", "Can manage users and their roles"),
                ],
            },
        ),
        migrations.RunPython(create_roles, migrations.RunPython.noop),
    ]
