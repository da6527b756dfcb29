"""Signing in: through the company's identity provider (OpenID Connect, with
mozilla-django-oidc), and with local passwords, which can be kept for break-glass only.

Every piece here is installed whether a provider is set or not, and does nothing without one
(``CONSOLE_OIDC_ISSUER`` empty): the console then signs in with passwords, as it always did.
A provider user's roles are their groups there (``CONSOLE_OIDC_ROLE_GROUPS``), applied at every
sign-in and at every renewal, which mozilla-django-oidc's SessionRefresh asks of the provider
once ``OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS`` have passed.
"""

import logging
import time
from collections.abc import Callable
from typing import Any

import requests
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import BACKEND_SESSION_KEY, get_user_model, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import AbstractBaseUser, Group
from django.contrib.auth.signals import user_logged_in
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import SuspiciousOperation
from django.db import transaction
from django.dispatch import receiver
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django_htmx.http import HttpResponseClientRefresh
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.middleware import SessionRefresh
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import (
    OIDCAuthenticationCallbackView,
    OIDCAuthenticationRequestView,
    OIDCLogoutView,
)

from console import provider
from console.roles import ADMIN
from core import actions

logger = logging.getLogger(__name__)

PROVIDER_BACKEND = f"{__name__}.ProviderBackend"
LOCAL_BACKEND = "console.auth.CachedPermissionsBackend"
# Where mozilla-django-oidc keeps when the session must next be renewed with the provider.
RENEW_AT = "oidc_id_token_expiration"

_discovered: dict[str, dict[str, str]] = {}


def enabled() -> bool:
    return bool(settings.CONSOLE_OIDC_ISSUER)


def provider_name() -> str:
    """What the pages call the provider; empty when there is none."""
    return settings.CONSOLE_OIDC_PROVIDER_NAME if enabled() else ""


def provider_setting(attr: str, *default: Any) -> Any:
    """mozilla-django-oidc's settings; an endpoint not set explicitly comes from the issuer's
    discovery document, read at its first use in this process (not at start: a provider that
    is down then must not keep the console, and its break-glass sign-in, from starting)."""
    if attr in provider.ENDPOINTS and not getattr(settings, attr, ""):
        issuer = settings.CONSOLE_OIDC_ISSUER
        if issuer not in _discovered:
            _discovered[issuer] = provider.discover(issuer, timeout=settings.OIDC_TIMEOUT)
        return _discovered[issuer][attr]
    return import_from_settings(attr, *default)


class _ProviderSettings:
    get_settings = staticmethod(provider_setting)


def _claimed_groups(claims: dict) -> list[str]:
    value = claims.get(settings.CONSOLE_OIDC_GROUPS_CLAIM) or []
    return [value] if isinstance(value, str) else [str(group) for group in value]


def apply_roles(user: AbstractBaseUser, groups: list[str]) -> None:
    """Give ``user`` exactly the roles their provider ``groups`` map to (admins are staff, as
    the Django admin and the queues need); a change is recorded in the action log. The role
    groups' membership signals drop the permissions kept in Redis (console.auth)."""
    role_groups = settings.CONSOLE_OIDC_ROLE_GROUPS
    wanted = provider.roles_for(groups, role_groups)
    held = set(user.groups.filter(name__in=provider.ROLES).values_list("name", flat=True))
    if wanted == held and user.is_staff == (ADMIN in wanted):
        return
    mapped = {group for granting in role_groups.values() for group in granting}
    with transaction.atomic():
        user.groups.remove(*Group.objects.filter(name__in=held - wanted))
        user.groups.add(*Group.objects.filter(name__in=wanted - held))
        user.is_staff = ADMIN in wanted
        user.save(update_fields=["is_staff"])
        actions.record(
            "user.roles_from_provider",
            user,
            actor=user,
            parameters={
                "provider": settings.CONSOLE_OIDC_PROVIDER_NAME,
                "groups": sorted(mapped.intersection(groups)),
            },
            before={"roles": [role for role in provider.ROLES if role in held]},
            after={"roles": [role for role in provider.ROLES if role in wanted]},
        )
    logger.info("%s's roles from %s: %s", user, settings.CONSOLE_OIDC_PROVIDER_NAME, wanted)


