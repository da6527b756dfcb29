"""Follow mode: new records of a newest-first search, one page Query per poll.

Records reach the table some seconds after they were made (the serving uploader batches), so
each poll reads the last few minutes, not "after the newest shown", and leaves out what this
follower was already shown. That memory lives in the shared cache (Redis), so any console
process answers any poll. A follower who has not acted for ``IDLE`` is paused: polls stop
costing queries until they resume.
"""

import secrets
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from django.core.cache import cache

from audit_explorer import search as audit_search
from centralllm.audit.contract import format_timestamp
from provisioning.models import Environment

POLL_SECONDS = 5
IDLE = timedelta(minutes=10)
LOOKBACK = timedelta(minutes=5)  # how late a record may be ingested and still be shown
KEPT = timedelta(hours=1)  # a paused follower can resume within this


def can_follow(search: audit_search.Search) -> bool:
    """Only a time-ordered index has "new" at the top: by user or status, newest first."""
    return not (search.request_id or search.project) and search.order == "newest"


def start(search: audit_search.Search, user_id: int, *, environment: Environment) -> str:
    """A new follower of ``search`` in ``environment``; what it reads now counts as already
    shown."""
    token = secrets.token_urlsafe(16)
    key = _key(search, environment)
    state = {"user": user_id, "search": key, "seen": {}, "acted": time.time()}
    _read_new(search, state, environment)
    cache.set(_cache_key(token), state, KEPT.total_seconds())
    return token


def poll(
    search: audit_search.Search, token: str, user_id: int, *, environment: Environment
) -> list[dict] | None:
    """The records that arrived since the last poll, newest first; None when the follower is
    paused (idle too long) or unknown (expired, another user's, another search's)."""
    state = cache.get(_cache_key(token))
    owned = _owned(state, search, user_id, environment)
    if not owned or time.time() - state["acted"] > IDLE.total_seconds():
        return None
    found = _read_new(search, state, environment)
    cache.set(_cache_key(token), state, KEPT.total_seconds())
    return found


def resume(
    search: audit_search.Search, token: str, user_id: int, *, environment: Environment
) -> bool:
    """The viewer acted: follow for another ``IDLE``. False when the follower is gone."""
    state = cache.get(_cache_key(token))
    if not _owned(state, search, user_id, environment):
        return False
    state["acted"] = time.time()
    cache.set(_cache_key(token), state, KEPT.total_seconds())
    return True


def _read_new(search: audit_search.Search, state: dict, environment: Environment) -> list[dict]:
    now = datetime.now(UTC)
    window = replace(search, start=now - LOOKBACK, end=now, limit=audit_search.MAX_LIMIT)
    page = audit_search.run(window, environment=environment)
    new = [item for item in page.items if item["id"] not in state["seen"]]
    oldest_kept = format_timestamp(now - LOOKBACK - timedelta(minutes=1))
    state["seen"] = {
        request_id: created
        for request_id, created in state["seen"].items()
        if created >= oldest_kept
    }
    state["seen"].update((item["id"], item["createdAt"]) for item in page.items)
    return new


def _owned(
    state: dict | None, search: audit_search.Search, user_id: int, environment: Environment
) -> bool:
    return bool(state) and state["user"] == user_id and state["search"] == _key(search, environment)


def _key(search: audit_search.Search, environment: Environment) -> str:
    return f"{environment.pk}:{replace(search, start=None, end=None).key()}"


def _cache_key(token: str) -> str:
    return f"audit-follow:{token}"
