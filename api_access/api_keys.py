"""The API Gateway keys of an environment's usage plan: listed, created, rotated, enabled,
disabled and deleted.

AWS is the source of truth: a key's owner, expiry and the key it replaced are tags on the key.
A key's value goes from AWS to its creator's screen once (``reveal``) and is never stored,
cached or logged here; afterwards a key is named by its name, id and last four characters.
A key's projects (a tag too) are those its requests may file under: ``publish`` writes them
for the serving hosts, which refuse any other project (``inference.attribution``).
Usage comes from the audit rollups of the key's environment (minutes old), not from API
Gateway's (hours old).
"""

import json
import logging
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from api_access.models import KeyRotation, QuotaIncrease
from centralllm import aws
from centralllm.audit import contract, rollups
from core import actions
from core.refusals import Refused
from provisioning import state
from provisioning.models import Environment
from provisioning.resources.base import error_code, ignoring

log = logging.getLogger(__name__)

TAG = "central-llm:"
# How old a key list and its usage may be; every change made here drops the list at once.
LIST_SECONDS = 30
REVEAL_SECONDS = 600
WARNINGS = (95, 80)  # percent of the quota: flagged before callers get 429s
EXPIRY_NOTICE = timedelta(days=7)
IMPACT_DAYS = 7
# API Gateway's tag values: at most 256 characters, of these (Tag in its API reference).
_TAG_VALUE = re.compile(r"[\w.:/=+\-@]+", re.ASCII)
TAG_VALUE_LIMIT = 256
# CreateUsagePlanKey runs one at a time in an account and Region: a call close behind another
# (a key made a moment before, here or by anyone) is refused with a ConflictException, "Unable
# to complete operation due to concurrent modification. Please try again later.", which the
# SDK does not retry (AWS Support, quoted in serverless/serverless#12064).
PLAN_KEY_ATTEMPTS = 5
PLAN_KEY_FIRST_WAIT = 0.5  # seconds, doubled after each refusal: 7.5 s in all at most


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    enabled: bool
    created_at: datetime | None
    project: str = ""
    owner: str = ""
    expires: date | None = None
    rotated_from: str = ""
    last4: str = ""
    projects: tuple[str, ...] | None = None  # may file under; None: not bound, any project

    @property
    def expired(self) -> bool:
        return self.expires is not None and self.expires < timezone.now().date()

    @property
    def expires_soon(self) -> bool:
        return self.expires is not None and self.expires <= timezone.now().date() + EXPIRY_NOTICE

    def __str__(self) -> str:
        return f"{self.name} ({self.id}{f', …{self.last4}' if self.last4 else ''})"


def _client():
    return aws.client("apigateway")


def _output(environment: Environment, resource: str, name: str, what: str) -> str:
    value = state.output(environment, resource, name)
    if value is None:
        raise Refused(f"{environment.name} has no {what}: apply the environment first.")
    return value


def plan_id(environment: Environment) -> str:
    """The environment's usage plan, as the runs last saw it in AWS."""
    return _output(environment, "apigateway.usage_plan", "id", "usage plan")


def _key_of(item: dict) -> ApiKey:
    tags = item.get("tags") or {}
    expires = tags.get(f"{TAG}expires")
    projects = tags.get(f"{TAG}projects")
    return ApiKey(
        id=item["id"],
        name=item.get("name", ""),
        enabled=bool(item.get("enabled")),
        created_at=item.get("createdDate"),
        project=tags.get(f"{TAG}project", ""),
        owner=tags.get(f"{TAG}owner", ""),
        expires=date.fromisoformat(expires) if expires else None,
        rotated_from=tags.get(f"{TAG}rotated-from", ""),
        last4=tags.get(f"{TAG}last4", ""),
        projects=tuple(projects.split()) if projects is not None else None,
    )


def keys_of(environment: Environment) -> list[ApiKey]:
    """The plan's keys by name, at most ``LIST_SECONDS`` old: one set of AWS calls per
    period however many people page through them (500 keys a call)."""
    cache_key = f"api-keys:{environment.pk}"
    found = cache.get(cache_key)
    if found is None:
        found = _fetch(environment)
        cache.set(cache_key, found, LIST_SECONDS)
    return found


