"""CloudWatch: the service's log group, the three alarms of the guide's section 11, two on
the serving hosts' audit backlog, and the two a rollout's deployment watches (slower first
tokens, more 5xx answers)."""

from typing import ClassVar

from centralllm import serving
from provisioning.resources.base import Resource, Spec, projected
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
    statistic: ClassVar[str]  # "Sum", "Maximum", ... or a percentile: "p95"
    comparison: ClassVar[str]
    period: ClassVar[int] = 300
    evaluation_periods: ClassVar[int] = 1
    datapoints_to_alarm: ClassVar[int | None] = None  # None: every evaluated period
    # No data means nothing ran: not a failure.
    treat_missing_data: ClassVar[str] = "notBreaching"

    @property
    def name(self) -> str:
        return self.alarm_name + self.spec.suffix

    def dimensions(self) -> list[dict]:
        raise NotImplementedError

    def threshold(self) -> int:
        raise NotImplementedError

    def metric_query(self) -> dict:
        """What the alarm evaluates: one metric's statistic (a percentile is an
        ExtendedStatistic); an alarm on metric math returns its ``Metrics`` instead."""
        statistic = "ExtendedStatistic" if self.statistic.startswith("p") else "Statistic"
        return {
            "Namespace": self.namespace,
            "MetricName": self.metric,
            "Dimensions": self.dimensions(),
            statistic: self.statistic,
            "Period": self.period,
        }

    def desired(self) -> dict:
        topic = [self.output(TOPIC)["arn"]]
        desired = {
            **self.metric_query(),
            "EvaluationPeriods": self.evaluation_periods,
            "Threshold": float(self.threshold()),
            "ComparisonOperator": self.comparison,
            "TreatMissingData": self.treat_missing_data,
            # Into alarm and back to OK: whoever was told of a failure hears of its end.
            "ActionsEnabled": True,
            "AlarmActions": topic,
            "OKActions": topic,
        }
        if self.datapoints_to_alarm:
            desired["DatapointsToAlarm"] = self.datapoints_to_alarm
        return desired

    def read(self) -> dict | None:
        found = self.client.describe_alarms(AlarmNames=[self.name])["MetricAlarms"]
        if not found:
            return None
        alarm = found[0]
        # Cut down to what is declared: AWS adds fields to each metric of a math alarm.
        current = {key: projected(alarm.get(key), value) for key, value in self.desired().items()}
        current["arn"] = alarm["AlarmArn"]
        return current

    def create(self, desired: dict) -> None:
        self.update(desired, {}, list(desired))

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        self.client.put_metric_alarm(AlarmName=self.name, **desired)

    def delete(self, current: dict) -> None:
        self.client.delete_alarms(AlarmNames=[self.name])

    def outputs(self, current: dict) -> dict:
        return {"name": self.name, "arn": current["arn"]}


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
        return serving.dimensions(self.spec.name)


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


class RolloutAlarm(ServingHostAlarm):
    """An alarm ECS watches while it deploys and bakes a new revision (``ecs.Service``'s
    deployment alarms, with rollback): a release whose answers are slower, or fail more, than
    the environment allows goes back to the last completed deployment. Declared with a limit
    of 0 it is not made, and not watched.

    One-minute periods, two of three breaching: a slow or failing release is caught within
    about three minutes of traffic reaching it, while one slow minute (a burst of long prompts)
    is not enough. ECS derives the bake time after the deployment from this configuration
    (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/deployment-alarm-failure.html).
    The hosts publish per environment, so while old and new tasks both serve, the figure is
    theirs together: a release that doubles the time to first token shows up once its tasks
    take their share of the traffic."""

    namespace = serving.NAMESPACE
    comparison = "GreaterThanThreshold"
    period = 60
    evaluation_periods = 3
    datapoints_to_alarm = 2
    # No answers in a minute: nothing to judge the release by, not a failure.
    treat_missing_data = "notBreaching"
    # Its declared resource is only a name the service's deployment configuration reads: a
    # plan of an environment made before it still looks the service up.
    blocks_lookups = False
    label: ClassVar[str]  # what it measures, for people: "TTFT p95"
    unit: ClassVar[str]  # of the threshold and values: "ms", "%"
    decimals: ClassVar[int] = 0

    @classmethod
    def limit(cls, spec: Spec) -> int:
        raise NotImplementedError

    @classmethod
    def wanted(cls, spec: Spec) -> bool:
        return cls.limit(spec) > 0

    @classmethod
    def name_in(cls, spec: Spec) -> str:
        return cls.alarm_name + spec.suffix

    def threshold(self) -> int:
        return self.limit(self.spec)

    @classmethod
    def figure(cls, value: float) -> str:
        """``5120.4`` as "5,120 ms": a value or threshold as the rollout page says it."""
        text = f"{value:,.{cls.decimals}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return f"{text} {cls.unit}" if cls.unit == "ms" else f"{text}{cls.unit}"


class RolloutTtftAlarm(RolloutAlarm):
    """The time to first token's p95 over every answer of the environment (the hosts publish
    each answer's time as a value, so CloudWatch computes the percentile)."""

    key = "cloudwatch.rollout_ttft_alarm"
    title = "alarm: time to first token p95 (rollouts)"
    alarm_name = "central-llm-rollout-ttft-p95"
    metric = serving.TIME_TO_FIRST_TOKEN
    statistic = "p95"
    label = "TTFT p95"
    unit = "ms"

    @classmethod
    def limit(cls, spec: Spec) -> int:
        return spec.rollout_ttft_p95_ms


class RolloutErrorRateAlarm(RolloutAlarm):
    """The share of answers that were 5xx, by metric math on the hosts' two counts. Minutes
    with answers but no 5xx reported count as 0% (FILL); minutes without answers have no
    datapoint, which is not breaching: an idle environment is not a failing one."""

    key = "cloudwatch.rollout_error_rate_alarm"
    title = "alarm: 5xx rate (rollouts)"
    alarm_name = "central-llm-rollout-5xx-rate"
    label = "5xx rate"
    unit = "%"
    decimals = 1

    @classmethod
    def limit(cls, spec: Spec) -> int:
        return spec.rollout_error_rate_percent

    def metric_query(self) -> dict:
        return {
            "Metrics": [
                {
                    "Id": "rate",
                    "Expression": "100 * FILL(errors, 0) / responses",
                    "Label": "5xx rate (%)",
                    "ReturnData": True,
                },
                self._total("errors", serving.SERVER_ERRORS),
                self._total("responses", serving.RESPONSES),
            ]
        }

    def _total(self, query_id: str, metric: str) -> dict:
        watched = {"Namespace": self.namespace, "MetricName": metric}
        return {
            "Id": query_id,
            "MetricStat": {
                "Metric": {**watched, "Dimensions": self.dimensions()},
                "Period": self.period,
                "Stat": "Sum",
            },
            "ReturnData": False,
        }


# What a rollout's deployment watches, in the order the rollout page lists them.
ROLLOUT_ALARMS: tuple[type[RolloutAlarm], ...] = (RolloutTtftAlarm, RolloutErrorRateAlarm)
