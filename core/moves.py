"""For migrations that move a model to another app without copying its table."""

from typing import Any


def move_content_types(apps: Any, old_label: str, new_label: str, models: list[str]) -> None:
    """Point the models' content types at their new app, so their permission rows (and every
    group's grants of them) stay as they are."""
    content_type_model = apps.get_model("contenttypes", "ContentType")
    permission_model = apps.get_model("auth", "Permission")
    for model in models:
        old = content_type_model.objects.filter(app_label=old_label, model=model).first()
        if old is None:
            continue
        new = content_type_model.objects.filter(app_label=new_label, model=model).first()
        if new is None:
            old.app_label = new_label
            old.save()
            continue
        # Both exist (synced under the new name first): keep the rows groups hold.
        permission_model.objects.filter(content_type=new).delete()
        permission_model.objects.filter(content_type=old).update(content_type=new)
        old.delete()
