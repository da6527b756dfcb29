"""ECS deployment alarms in the local AWS: a deployment that a watched alarm fails is rolled
back, and reported, as ECS does it.

moto's ECS drops a new service's ``deploymentConfiguration`` (UpdateService keeps it), knows
no deployment alarms, settles every deployment at once and has no service deployments; its
CloudWatch evaluates no alarm and has no DescribeAlarmHistory. Here, as AWS documents them
(https://docs.aws.amazon.com/AmazonECS/latest/developerguide/deployment-alarm-failure.html):

- CreateService keeps the ``deploymentConfiguration``, which DescribeServices echoes.
- UpdateService onto a new task definition, on a service that watches alarms
  (``alarms.enable``), starts a deployment that settles for ``LOCAL_ECS_BAKE_SECONDS`` (30;
  1 in the tests): its rolloutState is IN_PROGRESS beside the previous deployment.
- A watched alarm that goes into ALARM meanwhile (``aws cloudwatch set-alarm-state``: nothing
  evaluates alarms here) fails it: rolloutState FAILED, and with ``rollback`` the service goes
  back to the previous task definition. Otherwise it ends COMPLETED.
- ListServiceDeployments and DescribeServiceDeployments report each such deployment: its
  status (IN_PROGRESS, SUCCESSFUL, ROLLBACK_SUCCESSFUL), ``alarms.status`` (MONITORING,
  MONITORING_COMPLETE, TRIGGERED) with ``triggeredAlarmNames``, and ``rollback``
  (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_ServiceDeployment.html).
- DescribeAlarmHistory answers the alarm's state changes as StateUpdate items whose
  ``HistoryData`` holds ``oldState`` and ``newState`` (with the ``stateReasonData`` given)
  (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_DescribeAlarmHistory.html).

What AWS does and this does not: the bake time is a fixed number of seconds, not derived
from the alarms' periods; tasks are not started or stopped (moto's running count stays as it
is); an alarm already in ALARM when the deployment starts does not fail it (only a change
into ALARM while it settles does); the circuit breaker never trips; the wording of
``rolloutStateReason`` and ``statusReason`` is this stand-in's.

Installed into the local AWS's server by ``devtools.moto_server``, as ``local_codebuild`` is.
"""

import copy
import json
import os
import threading
import time
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from moto.cloudwatch.models import cloudwatch_backends
from moto.cloudwatch.responses import CloudWatchResponse
from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.ecs.models import Service
from moto.ecs.responses import EC2ContainerServiceResponse
from moto.moto_api._internal import mock_random

_lock = threading.Lock()
_moto_create_service = EC2ContainerServiceResponse.create_service
_moto_update_service = EC2ContainerServiceResponse.update_service
_moto_describe_services = EC2ContainerServiceResponse.describe_services


def bake_seconds() -> float:
    return float(os.environ.get("LOCAL_ECS_BAKE_SECONDS", "30"))


def create_service(self: EC2ContainerServiceResponse) -> ActionResult:
    result = _moto_create_service(self)
    service = _service(self, self._get_param("serviceName"))
    service.deployment_configuration = self._get_param("deploymentConfiguration")
    return result


def update_service(self: EC2ContainerServiceResponse) -> ActionResult:
    service = _service(self, self._get_param("service"))
    with _lock:
        _settle(service)
        previous = service.task_definition
        result = _moto_update_service(self)
        if service.task_definition != previous and _watched(service):
            _start(service, previous)
    return result


def describe_services(self: EC2ContainerServiceResponse) -> ActionResult:
    cluster = self._get_param("cluster", "default")
    with _lock:
        for service in self.ecs_backend.describe_services(cluster, self._get_param("services"))[0]:
            _settle(service)
    return _moto_describe_services(self)


def list_service_deployments(self: EC2ContainerServiceResponse) -> ActionResult:
    service = _service(self, self._get_param("service"))
    with _lock:
        _settle(service)
        found = [_brief(deployment) for deployment in _deployments(service)]
    return ActionResult({"serviceDeployments": found})


def describe_service_deployments(self: EC2ContainerServiceResponse) -> ActionResult:
    wanted = set(self._get_param("serviceDeploymentArns", []))
    found = []
    with _lock:
        for service in list(self.ecs_backend.services.values()):
            _settle(service)
            found += [d for d in _deployments(service) if d["serviceDeploymentArn"] in wanted]
    failures = [
        {"arn": arn, "reason": "MISSING"}
        for arn in sorted(wanted - {d["serviceDeploymentArn"] for d in found})
    ]
    return ActionResult({"serviceDeployments": copy.deepcopy(found), "failures": failures})


