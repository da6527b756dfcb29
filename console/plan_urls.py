"""The usage plan pages (``console.plan_views``), under /usage-plans/."""

urlpatterns: list = []
