"""The alarms a rollout's deployment watches, and which of them made ECS roll it back.

ECS watches the environment's rollout alarms (``cloudwatch.ROLLOUT_ALARMS``) while it deploys
a new revision and through the bake time after it; one going into ALARM fails the deployment
and, with rollback on, puts the service back on the last completed deployment
(https://docs.aws.amazon.com/AmazonECS/latest/developerguide/deployment-alarm-failure.html).
DescribeServices then shows the deployment FAILED; which alarm did it is on the service
deployment (ListServiceDeployments, DescribeServiceDeployments: ``alarms.status`` TRIGGERED
and ``triggeredAlarmNames``,
https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ServiceDeploymentAlarms.html),
and what it saw is in the alarm's history (DescribeAlarmHistory's StateUpdate items, whose
``HistoryData`` holds ``newState.stateReasonData``,
https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_DescribeAlarmHistory.html).

Plain Python (no Django), like ``provisioning.rollout``.
"""

import json
from datetime import datetime
from typing import Any
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError

from provisioning.resources.base import Context, Spec
from provisioning.resources.cloudwatch import ROLLOUT_ALARMS, RolloutAlarm

# What the rollout page says of the local stand-in (devtools.local_ecs_alarms), and the docs.
LOCAL_LIMITS = (
    "nothing evaluates alarms in the local AWS and its ECS knows no deployment alarms. A local "
    "deployment settles for LOCAL_ECS_BAKE_SECONDS (not the bake time AWS derives from the "
    "alarms); a watched alarm that goes into ALARM meanwhile (aws cloudwatch set-alarm-state) "
    "fails it and rolls it back, reported as ECS reports it. The circuit breaker never trips."
)


def watched(spec: Spec) -> list[dict[str, Any]]:
    """The alarms a deployment of ``spec`` watches: name, what, threshold, console link."""
    return [
        {
            "name": alarm.name_in(spec),
            "label": alarm.label,
            "threshold": f"> {alarm.figure(alarm.limit(spec))}",
            "url": "" if spec.is_local else console_url(spec.region, alarm.name_in(spec)),
        }
        for alarm in ROLLOUT_ALARMS
        if alarm.wanted(spec)
    ]


def console_url(region: str, name: str) -> str:
    """The alarm's page in the CloudWatch console."""
    return (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#alarmsV2:alarm/{quote(name, safe='')}"
    )


def fired(ctx: Context, cluster: str, service: str) -> dict[str, Any] | None:
    """The alarm that failed the service's newest deployment, with what it saw; None when no
    alarm did (the circuit breaker did, or ECS does not say)."""
    ecs = ctx.client("ecs")
    try:
        listed = ecs.list_service_deployments(cluster=cluster, service=service)
        newest = max(listed["serviceDeployments"], key=lambda item: item["createdAt"], default=None)
        if newest is None:
            return None
        found = ecs.describe_service_deployments(
            serviceDeploymentArns=[newest["serviceDeploymentArn"]]
        )["serviceDeployments"]
    except (BotoCoreError, ClientError) as exc:
        ctx.say(f"ECS did not say whether an alarm failed the deployment: {exc}")
        return None
    alarms = found[0].get("alarms", {}) if found else {}
    names = alarms.get("triggeredAlarmNames") or []
    if alarms.get("status") != "TRIGGERED" or not names:
        return None
    since = found[0].get("startedAt") or found[0].get("createdAt") or newest["createdAt"]
    return values(ctx, names[0], since)


def values(ctx: Context, name: str, since: datetime) -> dict[str, Any]:
    """What the alarm ``name`` saw when it went into ALARM after ``since``: its breaching
    value and threshold from the alarm's history, as "TTFT p95 5,120 ms > 3,000 ms". Its
    history unreadable (throttled past the SDK's retries), the alarm and its declared
    threshold are still named."""
    alarm = _alarm_named(ctx.spec, name)
    entry: dict[str, Any] = {"name": name, "label": alarm.label if alarm else name}
    threshold = float(alarm.limit(ctx.spec)) if alarm else None
    try:
        items = ctx.client("cloudwatch").describe_alarm_history(
            AlarmName=name,
            HistoryItemType="StateUpdate",
            StartDate=since,
            ScanBy="TimestampDescending",
            MaxRecords=10,
        )["AlarmHistoryItems"]
    except (BotoCoreError, ClientError) as exc:
        entry["note"] = f"its values could not be read: {exc}"
        items = []
    state = next((s for s in map(_new_state, items) if s.get("stateValue") == "ALARM"), None)
    if state is not None:
        data = _as_dict(state.get("stateReasonData"))
        entry["reason"] = state.get("stateReason", "")
        entry["value"] = _worst(data)
        threshold = data.get("threshold", threshold)
    elif "note" not in entry:
        entry["note"] = "its history shows no change into ALARM since the deployment began"
    entry["threshold"] = threshold
    entry["said"] = _said(alarm, entry)
    return entry


def _alarm_named(spec: Spec, name: str) -> type[RolloutAlarm] | None:
    return next((alarm for alarm in ROLLOUT_ALARMS if alarm.name_in(spec) == name), None)


def _new_state(item: dict) -> dict:
    try:
        return json.loads(item.get("HistoryData") or "{}").get("newState", {})
    except ValueError:
        return {}


def _as_dict(data: Any) -> dict:
    """``stateReasonData``: an object in AWS's history, a JSON string where a person set it."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return {}
    return data if isinstance(data, dict) else {}


def _worst(data: dict) -> float | None:
    """The highest datapoint the alarm evaluated (the rollout alarms alarm above their
    thresholds), else the highest recent one."""
    evaluated = [
        point["value"] for point in data.get("evaluatedDatapoints", []) if "value" in point
    ]
    points = evaluated or [point for point in data.get("recentDatapoints", []) if point is not None]
    return max(points) if points else None


def _said(alarm: type[RolloutAlarm] | None, entry: dict) -> str:
    """ "TTFT p95 5,120 ms > 3,000 ms", or as much of it as is known."""
    figure = alarm.figure if alarm else (lambda number: f"{number:,g}")
    value, threshold = entry.get("value"), entry.get("threshold")
    if value is not None and threshold is not None:
        return f"{entry['label']} {figure(value)} > {figure(threshold)}"
    above = f" above {figure(threshold)}" if threshold is not None else ""
    return f"{entry['label']}{above}: {entry.get('note', 'no values')}"