def _fetch(environment: Environment) -> list[ApiKey]:
    client, usage_plan = _client(), plan_id(environment)
    in_plan = {
        item["id"]  # the listing also holds each key's value: only the id is kept
        for page in client.get_paginator("get_usage_plan_keys").paginate(
            usagePlanId=usage_plan, PaginationConfig={"PageSize": 500}
        )
        for item in page.get("items", [])
    }
    keys = [
        _key_of(item)
        for page in client.get_paginator("get_api_keys").paginate(
            includeValues=False, PaginationConfig={"PageSize": 500}
        )
        for item in page.get("items", [])
        if item["id"] in in_plan
    ]
    return sorted(keys, key=lambda key: (key.name.lower(), key.id))


def forget(environment: Environment) -> None:
    cache.delete(f"api-keys:{environment.pk}")


def find(environment: Environment, key_id: str) -> ApiKey:
    for key in keys_of(environment):
        if key.id == key_id:
            return key
    forget(environment)  # perhaps made a moment ago by another console process
    for key in keys_of(environment):
        if key.id == key_id:
            return key
    raise Refused(f"No key {key_id!r} in {environment.name}'s usage plan.")


def matching(keys: list[ApiKey], query: str) -> list[ApiKey]:
    """Keys whose name, id, owner or project holds ``query`` (any case)."""
    query = query.strip().lower()
    if not query:
        return keys
    return [
        key
        for key in keys
        if query in key.name.lower()
        or query in key.id.lower()
        or query in key.owner.lower()
        or query in key.project.lower()
    ]


def quota_of(environment: Environment) -> int:
    return environment.quota_limit + QuotaIncrease.extra_for(environment)


def usage(environment: Environment, keys: list[ApiKey]) -> dict[str, dict]:
    """Each key's requests, tokens, errors, projects and users seen in the current quota
    period, with its share of the quota (``percent``) and a warning level."""
    period = rollups.period_of(timezone.now(), environment.quota_period)
    prefix = f"api-key-usage:{environment.pk}"
    cache_keys = {f"{prefix}:{key.id}:{period}": key.id for key in keys}
    found = {cache_keys[name]: summary for name, summary in cache.get_many(cache_keys).items()}
    missing = [key_id for key_id in cache_keys.values() if key_id not in found]
    if missing:
        read = rollups.read_key_periods(missing, period, **environment.audit_table())
        cache.set_many(
            {f"{prefix}:{key_id}:{period}": read[key_id] for key_id in read}, LIST_SECONDS
        )
        found.update(read)
    quota = quota_of(environment)
    for summary in found.values():
        summary["percent"] = summary["requests"] * 100 / quota if quota else 0
        summary["warning"] = next((level for level in WARNINGS if summary["percent"] >= level), 0)
    return found


def _hours(environment: Environment, key: ApiKey, days: int) -> list[dict]:
    """The key's hourly rollups of the last ``days`` days, from its environment's table."""
    end = timezone.now()
    start = end - timedelta(days=days)
    return rollups.read_rollups("apiKey", key.id, start, end, **environment.audit_table())


def impact(environment: Environment, key: ApiKey, days: int = IMPACT_DAYS) -> dict:
    """What disabling or deleting the key would break: its last ``days`` days of traffic by
    project and user, from the hourly rollups."""
    hours = _hours(environment, key, days)
    total = rollups.summarize(hours)
    by = total["breakdowns"]
    return {
        "days": days,
        "requests": total["requests"],
        "projects": sorted(by.get("project", {}).items(), key=lambda pair: -pair[1]),
        "users": sorted(by.get("user", {}).items(), key=lambda pair: -pair[1]),
        "last_hour": hours[-1]["hour"] if hours else None,
    }


