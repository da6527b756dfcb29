"""pytest plugin: real Redis and a moto server for the whole test session (for each
pytest-xdist worker, under ``make test``).

It runs before pytest-django reads the settings, so the settings see REDIS_URL and the
AWS endpoint exactly as in production. A REDIS_URL that answers is reused (on a spare
database number: the tests flush it).
"""

import atexit
import os
import secrets

import pytest

from devtools import services

_started: list = []


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args) -> None:
    os.environ.setdefault("AWS_REGION", "eu-central-1")
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "false")
    os.environ.setdefault("DJANGO_SECURE_COOKIES", "false")
    os.environ.setdefault("DJANGO_STATIC_MANIFEST", "false")
    # The local CodeBuild's builds take 1 s here (15 s under `make run`).
    os.environ.setdefault("LOCAL_BUILD_SECONDS", "1")
    # A local deployment that watches alarms settles for 1 s here (30 s under `make run`).
    os.environ.setdefault("LOCAL_ECS_BAKE_SECONDS", "1")
    if _xdist_controller(early_config):
        return  # each of pytest-xdist's workers starts its own; the controller runs no test
    redis_url = os.environ.get("REDIS_URL", "")
    if not (redis_url and services.redis_answers(redis_url)):
        process, redis_url = services.start_redis()
        _started.append(process)
    os.environ["REDIS_URL"] = redis_url
    local_aws = services.LocalAWS().start()
    _started.append(local_aws)
    os.environ.update(local_aws.env())


def _xdist_controller(early_config) -> bool:
    processes = getattr(early_config.known_args_namespace, "numprocesses", None)
    return bool(processes) and "PYTEST_XDIST_WORKER" not in os.environ


def _stop_started() -> None:
    while _started:
        _started.pop().stop()


def pytest_unconfigure(config) -> None:
    _stop_started()


# pytest skips unconfigure when it fails while loading; the services must not outlive it.
atexit.register(_stop_started)
