"""ECS: the GPU capacity provider, the cluster, the vLLM task definition and the service."""

from functools import partial

from botocore.exceptions import ClientError

from centralllm import aws
from provisioning.resources.base import (
    ProvisioningError,
    Resource,
    Spec,
    error_code,
    ignoring,
    projected,
    retrying,
    role_not_ready,
    wait_until,
)
from provisioning.resources.elbv2 import VLLM_PORT
from provisioning.resources.secretsmanager import GatewaySecret, secret_arn

TASK_DEFINITION = "inference/ecs-task-definition.json"

# The alarms a deployment watches (``cloudwatch.ROLLOUT_ALARMS``; named here, as that module
# imports this one): those an environment declares with a limit.
ROLLOUT_ALARM_KEYS = ("cloudwatch.rollout_ttft_alarm", "cloudwatch.rollout_error_rate_alarm")

# vLLM answers /health only once the model is loaded (minutes): until then the load balancer's
# failing health checks must not make ECS replace the task (and the circuit breaker roll back).
HEALTH_CHECK_GRACE_SECONDS = 600


def _no_service_role(exc: ClientError) -> bool:
    # The service-linked role was just made: IAM takes a moment to show it to ECS.
    return error_code(exc) == "ClientException" and "Service Linked Role" in str(exc)


class CapacityProvider(Resource):
    key = "ecs.capacity_provider"
    title = "ECS GPU capacity provider"
    service = "ecs"
    base_name = "CapacityProvider"
    depends_on = ("autoscaling.gpu_group", "iam.ecs_service_linked_role")
    typical_create_seconds = 10  # the account's new service-linked role reaching ECS

    def desired(self) -> dict:
        return {
            "group": self.output("autoscaling.gpu_group")["arn"],
            "managed_scaling": {"status": "ENABLED", "targetCapacity": 100},
            # Without it a scale-in after a rolling deployment may terminate the instance that
            # runs the new task (and its audit spool). Needs the group's scale-in protection.
            "termination_protection": "ENABLED",
        }

    def _found(self) -> dict | None:
        """The provider of this name that is ACTIVE, being deleted or not (updateStatus says:
        https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_CapacityProvider.html)."""
        found = self.client.describe_capacity_providers(capacityProviders=[self.name])
        active = [item for item in found["capacityProviders"] if item["status"] == "ACTIVE"]
        return active[0] if active else None

    def read(self) -> dict | None:
        found = self._found()
        if found is None or found.get("updateStatus", "").startswith("DELETE_"):
            return None  # gone, or going: apply makes it anew once it is gone
        provider = found["autoScalingGroupProvider"]
        scaling = provider.get("managedScaling", {})
        return {
            "arn": found["capacityProviderArn"],
            "group": provider["autoScalingGroupArn"],
            "managed_scaling": {key: scaling.get(key) for key in ("status", "targetCapacity")},
            "termination_protection": provider.get("managedTerminationProtection", "DISABLED"),
        }

    def _settings(self, desired: dict) -> dict:
        return {
            "managedScaling": desired["managed_scaling"],
            "managedTerminationProtection": desired["termination_protection"],
        }

    def create(self, desired: dict) -> None:
        self._wait_deleted()  # a destroy that just ended may still be deleting its namesake
        create = partial(
            self.client.create_capacity_provider,
            name=self.name,
            autoScalingGroupProvider={
                "autoScalingGroupArn": desired["group"],
                **self._settings(desired),
            },
        )
        retrying(
            self.ctx, create, retry_if=_no_service_role, why="ECS does not see its new role yet"
        )

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        if "group" in fields:
            super().update(desired, current, fields)
        self.client.update_capacity_provider(
            name=self.name, autoScalingGroupProvider=self._settings(desired)
        )

    def delete(self, current: dict) -> None:
        self.client.delete_capacity_provider(capacityProvider=self.name)
        # Its Auto Scaling group, deleted next, is in use until the deletion completes.
        self._wait_deleted()

    def _wait_deleted(self) -> None:
        def gone() -> bool:
            found = self._found()
            status = (found or {}).get("updateStatus", "")
            if status == "DELETE_FAILED":
                raise ProvisioningError(
                    "ECS could not delete the capacity provider: "
                    f"{found.get('updateStatusReason', 'no reason given')}"
                )
            return found is None or status == "DELETE_COMPLETE"

        wait_until(
            self.ctx,
            gone,
            what="the capacity provider to be deleted",
            usually="1-2 min",
            timeout_seconds=20 * 60,
        )

    def outputs(self, current: dict) -> dict:
        return {"name": self.name, "arn": current["arn"]}


