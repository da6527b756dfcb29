"""DynamoDB Local, AWS's own DynamoDB emulator, for `make run`, `make test` and benchmarks.

moto's DynamoDB scans the whole table for every query and copies it for every transaction
(about 2 transactions/s and 12 GB after a thousand records); DynamoDB Local keeps AWS's
semantics (pagination included) at real volumes. It comes from the npm registry inside the
package ``amplify-dynamodb-simulator`` (its ``emulator/`` folder), pinned and checked against
the registry's published integrity checksum, and runs on Debian's Java.
"""

import base64
import hashlib
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from devtools import services

PACKAGE = "amplify-dynamodb-simulator"
VERSION = "2.9.30"
# `npm view amplify-dynamodb-simulator@2.9.30 dist.integrity`
INTEGRITY = (
    "sha512-xTeeRLvzEfqyd5lh3bH4c0kHvSHHmmhD5ZDsHFKAQ5g2Zl6J"
    "qlFdutaQhCLHzxEp6Ry1o7TB6niIoXuQAnSewQ=="
)
INSTALL_DIR = services.VAR / "dynamodb-local" / VERSION
JAR = INSTALL_DIR / "DynamoDBLocal.jar"


def install() -> Path:
    """The emulator's folder, fetched and checked once per version."""
    if JAR.exists():
        return INSTALL_DIR
    npm = services.ensure_os_package("npm", "npm")
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", scratch, "--silent"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        [tarball] = Path(scratch).glob("*.tgz")
        digest = (
            "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
        )
        if digest != INTEGRITY:
            raise services.ServiceError(
                f"{tarball.name} does not match the registry's checksum ({digest}): not used"
            )
        unpacked = Path(scratch) / "unpacked"
        with tarfile.open(tarball) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith("package/emulator/")]
            archive.extractall(unpacked, members=members, filter="data")
        INSTALL_DIR.parent.mkdir(parents=True, exist_ok=True)
        # Moved beside its place under a name of this process's own, then renamed: a test
        # process installing at the same time either wins the rename or finds it done.
        partial = Path(tempfile.mkdtemp(dir=INSTALL_DIR.parent, prefix=".partial-"))
        shutil.move(unpacked / "package" / "emulator", partial / "emulator")
        try:
            (partial / "emulator").replace(INSTALL_DIR)
        except OSError:
            if not JAR.exists():
                raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return INSTALL_DIR


class DynamoDBLocal:
    """DynamoDB Local on a loopback port: in memory, or with its data under ``data_dir``."""

    def __init__(self, port: int | None = None, data_dir: Path | None = None) -> None:
        self.port = port or services.free_port()
        self.data_dir = data_dir
        self.process: services.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "DynamoDBLocal":
        folder = install()
        java = services.ensure_os_package("java", "default-jre-headless")
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            storage = ["-dbPath", str(self.data_dir)]
        else:
            storage = ["-inMemory"]
        args = [
            java,
            "-Xmx1g",
            f"-Djava.library.path={folder / 'DynamoDBLocal_lib'}",
            "-jar",
            str(folder / "DynamoDBLocal.jar"),
            "-port",
            str(self.port),
            # One database whatever the credentials and region, as a single account has.
            "-sharedDb",
            *storage,
        ]
        self.process = services.Process("dynamodb-local", args, log=True, cwd=folder)
        services.wait_for_port(self.port, timeout=60)
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()