def daily_usage(environment: Environment, key: ApiKey, days: int = 30) -> list[dict]:
    """Requests, errors, tokens and latency per day (UTC) from the hourly rollups."""
    by_day: dict[str, list[dict]] = {}
    for hour in _hours(environment, key, days):
        by_day.setdefault(hour["hour"][:10], []).append(hour)
    return [{"day": day, **rollups.summarize(hours)} for day, hours in sorted(by_day.items())]


def aws_usage(environment: Environment, key: ApiKey, days: int = 7) -> tuple[list, str]:
    """API Gateway's own daily figures (used, remaining) and a note on their delay, or no
    figures and why."""
    end = timezone.now().date()
    try:
        found = _client().get_usage(
            usagePlanId=plan_id(environment),
            keyId=key.id,
            startDate=(end - timedelta(days=days - 1)).isoformat(),
            endDate=end.isoformat(),
        )
    except (BotoCoreError, ClientError) as exc:
        if aws.is_stand_in():
            return [], "The local AWS does not keep API Gateway's usage figures (GetUsage)."
        return [], f"API Gateway did not give its usage figures: {exc}"
    start = date.fromisoformat(found["startDate"])
    rows = [
        {"day": start + timedelta(days=offset), "used": used, "remaining": remaining}
        for offset, (used, remaining) in enumerate(found.get("items", {}).get(key.id, []))
    ]
    return rows, "API Gateway's own count: it lags real use by about 30 to 40 minutes."


def _tags(
    project: str,
    owner: str,
    expires: date | None,
    environment: Environment,
    projects: tuple[str, ...] | None,
) -> dict:
    tags = {f"{TAG}environment": environment.name, f"{TAG}project": project, f"{TAG}owner": owner}
    if expires:
        tags[f"{TAG}expires"] = expires.isoformat()
    if projects is not None:
        tags[f"{TAG}projects"] = " ".join(projects)
    return tags


def parse_projects(text: str) -> tuple[str, ...]:
    """The projects a key may file under, from a form: names apart by spaces or commas."""
    projects = tuple(dict.fromkeys(text.replace(",", " ").split()))
    if not projects:
        raise Refused("Name at least one project the key may file under.")
    wrong = [project for project in projects if not _TAG_VALUE.fullmatch(project)]
    if wrong:
        raise Refused(
            f"{wrong[0]!r} cannot be bound: project names bound to keys are letters, digits "
            "and . _ : / = + - @ only."
        )
    if len(" ".join(projects)) > TAG_VALUE_LIMIT:
        raise Refused(f"The projects take more than {TAG_VALUE_LIMIT} characters: bind fewer.")
    return projects


def _check(name: str, project: str, owner: str, expires: date | None) -> None:
    if not name.strip():
        raise Refused("Give the key a name.")
    if len(name) > 128:
        raise Refused("A key's name has at most 128 characters.")
    if not project.strip() or not owner.strip():
        raise Refused("Say which project and which person own the key.")
    if expires is not None and expires <= timezone.now().date():
        raise Refused("The expiry must be a day after today.")


def _make(
    environment: Environment, *, name: str, tags: dict, actor, verb: str, parameters: dict
) -> ApiKey:
    """A key on the environment's plan."""
    usage_plan = plan_id(environment)
    value = secrets.token_urlsafe(30)  # 40 characters; API Gateway wants at least 20
    client = _client()
    made = client.create_api_key(
        name=name, enabled=True, value=value, tags={**tags, f"{TAG}last4": value[-4:]}
    )
    try:
        _add_to_plan(client, usage_plan, made["id"])
    except (BotoCoreError, ClientError):
        client.delete_api_key(apiKey=made["id"])  # a key on no plan would be left behind
        raise
    key = _key_of({**made, "value": None})
    forget(environment)
    actions.record_about(
        verb, "apigateway.api_key", key.id, str(key), actor=actor, parameters=parameters
    )
    return key


