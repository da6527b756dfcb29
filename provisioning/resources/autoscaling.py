"""The Auto Scaling group of GPU instances behind the ECS capacity provider."""

from provisioning.resources.base import Resource, retrying, role_not_ready, wait_until

# The group's own metrics the environment page charts (instances in service over time):
# Auto Scaling sends them to CloudWatch only once collection is enabled, at one minute.
# https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-metrics.html
GROUP_METRICS = ["GroupDesiredCapacity", "GroupInServiceInstances"]


class GpuGroup(Resource):
    key = "autoscaling.gpu_group"
    title = "GPU Auto Scaling group"
    service = "autoscaling"
    base_name = "AutoScalingGroup"
    depends_on = ("ec2.launch_template", "ec2.network")

    def desired(self) -> dict:
        # Room for a rolling deployment at 200% of the most tasks scaling may run; the
        # capacity provider sets the desired size.
        return {
            "launch_template": self.output("ec2.launch_template")["name"],
            "min_size": 0,
            "max_size": 2 * self.spec.max_tasks,
            "subnets": sorted(self.output("ec2.network")["subnet_ids"]),
            # The capacity provider's managed termination protection needs it: ECS then lifts
            # the protection of instances without tasks, and the group scales in only those.
            "protect_new_instances": True,
            "metrics": GROUP_METRICS,
        }

    def read(self) -> dict | None:
        found = self.client.describe_auto_scaling_groups(AutoScalingGroupNames=[self.name])
        groups = [group for group in found["AutoScalingGroups"] if not group.get("Status")]
        if not groups:
            return None  # absent, or being deleted
        group = groups[0]
        return {
            "arn": group["AutoScalingGroupARN"],
            "launch_template": group.get("LaunchTemplate", {}).get("LaunchTemplateName"),
            "min_size": group["MinSize"],
            "max_size": group["MaxSize"],
            "subnets": sorted(filter(None, group.get("VPCZoneIdentifier", "").split(","))),
            "protect_new_instances": group.get("NewInstancesProtectedFromScaleIn", False),
            # Others enabled beside ours are no drift.
            "metrics": [
                name
                for name in GROUP_METRICS
                if name in {item["Metric"] for item in group.get("EnabledMetrics", [])}
            ],
            "unprotected": sorted(
                instance["InstanceId"]
                for instance in group.get("Instances", [])
                if not instance.get("ProtectedFromScaleIn")
            ),
        }

    def _settings(self, desired: dict) -> dict:
        return {
            "AutoScalingGroupName": self.name,
            "LaunchTemplate": {
                "LaunchTemplateName": desired["launch_template"],
                "Version": "$Latest",
            },
            "MinSize": desired["min_size"],
            "MaxSize": desired["max_size"],
            "VPCZoneIdentifier": ",".join(desired["subnets"]),
            "NewInstancesProtectedFromScaleIn": desired["protect_new_instances"],
        }

    def create(self, desired: dict) -> None:
        if not self._gone():
            self._wait_gone()  # a group of this name still being deleted keeps its name
        retrying(
            self.ctx,
            lambda: self.client.create_auto_scaling_group(
                **self._settings(desired), DesiredCapacity=0
            ),
            retry_if=role_not_ready,
            why="the new instance profile is not usable yet",
        )
        # From the first hour: the costs app prices the group's instance-hours from them.
        self._collect_metrics(desired)

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        self.client.update_auto_scaling_group(**self._settings(desired))
        if "protect_new_instances" in fields and desired["protect_new_instances"]:
            # The setting covers only instances launched from now on; ECS wants every instance
            # protected (it unprotects the idle ones itself). At most 50 ids per call.
            ids = current["unprotected"]
            for start in range(0, len(ids), 50):
                self.client.set_instance_protection(
                    AutoScalingGroupName=self.name,
                    InstanceIds=ids[start : start + 50],
                    ProtectedFromScaleIn=True,
                )

        if "metrics" in fields:
            self._collect_metrics(desired)

    def _collect_metrics(self, desired: dict) -> None:
        self.client.enable_metrics_collection(
            AutoScalingGroupName=self.name, Metrics=desired["metrics"], Granularity="1Minute"
        )

    def delete(self, current: dict) -> None:
        self.client.delete_auto_scaling_group(AutoScalingGroupName=self.name, ForceDelete=True)
        # Its instances terminate first; the launch template and profile go after them.
        self._wait_gone()

    def _wait_gone(self) -> None:
        wait_until(
            self.ctx,
            self._gone,
            what="the GPU instances to terminate",
            usually="a few minutes",
            timeout_seconds=30 * 60,
        )

    def _gone(self) -> bool:
        found = self.client.describe_auto_scaling_groups(AutoScalingGroupNames=[self.name])
        return not found["AutoScalingGroups"]

    def outputs(self, current: dict) -> dict:
        return {"name": self.name, "arn": current["arn"]}
