from django.apps import AppConfig


class AuditExplorerConfig(AppConfig):
    name = "audit_explorer"
    verbose_name = "Audit explorer"
