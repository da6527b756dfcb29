"""Every command README shows works from a fresh copy of the repository (issue 22).

`make run` starts in a copy of the working tree (the files git would commit: no var/, no
.venv) as a newcomer starts it, on free ports, with the test's virtualenv (VENV=, so nothing is
installed again) and the downloads a first run would fetch (DynamoDB Local, the Lambda's RE2
wheel, the tiny model) linked in from var/. Then every `make manage CMD="..."` README shows
is run against it, read from README.md, so a command added there is tested here too.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devtools import services, vllm_local

pytestmark = pytest.mark.slow

README = services.ROOT / "README.md"
VENV = Path(sys.prefix)
# README's `make manage` commands this test does not run, and why.
NOT_RUN = {"changepassword admin": "asks for the new password at the terminal"}
# Run after the others: it deletes what they read.
LAST = ("env destroy",)
# What a first run downloads into var/, linked in from this checkout's var/ when it has them.
DOWNLOADS = ("dynamodb-local", "wheels", "tiny-model")
DEMO_RECORDS = 30
START_SECONDS = 180


def manage_commands() -> list[str]:
    """Every CMD of a `make manage CMD="..."` in README, once each, in README's order."""
    return list(dict.fromkeys(re.findall(r'make manage CMD="([^"\n]+)"', README.read_text())))


def readme_block(heading: str) -> str:
    """The first shell block under ``heading`` in README."""
    text = README.read_text()
    after = text[text.index(f"\n{heading}\n") :]
    return re.search(r"```sh\n(.*?)```", after, re.DOTALL).group(1)


