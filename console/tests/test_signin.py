"""Signing in through a real OpenID provider (devtools.oidc_provider), its groups mapped to
roles; local passwords off with the break-glass admin. The browser's part is played by a
requests session at the provider and the test client at the console."""

import logging
import os
import subprocess
import sys
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from django.contrib.auth.models import Group
from django.urls import reverse

from console import provider
from console.roles import ADMIN
from console.signin import RENEW_AT
from core.models import Action
from devtools.services import ROOT, free_port

CREATE = reverse("provisioning:environment-create")  # operators and admins only
ENVIRONMENTS = reverse("provisioning:environments")  # every role


def sign_in(client, oidc_provider, username: str, *, at_provider=None):
    """The console's "Sign in with" link, the provider's login form (skipped when the
    provider's session is still on), and back to the console's callback."""
    at_provider = at_provider or requests.Session()
    response = client.get(reverse("oidc_authentication_init"))
    location = response["Location"]
    while location.startswith(oidc_provider.issuer) or location.startswith("/"):
        url = urljoin(oidc_provider.issuer, location)
        if "/interaction/" in url:
            answer = at_provider.post(
                url, data={"username": username, "password": "pw"}, allow_redirects=False
            )
        else:
            answer = at_provider.get(url, allow_redirects=False)
        location = answer.headers["Location"]
    callback = urlsplit(location)
    return client.get(f"{callback.path}?{callback.query}")


def roles_of(django_user_model, username: str) -> set[str]:
    user = django_user_model.objects.get(username=username)
    return set(user.groups.values_list("name", flat=True))


def test_role_groups_are_read_with_several_groups_to_a_role():
    mapping = provider.parse_role_groups(
        " viewer:llm-viewers, viewer:auditors,operator:llm-operators,admin:llm-admins,"
    )

    assert mapping == {
        "viewer": ("llm-viewers", "auditors"),
        "operator": ("llm-operators",),
        "admin": ("llm-admins",),
    }
    assert provider.roles_for(["auditors", "other"], mapping) == {"viewer"}
    assert provider.roles_for(["other"], mapping) == set()


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("viewer=llm-viewers", "'viewer=llm-viewers' is not role:group"),
        ("viewer:", "'viewer:' is not role:group"),
        ("auditor:llm-auditors", "'auditor:llm-auditors' names no role"),
    ],
)
def test_a_wrong_role_group_entry_is_named(text, said):
    with pytest.raises(ValueError, match=said):
        provider.parse_role_groups(text)


