"""CloudWatch: the service's log group, the three alarms of the guide's section 11, and one on
the serving hosts' audit backlog."""

from typing import ClassVar

from provisioning.resources.base import Resource
from provisioning.resources.ecs import task_count

LOG_RETENTION_DAYS = 30
TOPIC = "sns.alarm_topic"


class ServiceLogGroup(Resource):
    key = "logs.service_log_group"
    title = "CloudWatch log group of the service"
    service = "logs"
    base_name = "LogGroup"

    def desired(self) -> dict:
        return {"retention_days": LOG_RETENTION_DAYS}

    def read(self) -> dict | None:
        found = self.client.describe_log_groups(logGroupNamePrefix=self.name)["logGroups"]
        for group in found:
            if group["logGroupName"] == self.name:
                return {"retention_days": group.get("retentionInDays")}
        return None

    def create(self, desired: dict) -> None:
        self.client.create_log_group(logGroupName=self.name)

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        self.client.put_retention_policy(
            logGroupName=self.name, retentionInDays=desired["retention_days"]
        )

    def delete(self, current: dict) -> None:
        self.client.delete_log_group(logGroupName=self.name)

    def outputs(self, current: dict) -> dict:
        return {"name": self.name}


class Alarm(Resource):
    """A metric alarm; PutMetricAlarm replaces the whole alarm, so create and update are one."""

    service = "cloudwatch"
    alarm_name: ClassVar[str]
    namespace: ClassVar[str]
    metric: ClassVar[str]
    statistic: ClassVar[str]
    comparison: ClassVar[str]

    @property
    def name(self) -> str:
        return self.alarm_name + self.spec.suffix

    def dimensions(self) -> list[dict]:
        raise NotImplementedError

    def threshold(self) -> int:
        raise NotImplementedError

    def desired(self) -> dict:
        topic = [self.output(TOPIC)["arn"]]
        return {
            "Namespace": self.namespace,
            "MetricName": self.metric,
            "Dimensions": self.dimensions(),
            "Statistic": self.statistic,
            "Period": 300,
            "EvaluationPeriods": 1,
            "Threshold": float(self.threshold()),
            "ComparisonOperator": self.comparison,
            # No data means nothing ran: not a failure.
            "TreatMissingData": "notBreaching",
            # Into alarm and back to OK: whoever was told of a failure hears of its end.
            "ActionsEnabled": True,
            "AlarmActions": topic,
            "OKActions": topic,
        }

    def read(self) -> dict | None:
        found = self.client.describe_alarms(AlarmNames=[self.name])["MetricAlarms"]
        if not found:
            return None
        alarm = found[0]
        current = {key: alarm.get(key) for key in self.desired()}
        current["arn"] = alarm["AlarmArn"]
        return current

    def create(self, desired: dict) -> None:
        self.update(desired, {}, list(desired))

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        self.client.put_metric_alarm(AlarmName=self.name, **desired)

    def delete(self, current: dict) -> None:
        self.client.delete_alarms(AlarmNames=[self.name])


class ServiceHealthAlarm(Alarm):
    key = "cloudwatch.service_alarm"
    title = "alarm: ECS service running tasks"
    alarm_name = "central-llm-service-running-tasks"
    depends_on = ("ecs.service", TOPIC)
    namespace = "ECS/ContainerInsights"
    metric = "RunningTaskCount"
    statistic = "Minimum"
    comparison = "LessThanThreshold"

    def dimensions(self) -> list[dict]:
        return [
            {"Name": "ClusterName", "Value": self.ctx.name("Cluster")},
            {"Name": "ServiceName", "Value": self.ctx.name("Service")},
        ]

    def threshold(self) -> int:
        return self.spec.alarm_min_running_tasks

    def desired(self) -> dict:
        if not task_count(self.spec):
            # Before the first rollout no task runs by design: an alarm now would page
            # people, and show the environment unhealthy, from the day it is created. The
            # rollout that goes live brings it into force (jobs._rollout).
            return {**super().desired(), "ActionsEnabled": False}
        # Missing data here means no task reports at all: that is the failure to alarm on.
        return {**super().desired(), "TreatMissingData": "breaching"}


class LambdaErrorsAlarm(Alarm):
    key = "cloudwatch.lambda_alarm"
    title = "alarm: audit ingest Lambda errors"
    alarm_name = "llm-audit-ingest-errors"
    depends_on = ("lambda.function", TOPIC)
    namespace = "AWS/Lambda"
    metric = "Errors"
    statistic = "Sum"
    comparison = "GreaterThanOrEqualToThreshold"

    def dimensions(self) -> list[dict]:
        return [{"Name": "FunctionName", "Value": self.ctx.name("LambdaFunction")}]

    def threshold(self) -> int:
        return self.spec.alarm_lambda_errors


class DlqDepthAlarm(Alarm):
    key = "cloudwatch.dlq_alarm"
    title = "alarm: audit dead-letter queue depth"
    alarm_name = "llm-audit-dlq-depth"
    depends_on = ("sqs.dlq", TOPIC)
    namespace = "AWS/SQS"
    metric = "ApproximateNumberOfMessagesVisible"
    statistic = "Maximum"
    comparison = "GreaterThanOrEqualToThreshold"

    def dimensions(self) -> list[dict]:
        return [{"Name": "QueueName", "Value": self.ctx.name("DlqName")}]

    def threshold(self) -> int:
        return self.spec.alarm_dlq_messages


class ServingHostAlarm(Alarm):
    """An alarm on a figure the serving hosts' uploader reports as an embedded-metric log line
    (inference/README.md), per environment."""

    depends_on = ("logs.service_log_group", TOPIC)
    namespace = "CentralLLM/Audit"
    comparison = "GreaterThanOrEqualToThreshold"

    def dimensions(self) -> list[dict]:
        return [{"Name": "Environment", "Value": self.spec.name}]


class AuditBacklogAlarm(ServingHostAlarm):
    """The oldest audit record still waiting on a serving host: records that do not leave
    (S3 unreachable, a stuck uploader) alarm long before the spool disk fills."""

    key = "cloudwatch.audit_backlog_alarm"
    title = "alarm: audit records waiting on the serving hosts"
    alarm_name = "llm-audit-spool-backlog"
    metric = "SpoolOldestUnsentSeconds"
    statistic = "Maximum"

    def threshold(self) -> int:
        return self.spec.alarm_spool_oldest_seconds


class AuditQuarantineAlarm(ServingHostAlarm):
    """Audit records a serving host set aside because they could not be built or encoded
    (the uploader's quarantine): each is a request the trail lacks until an operator looks at
    its reason."""

    key = "cloudwatch.audit_quarantine_alarm"
    title = "alarm: audit records quarantined on the serving hosts"
    alarm_name = "llm-audit-quarantine"
    metric = "QuarantinedRecords"
    statistic = "Sum"

    def threshold(self) -> int:
        return 1