class ProviderBackend(_ProviderSettings, OIDCAuthenticationBackend):
    """Signs in whom the provider vouches for, under the name its username claim gives (made
    at the first sign-in, without a password), with the roles of their groups there.
    Permissions are console.auth's, listed before this backend."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Django builds the backends for every sign-in, a password's too: the provider's
        # settings (and its discovery document) are read only when the provider answers.
        self.UserModel = get_user_model()

    def authenticate(self, request: HttpRequest | None, **kwargs: Any):
        # Only the callback's call (a password's, even with ?code= in its URL, is not ours).
        if not enabled() or request is None or "nonce" not in kwargs:
            return None
        super().__init__()
        return super().authenticate(request, **kwargs)

    # Django's, which refuses inactive users: mozilla-django-oidc's returns any user.
    get_user = ModelBackend.get_user

    def get_userinfo(self, access_token: str, id_token: str, payload: dict) -> dict:
        # Some providers (Entra ID) put the groups in the ID token only, not in the user info.
        return {**payload, **super().get_userinfo(access_token, id_token, payload)}

    def verify_claims(self, claims: dict) -> bool:
        if claims.get(settings.CONSOLE_OIDC_USERNAME_CLAIM):
            return True
        logger.warning(
            "sign-in with %s refused: no %r claim",
            settings.CONSOLE_OIDC_PROVIDER_NAME,
            settings.CONSOLE_OIDC_USERNAME_CLAIM,
        )
        return False

    def filter_users_by_claims(self, claims: dict):
        return self.UserModel.objects.filter(
            username__iexact=claims[settings.CONSOLE_OIDC_USERNAME_CLAIM]
        )

    def create_user(self, claims: dict):
        user = self.UserModel.objects.create_user(
            claims[settings.CONSOLE_OIDC_USERNAME_CLAIM], email=claims.get("email") or ""
        )
        return self.update_user(user, claims)

    def update_user(self, user, claims: dict):
        # A name is no proof of identity: the provider may call someone what a local account
        # is called (a superuser kept for break-glass, a user from before the provider). Only
        # an account without a password (made here, or whose password an admin removed to
        # hand it over) signs in through the provider.
        if user.is_superuser:
            raise SuspiciousOperation(
                f"{user} is a superuser, kept for break-glass: it signs in with its password only"
            )
        if user.has_usable_password():
            raise SuspiciousOperation(
                f"{user} is a local account with a password: an admin hands it to the provider "
                "by removing its password (manage.py changepassword cannot; the Django admin "
                "or set_unusable_password can)"
            )
        apply_roles(user, _claimed_groups(claims))
        return user


class _SignIn(_ProviderSettings, OIDCAuthenticationRequestView):
    pass


class _Callback(_ProviderSettings, OIDCAuthenticationCallbackView):
    def get(self, request: HttpRequest) -> HttpResponse:
        try:
            return super().get(request)
        except (requests.RequestException, SuspiciousOperation) as exc:
            logger.warning("sign-in with %s failed: %s", settings.CONSOLE_OIDC_PROVIDER_NAME, exc)
            return self.login_failure()

    def login_failure(self) -> HttpResponse:
        # Signed out too: a renewal the provider refused must not leave the old session on.
        if self.request.user.is_authenticated:
            logout(self.request)
        said = self.request.GET.get("error_description") or self.request.GET.get("error")
        messages.error(
            self.request,
            f"Signing in with {settings.CONSOLE_OIDC_PROVIDER_NAME} did not complete"
            + (f" ({said})" if said else "")
            + ". Try again, or ask an admin if it goes on.",
        )
        return redirect(settings.LOGIN_URL)


def _provider_view(view_class: type) -> Callable[[HttpRequest], HttpResponse]:
    """A mozilla-django-oidc view, open before sign-in, missing (404) without a provider, and
    a page that says so when the provider's discovery document cannot be read."""
    view = view_class.as_view()

    @login_not_required
    def guarded(request: HttpRequest) -> HttpResponse:
        if not enabled():
            raise Http404("no identity provider is configured")
        try:
            return view(request)
        except provider.ProviderUnavailable as exc:
            logger.warning("%s is unavailable: %s", settings.CONSOLE_OIDC_PROVIDER_NAME, exc)
            context = {"provider_name": settings.CONSOLE_OIDC_PROVIDER_NAME, "problem": exc}
            return render(request, "registration/provider_unavailable.html", context, status=503)

    return guarded


