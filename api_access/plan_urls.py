"""The usage plan pages (``api_access.plan_views``), under /usage-plans/."""

from django.urls import path

from api_access import plan_views

urlpatterns = [
    path("", plan_views.plan_list, name="usage-plans"),
    path("<slug:name>/", plan_views.plan_detail, name="usage-plan"),
    path("<slug:name>/change", plan_views.plan_change, name="usage-plan-change"),
    path("<slug:name>/increase", plan_views.plan_increase, name="usage-plan-increase"),
]
