"""Install what the test suite needs from the OS before pytest starts (`make test`)."""

import sys

from devtools import services

if __name__ == "__main__":
    try:
        services.ensure_os_package("redis-server", "redis-server")
        services.ensure_os_package("chromium", "chromium")
    except services.ServiceError as exc:
        sys.exit(f"make test: {exc}")
