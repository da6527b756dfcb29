"""Install what the test suite needs before pytest starts (`make test`): the OS packages,
and the downloads every test process would otherwise race to fetch."""

import sys

from devtools import dynamodb_local, oidc_provider, services

TEST_PACKAGES = {
    "redis-server": "redis-server",
    "chromium": "chromium",
    "docker-compose": "docker-compose",
}

if __name__ == "__main__":
    try:
        services.ensure_os_packages(TEST_PACKAGES)
        dynamodb_local.install()
        oidc_provider.install()
    except services.ServiceError as exc:
        sys.exit(f"make test: {exc}")
