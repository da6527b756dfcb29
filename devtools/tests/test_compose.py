import os
import subprocess

import yaml

from devtools.services import ROOT, ensure_os_package


def _compose() -> list[str]:
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if plugin.returncode == 0:
        return ["docker", "compose"]
    return [ensure_os_package("docker-compose", "docker-compose")]


def test_docker_compose_accepts_the_file_and_shares_one_environment():
    env = {**os.environ, "DJANGO_SECRET_KEY": "compose-config-check"}
    result = subprocess.run(
        [*_compose(), "-f", str(ROOT / "docker-compose.yml"), "config"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {"web", "worker", "redis", "postgres", "local-aws"} <= set(services)
    assert services["web"]["environment"] == services["worker"]["environment"]
    command = services["web"]["command"]  # compose v2 gives a list, v1 the string
    assert "gunicorn" in (command if isinstance(command, str) else " ".join(command))
