from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from console import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
    path("health/checks", views.health_checks, name="health-checks"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api-keys/", include("console.key_urls")),
    path("usage-plans/", include("console.plan_urls")),
    path("actions/", views.action_list, name="actions"),
    path("preferences/timezone", views.set_timezone, name="set-timezone"),
    path("environments/", include("provisioning.urls")),
    path("audit/", include("audit_explorer.urls")),
    path("admin/django-rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
]
