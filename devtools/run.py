"""`make run`: the console with everything it needs, on embedded defaults.

Starts Redis (unless REDIS_URL answers), the local AWS (unless LOCAL_AWS=0, which means
real AWS with the default credential chain), migrates, creates the first admin, then runs a
worker and the web server at http://127.0.0.1:8000 until Ctrl-C stops them all. On a local
AWS whose audit table is empty it loads demo traffic in the background (DEMO=0 skips it).

The terminal shows this script's own lines and the warnings and errors of the processes;
each process's whole output is in var/log/<name>.log.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

from devtools import logs, services

MANAGE = [sys.executable, str(services.ROOT / "manage.py")]
# What `devtools.manage` needs besides the local AWS's own settings (LocalAWS.env()).
LOCAL_ENV = services.VAR / "local.env"
METRICS_DIR = services.VAR / "metrics"
_SHARED = ("DJANGO_DEBUG", "REDIS_URL", "DATABASE_URL", "AWS_REGION", "LOCAL_MODEL_URL")
# The demo load's own lines ("Demo traffic for local: 40% ..."), shown in the terminal.
DEMO_LINES = re.compile(r"^(Demo traffic|The requests name)")


class SetUpFailed(RuntimeError):
    """A set-up step failed; the message says which and where its output is."""


def main() -> int:
    services.VAR.mkdir(exist_ok=True)
    sys.stdout.reconfigure(line_buffering=True)  # each line as it comes, piped or not
    os.environ.setdefault("DJANGO_DEBUG", "true")
    # The processes' lines reach var/log/ (and the terminal) as they are written.
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    terminal = logs.Terminal().start()
    started: list = []
    demo = None

    # Set explicitly: a shell that starts us in the background leaves SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        aws_env = _start_services(terminal, started)
        _set_up_console(terminal, aws_env)
        for name, args in _long_running().items():
            terminal.follow(name)
            env = _web_env() if name == "web" else None
            started.append(services.Process(name, args, log=True, env=env))
        _write_local_env(aws_env)
        if aws_env:
            demo = _start_demo(terminal)
        address = os.environ.get("CONSOLE_ADDRESS", "127.0.0.1:8000")
        print(f"Console: http://{address}  (Ctrl-C stops everything; logs in var/log/)", flush=True)
        while all(process.alive() for process in started):
            demo = _watch(demo)
            time.sleep(0.5)
        terminal.show()
        dead = [process.name for process in started if not process.alive()]
        print(f"stopped because {', '.join(dead)} exited: see var/log/", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except (services.ServiceError, SetUpFailed) as exc:
        terminal.show()
        print(f"make run: {exc}", file=sys.stderr)
        return 1
    finally:
        # Another Ctrl-C now would leave the rest running: stopping takes seconds at most.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        LOCAL_ENV.unlink(missing_ok=True)
        if demo:
            demo.stop()
        for process in reversed(started):
            process.stop()
        terminal.stop()


def _start_services(terminal: logs.Terminal, started: list) -> dict[str, str]:
    """Redis and the local AWS; returns what boto3 needs to reach the local AWS (nothing for
    real AWS)."""
    redis_url = os.environ.get("REDIS_URL", "")
    if redis_url and services.redis_answers(redis_url):
        print(f"Redis: using {redis_url}")
    else:
        terminal.follow("redis")
        process, redis_url = services.start_redis(services.VAR / "redis")
        started.append(process)
        os.environ["REDIS_URL"] = redis_url
        print(f"Redis: started {redis_url} (data in var/redis)")

    if os.environ.get("LOCAL_AWS", "1") == "1":
        port = int(os.environ.get("LOCAL_AWS_PORT", "5100"))
        terminal.follow("local-aws")
        terminal.follow("dynamodb-local")
        print(f"Local AWS: starting on port {port}, with its state from var/local-aws ...")
        local_aws = services.LocalAWS(port, state_dir=services.VAR / "local-aws").start()
        started.append(local_aws)
        os.environ.update(local_aws.env())
        print(f"Local AWS: {local_aws.url}")
        return local_aws.env()
    if services.is_local_endpoint(os.environ.get("AWS_ENDPOINT_URL")):
        print(f"Local AWS: using {os.environ['AWS_ENDPOINT_URL']}")
        return {name: value for name, value in os.environ.items() if name.startswith("AWS_")}
    print("AWS: real AWS through the default credential chain")
    return {}


def _set_up_console(terminal: logs.Terminal, aws_env: dict[str, str]) -> None:
    """Migrations, the first admin and, on a local AWS, the whole platform in it."""
    terminal.follow("setup")
    _set_up("migrate", "--no-input", "-v", "0")
    print(_set_up("ensure_local_admin"), end="")
    if aws_env:
        # Quick, and changes nothing once converged.
        applied = _set_up("env", "apply", "local", "-v", "0").strip().splitlines()
        print(f"Local AWS: {applied[-1] if applied else 'applied'} (steps in var/log/setup.log)")


def _set_up(*args: str) -> str:
    """Run a `manage.py` set-up command; returns its standard output. All its output goes to
    var/log/setup.log (its warnings and errors to the terminal too)."""
    log = services.log_of("setup")
    with open(log, "ab") as out:
        done = subprocess.run([*MANAGE, *args], stdout=subprocess.PIPE, stderr=out)
        out.write(done.stdout)
    if done.returncode:
        raise SetUpFailed(
            f"`manage.py {' '.join(args)}` failed (exit {done.returncode}): see var/log/setup.log"
        )
    return done.stdout.decode()


def _write_local_env(aws_env: dict[str, str]) -> None:
    """What `devtools.manage` reads to reach the services this run started: the local AWS's
    settings exactly as it gives them (every endpoint, DynamoDB Local's too), and ours. The
    database URL may hold a password: the file is the user's alone."""
    shared = {name: os.environ[name] for name in _SHARED if name in os.environ}
    LOCAL_ENV.write_text(
        "".join(f"{name}={value}\n" for name, value in {**shared, **aws_env}.items())
    )
    LOCAL_ENV.chmod(0o600)


def _start_demo(terminal: logs.Terminal) -> services.Process | None:
    """Demo traffic into the local environment, in the background, when its audit table is
    empty or the last load was cut short (the command decides); DEMO=0 skips it."""
    if os.environ.get("DEMO", "1") == "0":
        return None
    terminal.follow("demo", also=DEMO_LINES)
    command = [*MANAGE, "demo_traffic", "--environment", "local", "--if-empty"]
    return services.Process("demo", command, log=True)


def _watch(demo: services.Process | None) -> services.Process | None:
    """The demo load while it runs; once it has ended, says so if it failed."""
    if demo is None or demo.alive():
        return demo
    if demo.popen.returncode:
        lines = services.log_of("demo").read_text(errors="replace").strip().splitlines()
        print(
            f"Demo traffic: stopped ({lines[-1] if lines else 'no output'}); "
            "see var/log/demo.log. The next make run loads the rest.",
            file=sys.stderr,
        )
    return None


def _web_env() -> dict[str, str]:
    """The web server's environment: its request metrics in var/metrics (prometheus_client's
    multiprocess mode, as under gunicorn), emptied at each start so that an earlier run's
    files do not count again; /metrics open to this machine unless CONSOLE_METRICS_* say
    otherwise. Only the web's: the model's vLLM would write its own metrics there too."""
    shutil.rmtree(METRICS_DIR, ignore_errors=True)
    METRICS_DIR.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(METRICS_DIR)}
    if not (env.get("CONSOLE_METRICS_TOKEN") or env.get("CONSOLE_METRICS_NETWORKS")):
        env["CONSOLE_METRICS_NETWORKS"] = "127.0.0.0/8,::1/128"
    return env


