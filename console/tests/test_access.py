import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.views.defaults import server_error

from conftest import make_user
from core import permissions as perms
from provisioning.models import Environment

PUBLIC = {"login", "login-local", "healthz", "admin:login"}
# /metrics checks its own token or networks instead (test_metrics.py): off unless set; the
# identity provider's views are open before sign-in and missing without one (console.signin).
OWN_ACCESS = {
    "metrics": 404,
    "oidc_authentication_init": 404,
    "oidc_authentication_callback": 404,
    "oidc_logout": 404,
}
# The Django admin (user management for admins) keeps its own login page.
LOGIN_PAGES = ("/login/?next=", "/admin/login/?next=")


def _walk(patterns, prefix="", namespace=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern):
            yield f"{namespace}{entry.name}", prefix + str(entry.pattern)


def _concrete(pattern: str) -> str:
    """A URL for a route, with every parameter filled by a plausible value."""
    path = re.sub(r"\(\?P<\w+>[^)]*\)", "1", pattern)
    path = re.sub(r"<uuid:\w+>", "00000000-0000-4000-8000-000000000000", path)
    path = re.sub(r"<(?:int:|slug:|str:)?\w+>", "1", path)
    path = re.sub(r"<path:\w+>", "x", path)
    return "/" + path.lstrip("^").rstrip("$").replace("\\", "")


ROUTES = sorted(set(_walk(get_resolver().url_patterns)))


def test_the_walk_finds_the_console_pages():
    names = {name for name, _ in ROUTES}
    assert {"dashboard", "api-keys", "provisioning:environments", "audit_explorer:home"} <= names


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "pattern"), ROUTES)
def test_every_page_but_login_and_health_needs_a_login(client, name, pattern):
    url = _concrete(pattern)
    response = client.get(url)

    if name in OWN_ACCESS:
        assert response.status_code == OWN_ACCESS[name], url
    elif name in PUBLIC:
        assert response.status_code in (200, 503), url
    else:
        assert response.status_code == 302, url
        assert response["Location"].startswith(LOGIN_PAGES), url


VIEWS_BY_ROLE = {
    # url name: the roles that may open it
    "dashboard": {"viewer", "operator", "admin"},
    "provisioning:environments": {"viewer", "operator", "admin"},
    "provisioning:runs": {"viewer", "operator", "admin"},
    "audit_explorer:home": {"viewer", "operator", "admin"},
    "provisioning:environment-create": {"operator", "admin"},
    "api-keys": {"operator", "admin"},
    "usage-plans": {"operator", "admin"},
    "actions": {"admin"},
    "django_rq:home": {"admin"},
}


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_role_matrix(client, role, viewer, operator, admin_user):
    user = {"viewer": viewer, "operator": operator, "admin": admin_user}[role]
    client.force_login(user)

    got = {}
    for name in VIEWS_BY_ROLE:
        response = client.get(reverse(name))
        got[name] = response.status_code

    expected = {name: 200 if role in roles else 403 for name, roles in VIEWS_BY_ROLE.items()}
    assert got == expected


@pytest.mark.django_db
def test_staff_without_the_admin_role_cannot_open_the_queues(client, admin_user):
    """django-rq's pages check only is_staff: an admin removed from every group keeps it."""
    admin_user.groups.clear()
    client.force_login(admin_user)

    assert client.get(reverse("django_rq:home")).status_code == 403
    assert client.get(reverse("django_rq:jobs", args=[0])).status_code == 403


@pytest.mark.django_db
def test_a_user_without_a_role_sees_no_platform(client, django_user_model):
    Environment.objects.create(name="prod-eu", account_id="123456789012")
    client.force_login(make_user(django_user_model, "nina", None))

    response = client.get(reverse("dashboard"))

    assert response.status_code == 403
    assert b"No role yet" in response.content
    assert b"prod-eu" not in response.content and b"123456789012" not in response.content
    assert client.get(reverse("health-checks")).status_code == 403


@pytest.mark.django_db
def test_the_django_admin_cannot_change_environments(client, admin_user):
    """Environments change through the console, which checks roles and logs every change."""
    environment = Environment.objects.create(name="prod", suffix="")
    admin_user.is_superuser = True  # whom Django's admin allows everything
    admin_user.save()
    client.force_login(admin_user)

    change = reverse("admin:provisioning_environment_change", args=[environment.pk])
    response = client.post(change, {"name": "prod", "desired_count": 0, "suffix": "-x"})
    delete = reverse("admin:provisioning_environment_delete", args=[environment.pk])
    client.post(delete, {"post": "yes"})

    assert response.status_code == 403
    assert client.get(reverse("admin:provisioning_environment_add")).status_code == 403
    environment.refresh_from_db()
    assert (environment.suffix, environment.desired_count) == ("", 1)


@pytest.mark.django_db
def test_role_permissions(viewer, operator, admin_user):
    assert viewer.has_perm(perms.VIEW_AUDIT) and not viewer.has_perm(perms.START_PROVISIONING)
    assert operator.has_perm(perms.START_ROLLOUT) and not operator.has_perm(perms.MANAGE_API_KEYS)
    assert admin_user.has_perm(perms.MANAGE_USERS)


@pytest.mark.django_db
def test_a_forbidden_page_explains_itself(client, viewer):
    client.force_login(viewer)
    response = client.get(reverse("api-keys"))

    assert response.status_code == 403
    assert b"Your role does not include this page" in response.content


@pytest.mark.django_db
def test_an_unknown_page_is_a_friendly_404(client, viewer):
    client.force_login(viewer)
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert b"There is nothing at this address" in response.content


def test_a_server_error_shows_the_friendly_page_without_details(rf):
    response = server_error(rf.get("/anything/"))

    assert response.status_code == 500
    assert b"Something went wrong" in response.content
    assert b"Traceback" not in response.content
