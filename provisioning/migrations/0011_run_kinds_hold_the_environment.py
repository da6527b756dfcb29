from django.db import migrations, models

# The kinds that held the environment when the kinds were a list here (Run.MUTATING); from now
# on each kind declares it (provisioning.kinds) and a run copies it when created.
HELD = ["apply", "destroy", "rollout", "rollback"]


def copy_the_lock(apps, schema_editor) -> None:
    Run = apps.get_model("provisioning", "Run")
    Run.objects.filter(kind__in=HELD).update(holds_environment=True)


class Migration(migrations.Migration):
    dependencies = [
        ("provisioning", "0010_object_lock"),
    ]

    # Every schema change first, then the rows: PostgreSQL refuses to alter a table with
    # updates pending in the same transaction.
    operations = [
        migrations.RemoveConstraint(model_name="run", name="one_mutating_run_per_environment"),
        migrations.AddField(
            model_name="run",
            name="holds_environment",
            field=models.BooleanField(default=False, editable=False),
        ),
        migrations.AlterField(model_name="run", name="kind", field=models.CharField(max_length=40)),
        migrations.AddConstraint(
            model_name="run",
            constraint=models.UniqueConstraint(
                condition=models.Q(
                    ("holds_environment", True), ("status__in", ["queued", "running"])
                ),
                fields=("environment",),
                name="one_holding_run_per_environment",
            ),
        ),
        migrations.RunPython(copy_the_lock, migrations.RunPython.noop),
    ]
