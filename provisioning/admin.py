from django.contrib import admin
from django.http import HttpRequest

from provisioning.models import Environment


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    """Read-only: environments change through the console's pages, which check the role and
    record every change in the action log."""

    list_display = ["name", "is_local", "region", "account_id", "suffix", "desired_count"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Environment | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Environment | None = None) -> bool:
        return False
