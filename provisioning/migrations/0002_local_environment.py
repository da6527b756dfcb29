from django.db import migrations


def create_local(apps, schema_editor):
    # The local AWS stand-in: `make run` applies it so a newcomer's local AWS holds the platform.
    environment = apps.get_model("provisioning", "Environment")
    environment.objects.get_or_create(name="local", defaults={"is_local": True})


def delete_local(apps, schema_editor):
    apps.get_model("provisioning", "Environment").objects.filter(name="local").delete()


class Migration(migrations.Migration):
    dependencies = [("provisioning", "0001_initial")]

    operations = [migrations.RunPython(create_local, delete_local)]