def _add_to_plan(client, usage_plan: str, key_id: str) -> None:
    """Put the key on the plan, trying again while AWS refuses a concurrent modification."""
    wait = PLAN_KEY_FIRST_WAIT
    for attempt in range(1, PLAN_KEY_ATTEMPTS + 1):
        try:
            client.create_usage_plan_key(usagePlanId=usage_plan, keyId=key_id, keyType="API_KEY")
            return
        except ClientError as exc:
            if error_code(exc) != "ConflictException" or attempt == PLAN_KEY_ATTEMPTS:
                raise
        # The SDK repeats a call that timed out: when the first one got through, the key is on
        # the plan already and a conflict is all the repeat can get.
        placed = ignoring(
            lambda: client.get_usage_plan_key(usagePlanId=usage_plan, keyId=key_id),
            "NotFoundException",
        )
        if placed:
            return
        time.sleep(wait)
        wait *= 2


def _reveal_token(key: ApiKey, actor) -> str:
    """The token that reveals the key's value once, to ``actor``."""
    token = secrets.token_urlsafe(24)
    cache.set(f"api-key-reveal:{token}", {"key": key.id, "user": actor.pk}, REVEAL_SECONDS)
    return token


def create(
    environment: Environment,
    *,
    name: str,
    project: str,
    owner: str,
    expires: date | None,
    actor,
    request_id: str,
    projects_text: str = "",
) -> tuple[str, str]:
    """A new key on the plan: its id and its reveal token. The same ``request_id`` again (a
    double click, a dropped response) gives the same key instead of a second one. The key may
    file under the projects of ``projects_text``, or only its owner project."""
    name, project, owner = name.strip(), project.strip(), owner.strip()
    _check(name, project, owner, expires)
    projects = parse_projects(projects_text or project)
    done_key = f"api-key-create:{_uuid(request_id)}"
    if not cache.add(done_key, {}, 3600):
        return _wait_for(done_key)
    try:
        key = _make(
            environment,
            name=name,
            tags=_tags(project, owner, expires, environment, projects),
            actor=actor,
            verb="api_key.create",
            parameters={
                "environment": environment.name,
                "project": project,
                "owner": owner,
                "projects": list(projects),
            },
        )
        token = _reveal_token(key, actor)
    except BaseException:
        cache.delete(done_key)
        raise
    cache.set(done_key, {"key": key.id, "token": token}, 3600)
    _publish_soon(environment)
    return key.id, token


def keys_for_projects(
    environment: Environment, projects: list[str], *, owner: str, actor
) -> dict[str, str]:
    """Each project's key id on the environment's plan: the first enabled key it owns, else a
    new key named after it and bound to it, whose value nobody is shown (made for traffic that
    names a key, such as the demo's: its owner can rotate it for a value)."""
    found = {}
    for key in keys_of(environment):
        if key.enabled and key.project in projects:
            found.setdefault(key.project, key.id)
    missing = [project for project in projects if project not in found]
    for project in missing:
        found[project] = _make(
            environment,
            name=project,
            tags=_tags(project, owner, None, environment, (project,)),
            actor=actor,
            verb="api_key.create",
            parameters={"environment": environment.name, "project": project, "owner": owner},
        ).id
    if missing:
        _publish_soon(environment)
    return found


def _wait_for(done_key: str) -> tuple[str, str]:
    for _ in range(50):  # the first request is still making the key
        found = cache.get(done_key)
        if found:
            return found["key"], found["token"]
        time.sleep(0.1)
    raise Refused("The same request is still being made: reload in a moment.")


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise Refused("The form is missing its request id: open it again.") from None


def reveal(token: str, user) -> tuple[str, str] | None:
    """The key id and its value, for the user who made it, once; None afterwards."""
    cache_key = f"api-key-reveal:{token}"
    found = cache.get(cache_key)
    if not found or found["user"] != user.pk or not cache.delete(cache_key):
        return None
    value = _client().get_api_key(apiKey=found["key"], includeValue=True)["value"]
    return found["key"], value


