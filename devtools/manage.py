"""`manage.py` against what `make run` started: `make manage CMD="env plan local"`.

Reads the service addresses that the running `make run` wrote to var/local.env; without one
it stops and says so, rather than reaching real AWS by mistake.
"""

import os
import subprocess
import sys

from devtools.run import LOCAL_ENV, MANAGE


def load_local_env() -> None:
    """The addresses of the services the running `make run` started, into os.environ."""
    if not LOCAL_ENV.exists():
        sys.exit("start `make run` first (it writes var/local.env)")
    for line in LOCAL_ENV.read_text().splitlines():
        name, _, value = line.partition("=")
        os.environ.setdefault(name, value)


def main(args: list[str]) -> None:
    load_local_env()
    sys.exit(subprocess.call([*MANAGE, *args]))


if __name__ == "__main__":
    main(sys.argv[1:])