# Their names are mozilla-django-oidc's, which it reverses.
urlpatterns = [
    path("authenticate/", _provider_view(_SignIn), name="oidc_authentication_init"),
    path("callback/", _provider_view(_Callback), name="oidc_authentication_callback"),
    path("logout/", _provider_view(OIDCLogoutView), name="oidc_logout"),
]


@login_not_required
def login(request: HttpRequest, *, break_glass: bool = False) -> HttpResponse:
    """The sign-in page: the provider's button, and the password form unless local passwords
    are off; the break-glass page (``break_glass``) has the password form always."""
    context = {
        "provider_name": provider_name(),
        "passwords": settings.CONSOLE_LOCAL_PASSWORDS or break_glass,
        "break_glass": break_glass and not settings.CONSOLE_LOCAL_PASSWORDS,
    }
    return auth_views.LoginView.as_view(extra_context=context)(request)


@receiver(user_logged_in)
def _record_break_glass(sender, request: HttpRequest | None, user, **kwargs) -> None:
    """A password sign-in while local passwords are off is the break-glass admin's."""
    if settings.CONSOLE_LOCAL_PASSWORDS or getattr(user, "backend", "") != LOCAL_BACKEND:
        return
    address = request.META.get("REMOTE_ADDR", "") if request else ""
    logger.warning("break-glass sign-in: %s signed in with a password from %s", user, address)
    actions.record("user.break_glass_sign_in", user, actor=user, parameters={"from": address})


class _Refresh(_ProviderSettings, SessionRefresh):
    def is_refreshable_url(self, request: HttpRequest) -> bool:
        return True  # ProviderSessionRefresh checked who signed in how, where, and when


# Never renewed on: the provider's own views, signing out, and the liveness probe.
NOT_RENEWED = (
    "oidc_authentication_init",
    "oidc_authentication_callback",
    "oidc_logout",
    "logout",
    "healthz",
)


class ProviderSessionRefresh:
    """mozilla-django-oidc's SessionRefresh: once the renewal is due, the next request of
    someone signed in through the provider goes by the provider (silently, ``prompt=none``),
    which signs them in again with the groups it has for them now, or refuses them.

    Any request, not only a GET: someone whose role was taken away must not go on posting. A
    form sent then goes back to its page, which renews (the Content-Security-Policy's
    ``form-action`` would not let a form's answer lead to the provider), and an htmx request
    reloads its page (a poll cannot follow the provider's pages).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not self._due(request):
            return self.get_response(request)
        if request.htmx:
            return HttpResponseClientRefresh()
        if request.method != "GET":
            return redirect(_referring_page(request))
        try:
            # Built when needed, from the settings of the moment: it reads the endpoints.
            return _Refresh(self.get_response).process_request(request)
        except provider.ProviderUnavailable as exc:
            logger.warning("%s is unavailable: %s", settings.CONSOLE_OIDC_PROVIDER_NAME, exc)
            logout(request)
            messages.error(
                request,
                f"{settings.CONSOLE_OIDC_PROVIDER_NAME} could not be reached to renew your "
                "sign-in: sign in again in a moment.",
            )
            return redirect_to_login(request.get_full_path())

    def _due(self, request: HttpRequest) -> bool:
        return (
            enabled()
            and request.user.is_authenticated
            and request.session.get(BACKEND_SESSION_KEY) == PROVIDER_BACKEND
            and request.session.get(RENEW_AT, 0) <= time.time()
            and request.path not in {reverse(name) for name in NOT_RENEWED}
        )


def _referring_page(request: HttpRequest) -> str:
    page = request.headers.get("referer", "")
    if url_has_allowed_host_and_scheme(
        page, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return page
    return resolve_url(settings.LOGIN_REDIRECT_URL)
