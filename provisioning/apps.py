from django.apps import AppConfig


class ProvisioningConfig(AppConfig):
    name = "provisioning"

    def ready(self) -> None:
        from provisioning import (
            engine_runs,
            kinds,
            rollout_runs,
            scaling,
            sections,
            validation_runs,
        )

        sections.register(scaling.SECTION)

        for kind in (
            engine_runs.PLAN,
            engine_runs.DRIFT,
            engine_runs.APPLY,
            engine_runs.DESTROY,
            rollout_runs.ROLLOUT,
            rollout_runs.ROLLBACK,
            validation_runs.VALIDATE,
        ):
            kinds.register(kind)