def set_enabled(
    environment: Environment, key: ApiKey, enabled: bool, *, actor, reason: str = ""
) -> None:
    if key.enabled == enabled:
        raise Refused(f"{key.name} is already {'enabled' if enabled else 'disabled'}.")
    _client().update_api_key(
        apiKey=key.id,
        patchOperations=[{"op": "replace", "path": "/enabled", "value": str(enabled).lower()}],
    )
    forget(environment)
    actions.record_about(
        "api_key.enable" if enabled else "api_key.disable",
        "apigateway.api_key",
        key.id,
        str(key),
        actor=actor,
        parameters={"reason": reason} if reason else None,
        before={"enabled": key.enabled},
        after={"enabled": enabled},
    )


def delete(environment: Environment, key: ApiKey, *, typed_name: str, actor) -> None:
    if typed_name.strip() != key.name:
        raise Refused(f"Type the key's name, {key.name}, to delete it.")
    _client().delete_api_key(apiKey=key.id)
    forget(environment)
    _publish_soon(environment)
    actions.record_about(
        "api_key.delete",
        "apigateway.api_key",
        key.id,
        str(key),
        actor=actor,
        before={"name": key.name, "enabled": key.enabled, "project": key.project},
    )


def rotate(
    environment: Environment,
    key: ApiKey,
    *,
    rotation_id: str,
    grace_hours: int,
    quiet_minutes: int,
    expires: date | None,
    actor,
) -> tuple[KeyRotation, str | None]:
    """A new key on the same plan now; the old one stays enabled through the grace period,
    then is disabled once quiet (``finish_due_rotations``). The same ``rotation_id`` again
    gives the same rotation and its reveal token, never a second new key."""
    if not 0 < grace_hours <= 24 * 90:
        raise Refused("The grace period is between 1 hour and 90 days.")
    if not 0 <= quiet_minutes <= 24 * 60:
        raise Refused("The quiet time is between 0 minutes and a day.")
    if expires is not None and expires <= timezone.now().date():
        raise Refused("The new key's expiry must be a day after today.")
    try:
        with transaction.atomic():
            rotation, made = KeyRotation.objects.get_or_create(
                id=_uuid(rotation_id),
                defaults={
                    "environment": environment,
                    "old_key_id": key.id,
                    "old_key_name": key.name,
                    "grace_until": timezone.now() + timedelta(hours=grace_hours),
                    "quiet_minutes": quiet_minutes,
                    "created_by": actor,
                },
            )
    except IntegrityError:  # the same rotation, made by a request racing this one
        rotation, made = KeyRotation.objects.get(id=_uuid(rotation_id)), False
    if not made:
        if rotation.environment_id != environment.pk or rotation.old_key_id != key.id:
            raise Refused("This rotation id belongs to another key: open the form again.")
        return rotation, cache.get(f"api-key-rotation:{rotation.pk}")
    if not key.enabled or _rotating(key.id, besides=rotation):
        rotation.delete()
        raise Refused(f"{key.name} is disabled or already being rotated.")
    try:
        new = _make(
            environment,
            name=key.name,
            tags={
                # The new key files where the old one did, bound or not.
                **_tags(key.project, key.owner, expires, environment, key.projects),
                f"{TAG}rotated-from": key.id,
            },
            actor=actor,
            verb="api_key.rotate",
            parameters={
                "rotation": str(rotation.pk),
                "replaces": key.id,
                "grace_hours": grace_hours,
                "quiet_minutes": quiet_minutes,
            },
        )
        token = _reveal_token(new, actor)
    except BaseException:
        rotation.delete()
        raise
    KeyRotation.objects.filter(pk=rotation.pk).update(new_key_id=new.id)
    rotation.new_key_id = new.id
    _publish_soon(environment)
    cache.set(f"api-key-rotation:{rotation.pk}", token, REVEAL_SECONDS)
    return rotation, token


