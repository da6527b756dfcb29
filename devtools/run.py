"""`make run`: the console with everything it needs, on embedded defaults.

Starts Redis (unless REDIS_URL answers), the local AWS (unless LOCAL_AWS=0, which means
real AWS with the default credential chain), migrates, creates the first admin, then runs a
worker and the web server at http://127.0.0.1:8000 until Ctrl-C stops them all.
"""

import os
import signal
import subprocess
import sys
import time

from devtools import services

MANAGE = [sys.executable, str(services.ROOT / "manage.py")]


def main() -> int:
    services.VAR.mkdir(exist_ok=True)
    os.environ.setdefault("DJANGO_DEBUG", "true")
    started: list = []

    def stop_all(*_args) -> None:
        for process in reversed(started):
            process.stop()

    # Set explicitly: a shell that starts us in the background leaves SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        redis_url = os.environ.get("REDIS_URL", "")
        if redis_url and services.redis_answers(redis_url):
            print(f"Redis: using {redis_url}")
        else:
            process, redis_url = services.start_redis(services.VAR / "redis")
            started.append(process)
            os.environ["REDIS_URL"] = redis_url
            print(f"Redis: started {redis_url} (data in var/redis)")

        if os.environ.get("LOCAL_AWS", "1") == "1":
            port = int(os.environ.get("LOCAL_AWS_PORT", "5100"))
            local_aws = services.LocalAWS(port, state_dir=services.VAR / "local-aws").start()
            started.append(local_aws)
            os.environ.update(local_aws.env())
            print(f"Local AWS: {local_aws.url} (state replayed from var/local-aws)")
        else:
            print("AWS: real AWS through the default credential chain")

        _write_local_env()
        subprocess.run([*MANAGE, "migrate", "--no-input", "-v", "0"], check=True)
        subprocess.run([*MANAGE, "ensure_local_admin"], check=True)
        if services.is_local_endpoint(os.environ.get("AWS_ENDPOINT_URL")):
            # The whole platform in the local AWS; quick and changes nothing once converged.
            subprocess.run([*MANAGE, "env", "apply", "local", "-v", "0"], check=True)
            _offer_demo_traffic()
        for name, args in _long_running().items():
            started.append(services.Process(name, args))
        address = os.environ.get("CONSOLE_ADDRESS", "127.0.0.1:8000")
        print(f"Console: http://{address}  (Ctrl-C stops everything)", flush=True)
        while all(process.alive() for process in started):
            time.sleep(0.5)
        dead = [process.name for process in started if not process.alive()]
        print(f"stopped because {', '.join(dead)} exited", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except (services.ServiceError, subprocess.CalledProcessError) as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_all()
        LOCAL_ENV.unlink(missing_ok=True)


# What `devtools.manage` needs to reach the services this run started. None of it is secret:
# the local AWS takes any credentials.
LOCAL_ENV = services.VAR / "local.env"
_SHARED = (
    "DJANGO_DEBUG",
    "REDIS_URL",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
)


def _write_local_env() -> None:
    shared = {name: os.environ[name] for name in _SHARED if name in os.environ}
    if not services.is_local_endpoint(shared.get("AWS_ENDPOINT_URL")):
        shared = {name: value for name, value in shared.items() if not name.startswith("AWS_")}
    LOCAL_ENV.write_text("".join(f"{name}={value}\n" for name, value in shared.items()))


def _offer_demo_traffic() -> None:
    """On a first start the audit table is empty: say how to fill it with demo traffic."""
    from centralllm import aws
    from centralllm.audit.contract import table_name

    count = aws.client("dynamodb").describe_table(TableName=table_name())["Table"]["ItemCount"]
    if count == 0:
        print(
            "Audit: the table is empty. For 30 days of demo traffic (through S3 and the ingest"
            ' handler), run: make manage CMD="demo_traffic"'
        )


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
    return processes


if __name__ == "__main__":
    sys.exit(main())
