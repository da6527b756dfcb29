from collections.abc import Callable

from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import permission_required
from django.urls import include, path
from django_rq.urls import get_admin_urlpatterns, get_api_urlpatterns

from console import signin, views
from core import permissions as perms


def _queue_page(view: Callable) -> Callable:
    """django-rq's own pages check only is_staff: the queues are an admin's, like the roles.
    Their templates carry inline scripts, allowed on these admin pages only."""
    view = permission_required(perms.MANAGE_QUEUES, raise_exception=True)(view)
    return csp_update({"script-src": [UNSAFE_INLINE]})(view)


_queue_pages = get_admin_urlpatterns(view_wrapper=_queue_page)

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
    path("health/checks", views.health_checks, name="health-checks"),
    path("metrics", views.prometheus_metrics, name="metrics"),
    path("login/", signin.login, name="login"),
    path("login/local/", signin.login, {"break_glass": True}, name="login-local"),
    path("oidc/", include(signin.urlpatterns)),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api-keys/", include("api_access.key_urls")),
    path("usage-plans/", include("api_access.plan_urls")),
    path("actions/", views.action_list, name="actions"),
    path("actions/export/", views.action_export, name="actions-export"),
    path("preferences/timezone", views.set_timezone, name="set-timezone"),
    path("environments/", include("provisioning.urls")),
    path("audit/", include("audit_explorer.urls")),
    path("costs/", include("costs.urls")),
    path("admin/django-rq/", include((get_api_urlpatterns() + _queue_pages, "django_rq"))),
    path("admin/", admin.site.urls),
]
