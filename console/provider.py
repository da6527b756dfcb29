"""The company's identity provider in plain terms: which of its groups give which console role,
and where its endpoints are (its discovery document). No Django here: settings read it."""

from collections.abc import Iterable

import requests

from console.roles import ADMIN, OPERATOR, VIEWER

ROLES = (VIEWER, OPERATOR, ADMIN)

# mozilla-django-oidc's settings, and the names OpenID Connect Discovery 1.0 gives them.
ENDPOINTS = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}


class ProviderUnavailable(Exception):
    """The provider's discovery document could not be read or is not usable."""


def parse_role_groups(text: str) -> dict[str, tuple[str, ...]]:
    """``viewer:llm-viewers,operator:llm-operators,admin:llm-admins`` as {role: groups}; a
    role named again gets another group (``viewer:auditors``). Raises ValueError saying which
    entry is wrong."""
    mapping: dict[str, list[str]] = {}
    for entry in text.split(","):
        if not entry.strip():
            continue
        role, colon, group = (part.strip() for part in entry.partition(":"))
        if not colon or not role or not group:
            raise ValueError(f"{entry.strip()!r} is not role:group (e.g. viewer:llm-viewers)")
        if role not in ROLES:
            raise ValueError(f"{entry.strip()!r} names no role: the roles are {', '.join(ROLES)}")
        mapping.setdefault(role, []).append(group)
    return {role: tuple(groups) for role, groups in mapping.items()}


def roles_for(groups: Iterable[str], role_groups: dict[str, tuple[str, ...]]) -> set[str]:
    """The roles that any of ``groups`` (the user's groups at the provider) gives."""
    held = set(groups)
    return {role for role, granting in role_groups.items() if held.intersection(granting)}


def discover(issuer: str, *, timeout: float = 10) -> dict[str, str]:
    """The endpoints from ``<issuer>/.well-known/openid-configuration``, by setting name."""
    url = f"{issuer.rstrip('/')}/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=timeout)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise ProviderUnavailable(f"could not read {url}: {exc}") from exc
    # OpenID Connect Discovery 1.0, 4.3: the issuer it names must be the one asked.
    if document.get("issuer", "").rstrip("/") != issuer.rstrip("/"):
        raise ProviderUnavailable(f"{url} names the issuer {document.get('issuer')!r}")
    missing = [key for key in ENDPOINTS.values() if not document.get(key)]
    if missing:
        raise ProviderUnavailable(f"{url} names no {', '.join(missing)}")
    return {setting: document[key] for setting, key in ENDPOINTS.items()}