def test_a_wrong_role_group_setting_stops_the_console_at_start_with_why():
    env = {**os.environ, "DJANGO_DEBUG": "1", "CONSOLE_OIDC_ROLE_GROUPS": "viewer:a,boss:b"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "check"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode != 0
    assert "CONSOLE_OIDC_ROLE_GROUPS: 'boss:b' names no role" in result.stderr


@pytest.mark.django_db
def test_without_an_issuer_the_console_signs_in_with_passwords_only(client):
    page = client.get(reverse("login")).content.decode()

    assert 'name="password"' in page
    assert "Sign in with" not in page
    assert client.get(reverse("oidc_authentication_init")).status_code == 404


@pytest.mark.django_db
def test_the_provider_group_gives_the_role_and_the_change_is_logged(
    client, signin_with_provider, django_user_model
):
    signin_with_provider.set_user("olga", password="pw", groups=["llm-operators", "staff"])

    landed = sign_in(client, signin_with_provider, "olga")

    assert landed.status_code == 302 and landed["Location"] == "/"
    assert roles_of(django_user_model, "olga") == {"operator"}
    assert client.get(CREATE).status_code == 200
    action = Action.objects.get(verb="user.roles_from_provider")
    assert action.actor_name == "olga"
    assert action.parameters == {"provider": "Test provider", "groups": ["llm-operators"]}
    assert (action.before, action.after) == ({"roles": []}, {"roles": ["operator"]})
    assert not django_user_model.objects.get(username="olga").has_usable_password()


@pytest.mark.django_db
def test_a_group_removed_at_the_provider_is_applied_at_the_renewal_not_before(
    client, signin_with_provider, django_user_model, settings
):
    settings.OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS = 600
    oidc_provider = signin_with_provider
    oidc_provider.set_user("oskar", password="pw", groups=["llm-operators", "llm-viewers"])
    at_provider = requests.Session()  # the browser's cookies at the provider
    sign_in(client, oidc_provider, "oskar", at_provider=at_provider)
    assert client.get(CREATE).status_code == 200

    oidc_provider.set_user("oskar", password="pw", groups=["llm-viewers"])
    assert client.get(CREATE).status_code == 200  # the renewal is not due yet
    session = client.session
    session[RENEW_AT] = 0  # it is now
    session.save()
    renewal = client.get(CREATE)

    assert renewal.status_code == 302
    assert (
        renewal["Location"].startswith(oidc_provider.issuer)
        and "prompt=none" in renewal["Location"]
    )
    answer = at_provider.get(renewal["Location"], allow_redirects=False)  # no form: silent
    callback = urlsplit(answer.headers["Location"])
    assert client.get(f"{callback.path}?{callback.query}")["Location"] == CREATE
    assert client.get(CREATE).status_code == 403
    assert client.get(ENVIRONMENTS).status_code == 200
    assert roles_of(django_user_model, "oskar") == {"viewer"}
    change = Action.objects.filter(verb="user.roles_from_provider").latest("pk")
    assert (change.before, change.after) == (
        {"roles": ["viewer", "operator"]},
        {"roles": ["viewer"]},
    )


@pytest.mark.django_db
def test_endpoints_set_by_hand_need_no_discovery(
    client, signin_with_provider, settings, django_user_model
):
    for setting, endpoint in provider.discover(signin_with_provider.issuer).items():
        setattr(settings, setting, endpoint)
    settings.CONSOLE_OIDC_ISSUER = f"http://127.0.0.1:{free_port()}"  # nothing answers there
    signin_with_provider.set_user("vic", password="pw", groups=["auditors"])

    sign_in(client, signin_with_provider, "vic")

    assert roles_of(django_user_model, "vic") == {"viewer"}


@pytest.mark.django_db
def test_a_due_renewal_reloads_an_htmx_page_and_sends_a_form_back_to_its_page(
    client, signin_with_provider
):
    signin_with_provider.set_user("pia", password="pw", groups=["llm-operators"])
    sign_in(client, signin_with_provider, "pia")
    session = client.session
    session[RENEW_AT] = 0
    session.save()

    poll = client.get(ENVIRONMENTS, headers={"HX-Request": "true"})
    form = client.post(CREATE, {"name": "x"}, headers={"Referer": f"http://testserver{CREATE}"})

    assert poll.headers["HX-Refresh"] == "true"
    assert (form.status_code, form["Location"]) == (302, f"http://testserver{CREATE}")
    assert not Action.objects.filter(verb__startswith="environment").exists()


@pytest.mark.django_db
def test_someone_in_no_mapped_group_is_told_they_have_no_role(client, signin_with_provider):
    signin_with_provider.set_user("nina", password="pw", groups=["sales"])

    sign_in(client, signin_with_provider, "nina")
    dashboard = client.get(reverse("dashboard"))

    assert dashboard.status_code == 403
    assert "No role yet" in dashboard.content.decode()
    assert "groups at Test provider" in dashboard.content.decode()
    assert client.get(ENVIRONMENTS).status_code == 403


@pytest.mark.django_db
def test_the_provider_never_signs_in_as_the_break_glass_superuser(
    client, signin_with_provider, django_user_model
):
    django_user_model.objects.create_superuser("root", password="a-long-local-password")
    signin_with_provider.set_user("root", password="pw", groups=["llm-admins"])

    failed = sign_in(client, signin_with_provider, "root")

    assert failed["Location"] == reverse("login")
    assert "did not complete" in client.get(reverse("login")).content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_the_provider_takes_over_a_local_account_only_once_its_password_is_removed(
    client, signin_with_provider, django_user_model
):
    bob = django_user_model.objects.create_user("bob", password="a-long-local-password")
    signin_with_provider.set_user("bob", password="pw", groups=["llm-admins"])

    refused = sign_in(client, signin_with_provider, "bob")

    assert refused["Location"] == reverse("login")
    assert "_auth_user_id" not in client.session
    bob.set_unusable_password()
    bob.save()
    signed_in = sign_in(client, signin_with_provider, "bob")
    assert signed_in["Location"] == reverse("dashboard")
    assert roles_of(django_user_model, "bob") == {"admin"}


@pytest.mark.django_db
def test_a_wrong_password_with_a_code_in_the_address_is_only_a_wrong_password(
    client, signin_with_provider, operator
):
    login = reverse("login") + "?code=not-the-providers&state=x"

    answer = client.post(login, {"username": "otto", "password": "not-the-password"})

    assert answer.status_code == 200
    assert "didn't match" in answer.content.decode()


@pytest.mark.django_db
def test_an_unreachable_provider_is_a_page_that_says_so(client, signin_with_provider, settings):
    settings.CONSOLE_OIDC_ISSUER = f"http://127.0.0.1:{free_port()}"

    answer = client.get(reverse("oidc_authentication_init"))

    assert answer.status_code == 503
    assert "Test provider cannot be reached" in answer.content.decode()


@pytest.mark.django_db
def test_with_passwords_off_only_the_break_glass_admin_signs_in_and_is_logged(
    client, signin_with_provider, settings, django_user_model, admin_user, caplog
):
    settings.CONSOLE_LOCAL_PASSWORDS = False
    root = django_user_model.objects.create_superuser("root", password="a-long-local-password")
    root.groups.add(Group.objects.get(name=ADMIN))
    login = client.get(reverse("login")).content.decode()
    assert "Sign in with Test provider" in login and 'name="password"' not in login

    refused = client.post(
        reverse("login-local"), {"username": "ada", "password": "ada-password-123"}
    )
    with caplog.at_level(logging.WARNING, logger="console.signin"):
        signed_in = client.post(
            reverse("login-local"), {"username": "root", "password": "a-long-local-password"}
        )

    assert "didn't match" in refused.content.decode()  # an admin, but no superuser
    assert signed_in.status_code == 302
    action = Action.objects.get(verb="user.break_glass_sign_in")
    assert action.actor_name == "root"
    assert "break-glass sign-in: root signed in with a password" in caplog.text


@pytest.mark.django_db
def test_wrong_break_glass_passwords_still_lock_the_account(
    client, signin_with_provider, settings, django_user_model
):
    settings.CONSOLE_LOCAL_PASSWORDS = False
    settings.AXES_FAILURE_LIMIT = 2
    django_user_model.objects.create_superuser("root", password="a-long-local-password")
    for _ in range(2):
        client.post(reverse("login-local"), {"username": "root", "password": "wrong"})

    locked = client.post(
        reverse("login-local"), {"username": "root", "password": "a-long-local-password"}
    )

    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
