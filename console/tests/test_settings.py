import os
import subprocess
import sys

import pytest
from django.core.management import call_command

from devtools.services import ROOT


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_production_settings_pass_the_deploy_checks():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SECRET_KEY="a-production-secret-" + "x" * 40,
        DJANGO_ALLOWED_HOSTS="console.example.com",
    )

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    result = _manage("check")

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set unless DJANGO_DEBUG is true" in result.stderr


def test_database_url_selects_the_database():
    code = "from django.conf import settings; print(settings.DATABASES['default']['ENGINE'])"
    result = _manage(
        "shell",
        "--no-imports",
        "-c",
        code,
        DJANGO_DEBUG="1",
        DATABASE_URL="postgres://u:p@db.example:5432/console",
    )

    assert result.stdout.strip() == "django.db.backends.postgresql", result.stderr


@pytest.mark.django_db
def test_local_admin_is_created_once_and_its_password_printed_once(capsys, django_user_model):
    call_command("ensure_local_admin")
    first = capsys.readouterr().out
    call_command("ensure_local_admin")
    second = capsys.readouterr().out

    password = first.strip().rsplit(" ", 1)[-1]
    admin = django_user_model.objects.get(username="admin")
    assert admin.check_password(password)
    assert admin.groups.filter(name="admin").exists()
    assert second == ""
