from django.contrib import admin

from provisioning.models import Environment


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = ["name", "is_local", "region", "account_id", "suffix", "desired_count"]
    readonly_fields = ["created_at", "updated_at"]
