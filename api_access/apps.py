from django.apps import AppConfig


class ApiAccessConfig(AppConfig):
    """API keys, usage plans, key rotations and quota increases, under /api-keys/ and
    /usage-plans/."""

    name = "api_access"
    verbose_name = "API access"

    def ready(self) -> None:
        from api_access.models import QuotaIncrease
        from provisioning.models import SPEC_ADDITIONS

        SPEC_ADDITIONS.append(
            lambda environment: {"quota_extra": QuotaIncrease.extra_for(environment)}
        )
