from django.apps import AppConfig


class AuditExplorerConfig(AppConfig):
    name = "audit_explorer"
    verbose_name = "Audit explorer"

    def ready(self) -> None:
        from audit_explorer import audit_runs, trail_views
        from provisioning import kinds, sections

        kinds.register(audit_runs.CHECK)
        kinds.register(audit_runs.REDRIVE)
        sections.register(
            sections.Section(
                "audit_explorer/_environment_section.html", trail_views.environment_section
            )
        )
