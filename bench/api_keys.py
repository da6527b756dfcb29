"""Benchmark of the API keys page with thousands of keys on one usage plan.

    .venv/bin/python bench/api_keys.py [--keys 2000] [--repeat 20]

Starts its own Redis, moto server and DynamoDB Local, puts ``--keys`` keys on a usage plan
(straight through the API Gateway API, as many as a big account holds), then times the keys
page through Django's test client: the first view (the key list read from API Gateway, 500
keys a call), later views (the list from Redis), a name search, and a late page. Counted:
AWS calls per view. Target: a view reads no more than one page of usage (BatchGetItem) once
the list is cached, whatever the number of keys.
"""

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools import services


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)

    with services.for_benchmark(TABLE_NAME="CentralLLMAudit-bench"):
        return _bench(args)


def _bench(args) -> int:
    import django

    django.setup()
    from django.contrib.auth.models import Group, User
    from django.core.cache import cache
    from django.core.management import call_command
    from django.test import Client
    from django.utils import timezone

    from centralllm import aws
    from devtools.testing import create_audit_table
    from provisioning.models import Environment, ResourceState

    call_command("migrate", verbosity=0)
    # Usage is read from the environment's own table: CentralLLMAudit-bench, as TABLE_NAME.
    Environment.objects.filter(name="local").update(suffix="-bench")
    environment = Environment.objects.get(name="local")
    create_audit_table(environment.resource_name("AuditTable"))
    gateway = aws.client("apigateway")
    plan = gateway.create_usage_plan(name="bench", quota={"limit": 1000, "period": "MONTH"})
    started = time.perf_counter()
    for n in range(args.keys):
        key = gateway.create_api_key(name=f"key-{n:05d}", enabled=True)
        gateway.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    print(f"made {args.keys} keys in {time.perf_counter() - started:.1f} s")
    ResourceState.objects.create(
        environment=environment,
        key="apigateway.usage_plan",
        title="API Gateway usage plan",
        state="present",
        outputs={"id": plan["id"]},
        seen_at=timezone.now(),
    )
    admin = User.objects.create_user("bench")  # logged in below, never by password
    admin.groups.add(Group.objects.get(name="admin"))
    client = Client()
    client.force_login(admin)
    calls: Counter = Counter()

    def count(model, **kwargs) -> None:
        calls[model.name] += 1

    for service in ("apigateway", "dynamodb"):
        aws.client(service).meta.events.register("before-call", count, unique_id="bench")
    url = f"/api-keys/{environment.name}/"

    def view(**params) -> tuple[float, dict]:
        calls.clear()
        began = time.perf_counter()
        response = client.get(url, params)
        assert response.status_code == 200 and b"key-0" in response.content
        return (time.perf_counter() - began) * 1000, dict(calls)

    cache.clear()
    cold, cold_calls = view()
    print(f"first view (list read from API Gateway): {cold:.0f} ms, AWS calls {cold_calls}")
    for label, params in [
        ("later view", {}),
        ("search 'key-01'", {"q": "key-01"}),
        ("last page", {"page": args.keys // 50}),
    ]:
        timings = [view(**params) for _ in range(args.repeat)]
        median = statistics.median(ms for ms, _ in timings)
        print(f"{label}: median {median:.1f} ms over {args.repeat}, AWS calls {timings[-1][1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
