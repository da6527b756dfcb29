import django.db.models.deletion
from django.db import migrations, models

# How the runs so far named what they saw: a plan's or drift's action, a destroy's outcome.
_BY_ACTION = {"create": "missing", "update": "drifted", "none": "present"}
_GONE = ("deleted", "absent", "not looked up")


def fill_from_the_runs(apps, schema_editor) -> None:
    """Each resource as the runs so far last saw it or left it, replayed in the order they
    ended: the pages keep what they knew, and a destroy or a failed apply counts too."""
    Run = apps.get_model("provisioning", "Run")
    ResourceState = apps.get_model("provisioning", "ResourceState")
    rows: dict[tuple[int, str], dict] = {}
    ended = Run.objects.filter(
        kind__in=["plan", "drift", "apply", "destroy"],
        status__in=["succeeded", "failed", "cancelled"],
    ).exclude(finished_at=None)
    for run in ended.order_by("finished_at", "pk").iterator():
        for key, title, state, values in _seen_by(run):
            before = rows.get((run.environment_id, key), {})
            outputs = values.get("outputs") or (
                before.get("outputs", {}) if state in ("present", "drifted") else {}
            )
            rows[(run.environment_id, key)] = {
                "environment_id": run.environment_id,
                "key": key,
                "title": title,
                "state": state,
                "outputs": outputs,
                "differences": values.get("differences", {}),
                "kept": values.get("kept", before.get("kept", False)),
                "seen_at": run.finished_at,
                "run_id": run.pk,
            }
    ResourceState.objects.bulk_create(ResourceState(**row) for row in rows.values())


def _seen_by(run):
    """(key, title, state, values) of each resource ``run`` saw or left."""
    if run.kind in ("plan", "drift"):
        if run.status != "succeeded":
            return
        for change in (run.result or {}).get("changes", []):
            values = {"differences": change.get("fields", {})}
            yield change["key"], change["title"], _BY_ACTION[change["action"]], values
        return
    for step in run.steps.exclude(status__in=["pending", "running"]):
        if step.status == "failed":
            yield step.key, step.title, "unknown", {}
        elif run.kind == "apply":
            yield step.key, step.title, "present", {"outputs": step.outputs}
        elif step.outcome.startswith(_GONE):
            yield step.key, step.title, "missing", {}
        else:  # kept by the destroy: its data, or not made here
            yield step.key, step.title, "present", {"kept": True}


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
        migrations.RunPython(fill_from_the_runs, migrations.RunPython.noop),
    ]
