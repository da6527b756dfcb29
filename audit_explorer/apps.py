from django.apps import AppConfig


class AuditExplorerConfig(AppConfig):
    name = "audit_explorer"
    verbose_name = "Audit explorer"

    def ready(self) -> None:
        from audit_explorer import action_stream, audit_runs, trail_views
        from core import actions
        from provisioning import kinds, sections

        actions.follow(action_stream.queue)

        kinds.register(audit_runs.CHECK)
        kinds.register(audit_runs.REDRIVE)
        sections.register(
            sections.Section(
                "audit_explorer/_environment_section.html", trail_views.environment_section
            )
        )
