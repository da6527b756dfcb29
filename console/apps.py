from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Central LLM Console"

    def ready(self) -> None:
        from console import auth, signin  # noqa: F401 (signin's receivers)

        auth.connect_signals()
