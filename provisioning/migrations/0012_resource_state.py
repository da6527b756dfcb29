import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("provisioning", "0011_run_kinds_hold_the_environment"),
    ]

    operations = [
        migrations.CreateModel(
            name="ResourceState",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("key", models.CharField(max_length=60)),
                ("title", models.CharField(max_length=100)),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("present", "present"),
                            ("missing", "missing"),
                            ("drifted", "drifted"),
                            ("unknown", "unknown"),
                        ],
                        max_length=10,
                    ),
                ),
                (
                    "outputs",
                    models.JSONField(blank=True, default=dict, help_text="Names, ARNs, URLs."),
                ),
                (
                    "differences",
                    models.JSONField(
                        blank=True,
                        default=dict,
                        help_text="What differs: {field: [in AWS, declared]}.",
                    ),
                ),
                (
                    "kept",
                    models.BooleanField(
                        default=False,
                        help_text="A destroy leaves it: not made here, or it holds audit data.",
                    ),
                ),
                ("seen_at", models.DateTimeField()),
                (
                    "environment",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="resources",
                        to="provisioning.environment",
                    ),
                ),
                (
                    "run",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="resources_seen",
                        to="provisioning.run",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("environment", "key"), name="one_state_per_resource"
                    )
                ],
            },
        ),
    ]