class Cluster(Resource):
    key = "ecs.cluster"
    title = "ECS cluster"
    service = "ecs"
    base_name = "Cluster"
    depends_on = ("ecs.capacity_provider",)

    def desired(self) -> dict:
        provider = self.output("ecs.capacity_provider")["name"]
        return {
            "container_insights": "enabled",  # the service health alarm reads its metrics
            "capacity_providers": [provider],
            "default_strategy": [{"capacityProvider": provider, "weight": 1, "base": 0}],
        }

    def read(self) -> dict | None:
        found = self.client.describe_clusters(clusters=[self.name], include=["SETTINGS"])
        active = [item for item in found["clusters"] if item["status"] == "ACTIVE"]
        if not active:
            return None
        cluster = active[0]
        current = {
            "arn": cluster["clusterArn"],
            "capacity_providers": cluster.get("capacityProviders", []),
            "default_strategy": cluster.get("defaultCapacityProviderStrategy", []),
        }
        settings = {item["name"]: item["value"] for item in cluster.get("settings", [])}
        if "containerInsights" in settings:
            current["container_insights"] = settings["containerInsights"]
        return current

    def create(self, desired: dict) -> None:
        self.client.create_cluster(
            clusterName=self.name,
            settings=[{"name": "containerInsights", "value": desired["container_insights"]}],
        )

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        if "container_insights" in fields:
            self.client.update_cluster_settings(
                cluster=self.name,
                settings=[{"name": "containerInsights", "value": desired["container_insights"]}],
            )
        if {"capacity_providers", "default_strategy"} & set(fields):
            self.client.put_cluster_capacity_providers(
                cluster=self.name,
                capacityProviders=desired["capacity_providers"],
                defaultCapacityProviderStrategy=desired["default_strategy"],
            )

    def delete(self, current: dict) -> None:
        # A cluster with registered instances cannot be deleted; the instances themselves go
        # with the Auto Scaling group, deleted after the cluster (it depends on them).
        pages = self.client.get_paginator("list_container_instances").paginate(cluster=self.name)
        for page in pages:
            for instance in page["containerInstanceArns"]:
                self.client.deregister_container_instance(
                    cluster=self.name, containerInstance=instance, force=True
                )
        # The capacity provider can only be deleted once no cluster uses it.
        self.client.put_cluster_capacity_providers(
            cluster=self.name, capacityProviders=[], defaultCapacityProviderStrategy=[]
        )
        self.client.delete_cluster(cluster=self.name)

    def outputs(self, current: dict) -> dict:
        return {"name": self.name, "arn": current["arn"]}