def _long_running() -> dict[str, list[str]]:
    address = os.environ.get("CONSOLE_ADDRESS", "127.0.0.1:8000")
    processes = {
        "worker": [*MANAGE, "rqworker", "default", "provisioning", "audit"],
        # RQ's cron scheduler: the reaper of dead workers' runs, the API keys' schedule.
        "cron": [*MANAGE, "rqcron", "console.cron"],
        "web": [*MANAGE, "runserver", address],
    }
    if services.is_local_endpoint(os.environ.get("AWS_ENDPOINT_URL")):
        # moto cannot run Lambda code: this calls the same handler from the local ingest queue.
        processes["audit-ingest"] = [*MANAGE, "consume_audit_events", "--environment", "local"]
        # API Gateway's stand-in: the local environment's keys and usage plan, before the model.
        port = os.environ.get("GATEWAY_PORT", "8002")
        processes["gateway"] = [sys.executable, "-m", "devtools.local_gateway", "--port", port]
        os.environ.setdefault("LOCAL_API_URL", f"http://127.0.0.1:{port}/prod")
    if os.environ.get("SERVE_MODEL") == "1":
        # Needs `make vllm-env` once; serves the tiny model (or MODEL_ID on a GPU) with auditing.
        port = os.environ.get("MODEL_PORT", "8001")
        processes["model"] = [sys.executable, "-m", "devtools.vllm_local", "serve", "--port", port]
        # Where the local environment's validation runs send their chat completion.
        os.environ.setdefault("LOCAL_MODEL_URL", f"http://127.0.0.1:{port}")
        if services.is_local_endpoint(os.environ.get("AWS_ENDPOINT_URL")):
            # CloudWatch Logs' stand-in: the model's embedded metrics into the local AWS.
            extract = [sys.executable, "-m", "devtools.emf_to_cloudwatch"]
            processes["model-metrics"] = [*extract, str(services.log_of("model"))]
    return processes


if __name__ == "__main__":
    sys.exit(main())
