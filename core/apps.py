from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The bottom of the console: the action log, the permission names, refusals. It imports
    no other app of the console."""

    name = "core"
    verbose_name = "Core"