class TaskDefinition(Resource):
    """vLLM's task, from ``inference/ecs-task-definition.json``; a change is a new revision."""

    key = "ecs.task_definition"
    title = "ECS task definition"
    service = "ecs"
    base_name = "TaskFamily"
    depends_on = (
        "iam.task_role",
        "iam.execution_role",
        "ecr.repository",
        "logs.service_log_group",
        GatewaySecret.key,
    )

    @classmethod
    def files(cls) -> tuple[str, ...]:
        return (TASK_DEFINITION,)

    def desired(self) -> dict:
        rendered = self.ctx.render_json(TASK_DEFINITION, GatewaySecretArn=secret_arn(self.ctx))
        definition = {**rendered, "family": self.name}
        if aws.is_stand_in():
            definition = _with_hard_memory_limits(definition)
        return {"definition": _canonical(definition)}

    def read(self) -> dict | None:
        found = ignoring(
            lambda: self.client.describe_task_definition(taskDefinition=self.name),
            "ClientException",
        )
        if not found or found["taskDefinition"].get("status") != "ACTIVE":
            return None
        registered = found["taskDefinition"]
        return {
            "arn": registered["taskDefinitionArn"],
            "network_mode": registered.get("networkMode", "bridge"),
            "container": registered["containerDefinitions"][0]["name"],
            "definition": projected(_canonical(registered), self.desired()["definition"]),
        }

    def create(self, desired: dict) -> None:
        self.client.register_task_definition(**desired["definition"])

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        self.create(desired)

    def delete(self, current: dict) -> None:
        pages = self.client.get_paginator("list_task_definitions").paginate(
            familyPrefix=self.name, status="ACTIVE"
        )
        for page in pages:
            for arn in page["taskDefinitionArns"]:
                self.client.deregister_task_definition(taskDefinition=arn)

    def outputs(self, current: dict) -> dict:
        return {
            "family": self.name,
            "arn": current["arn"],
            "network_mode": current["network_mode"],
            "container": current["container"],
        }


def _with_hard_memory_limits(definition: dict) -> dict:
    """The local AWS refuses an EC2 container with only a soft memory limit, which AWS
    accepts: there, the reservation doubles as the limit."""
    containers = [
        {"memory": container["memoryReservation"], **container}
        if "memoryReservation" in container
        else container
        for container in definition.get("containerDefinitions", [])
    ]
    return {**definition, "containerDefinitions": containers}


def _canonical(definition: dict) -> dict:
    """Environment and secrets in name order (ECS does not keep theirs); secrets without a
    source left out (an environment that declares no Hugging Face token has none)."""
    containers = []
    for container in definition.get("containerDefinitions", []):
        container = dict(container)
        if "secrets" in container:
            container["secrets"] = [item for item in container["secrets"] if item["valueFrom"]]
            if not container["secrets"]:
                del container["secrets"]
        for key in ("environment", "secrets"):
            if key in container:
                container[key] = sorted(container[key], key=lambda item: item["name"])
        containers.append(container)
    return {**definition, "containerDefinitions": containers}


def task_count(spec: Spec) -> int:
    """Before its first rollout a real-AWS service runs no task: the image it would pull does
    not exist yet (the rollout builds it). The local stand-in pulls nothing."""
    return spec.desired_count if spec.is_local or spec.live_image_tag else 0


def task_range(spec: Spec) -> tuple[int, int]:
    """The desired counts the service may have: what scaling moves it between, or, before
    the first rollout on real AWS, none (``task_count``)."""
    return (spec.min_tasks, spec.max_tasks) if task_count(spec) else (0, 0)


