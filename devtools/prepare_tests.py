"""Install what the test suite needs from the OS before pytest starts (`make test`)."""

import sys

from devtools import services

TEST_PACKAGES = {
    "redis-server": "redis-server",
    "chromium": "chromium",
    "docker-compose": "docker-compose",
}

if __name__ == "__main__":
    try:
        services.ensure_os_packages(TEST_PACKAGES)
    except services.ServiceError as exc:
        sys.exit(f"make test: {exc}")
