"""The internal Network Load Balancer in front of vLLM (API Gateway reaches it by VPC link)."""

from provisioning.resources.base import ProvisioningError, Resource, ignoring, wait_until

VLLM_PORT = 8000
LISTENER_PORT = 80
# An NLB node sends only to targets in its own zone unless cross-zone load balancing is on: with
# one task in one of the subnets, the VPC link's traffic through the other zone's node would
# find no target. On, at the price of cross-zone data transfer.
# https://docs.aws.amazon.com/elasticloadbalancing/latest/network/network-load-balancers.html#cross-zone-load-balancing
CROSS_ZONE = "load_balancing.cross_zone.enabled"


class LoadBalancer(Resource):
    key = "elbv2.load_balancer"
    title = "Network Load Balancer"
    service = "elbv2"
    base_name = "LoadBalancer"
    depends_on = ("ec2.network",)
    typical_create_seconds = 180  # "provisioning", then "active": 2-4 min

    def desired(self) -> dict:
        return {
            "type": "network",
            "scheme": "internal",
            "subnets": sorted(self.output("ec2.network")["subnet_ids"]),
            "cross_zone": "true",
            # A new NLB is "provisioning" for minutes, and a VPC link made against it then ends
            # FAILED: the load balancer is ready only once active.
            "state": "active",
        }

    def read(self) -> dict | None:
        found = ignoring(
            lambda: self.client.describe_load_balancers(Names=[self.name]),
            "LoadBalancerNotFound",
        )
        if not found:
            return None
        balancer = found["LoadBalancers"][0]
        attributes = self.client.describe_load_balancer_attributes(
            LoadBalancerArn=balancer["LoadBalancerArn"]
        )["Attributes"]
        return {
            "arn": balancer["LoadBalancerArn"],
            "dns": balancer["DNSName"],
            "type": balancer["Type"],
            "scheme": balancer["Scheme"],
            "subnets": sorted(zone["SubnetId"] for zone in balancer["AvailabilityZones"]),
            "cross_zone": next(
                (item["Value"] for item in attributes if item["Key"] == CROSS_ZONE), "false"
            ),
            "state": balancer.get("State", {}).get("Code", "active"),
        }

    def create(self, desired: dict) -> None:
        self.client.create_load_balancer(
            Name=self.name,
            Type=desired["type"],
            Scheme=desired["scheme"],
            Subnets=desired["subnets"],
        )

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        if set(fields) - {"subnets", "cross_zone", "state"}:
            super().update(desired, current, fields)
        arn = current["arn"]
        if "subnets" in fields:
            self.client.set_subnets(LoadBalancerArn=arn, Subnets=desired["subnets"])
        if "cross_zone" in fields:
            self.client.modify_load_balancer_attributes(
                LoadBalancerArn=arn, Attributes=[{"Key": CROSS_ZONE, "Value": "true"}]
            )
        wait_until(
            self.ctx,
            lambda: self._active(arn),
            what="the NLB to become active",
            usually="2-4 min",
            timeout_seconds=20 * 60,
        )

    def _active(self, arn: str) -> bool:
        [balancer] = self.client.describe_load_balancers(LoadBalancerArns=[arn])["LoadBalancers"]
        state = balancer.get("State", {})
        if state.get("Code") == "failed":
            raise ProvisioningError(
                f"the NLB failed to provision ({state.get('Reason', 'no reason given')}): "
                "delete it, then apply"
            )
        return state.get("Code") == "active"

    def delete(self, current: dict) -> None:
        self.client.delete_load_balancer(LoadBalancerArn=current["arn"])

    def outputs(self, current: dict) -> dict:
        return {"name": self.name, "arn": current["arn"], "dns": current["dns"]}


class TargetGroup(Resource):
    """vLLM's port on each task; healthy when vLLM answers /health."""

    key = "elbv2.target_group"
    title = "NLB target group"
    service = "elbv2"
    base_name = "TargetGroup"
    depends_on = ("ec2.network", "ecs.task_definition")

    def desired(self) -> dict:
        awsvpc = self.output("ecs.task_definition")["network_mode"] == "awsvpc"
        return {
            "protocol": "TCP",
            "port": VLLM_PORT,
            "target_type": "ip" if awsvpc else "instance",
            "health_check": {"protocol": "HTTP", "path": "/health", "port": "traffic-port"},
        }

    def read(self) -> dict | None:
        found = ignoring(
            lambda: self.client.describe_target_groups(Names=[self.name]), "TargetGroupNotFound"
        )
        if not found:
            return None
        group = found["TargetGroups"][0]
        return {
            "arn": group["TargetGroupArn"],
            "protocol": group["Protocol"],
            "port": group["Port"],
            "target_type": group["TargetType"],
            "health_check": {
                "protocol": group.get("HealthCheckProtocol"),
                "path": group.get("HealthCheckPath"),
                "port": group.get("HealthCheckPort"),
            },
        }

    def create(self, desired: dict) -> None:
        self.client.create_target_group(
            Name=self.name,
            Protocol=desired["protocol"],
            Port=desired["port"],
            VpcId=self.output("ec2.network")["vpc_id"],
            TargetType=desired["target_type"],
            **self._health_check(desired),
        )

    def _health_check(self, desired: dict) -> dict:
        check = desired["health_check"]
        return {
            "HealthCheckProtocol": check["protocol"],
            "HealthCheckPath": check["path"],
            "HealthCheckPort": check["port"],
        }

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        if set(fields) - {"health_check"}:
            super().update(desired, current, fields)
        self.client.modify_target_group(
            TargetGroupArn=current["arn"], **self._health_check(desired)
        )

    def delete(self, current: dict) -> None:
        self.client.delete_target_group(TargetGroupArn=current["arn"])

    def outputs(self, current: dict) -> dict:
        return {"name": self.name, "arn": current["arn"]}


class Listener(Resource):
    key = "elbv2.listener"
    title = "NLB listener"
    service = "elbv2"
    depends_on = ("elbv2.load_balancer", "elbv2.target_group")

    def desired(self) -> dict:
        return {"protocol": "TCP", "target_group": self.output("elbv2.target_group")["arn"]}

    def read(self) -> dict | None:
        balancer = self.output("elbv2.load_balancer")["arn"]
        for listener in self.client.describe_listeners(LoadBalancerArn=balancer)["Listeners"]:
            if listener["Port"] == LISTENER_PORT:
                return {
                    "arn": listener["ListenerArn"],
                    "protocol": listener["Protocol"],
                    "target_group": listener["DefaultActions"][0].get("TargetGroupArn"),
                }
        return None

    def _forward(self, desired: dict) -> list[dict]:
        return [{"Type": "forward", "TargetGroupArn": desired["target_group"]}]

    def create(self, desired: dict) -> None:
        self.client.create_listener(
            LoadBalancerArn=self.output("elbv2.load_balancer")["arn"],
            Protocol=desired["protocol"],
            Port=LISTENER_PORT,
            DefaultActions=self._forward(desired),
        )

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        self.client.modify_listener(
            ListenerArn=current["arn"],
            Protocol=desired["protocol"],
            DefaultActions=self._forward(desired),
        )

    def delete(self, current: dict) -> None:
        self.client.delete_listener(ListenerArn=current["arn"])
