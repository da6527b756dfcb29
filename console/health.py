"""Health of what the console stands on: database, Redis, RQ workers, the AWS endpoint."""

from dataclasses import asdict, dataclass

import django_rq
from botocore.exceptions import BotoCoreError, ClientError
from django.core.cache import cache
from django.db import DatabaseError, connection
from redis.exceptions import RedisError
from rq import Worker

from centralllm import aws

AWS_CHECK_SECONDS = 30


@dataclass(frozen=True)
class Check:
    name: str
    label: str
    ok: bool
    detail: str


def check_database() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return Check("database", "Database", False, f"unreachable: {exc}")
    return Check("database", "Database", True, connection.vendor)


def check_redis() -> Check:
    try:
        django_rq.get_connection("default").ping()
    except RedisError as exc:
        return Check("redis", "Redis", False, f"unreachable: {exc}")
    return Check("redis", "Redis", True, "answering")


def check_workers() -> Check:
    try:
        workers = Worker.all(connection=django_rq.get_connection("default"))
    except RedisError:
        return Check("workers", "Workers", False, "unknown: Redis is unreachable")
    if not workers:
        return Check("workers", "Workers", False, "no RQ worker is running")
    return Check("workers", "Workers", True, f"{len(workers)} running")


def check_aws() -> Check:
    """Who the console is in AWS; kept ``AWS_CHECK_SECONDS`` in the cache, so dashboards
    and monitors cost one STS call per period."""
    endpoint = aws.endpoint_url() or f"AWS {aws.region()}"
    cache_key = f"health:aws:{endpoint}"
    found = cache.get(cache_key)
    if found is None:
        sts = aws.client("sts", connect_timeout=2, read_timeout=5, max_attempts=1)
        try:
            account = sts.get_caller_identity()["Account"]
        except (BotoCoreError, ClientError) as exc:
            return Check("aws", "AWS", False, f"{endpoint}: {exc}")  # not kept: retry next time
        found = Check("aws", "AWS", True, f"{endpoint}, account {account}")
        cache.set(cache_key, found, AWS_CHECK_SECONDS)
    return found


CHECKS = (check_database, check_redis, check_workers, check_aws)


def run_checks() -> list[Check]:
    return [check() for check in CHECKS]


def is_alive() -> bool:
    """What an anonymous liveness probe learns: this process answers and reaches its
    database. Workers and AWS are not its business (a load balancer would take every web
    process out when no worker runs)."""
    return check_database().ok


def as_json(checks: list[Check]) -> dict:
    return {
        "status": "ok" if all(check.ok for check in checks) else "degraded",
        "checks": {check.name: asdict(check) for check in checks},
    }