def _service(response: EC2ContainerServiceResponse, name: str) -> Service:
    cluster = response._get_param("cluster", "default")
    return response.ecs_backend._get_service(cluster, name.split("/")[-1])


def _watched(service: Service) -> list[str]:
    alarms = (getattr(service, "deployment_configuration", None) or {}).get("alarms") or {}
    return list(alarms.get("alarmNames") or []) if alarms.get("enable") else []


def _deployments(service: Service) -> list[dict]:
    if not hasattr(service, "local_service_deployments"):
        service.local_service_deployments = []
    return service.local_service_deployments


def _start(service: Service, previous: str) -> None:
    """A deployment of the service's new task definition, settling beside the previous one."""
    now = utcnow()
    deployment_id = f"ecs-svc/{mock_random.randint(0, 32**12)}"
    primary = copy.deepcopy(service.deployments[0]) if service.deployments else {}
    new = {
        **primary,
        "id": deployment_id,
        "status": "PRIMARY",
        "taskDefinition": service.task_definition,
        "desiredCount": service.desired_count,
        "rolloutState": "IN_PROGRESS",
        "rolloutStateReason": f"ECS deployment {deployment_id} in progress.",
        "createdAt": now,
        "updatedAt": now,
    }
    old = {**primary, "status": "ACTIVE", "taskDefinition": previous, "updatedAt": now}
    service.deployments = [new, old]
    configuration = service.deployment_configuration
    watched = _watched(service)
    arn_base = service.arn.replace(":service/", ":service-deployment/")
    _deployments(service).append(
        {
            "serviceDeploymentArn": f"{arn_base}/{deployment_id.split('/')[1]}",
            "serviceArn": service.arn,
            "clusterArn": service.cluster_arn,
            "createdAt": now,
            "startedAt": now,
            "updatedAt": now,
            "targetServiceRevision": _revision(service.task_definition, service.desired_count),
            "sourceServiceRevisions": [_revision(previous, 0)],
            "status": "IN_PROGRESS",
            "deploymentConfiguration": configuration,
            "alarms": {"status": "MONITORING", "alarmNames": watched},
            "deploymentCircuitBreaker": {"status": "MONITORING", "failureCount": 0},
            # What settling needs, left out of every answer (_brief and the shape drop it).
            "local": {
                "deployment": new,
                "previous": previous,
                "ends": time.monotonic() + bake_seconds(),
                "since": now,
                "rollback": bool(configuration["alarms"].get("rollback")),
            },
        }
    )


def _revision(task_definition: str, count: int) -> dict:
    # A service revision names the task definition it runs; here it is the task definition.
    return {"arn": task_definition, "requestedTaskCount": count}


def _settle(service: Service) -> None:
    """Fail the settling deployment if a watched alarm went into ALARM, else complete it once
    its bake time has passed."""
    settling = [d for d in _deployments(service) if d["status"] == "IN_PROGRESS"]
    for record in settling:
        local = record["local"]
        fired = [
            name
            for name in record["alarms"]["alarmNames"]
            if _went_into_alarm(service, name, local["since"])
        ]
        now = utcnow()
        if fired:
            _fail(service, record, fired, now)
        elif time.monotonic() >= local["ends"]:
            local["deployment"].update(
                rolloutState="COMPLETED",
                rolloutStateReason=f"ECS deployment {local['deployment']['id']} completed.",
                updatedAt=now,
            )
            service.deployments = [local["deployment"]]
            record.update(status="SUCCESSFUL", finishedAt=now, updatedAt=now)
            record["alarms"]["status"] = "MONITORING_COMPLETE"
            record["deploymentCircuitBreaker"]["status"] = "MONITORING_COMPLETE"


def _went_into_alarm(service: Service, name: str, since: datetime) -> bool:
    alarm = cloudwatch_backends[service._account_id][service.region_name].alarms.get(name)
    return (
        alarm is not None
        and alarm.state_value == "ALARM"
        and alarm.state_updated_timestamp >= since
    )