class Service(Resource):
    """Rolling deployments keep half the tasks serving; one whose tasks fail (the circuit
    breaker) or whose answers are slower or fail more than declared (the deployment alarms)
    rolls itself back."""

    key = "ecs.service"
    title = "ECS service"
    service = "ecs"
    base_name = "Service"
    # A target group takes tasks only once a listener puts it behind the load balancer.
    depends_on = (
        "ecs.cluster",
        "ecs.task_definition",
        "elbv2.target_group",
        "elbv2.listener",
        "ec2.network",
        *ROLLOUT_ALARM_KEYS,
    )

    def desired(self) -> dict:
        return {
            "task_definition": self.output("ecs.task_definition")["arn"],
            "desired_count": task_count(self.spec),
            "health_check_grace_seconds": HEALTH_CHECK_GRACE_SECONDS,
            "deployment": {
                "maximumPercent": 200,
                "minimumHealthyPercent": 50,
                "deploymentCircuitBreaker": {"enable": True, "rollback": True},
                "alarms": self._deployment_alarms(),
            },
        }

    def _deployment_alarms(self) -> dict:
        """The rollout alarms the environment declares, watched with rollback
        (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/deployment-alarm-failure.html);
        none declared: the method is off."""
        names = [self.output(key)["name"] for key in ROLLOUT_ALARM_KEYS if key in self.ctx.outputs]
        return {"alarmNames": names, "enable": bool(names), "rollback": bool(names)}

    def read(self) -> dict | None:
        found = self.client.describe_services(
            cluster=self.ctx.name("Cluster"), services=[self.name]
        )
        active = [item for item in found["services"] if item["status"] == "ACTIVE"]
        if not active:
            return None
        service = active[0]
        current = {"arn": service["serviceArn"], "task_definition": service["taskDefinition"]}
        # Scaling owns the count within min..max: only a count outside them is drift.
        low, high = task_range(self.spec)
        if not low <= service["desiredCount"] <= high:
            current["desired_count"] = service["desiredCount"]
        # The local AWS reports neither of these: no drift to claim then.
        if "healthCheckGracePeriodSeconds" in service:
            current["health_check_grace_seconds"] = service["healthCheckGracePeriodSeconds"]
        if service.get("deploymentConfiguration"):
            current["deployment"] = projected(
                service["deploymentConfiguration"], self.desired()["deployment"]
            )
        return current

    def create(self, desired: dict) -> None:
        task = self.output("ecs.task_definition")
        network = self.output("ec2.network")
        extra = {}
        if task["network_mode"] == "awsvpc":
            extra["networkConfiguration"] = {
                "awsvpcConfiguration": {
                    "subnets": network["subnet_ids"],
                    "securityGroups": [network["security_group"]],
                }
            }
        create = partial(
            self.client.create_service,
            cluster=self.ctx.name("Cluster"),
            serviceName=self.name,
            taskDefinition=desired["task_definition"],
            desiredCount=desired["desired_count"],
            healthCheckGracePeriodSeconds=desired["health_check_grace_seconds"],
            capacityProviderStrategy=[
                {"capacityProvider": self.ctx.name("CapacityProvider"), "weight": 1}
            ],
            deploymentConfiguration=desired["deployment"],
            loadBalancers=[
                {
                    "targetGroupArn": self.output("elbv2.target_group")["arn"],
                    "containerName": task["container"],
                    "containerPort": VLLM_PORT,
                }
            ],
            **extra,
        )
        if not self._gone():
            # A service of this name deleted by a destroy just now: ECS refuses the name
            # ("not idempotent") until it has drained.
            self._wait_drained()
        retrying(self.ctx, create, retry_if=role_not_ready, why="ECS's service role is not ready")

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        # The count is set back only when it is outside min..max: within, it is scaling's.
        count = {"desiredCount": desired["desired_count"]} if "desired_count" in fields else {}
        self.client.update_service(
            cluster=self.ctx.name("Cluster"),
            service=self.name,
            taskDefinition=desired["task_definition"],
            healthCheckGracePeriodSeconds=desired["health_check_grace_seconds"],
            deploymentConfiguration=desired["deployment"],
            **count,
        )

    def delete(self, current: dict) -> None:
        self.client.delete_service(cluster=self.ctx.name("Cluster"), service=self.name, force=True)
        # The cluster cannot be deleted while the service is still draining its tasks.
        self._wait_drained()

    def _wait_drained(self) -> None:
        wait_until(
            self.ctx,
            self._gone,
            what="the service to drain",
            usually="a few minutes, as its tasks stop",
            timeout_seconds=30 * 60,
        )

    def _gone(self) -> bool:
        found = self.client.describe_services(
            cluster=self.ctx.name("Cluster"), services=[self.name]
        )["services"]
        return all(service["status"] == "INACTIVE" for service in found)

    def outputs(self, current: dict) -> dict:
        return {"name": self.name, "arn": current["arn"]}
