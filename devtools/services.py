"""Start the real services a local console or a test run needs: Redis and the local AWS.

Both `make run` (devtools.run) and the test plugin (devtools.pytest_services) use these, so
the two set-ups cannot drift apart.
"""

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
LOGS = VAR / "log"  # each process's full output, one file per process


class ServiceError(RuntimeError):
    """A service could not be started; the message says what to do."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) == 0


def wait_for_port(port: int, *, host: str = "127.0.0.1", timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise ServiceError(f"nothing answered on {host}:{port} after {timeout:.0f}s")


def ensure_os_packages(binaries: dict[str, str]) -> None:
    """Install the Debian packages (binary name -> package) whose binaries are missing.

    One apt-get run for all of them; stops with a one-line instruction where it cannot.
    """
    missing = sorted({package for binary, package in binaries.items() if not shutil.which(binary)})
    if not missing:
        return
    command = f"apt-get install {' '.join(missing)}"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ServiceError(f"missing {', '.join(missing)}: install with `sudo {command}`")
    print(f"installing {', '.join(missing)} (apt-get) ...", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quiet = {"stdout": subprocess.DEVNULL, "env": env}
    subprocess.run(["apt-get", "update", "-qq"], check=False, **quiet)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=False, **quiet)
    still_missing = [binary for binary in binaries if not shutil.which(binary)]
    if still_missing:
        raise ServiceError(f"could not install {', '.join(missing)}: run `{command}` as root")


def ensure_os_package(binary: str, package: str) -> str:
    """The path of ``binary``, installing Debian's ``package`` when it is missing and we can."""
    ensure_os_packages({binary: package})
    return shutil.which(binary)


def log_of(name: str) -> Path:
    """Where the process ``name`` writes its output: var/log/<name>.log."""
    LOGS.mkdir(parents=True, exist_ok=True)
    return LOGS / f"{name}.log"


class Process:
    """A child process that is stopped with SIGTERM, then SIGKILL. With ``log=True`` its
    output (stdout and stderr) is appended to ``log_of(name)``."""

    def __init__(self, name: str, args: list[str], *, log: bool = False, **popen) -> None:
        self.name = name
        if not log:
            self.popen = subprocess.Popen(args, start_new_session=True, **popen)
            return
        with open(log_of(name), "ab") as out:  # the child keeps its own descriptor
            self.popen = subprocess.Popen(
                args, start_new_session=True, stdout=out, stderr=subprocess.STDOUT, **popen
            )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10) -> None:
        if not self.alive():
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout)
        except ProcessLookupError:  # it ended between the two lines
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping())
    except (redis.RedisError, ValueError):
        return False


def start_redis(data_dir: Path | None = None) -> tuple[Process, str]:
    """A redis-server on a free loopback port; ``data_dir`` keeps its snapshot across restarts
    (and its output goes to var/log/redis.log)."""
    binary = ensure_os_package("redis-server", "redis-server")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "yes"]
    if data_dir is None:
        args += ["--save", "", "--appendonly", "no"]
        process = Process("redis", args, stdout=subprocess.DEVNULL)
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        args += ["--dir", str(data_dir), "--appendonly", "yes"]
        process = Process("redis", args, log=True)
    wait_for_port(port)
    return process, f"redis://127.0.0.1:{port}/0"


# Switches the platform needs from moto: AWS-managed IAM policies exist, ECS services settle.
MOTO_ENV = {
    "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
    "MOTO_ECS_SERVICE_RUNNING": "1",
}

# Requests that change nothing are left out of the replayed recording, so restarts stay fast
# however long the console has been polling.
_READ_ONLY_PREFIXES = ("Describe", "List", "Get", "Query", "Scan", "Receive", "BatchGet", "Head")
# moto draws these services' ids at random, so a replay cannot reproduce the references between
# them (a VPC link to an NLB's ARN, ...). They are left out: the local environment declares them
# and `make run` applies it at start, which creates them afresh.
_RANDOM_ID_SERVICES = frozenset({"ec2", "elasticloadbalancing", "autoscaling", "ecs", "apigateway"})
# But task definitions are named by family and revision: replayed, the revisions releases
# recorded are there again, so a rollback to one still works after a restart.
_NAMED_BY_REVISION = frozenset({"RegisterTaskDefinition", "DeregisterTaskDefinition"})
# Requests bound to the session that made them: every server draws its own receipt handles (a
# replayed delete fails), and log lines tell of a session that is over. A build is something
# that happened, not something that is (replayed, it would run and push again; its push is
# recorded on its own), and ECR's layer uploads go by random ids. Left out too.
_SESSION_ONLY = frozenset(
    {
        "DeleteMessage",
        "DeleteMessageBatch",
        "ChangeMessageVisibility",
        "ChangeMessageVisibilityBatch",
        "PutLogEvents",
        "StartBuild",
        "BatchCheckLayerAvailability",
        "InitiateLayerUpload",
        "UploadLayerPart",
        "CompleteLayerUpload",
    }
)


def _service(entry: dict) -> str:
    """The service a signed request was for, from its SigV4 credential scope."""
    authorization = entry.get("headers", {}).get("Authorization", "")
    scope = authorization.partition("Credential=")[2].split(",", 1)[0].split("/")
    return scope[3] if len(scope) > 3 else ""


