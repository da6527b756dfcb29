"""Settings for the Central LLM Console, read from the environment.

The defaults are safe for a laptop: SQLite under var/, Redis on localhost, AWS's default
endpoint and credential chain. See README.md for every variable.
"""

import ipaddress
import os
import socket
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from centralllm.aws import region
from console.provider import parse_role_groups

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"


def envbool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "")
    if not value:
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def envint(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    try:
        return int(value) if value else default
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {value!r}") from None


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def envnetworks(name: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    try:
        return [ipaddress.ip_network(item) for item in envlist(name, "")]
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"{name} must be networks such as 10.0.0.0/16, separated by commas: {exc}"
        ) from None


DEBUG = envbool("DJANGO_DEBUG", False)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set unless DJANGO_DEBUG is true")
    SECRET_KEY = "insecure-local-development-key-never-used-with-debug-off"  # noqa: S105

ALLOWED_HOSTS = envlist("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = envlist("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "core",
    "console",
    "provisioning",
    "costs",
    "audit_explorer",
    "api_access",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_rq",
    "axes",
    "csp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "console.timezones.UserTimezoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "console.idle.IdleTimeoutMiddleware",
    "console.signin.ProviderSessionRefresh",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "console.urls"
WSGI_APPLICATION = "console.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        env="DATABASE_URL",
        default=f"sqlite:///{VAR_DIR / 'console.sqlite3'}",
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # On disk, so that a test's worker process sees the test database too.
    # Beside the database it tests, so that two checkouts' test runs never share one.
    database = Path(DATABASES["default"]["NAME"])
    DATABASES["default"]["TEST"] = {"NAME": str(database.with_name(f"test-{database.name}"))}
    # A transaction takes the write lock as it begins, waiting for it: one that read first
    # (update_or_create) would otherwise fail at once ("database is locked") when a worker
    # writes meanwhile, as the action log's shipping does every few seconds.
    DATABASES["default"].setdefault("OPTIONS", {})["transaction_mode"] = "IMMEDIATE"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Axes first: it refuses a locked-out sign-in before a password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "console.auth.CachedPermissionsBackend",
    # Does nothing without CONSOLE_OIDC_ISSUER; after the one above, which keeps permissions.
    "console.signin.ProviderBackend",
]
# Wrong passwords lock the account name, whatever address they come from (behind a load
# balancer every address is the balancer's), for a cool-off that bounds a lockout's harm.
AXES_FAILURE_LIMIT = envint("DJANGO_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=envint("DJANGO_LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username"]  # W006 warns of rotating addresses: not counted here
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# A session ends after this long without use (pages opened, forms sent; not a page's polls),
# and at the latest this long after signing in.
SESSION_IDLE_SECONDS = envint("DJANGO_SESSION_IDLE_MINUTES", 60) * 60
SESSION_COOKIE_AGE = envint("DJANGO_SESSION_MAX_HOURS", 12) * 3600
# Scripts and styles come only from the console's own static files: no inline handlers.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Sign-in through the company's identity provider (OpenID Connect, mozilla-django-oidc), on
# when an issuer is set. Its endpoints come from the issuer's discovery document, read at the
# first sign-in of each process, unless set here. See README "Signing in with the company's
# identity provider".
CONSOLE_OIDC_ISSUER = os.environ.get("CONSOLE_OIDC_ISSUER", "").strip()
CONSOLE_OIDC_PROVIDER_NAME = os.environ.get("CONSOLE_OIDC_PROVIDER_NAME", "single sign-on")
OIDC_RP_CLIENT_ID = os.environ.get("CONSOLE_OIDC_CLIENT_ID", "")
OIDC_RP_CLIENT_SECRET = os.environ.get("CONSOLE_OIDC_CLIENT_SECRET", "")
OIDC_RP_SCOPES = os.environ.get("CONSOLE_OIDC_SCOPES", "openid email profile")
OIDC_RP_SIGN_ALGO = os.environ.get("CONSOLE_OIDC_SIGN_ALGO", "RS256")
OIDC_OP_AUTHORIZATION_ENDPOINT = os.environ.get("CONSOLE_OIDC_AUTHORIZATION_ENDPOINT", "")
OIDC_OP_TOKEN_ENDPOINT = os.environ.get("CONSOLE_OIDC_TOKEN_ENDPOINT", "")
OIDC_OP_USER_ENDPOINT = os.environ.get("CONSOLE_OIDC_USERINFO_ENDPOINT", "")
OIDC_OP_JWKS_ENDPOINT = os.environ.get("CONSOLE_OIDC_JWKS_ENDPOINT", "")
OIDC_USE_PKCE = True
OIDC_TIMEOUT = 10
# How often a signed-in user's groups are asked of the provider again (at their next request).
OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS = envint("CONSOLE_OIDC_REFRESH_SECONDS", 900)
CONSOLE_OIDC_USERNAME_CLAIM = os.environ.get("CONSOLE_OIDC_USERNAME_CLAIM", "preferred_username")
CONSOLE_OIDC_GROUPS_CLAIM = os.environ.get("CONSOLE_OIDC_GROUPS_CLAIM", "groups")
try:
    CONSOLE_OIDC_ROLE_GROUPS = parse_role_groups(os.environ.get("CONSOLE_OIDC_ROLE_GROUPS", ""))
except ValueError as exc:
    raise ImproperlyConfigured(f"CONSOLE_OIDC_ROLE_GROUPS: {exc}") from None
if CONSOLE_OIDC_ISSUER:
    _needed = {
        "CONSOLE_OIDC_CLIENT_ID": OIDC_RP_CLIENT_ID,
        "CONSOLE_OIDC_CLIENT_SECRET": OIDC_RP_CLIENT_SECRET,
        "CONSOLE_OIDC_ROLE_GROUPS": CONSOLE_OIDC_ROLE_GROUPS,
    }
    if _missing := [name for name, value in _needed.items() if not value]:
        raise ImproperlyConfigured(f"CONSOLE_OIDC_ISSUER needs {', '.join(_missing)} too")
# Off: only superusers (the bootstrap admin) sign in with a password, for break-glass, each
# time logged; everyone else signs in through the provider.
CONSOLE_LOCAL_PASSWORDS = envbool("CONSOLE_LOCAL_PASSWORDS", True)
if not CONSOLE_LOCAL_PASSWORDS and not CONSOLE_OIDC_ISSUER:
    raise ImproperlyConfigured("CONSOLE_LOCAL_PASSWORDS=false needs CONSOLE_OIDC_ISSUER")

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# Hashed names need `collectstatic` first (the image runs it); local runs and tests go without.
STATIC_MANIFEST = envbool("DJANGO_STATIC_MANIFEST", not DEBUG)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if STATIC_MANIFEST
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = not STATIC_MANIFEST

# Behind a TLS-terminating load balancer set DJANGO_SECURE_PROXY_SSL_HEADER=true.
if envbool("DJANGO_SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = envbool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "0" if DEBUG else "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = False
SESSION_COOKIE_SECURE = envbool("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# HSTS preload is an operator's decision; axes.W006: see AXES_LOCKOUT_PARAMETERS.
SILENCED_SYSTEM_CHECKS = ["security.W021", "axes.W006"]

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

# Queues and how long one job may run before RQ stops it.
RQ_QUEUES = {
    "default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 300},
    "provisioning": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 3600},
    "audit": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 120},
}
RQ_SHOW_ADMIN_LINK = False

# Redis also caches what pages show of AWS, so many viewers do not multiply AWS calls, and
# holds sessions, so a page refresh costs the database no session lookup.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
}
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
AWS_STATE_CACHE_SECONDS = envint("AWS_STATE_CACHE_SECONDS", 10)

# A running run with no event for this long is shown as stalled; with no heartbeat for this
# long, the reaper asks RQ whether its worker still lives, and fails the run if not.
RUN_STALLED_SECONDS = envint("RUN_STALLED_SECONDS", 120)
RUN_HEARTBEAT_TIMEOUT_SECONDS = envint("RUN_HEARTBEAT_TIMEOUT_SECONDS", 45)

# Where the local environment's model answers (`make run` sets it with SERVE_MODEL=1); unset,
# a local validation skips the completion and says why. Its completion goes through the local
# API, the stand-in of API Gateway's stage that `make run` serves (devtools.local_gateway).
LOCAL_MODEL_URL = os.environ.get("LOCAL_MODEL_URL", "")
LOCAL_API_URL = os.environ.get("LOCAL_API_URL", "")

AWS_REGION = region()

# Names this console in each action it sends to the audit buckets (``core.actions.as_record``):
# its public host name, say console.example.com; this machine's name if unset.
CONSOLE_HOST_NAME = os.environ.get("CONSOLE_HOST_NAME", "") or socket.gethostname()

# What signs each checked day's audit seal (audit_explorer.seals): an asymmetric KMS signing
# key (id, ARN or alias), else an HMAC key of 32 characters or more, kept in a secret store.
# A local environment without either falls back to a key derived from its name (no secret).
# Django's error pages hide settings named *KEY*.
AUDIT_SEAL_KMS_KEY = os.environ.get("AUDIT_SEAL_KMS_KEY", "")
AUDIT_SEAL_KEY = os.environ.get("AUDIT_SEAL_KEY", "")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"botocore": {"level": "WARNING"}, "urllib3": {"level": "WARNING"}},
}

# /metrics (console.metrics, docs/metrics.md): answered only to a scraper that sends this
# bearer token and/or connects from one of these networks (CIDRs, matched against the
# connecting address); with neither set it answers 404. Prometheus scrapes each task directly,
# over the private network, so it is exempt from the HTTPS redirect like /healthz.
METRICS_TOKEN = os.environ.get("CONSOLE_METRICS_TOKEN", "")
METRICS_NETWORKS = envnetworks("CONSOLE_METRICS_NETWORKS")
# Request counts and latencies per view (django-prometheus): its two middlewares wrap all the
# others. Under gunicorn, PROMETHEUS_MULTIPROC_DIR gathers every worker's (console.gunicorn).
MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    *MIDDLEWARE,
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]
