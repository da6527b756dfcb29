"""Demo traffic through the real audit path: records as the serving middleware writes them,
put to the audit buckets, then ingested by the Lambda's own handler (as the S3 event would).

A load keeps its progress in Redis (``progress``), so `make run` can load in the background,
the Audit page can show how far it got, and a load cut short (`make run` stopped) is finished
by the next one. The records of a load are fixed by its count, days and anchor (the "now" they
were drawn from), so the rest of a load cut short is the very same records: none twice.
"""

import contextlib
import io
import json
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from urllib.parse import quote_plus

from redis import Redis

from centralllm import aws
from centralllm.audit import contract
from llm_audit_ingest.handler import lambda_handler

# (project, users, share of the traffic)
PROJECTS = [
    ("support-bot", ["ana", "bo", "chen", "dita", "eli"], 0.35),
    ("code-review", ["farah", "gus", "hana"], 0.25),
    ("search", ["ivo", "jo", "kai", "lea"], 0.2),
    ("summaries", ["mo", "nia"], 0.15),
    ("smoke-test", ["console-validation"], 0.05),
]
REQUEST_TYPES = ["chat", "chat", "chat", "completion", "summarize", "classify"]
# (status, share): mostly answers, some bad requests, throttles and server errors
STATUSES = [(200, 0.93), (400, 0.025), (429, 0.025), (500, 0.015), (503, 0.005)]
PROMPTS = [
    "Summarise this support ticket for the on-call engineer.",
    "Review this diff and point out anything risky.",
    "Which documents answer: how do I rotate my API key?",
    "Write a two-line status update for the incident channel.",
]
# The share of the records in the last hour, so "the last 24 hours" opens on traffic.
LAST_HOUR_SHARE = 0.02
SEED = 7
# A load whose progress has not moved for this long is no longer running (`make run` stopped).
STALLED_SECONDS = 60


