from django.apps import AppConfig


class CostsConfig(AppConfig):
    """What the GPUs cost, per project: ledgers, the chargeback export and budgets, under
    /costs/; a project's cost on its audit page."""

    name = "costs"
    verbose_name = "Costs"

    def ready(self) -> None:
        from provisioning import sections

        sections.register(sections.Section("costs/_environment_section.html", lambda _: {}))