def _action(entry: dict) -> str:
    target = entry.get("headers", {}).get("X-Amz-Target", "")
    if target:
        return target.rpartition(".")[2]
    if entry.get("body_encoded"):
        return ""
    for part in (entry.get("body") or "").split("&"):
        if part.startswith("Action="):
            return part[len("Action=") :]
    return ""


def _replayable(entry: dict) -> bool:
    action = _action(entry)
    if entry.get("method") in ("GET", "HEAD") or (
        _service(entry) in _RANDOM_ID_SERVICES and action not in _NAMED_BY_REVISION
    ):
        return False
    return not action.startswith(_READ_ONLY_PREFIXES) and action not in _SESSION_ONLY


def _notification(entry: dict) -> bool:
    """Whether the request sets a bucket's notifications (PutBucketNotificationConfiguration)."""
    return entry.get("method") == "PUT" and urlparse(entry.get("url", "")).query == "notification"


def compact_recording(path: Path) -> int:
    """Keep only the requests worth replaying in a moto recording; returns how many remain.

    Buckets' notifications move to the end: the objects replayed before them notify no one,
    since their events were delivered in the session that put them (otherwise every start
    would hand every audit object to the ingest again)."""
    if not path.exists():
        return 0
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    kept = [entry for entry in entries if _replayable(entry)]
    kept.sort(key=_notification)  # stable: the order stays within each part
    path.write_text("".join(json.dumps(entry) + "\n" for entry in kept))
    return len(kept)


class LocalAWS:
    """moto in server mode, with DynamoDB served by DynamoDB Local (``dynamodb_local=False``:
    by moto too, where no Java can run).

    With a ``state_dir`` every mutating request to moto is recorded there and replayed into
    the fresh server on the next start (moto itself keeps nothing across restarts), and
    DynamoDB Local keeps its tables under ``state_dir/dynamodb``.
    """

    def __init__(
        self,
        port: int | None = None,
        state_dir: Path | None = None,
        host: str = "127.0.0.1",
        *,
        dynamodb_local: bool = True,
    ) -> None:
        self.port = port or free_port()
        self.state_dir = state_dir
        self.host = host
        self.process: Process | None = None
        self.dynamodb = None
        if dynamodb_local:
            from devtools.dynamodb_local import DynamoDBLocal

            self.dynamodb = DynamoDBLocal(data_dir=state_dir / "dynamodb" if state_dir else None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def recording(self) -> Path | None:
        return self.state_dir / "moto-recording.jsonl" if self.state_dir else None

    def start(self) -> "LocalAWS":
        if port_in_use(self.port):
            raise ServiceError(
                f"port {self.port} is taken (another make run?): stop it or set LOCAL_AWS_PORT"
            )
        env = {**os.environ, **MOTO_ENV}
        replay = 0
        if self.recording:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            replay = compact_recording(self.recording)
            env["MOTO_ENABLE_RECORDING"] = "True"
            env["MOTO_RECORDER_FILEPATH"] = str(self.recording)
        moto = [sys.executable, "-m", "devtools.moto_server", "-H", self.host, "-p", str(self.port)]
        self.process = Process("local-aws", moto, env=env, log=True)
        try:
            wait_for_port(self.port, timeout=60)
            if replay:
                self._post("/moto-api/recorder/replay-recording", timeout=600)
            if self.dynamodb:
                self.dynamodb.start()
        except BaseException:  # Ctrl-C during a long replay too: nothing is left running
            self.stop()
            raise
        return self

    def env(self) -> dict[str, str]:
        """What boto3 needs to talk to this local AWS (any credentials will do)."""
        env = local_aws_env(self.url)
        if self.dynamodb:
            env["AWS_ENDPOINT_URL_DYNAMODB"] = self.dynamodb.url
        return env

    def _post(self, path: str, timeout: float) -> None:
        request = urllib.request.Request(self.url + path, data=b"", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            response.read()

    def alive(self) -> bool:
        return bool(self.process and self.process.alive())

    def stop(self) -> None:
        if self.dynamodb:
            self.dynamodb.stop()
        if self.process:
            self.process.stop()


def local_aws_env(url: str) -> dict[str, str]:
    """Environment for boto3 to talk to the local AWS (moto accepts any credentials)."""
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
    }


def is_local_endpoint(url: str | None) -> bool:
    return bool(url) and urlparse(url).hostname in ("127.0.0.1", "localhost", "::1")


@contextlib.contextmanager
def for_benchmark(*, dynamodb_local: bool = True, **environ: str) -> Iterator[LocalAWS]:
    """Redis, the local AWS and a throwaway SQLite database for a benchmark's process, with
    the console's production settings (debug pages cost time of their own); ``environ`` adds
    to them. Everything started is stopped on the way out."""
    redis, redis_url = start_redis()
    local_aws = LocalAWS(dynamodb_local=dynamodb_local).start()
    folder = tempfile.mkdtemp(prefix="bench-")
    os.environ.update(local_aws.env())
    os.environ.update(
        REDIS_URL=redis_url,
        DJANGO_SETTINGS_MODULE="console.settings",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_SECURE_SSL_REDIRECT="false",
        DJANGO_SECURE_COOKIES="false",
        DJANGO_STATIC_MANIFEST="false",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
        DATABASE_URL=f"sqlite:///{folder}/bench.sqlite3",
        **environ,
    )
    os.environ.setdefault("AWS_REGION", "eu-central-1")
    try:
        yield local_aws
    finally:
        local_aws.stop()
        redis.stop()