def set_projects(environment: Environment, key: ApiKey, text: str, *, actor) -> None:
    """Bind the key to the projects of ``text``: its requests may file under no other."""
    projects = parse_projects(text)
    if projects == key.projects:
        raise Refused(f"{key.name} already files under exactly these projects.")
    arn = f"arn:aws:apigateway:{aws.region()}::/apikeys/{key.id}"
    _client().tag_resource(resourceArn=arn, tags={f"{TAG}projects": " ".join(projects)})
    forget(environment)
    actions.record_about(
        "api_key.projects",
        "apigateway.api_key",
        key.id,
        str(key),
        actor=actor,
        before={"projects": list(key.projects) if key.projects is not None else None},
        after={"projects": list(projects)},
    )
    try:
        publish(environment)
    except (BotoCoreError, ClientError) as exc:
        raise Refused(
            f"{key.name} now files under {', '.join(projects)}, but the serving hosts could "
            f"not be told yet ({exc}): the next key check publishes it, within a "
            "minute or two."
        ) from exc


def projects_to_bind(key: ApiKey, impact: dict) -> tuple[str, ...]:
    """What the projects form offers: the key's projects, or for a key not bound yet its owner
    project and those its requests named lately (binding it then breaks none of them)."""
    if key.projects is not None:
        return key.projects
    seen = (name for name, _ in impact["projects"] if _TAG_VALUE.fullmatch(name))
    return tuple(dict.fromkeys([key.project, *seen] if key.project else seen))


def bindings(keys: list[ApiKey]) -> dict[str, list[str]]:
    """What the serving hosts enforce: the projects of every bound key."""
    return {key.id: list(key.projects) for key in keys if key.projects is not None}


def publish(environment: Environment) -> None:
    """Write the keys' projects where every serving host re-reads them (within
    ``contract.ATTRIBUTION_SECONDS``). Also run by ``check_keys``: a change whose publishing
    failed (S3 unreachable a moment) is published by the next run."""
    bucket = _output(environment, "s3.audit_bucket", "name", "audit bucket")
    forget(environment)
    body = json.dumps({"keys": bindings(keys_of(environment))}, sort_keys=True).encode()
    s3 = aws.client("s3")
    try:
        if s3.get_object(Bucket=bucket, Key=contract.ATTRIBUTION_KEY)["Body"].read() == body:
            return  # unchanged: the hosts' conditional reads stay 304s
    except s3.exceptions.NoSuchKey:
        pass
    s3.put_object(
        Bucket=bucket, Key=contract.ATTRIBUTION_KEY, Body=body, ContentType="application/json"
    )


def _publish_soon(environment: Environment) -> None:
    """``publish``, after a change that is made whether or not it can be published now."""
    try:
        publish(environment)
    except (Refused, BotoCoreError, ClientError) as exc:
        log.warning("API key projects of %s not published yet: %s", environment.name, exc)


def fresh_expiry(key: ApiKey) -> date | None:
    """A rotated key's expiry by default: the old key's lifetime again, from today (never a
    day already past, as an expired key's own date would be)."""
    if key.expires is None or key.created_at is None:
        return None
    lifetime = max(key.expires - key.created_at.date(), timedelta(days=1))
    return timezone.now().date() + lifetime


def _rotating(key_id: str, *, besides: KeyRotation) -> bool:
    grace = KeyRotation.objects.filter(old_key_id=key_id, status=KeyRotation.Status.GRACE)
    return grace.exclude(pk=besides.pk).exists()


def last_use(key_id: str, environment: Environment) -> str:
    """When the key was last used (the newest record counted in this or the last quota
    period), or ''."""
    now = timezone.now()
    periods = [
        rollups.period_of(now, environment.quota_period),
        rollups.period_of(
            rollups.period_start(now, environment.quota_period) - timedelta(seconds=1),
            environment.quota_period,
        ),
    ]
    where = environment.audit_table()
    return max(
        (
            rollups.read_key_periods([key_id], period, **where)[key_id]["lastAt"] or ""
            for period in periods
        ),
        default="",
    )


