"""Benchmark of the live run fragment: server time and SQL queries per refresh, and many
viewers polling one run.

    .venv/bin/python bench/run_fragment.py [--events 5000] [--viewers 50] [--seconds 60]

Starts its own Redis, a SQLite database under a temporary folder (or DATABASE_URL), and a
gunicorn (2 workers, 8 threads each) on loopback. Measured: the fragment
a browser polls (``runs/<id>/events/?after=<seq>``), first through Django's test client for
its time and queries at a short and a long run, then under ``--viewers`` concurrent pollers,
each polling once a second with its own cursor while a writer appends an event a second.
Targets: at most 20 ms and 5 queries per refresh, whatever the run's length; no error.
"""

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools import services


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--viewers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args(argv)

    redis, redis_url = services.start_redis()
    folder = tempfile.mkdtemp(prefix="bench-fragment-")
    os.environ.update(
        REDIS_URL=redis_url,
        DJANGO_SETTINGS_MODULE="console.settings",
        DJANGO_DEBUG="true",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
    )
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{folder}/bench.sqlite3")
    try:
        return _bench(args)
    finally:
        redis.stop()


def _bench(args) -> int:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse
    from django.utils import timezone

    from conftest import make_user
    from console.roles import VIEWER
    from provisioning import runs
    from provisioning.models import Environment, Run, RunEvent

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    user = make_user(get_user_model(), f"bench{int(time.time())}", VIEWER)
    environment = Environment.objects.get(name="local")
    client = Client()
    client.force_login(user)

    def measure(events: int) -> tuple[float, int]:
        run = runs.start(environment, "plan", actor=None, enqueue=False)
        Run.objects.filter(pk=run.pk).update(status="running", heartbeat_at=timezone.now())
        RunEvent.objects.bulk_create(
            RunEvent(run=run, seq=n, text=f"line {n}") for n in range(1, events + 1)
        )
        url = reverse("provisioning:run-events", args=[run.pk])
        client.get(url)  # warm-up: the user's permissions reach the cache
        times, queries = [], 0
        for attempt in range(60):
            if attempt % 2:
                runs.log(run, "one more")  # half the refreshes bring a new event
            after = run.events.order_by("-seq").values_list("seq", flat=True).first() - 1
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = client.get(url, {"after": after})
                times.append(time.perf_counter() - started)
            assert response.status_code == 200
            queries = max(queries, len(captured))
        Run.objects.filter(pk=run.pk).update(status="succeeded")
        return statistics.median(times) * 1000, queries

    print("live run fragment, one refresh (Django test client, SQLite, Redis sessions)")
    for events in (10, args.events):
        median_ms, queries = measure(events)
        print(f"  run of {events:>6} events: median {median_ms:6.2f} ms, at most {queries} queries")

    _many_viewers(args, environment, user)
    return 0


def _many_viewers(args, environment, user) -> None:
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.cached_db import SessionStore
    from django.urls import reverse
    from django.utils import timezone

    from provisioning import runs
    from provisioning.models import Run

    run = runs.start(environment, "plan", actor=None, enqueue=False)
    Run.objects.filter(pk=run.pk).update(status="running", heartbeat_at=timezone.now())
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()

    port = services.free_port()
    server = services.Process(
        "gunicorn",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "console.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--threads",
            "8",
            "--log-level",
            "warning",
        ],
    )
    services.wait_for_port(port)
    base = f"http://127.0.0.1:{port}" + reverse("provisioning:run-events", args=[run.pk])
    cookie = f"{settings.SESSION_COOKIE_NAME}={session.session_key}"
    stop = time.monotonic() + args.seconds
    latencies: list[float] = []
    errors: list[str] = []
    seen: list[int] = []

    def viewer() -> None:
        after, count = 0, 0
        while time.monotonic() < stop:
            request = urllib.request.Request(  # noqa: S310 - a loopback http URL of ours
                f"{base}?after={after}", headers={"Cookie": cookie}
            )
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                    body = response.read().decode()
                latencies.append(time.perf_counter() - started)
                for seq in (int(part.split('"')[0]) for part in body.split('data-seq="')[1:]):
                    assert seq == after + 1, f"gap or repeat: {after} then {seq}"
                    after, count = seq, count + 1
            except Exception as exc:  # a benchmark counts failures instead of stopping
                errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(1)
        seen.append(count)

    def writer() -> None:
        while time.monotonic() < stop:
            runs.log(run, "tick")
            time.sleep(1)

    threads = [threading.Thread(target=viewer) for _ in range(args.viewers)]
    threads.append(threading.Thread(target=writer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    server.stop()
    written = run.events.count()
    latencies.sort()
    for error in sorted(set(errors))[:5]:
        print("  error:", error)
    if not latencies:
        print(f"{args.viewers} viewers: no refresh succeeded")
        return
    print(
        f"{args.viewers} viewers polling one run for {args.seconds:.0f}s over HTTP on loopback: "
        f"{len(latencies)} refreshes, {len(errors)} errors, "
        f"p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms; "
        f"every viewer saw {min(seen)}-{max(seen)} of {written} events, no gap or repeat"
    )


if __name__ == "__main__":
    sys.exit(main())
