"""The ECS service as real AWS reports it (moto leaves out the grace period and the deployment
configuration, so a Stubber answers here)."""

from provisioning import engine
from provisioning.resources.ecs import HEALTH_CHECK_GRACE_SECONDS, ROLLOUT_ALARM_KEYS, Service

REGION = "ap-east-1"
TASK = f"arn:aws:ecs:{REGION}:123456789012:task-definition/central-llm-service-stub:3"
ALARMS = ("central-llm-rollout-ttft-p95-stub", "central-llm-rollout-5xx-rate-stub")
DEPLOYMENT = {
    "maximumPercent": 200,
    "minimumHealthyPercent": 50,
    "deploymentCircuitBreaker": {"enable": True, "rollback": True},
    # The deployment alarms, as DescribeServices echoes them (API_DeploymentAlarms.html).
    "alarms": {"alarmNames": list(ALARMS), "enable": True, "rollback": True},
}


def test_a_service_without_a_health_check_grace_period_is_drift_and_repaired(stubbed):
    ctx, stubber, _sleeps = stubbed("ecs", REGION)
    ctx.outputs["ecs.task_definition"] = {"arn": TASK}
    for key, name in zip(ROLLOUT_ALARM_KEYS, ALARMS, strict=True):
        ctx.outputs[key] = {"name": name}
    service = Service(ctx)
    described = {
        "serviceArn": f"arn:aws:ecs:{REGION}:123456789012:service/central-llm-service-stub",
        "status": "ACTIVE",
        "taskDefinition": TASK,
        "desiredCount": 1,
        # Set by hand without a grace period: ECS would stop vLLM tasks still loading the model.
        "healthCheckGracePeriodSeconds": 0,
        "deploymentConfiguration": DEPLOYMENT,
    }
    stubber.add_response("describe_services", {"services": [described]})
    stubber.add_response(
        "update_service",
        {},
        {
            "cluster": "central-llm-service-cluster-stub",
            "service": "central-llm-service-stub",
            "taskDefinition": TASK,
            "healthCheckGracePeriodSeconds": HEALTH_CHECK_GRACE_SECONDS,
            "deploymentConfiguration": DEPLOYMENT,
        },
    )

    current = service.read()
    fields = engine.diff(service.desired(), current)
    assert fields == {"health_check_grace_seconds": (0, HEALTH_CHECK_GRACE_SECONDS)}
    service.update(service.desired(), current, list(fields))
