"""Health of what the console stands on: database, Redis, RQ workers, the AWS endpoint."""

from dataclasses import asdict, dataclass

import django_rq
from botocore.exceptions import BotoCoreError, ClientError
from django.db import DatabaseError, connection
from redis.exceptions import RedisError
from rq import Worker

from centralllm import aws


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
    endpoint = aws.endpoint_url() or f"AWS {aws.region()}"
    sts = aws.client("sts", connect_timeout=2, read_timeout=5, max_attempts=1)
    try:
        account = sts.get_caller_identity()["Account"]
    except (BotoCoreError, ClientError) as exc:
        return Check("aws", "AWS", False, f"{endpoint}: {exc}")
    return Check("aws", "AWS", True, f"{endpoint}, account {account}")


CHECKS = (check_database, check_redis, check_workers, check_aws)


def run_checks() -> list[Check]:
    return [check() for check in CHECKS]


def as_json(checks: list[Check]) -> dict:
    return {
        "status": "ok" if all(check.ok for check in checks) else "degraded",
        "checks": {check.name: asdict(check) for check in checks},
    }