def records(
    count: int,
    *,
    days: int,
    seed: int = SEED,
    now: datetime | None = None,
    key_ids: Mapping[str, str] | None = None,
) -> Iterator[dict]:
    """``count`` records over the last ``days`` days, with daily rhythm and outliers, and a
    share in the last hour. The same arguments give the same records; request ids carry
    ``now``, so loads drawn at other times never share one. ``key_ids`` names each project's
    API key id (else a made-up ``demo-key-<project>``)."""
    rng = random.Random(seed)  # noqa: S311 - demo data, the same for a seed
    now = now or datetime.now(UTC)
    key_ids = key_ids or {}
    weights = [share for _, _, share in PROJECTS]
    for n in range(count):
        project, users, _ = rng.choices(PROJECTS, weights)[0]
        status = rng.choices([s for s, _ in STATUSES], [w for _, w in STATUSES])[0]
        stream = rng.random() < 0.4
        if rng.random() < LAST_HOUR_SHARE:
            created = now - timedelta(seconds=rng.uniform(1, 3600))
        else:
            # Business hours are busier: draw the hour from a day-shaped curve.
            hour = min(23, max(0, int(rng.gauss(14, 4))))
            midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
            created = midnight - timedelta(days=rng.randrange(days))
            created += timedelta(hours=hour, minutes=rng.randrange(60))
            if created >= now:  # later today: the day before instead
                created -= timedelta(days=1)
        latency = rng.lognormvariate(math.log(600), 0.6)
        if rng.random() < 0.01:
            latency *= 20  # the slow outliers someone will ask about
        ok = status < 400
        prompt_tokens, completion_tokens = rng.randint(20, 900), rng.randint(5, 400) if ok else 0
        yield contract.build_record(
            request_id=f"demo-{now:%Y%m%d%H%M%S}-{seed}-{n:07d}",
            created_at=created,
            project=project,
            user=rng.choice(users),
            request_type=rng.choice(REQUEST_TYPES),
            api_key_id=key_ids.get(project) or f"demo-key-{project}",
            method="POST",
            path="/v1/chat/completions",
            model="ministral-8b-instruct",
            stream=stream,
            status=status,
            cancelled=ok and rng.random() < 0.005,
            latency_ms=latency,
            ttft_ms=latency * rng.uniform(0.05, 0.3) if stream and ok else None,
            usage={"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
            if ok
            else None,
            error=None if ok else {"type": "http_error", "message": f"HTTP {status}"},
            deployment={"imageTag": "demo", "model": "ministral-8b-instruct", "host": "demo"},
            prompt=rng.choice(PROMPTS),
            completion="OK: here is what I found." if ok else None,
        )


def projects() -> list[str]:
    return [project for project, _, _ in PROJECTS]


@dataclass(frozen=True)
class Load:
    """One load of demo traffic into an environment, as far as it got."""

    environment: str
    records: int
    days: int
    anchor: datetime  # the "now" the records were drawn from
    key_ids: dict[str, str] = field(default_factory=dict)
    done: int = 0
    started: datetime | None = None
    updated: float = 0.0  # time.time() of the last record loaded
    finished: datetime | None = None
    error: str = ""

    @property
    def fraction(self) -> float:
        return self.done / self.records if self.records else 1.0

    @property
    def state(self) -> str:
        """finished, failed, loading, or stopped (cut short: the next load finishes it)."""
        if self.finished:
            return "finished"
        if self.error:
            return "failed"
        if time.time() - self.updated < STALLED_SECONDS:
            return "loading"
        return "stopped"

    def same_as(self, records: int, days: int) -> bool:
        return (self.records, self.days) == (records, days)


def _key(environment: str) -> str:
    return f"demo-traffic:{environment}"


def progress(connection: Redis, environment: str) -> Load | None:
    """The last load of demo traffic into ``environment`` (None: there was none)."""
    found = {k.decode(): v.decode() for k, v in connection.hgetall(_key(environment)).items()}
    if not found:
        return None
    return Load(
        environment=environment,
        records=int(found["records"]),
        days=int(found["days"]),
        anchor=datetime.fromisoformat(found["anchor"]),
        key_ids=json.loads(found.get("key_ids") or "{}"),
        done=int(found.get("done", 0)),
        started=datetime.fromisoformat(found["started"]),
        updated=float(found.get("updated", 0)),
        finished=datetime.fromisoformat(found["finished"]) if found.get("finished") else None,
        error=found.get("error", ""),
    )


def begin(
    connection: Redis, environment: str, *, records: int, days: int, key_ids: dict[str, str]
) -> Load:
    """A new load anchored now, replacing what was kept of the last one."""
    now = datetime.now(UTC).replace(microsecond=0)
    load = Load(environment, records, days, now, key_ids, started=now, updated=time.time())
    with connection.pipeline() as pipe:
        pipe.delete(_key(environment))
        pipe.hset(
            _key(environment),
            mapping={
                "records": records,
                "days": days,
                "anchor": now.isoformat(),
                "key_ids": json.dumps(key_ids),
                "done": 0,
                "started": now.isoformat(),
                "updated": load.updated,
            },
        )
        pipe.execute()
    return load


def run(
    connection: Redis,
    load: Load,
    *,
    bucket: str,
    report: Callable[[int, int], None] = lambda done, total: None,
) -> int:
    """Load what ``load`` has not loaded yet: each record put to ``bucket`` and handed to the
    ingest handler. ``report(done, total)`` is called at every tenth. Returns how many were
    loaded now; the progress in Redis follows every record, and keeps the error that stops
    it."""
    key = _key(load.environment)
    s3 = aws.client("s3")
    tenth = max(1, load.records // 10)
    done = load.done
    connection.hset(key, mapping={"updated": time.time(), "error": ""})
    drawn = records(load.records, days=load.days, now=load.anchor, key_ids=load.key_ids)
    try:
        for record in islice(drawn, load.done, None):
            _put_and_ingest(s3, bucket, record)
            done += 1
            connection.hset(key, mapping={"done": done, "updated": time.time()})
            if done % tenth == 0 or done == load.records:
                report(done, load.records)
    except Exception as exc:
        connection.hset(key, "error", f"{type(exc).__name__}: {exc}"[:500])
        raise
    except BaseException:  # stopped (Ctrl-C, SIGTERM): no error, and at once no longer loading
        connection.hset(key, "updated", 0)
        raise
    connection.hset(key, "finished", datetime.now(UTC).isoformat(timespec="seconds"))
    return done - load.done


def _put_and_ingest(s3, bucket: str, record: dict) -> None:
    key = contract.record_key(record)
    s3.put_object(Bucket=bucket, Key=key, Body=contract.dumps(record))
    event = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key, safe="/")}},
            }
        ]
    }
    with contextlib.redirect_stdout(io.StringIO()):  # the handler's one log line per record
        lambda_handler(event, None)


def table_is_empty(table: str, client) -> bool:
    """Whether ``table`` holds no item at all (one item read)."""
    return not client.scan(TableName=table, Limit=1, Select="COUNT")["Count"]