def _fail(service: Service, record: dict, fired: list[str], now: datetime) -> None:
    local = record["local"]
    deployment = local["deployment"]
    reason = f"ECS deployment {deployment['id']} failed: alarm(s) {', '.join(fired)} in ALARM."
    deployment.update(
        status="ACTIVE", rolloutState="FAILED", rolloutStateReason=reason, updatedAt=now
    )
    record["alarms"].update(status="TRIGGERED", triggeredAlarmNames=fired)
    record["deploymentCircuitBreaker"]["status"] = "MONITORING_COMPLETE"
    record.update(statusReason=reason, updatedAt=now, finishedAt=now)
    if not local["rollback"]:
        record["status"] = "STOPPED"
        return
    # Back to the last completed deployment: a new PRIMARY one of the previous revision.
    back = {
        **deployment,
        "id": f"ecs-svc/{mock_random.randint(0, 32**12)}",
        "status": "PRIMARY",
        "taskDefinition": local["previous"],
        "rolloutState": "COMPLETED",
        "rolloutStateReason": f"ECS deployment rolled back after {deployment['id']} failed.",
        "createdAt": now,
    }
    service.task_definition = local["previous"]
    service.deployments = [back, deployment]
    record["status"] = "ROLLBACK_SUCCESSFUL"
    record["rollback"] = {
        "reason": reason,
        "startedAt": now,
        "serviceRevisionArn": local["previous"],
    }


def _brief(record: dict) -> dict:
    keys = ("serviceDeploymentArn", "serviceArn", "clusterArn", "startedAt", "createdAt")
    brief = {key: record[key] for key in keys}
    brief.update(
        targetServiceRevisionArn=record["targetServiceRevision"]["arn"],
        status=record["status"],
    )
    for key in ("finishedAt", "statusReason"):
        if key in record:
            brief[key] = record[key]
    return brief


def describe_alarm_history(self: CloudWatchResponse) -> ActionResult:
    """The alarm's state changes, newest first unless asked otherwise."""
    name = self._get_param("AlarmName")
    alarm = self.cloudwatch_backend.alarms.get(name)
    items = _state_updates(name, alarm) if alarm is not None else []
    if self._get_param("HistoryItemType") not in (None, "StateUpdate"):
        items = []
    start, end = _when(self._get_param("StartDate")), _when(self._get_param("EndDate"))
    items = [
        item
        for item in items
        if (start is None or item["Timestamp"] >= start)
        and (end is None or item["Timestamp"] <= end)
    ]
    items.sort(
        key=lambda item: item["Timestamp"],
        reverse=self._get_param("ScanBy") != "TimestampAscending",
    )
    return ActionResult({"AlarmHistoryItems": items[: int(self._get_param("MaxRecords") or 100)]})


def _state_updates(name: str, alarm: Any) -> list[dict]:
    """moto keeps each state an alarm left (oldest first) and its current one: every pair is
    a change."""
    states = [entry[1:] for entry in alarm.history if entry[0] == "StateUpdate"]
    states.append(
        (
            alarm.state_reason,
            alarm.state_reason_data,
            alarm.state_value,
            alarm.state_updated_timestamp,
        )
    )
    items = []
    for (old_reason, _, old_value, _), (reason, data, value, at) in pairwise(states):
        new_state = {"stateValue": value, "stateReason": reason}
        if data and data != "{}":
            new_state["stateReasonData"] = json.loads(data)
        history = {
            "version": "1.0",
            "oldState": {"stateValue": old_value, "stateReason": old_reason},
            "newState": new_state,
        }
        items.append(
            {
                "AlarmName": name,
                "AlarmType": "MetricAlarm",
                "Timestamp": at,
                "HistoryItemType": "StateUpdate",
                "HistorySummary": f"Alarm updated from {old_value} to {value}",
                "HistoryData": json.dumps(history),
            }
        )
    return items


def _when(value: Any) -> datetime | None:
    """A timestamp parameter as the protocol delivered it, naive in UTC as moto keeps them."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, int | float):
        moment = datetime.fromtimestamp(value, UTC)
    else:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def install() -> None:
    EC2ContainerServiceResponse.create_service = create_service
    EC2ContainerServiceResponse.update_service = update_service
    EC2ContainerServiceResponse.describe_services = describe_services
    EC2ContainerServiceResponse.list_service_deployments = list_service_deployments
    EC2ContainerServiceResponse.describe_service_deployments = describe_service_deployments
    CloudWatchResponse.describe_alarm_history = describe_alarm_history