def finish(rotation: KeyRotation, *, actor, reason: str) -> bool:
    """Disable the rotation's old key (if it still exists) and close the rotation; False when
    another process closed it first."""
    closed = KeyRotation.objects.filter(pk=rotation.pk, status=KeyRotation.Status.GRACE).update(
        status=KeyRotation.Status.DONE, outcome=reason[:200], finished_at=timezone.now()
    )
    if not closed:
        return False
    try:
        _client().update_api_key(
            apiKey=rotation.old_key_id,
            patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}],
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NotFoundException":
            KeyRotation.objects.filter(pk=rotation.pk).update(
                status=KeyRotation.Status.GRACE, outcome="", finished_at=None
            )
            raise
        reason = f"{reason}; the old key was already deleted"
    forget(rotation.environment)
    actions.record_about(
        "api_key.rotation_done",
        "apigateway.api_key",
        rotation.old_key_id,
        rotation.old_key_name,
        actor=actor,
        parameters={"rotation": str(rotation.pk), "reason": reason, "new_key": rotation.new_key_id},
        before={"enabled": True},
        after={"enabled": False},
    )
    return True


def finish_due_rotations(now: datetime | None = None) -> int:
    """Close the rotations whose grace period is over and whose old key has been quiet for
    their quiet time; note the old key's last use on the others."""
    now = now or timezone.now()
    finished = 0
    due = KeyRotation.objects.filter(status=KeyRotation.Status.GRACE).select_related("environment")
    for rotation in due:
        used = last_use(rotation.old_key_id, rotation.environment)
        if used and used != rotation.old_key_last_used:
            KeyRotation.objects.filter(pk=rotation.pk).update(old_key_last_used=used)
        if rotation.grace_until > now:
            continue
        quiet_since = datetime.fromisoformat(used.replace("Z", "+00:00")) if used else None
        if quiet_since and quiet_since + timedelta(minutes=rotation.quiet_minutes) > now:
            continue  # still in use: wait for the quiet time
        finished += finish(rotation, actor=None, reason="grace period over and the key quiet")
    return finished


def disable_expired_keys() -> int:
    """Disable every enabled key whose expiry has passed, in every environment."""
    disabled = 0
    for environment in Environment.objects.all():
        try:
            keys = keys_of(environment)
        except Refused:
            continue  # never applied: no keys
        for key in keys:
            if key.enabled and key.expired:
                set_enabled(environment, key, False, actor=None, reason="expired (scheduled)")
                disabled += 1
    return disabled


ALERTS_SECONDS = 15 * 60  # how long a note lives: ``check_keys`` renews it every minute


def alerts(environment: Environment) -> dict:
    """Keys at 80% and 95% of their quota and keys expiring within 7 days, for the dashboard:
    the note ``check_keys`` keeps, so the dashboard reads no AWS. Without one (no scheduler
    yet, Redis emptied) it is made here, as the keys page reads keys and usage; an
    environment never applied has no keys and no alerts."""
    found = noted_alerts(environment)
    if found is not None:
        return found
    try:
        return note_alerts(environment)
    except Refused:
        return {"quota": [], "expiring": []}


def noted_alerts(environment: Environment) -> dict | None:
    """The note ``check_keys`` keeps, its time in ``at``; None without one. Reads no AWS."""
    return cache.get(f"api-key-alerts:{environment.pk}")


def note_alerts(environment: Environment) -> dict:
    """Read the keys and their usage this period (``keys_of``, ``usage``: the keys page's
    cached reads) and keep the alerts ``ALERTS_SECONDS``."""
    enabled = [key for key in keys_of(environment) if key.enabled]
    found = usage(environment, enabled)
    noted = {
        "quota": [
            {"key": str(key), "id": key.id, "percent": round(found[key.id]["percent"])}
            for key in enabled
            if found[key.id]["warning"]
        ],
        "expiring": [
            {"key": str(key), "id": key.id, "expires": key.expires.isoformat()}
            for key in enabled
            if key.expires_soon
        ],
        "at": datetime.now(UTC).isoformat(),
    }
    cache.set(f"api-key-alerts:{environment.pk}", noted, ALERTS_SECONDS)
    return noted


def check_keys() -> int:
    """The scheduled job: close due rotations, disable expired keys, and note the alerts."""
    done = finish_due_rotations() + disable_expired_keys()
    for environment in Environment.objects.all():
        try:
            note_alerts(environment)
        except Refused:
            continue  # never applied: no keys
        _publish_soon(environment)
    return done