@dataclass
class Running:
    folder: Path
    env: dict[str, str]
    console_url: str
    process: subprocess.Popen
    lines: list[str] = field(default_factory=list)

    def make(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """`make ARGS` in the copy, with the test's virtualenv."""
        return subprocess.run(
            ["make", "-o", f"{VENV}/.installed", *args, f"VENV={VENV}"],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def wait_for_line(self, pattern: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((line for line in self.lines if re.search(pattern, line)), None)
            if found:
                return found
            time.sleep(0.5)
        pytest.fail(f"make run said no {pattern!r} in {timeout:.0f}s:\n" + "\n".join(self.lines))


def _fresh_copy(folder: Path) -> None:
    """The files git would commit from this working tree, and the downloads of a first run."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=services.ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = services.ROOT / name
        if source.is_file():  # a deleted file not yet committed is gone from the copy too
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / name)
    for download in DOWNLOADS:
        if (services.VAR / download).is_dir():
            shutil.copytree(
                services.VAR / download, folder / "var" / download, copy_function=os.link
            )
    if vllm_local.VENV.is_dir():
        (folder / vllm_local.VENV.name).symlink_to(vllm_local.VENV)


def _console_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def running(tmp_path_factory) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("fresh-clone")
    _fresh_copy(folder)
    port = services.free_port()
    # A newcomer's shell: none of the test session's Redis, local AWS or database settings.
    env = {
        name: os.environ[name] for name in ("PATH", "HOME", "LANG", "USER") if name in os.environ
    }
    env.update(
        LOCAL_AWS_PORT=str(services.free_port()),
        GATEWAY_PORT=str(services.free_port()),
        CONSOLE_ADDRESS=f"127.0.0.1:{port}",
        DEMO_RECORDS=str(DEMO_RECORDS),
    )
    process = subprocess.Popen(
        ["make", "-o", f"{VENV}/.installed", "run", f"VENV={VENV}"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    started = Running(folder, env, f"http://127.0.0.1:{port}", process)
    reader = threading.Thread(
        target=lambda: started.lines.extend(line.rstrip("\n") for line in process.stdout),
        daemon=True,
    )
    reader.start()
    try:
        started.wait_for_line(r"^Console: http://", START_SECONDS)
        deadline = time.monotonic() + 60
        while not _console_answers(started.console_url):
            assert process.poll() is None, "make run exited:\n" + "\n".join(started.lines)
            assert time.monotonic() < deadline, "the console did not answer in 60 s"
            time.sleep(0.5)
        yield started
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C, as a user stops it
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            pytest.fail("make run did not stop on Ctrl-C within 60 s")
        reader.join(5)
    assert not services.port_in_use(port), "the web server outlived make run"
    assert not services.port_in_use(int(env["LOCAL_AWS_PORT"])), "the local AWS outlived make run"


def test_make_run_loads_the_demo_in_the_background_and_keeps_the_terminal_quiet(running):
    running.wait_for_line(rf"^Demo traffic for local: loaded {DEMO_RECORDS} requests", 120)

    lines = running.lines
    assert any(
        re.match(r"^Created the local admin\. Log in as admin / \S+$", line) for line in lines
    )
    steps = [line for line in lines if re.match(r"^Demo traffic for local: \d+% \(", line)]
    assert steps[-1] == f"Demo traffic for local: 100% ({DEMO_RECORDS} of {DEMO_RECORDS})"
    assert len(steps) == 10  # a line every tenth
    assert not [line for line in lines if " INFO " in line or "(traceback in" in line]
    logs = running.folder / "var" / "log"
    for name in ("redis", "local-aws", "setup", "worker", "cron", "web", "audit-ingest", "demo"):
        assert (logs / f"{name}.log").exists(), name
    assert " INFO rq.worker " in (logs / "worker.log").read_text()  # there, not in the terminal


@pytest.mark.vllm
@pytest.mark.skipif(not vllm_local.is_set_up(), reason=".venv-vllm is not set up")
def test_the_curl_of_a_real_vllm_on_a_laptop_is_answered(running):
    port = services.free_port()
    serving = subprocess.Popen(
        [
            "make",
            "-o",
            f"{VENV}/.installed",
            "serve-model",
            f"VENV={VENV}",
            f"SERVE_ARGS=--port {port}",
        ],
        cwd=running.folder,
        env=running.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    curl = readme_block("### A real vLLM on a laptop").replace("\\\n", " ")
    [curl] = [line for line in curl.splitlines() if line.startswith("curl ")]
    try:
        services.wait_for_port(port, timeout=300)
        deadline = time.monotonic() + 120
        while True:
            answered = subprocess.run(
                ["bash", "-c", curl.replace("localhost:8001", f"localhost:{port}")],
                capture_output=True,
                text=True,
                timeout=60,
            )
            if '"choices"' in answered.stdout or time.monotonic() > deadline:
                break
            time.sleep(2)  # the port opens before the model is loaded
    finally:
        os.killpg(serving.pid, signal.SIGTERM)
        serving.wait(30)
    assert answered.returncode == 0 and '"choices"' in answered.stdout, answered.stdout


def test_every_make_manage_command_in_readme_works(running):
    # demo_traffic refuses while make run's own load runs (one load at a time).
    running.wait_for_line(rf"^Demo traffic for local: loaded {DEMO_RECORDS} requests", 120)
    commands = [command for command in manage_commands() if command not in NOT_RUN]
    commands.sort(key=lambda command: command.startswith(LAST))
    assert "env plan local" in commands and "demo_traffic" in commands
    for command in commands:
        done = running.make("manage", f"CMD={command}")
        output = done.stdout + done.stderr
        assert done.returncode == 0 and "Traceback" not in output, f"{command}:\n{output}"
        if command == "env plan local":
            # Each AWS service where make run applied it (the audit table in DynamoDB Local).
            assert "No changes: the environment matches its declaration." in output, output
    time.sleep(6)  # the local ingest notices its queue is gone (env destroy)
    assert running.process.poll() is None, "make run stopped:\n" + "\n".join(running.lines)
    assert not [line for line in running.lines if "(traceback in" in line or "exited" in line]
