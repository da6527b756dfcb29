"""Application Auto Scaling: the ECS service's desired count follows the serving hosts' queue.

A scalable target holds the count between the environment's min and max tasks, and a
target-tracking policy keeps vLLM's requests in flight per task (``centralllm.serving``) at
the environment's target; the capacity provider's managed scaling then brings and releases
the GPU instances the tasks need. Without a role ARN, Application Auto Scaling uses (and on
the first registration makes) its service-linked role for ECS:
https://docs.aws.amazon.com/autoscaling/application/userguide/application-auto-scaling-service-linked-roles.html
"""

from collections.abc import Callable
from functools import partial

from botocore.exceptions import ClientError

from centralllm import serving
from provisioning.resources.base import Resource, error_code, ignoring, projected, retrying
from provisioning.resources.ecs import task_count, task_range

NAMESPACE = "ecs"
DIMENSION = "ecs:service:DesiredCount"
POLICY_NAME = "central-llm-requests-in-flight"
SUSPENDED = ("DynamicScalingInSuspended", "DynamicScalingOutSuspended", "ScheduledScalingSuspended")
GONE = "ObjectNotFoundException"


def resource_id(cluster: str, service: str) -> str:
    """How Application Auto Scaling names an ECS service."""
    return f"service/{cluster}/{service}"


def _not_settled(exc: ClientError) -> bool:
    """What AWS answers while a write it just took is not yet visible to the next call:
    RegisterScalableTarget right after CreateService ("ECS service doesn't exist",
    hashicorp/terraform-provider-aws#11693); PutScalingPolicy right after
    RegisterScalableTarget ("No scalable target registered", whose API reference says to
    retry); and any change while another to the same target is pending."""
    code = error_code(exc)
    message = exc.response.get("Error", {}).get("Message", "")
    unseen_service = code == "ValidationException" and "doesn't exist" in message
    return unseen_service or code in (GONE, "ConcurrentUpdateException")


def _busy(exc: ClientError) -> bool:
    return error_code(exc) == "ConcurrentUpdateException"


class _Scaling(Resource):
    service = "application-autoscaling"
    settles_in = "a few seconds"

    @property
    def resource_id(self) -> str:
        return resource_id(self.ctx.name("Cluster"), self.ctx.name("Service"))

    def _keys(self) -> dict:
        return {
            "ServiceNamespace": NAMESPACE,
            "ResourceId": self.resource_id,
            "ScalableDimension": DIMENSION,
        }

    def _retried(self, call: Callable[[], object], why: str) -> None:
        retrying(self.ctx, call, retry_if=_not_settled, why=why)

    def _remove(self, call: Callable[[], object]) -> None:
        """``call``, a deletion: what is gone already is done, a pending update waited for."""
        gone_or_removed = partial(ignoring, call, GONE)
        retrying(
            self.ctx,
            gone_or_removed,
            retry_if=_busy,
            why="another change to the scaling target is pending",
        )


class ScalableTarget(_Scaling):
    """The service's desired count as Application Auto Scaling moves it. Before the first
    rollout on real AWS it is held at no task with scaling suspended: registering a minimum
    above the service's count changes the count at once (RegisterScalableTarget's API
    reference), which would start tasks with no image to pull. The rollout that goes live
    brings it into force (rollout_runs), as it does the running-tasks alarm."""

    key = "applicationautoscaling.scalable_target"
    title = "scaling target: ECS service tasks"
    depends_on = ("ecs.service",)

    def desired(self) -> dict:
        low, high = task_range(self.spec)
        held = not task_count(self.spec)
        return {"min": low, "max": high, "suspended": dict.fromkeys(SUSPENDED, held)}

    def read(self) -> dict | None:
        pages = self.client.get_paginator("describe_scalable_targets").paginate(
            ServiceNamespace=NAMESPACE, ResourceIds=[self.resource_id], ScalableDimension=DIMENSION
        )
        for page in pages:
            for target in page["ScalableTargets"]:
                if target["ResourceId"] == self.resource_id:
                    return self._current(target)
        return None

    def _current(self, target: dict) -> dict:
        current = {
            "arn": target.get("ScalableTargetARN", ""),
            "min": target["MinCapacity"],
            "max": target["MaxCapacity"],
        }
        if target.get("SuspendedState"):  # the local AWS leaves it out when never set
            state = target["SuspendedState"]
            current["suspended"] = {name: state.get(name, False) for name in SUSPENDED}
        return current

    def create(self, desired: dict) -> None:
        register = partial(
            self.client.register_scalable_target,
            **self._keys(),
            MinCapacity=desired["min"],
            MaxCapacity=desired["max"],
            SuspendedState=desired["suspended"],
        )
        self._retried(register, "Application Auto Scaling does not see the new service yet")

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        self.create(desired)  # RegisterScalableTarget registers or updates

    def delete(self, current: dict) -> None:
        # Deregistering also deletes the target's policies (its API reference).
        self._remove(partial(self.client.deregister_scalable_target, **self._keys()))

    def outputs(self, current: dict) -> dict:
        return {"resource_id": self.resource_id, "arn": current["arn"]}


class ScalingPolicy(_Scaling):
    """Target tracking on the average requests in flight per task: Application Auto Scaling
    makes and owns its two CloudWatch alarms (out at once, in after 15 minutes below target),
    and never goes outside the target's min and max."""

    key = "applicationautoscaling.scaling_policy"
    title = "scaling policy: requests in flight per task"
    depends_on = (ScalableTarget.key,)

    def desired(self) -> dict:
        spec = self.spec
        return {
            "type": "TargetTrackingScaling",
            "configuration": {
                "TargetValue": float(spec.target_requests_per_task),
                "CustomizedMetricSpecification": {
                    "MetricName": serving.REQUESTS_IN_FLIGHT,
                    "Namespace": serving.NAMESPACE,
                    "Dimensions": serving.dimensions(spec.name),
                    "Statistic": "Average",
                },
                "ScaleOutCooldown": spec.scale_out_cooldown_seconds,
                "ScaleInCooldown": spec.scale_in_cooldown_seconds,
                "DisableScaleIn": False,
            },
        }

    def read(self) -> dict | None:
        pages = self.client.get_paginator("describe_scaling_policies").paginate(
            **self._keys(), PolicyNames=[POLICY_NAME]
        )
        for page in pages:
            for policy in page["ScalingPolicies"]:
                if policy["PolicyName"] == POLICY_NAME:
                    configuration = policy.get("TargetTrackingScalingPolicyConfiguration", {})
                    wanted = self.desired()["configuration"]
                    return {
                        "arn": policy["PolicyARN"],
                        "type": policy["PolicyType"],
                        "configuration": projected(configuration, wanted),
                        "alarms": [alarm["AlarmName"] for alarm in policy.get("Alarms", [])],
                    }
        return None

    def create(self, desired: dict) -> None:
        put = partial(
            self.client.put_scaling_policy,
            PolicyName=POLICY_NAME,
            **self._keys(),
            PolicyType=desired["type"],
            TargetTrackingScalingPolicyConfiguration=desired["configuration"],
        )
        self._retried(put, "Application Auto Scaling does not see the scaling target yet")

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        self.create(desired)  # PutScalingPolicy creates or replaces

    def delete(self, current: dict) -> None:
        # Gone already if its target was deregistered meanwhile (that deletes its policies).
        self._remove(
            partial(self.client.delete_scaling_policy, PolicyName=POLICY_NAME, **self._keys())
        )

    def outputs(self, current: dict) -> dict:
        return {"name": POLICY_NAME, "arn": current["arn"], "alarms": current["alarms"]}
