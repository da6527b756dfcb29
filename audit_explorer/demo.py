"""Demo traffic through the real audit path: records as the serving middleware writes them,
put to the audit buckets, then ingested by the Lambda's own handler (as the S3 event would)."""

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote_plus

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


def records(count: int, *, days: int, seed: int = 7, now: datetime | None = None) -> Iterator[dict]:
    """``count`` records spread over the last ``days`` days, with daily rhythm and outliers."""
    rng = random.Random(seed)  # noqa: S311 - demo data, the same for a seed
    now = now or datetime.now(UTC)
    weights = [share for _, _, share in PROJECTS]
    for n in range(count):
        project, users, _ = rng.choices(PROJECTS, weights)[0]
        status = rng.choices([s for s, _ in STATUSES], [w for _, w in STATUSES])[0]
        stream = rng.random() < 0.4
        # Business hours are busier: draw the hour from a day-shaped curve.
        day = rng.randrange(days)
        hour = min(23, max(0, int(rng.gauss(14, 4))))
        created = now - timedelta(days=day, hours=now.hour - hour, minutes=rng.randrange(60))
        created = min(created, now - timedelta(seconds=1))
        latency = rng.lognormvariate(math.log(600), 0.6)
        if rng.random() < 0.01:
            latency *= 20  # the slow outliers someone will ask about
        ok = status < 400
        prompt_tokens, completion_tokens = rng.randint(20, 900), rng.randint(5, 400) if ok else 0
        yield contract.build_record(
            request_id=f"demo-{seed}-{n:07d}",
            created_at=created,
            project=project,
            user=rng.choice(users),
            request_type=rng.choice(REQUEST_TYPES),
            api_key_id=f"key-{project}",
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


def load(count: int, *, days: int = 30, seed: int = 7) -> int:
    """Put ``count`` demo records to the audit bucket and ingest each; returns how many."""
    s3 = aws.client("s3")
    bucket = contract.audit_bucket()
    loaded = 0
    for record in records(count, days=days, seed=seed):
        key = contract.record_key(record)
        s3.put_object(Bucket=bucket, Key=key, Body=contract.dumps(record))
        event = {
            "Records": [
                {
                    "eventName": "ObjectCreated:Put",
                    "s3": {
                        "bucket": {"name": bucket},
                        "object": {"key": quote_plus(key, safe="/")},
                    },
                }
            ]
        }
        lambda_handler(event, None)
        loaded += 1
    return loaded
