"""A real OpenID provider for the sign-in tests: the certified ``oidc-provider`` package.

It comes from the npm registry, pinned with every dependency by exact version and integrity
checksum in ``oidc_provider_node/package-lock.json`` (``npm ci`` refuses a tarball that does
not match), installed once per lock file under var/oidc-provider/, and runs on Node.js
(Debian's ``nodejs``). ``oidc_provider_node/provider.mjs`` serves one client and the users of
a JSON file it reads at every sign-in and token, so a test changes someone's groups by
rewriting that file (``set_user``). Everything a provider writes stays in its own folder.
"""

import hashlib
import json
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from devtools import services

PACKAGE_DIR = Path(__file__).with_name("oidc_provider_node")
INSTALLS = services.VAR / "oidc-provider"


def install() -> Path:
    """The folder holding ``node_modules``, installed once per lock file. Test workers that
    install at the same time each install into a folder of their own; the first one wins."""
    lock = (PACKAGE_DIR / "package-lock.json").read_bytes()
    target = INSTALLS / hashlib.sha256(lock).hexdigest()[:16]
    if (target / "node_modules" / "oidc-provider").is_dir():
        return target
    npm = services.ensure_os_package("npm", "npm")
    INSTALLS.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="partial-", dir=INSTALLS))
    try:
        for name in ("package.json", "package-lock.json"):
            shutil.copy(PACKAGE_DIR / name, scratch / name)
        subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--silent"],
            cwd=scratch,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        scratch.rename(target)
    except OSError:  # another worker's install arrived first
        if not (target / "node_modules" / "oidc-provider").is_dir():
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


class OIDCProvider:
    """The provider on a free loopback port, its files (script, configuration, users, log) in
    ``folder``, with one confidential client allowed to return to ``redirect_uris``."""

    client_id = "central-llm-console"

    def __init__(self, folder: Path, *, redirect_uris: list[str]) -> None:
        self.folder = folder
        self.redirect_uris = redirect_uris
        self.port = services.free_port()
        self.client_secret = secrets.token_urlsafe(24)
        self.users_file = folder / "users.json"
        self.process: services.Process | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "OIDCProvider":
        node_modules = install() / "node_modules"
        node = services.ensure_os_package("node", "nodejs")
        self.folder.mkdir(parents=True, exist_ok=True)
        # Node resolves `oidc-provider` beside the script: the script is copied beside a link
        # to the installed modules.
        script = self.folder / "provider.mjs"
        shutil.copy(PACKAGE_DIR / "provider.mjs", script)
        (self.folder / "node_modules").symlink_to(node_modules, target_is_directory=True)
        config = self.folder / "config.json"
        config.write_text(
            json.dumps(
                {
                    "port": self.port,
                    "client_id": self.client_id,
                    "client_secret": self.client_secret,
                    "redirect_uris": self.redirect_uris,
                    "users_file": str(self.users_file),
                }
            )
        )
        self._write_users({})
        with open(self.folder / "provider.log", "ab") as log:
            self.process = services.Process(
                "oidc-provider",
                [node, str(script), str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        services.wait_for_port(self.port, timeout=30)
        return self

    def set_user(self, username: str, *, password: str, groups: list[str]) -> None:
        """Add the user, or change their password and groups: the next sign-in or token
        request reads them."""
        users = json.loads(self.users_file.read_text())
        users[username] = {"password": password, "groups": groups}
        self._write_users(users)

    def _write_users(self, users: dict) -> None:
        partial = self.users_file.with_suffix(".partial")
        partial.write_text(json.dumps(users))
        partial.replace(self.users_file)  # the provider never reads half a file

    def stop(self) -> None:
        if self.process:
            self.process.stop()
