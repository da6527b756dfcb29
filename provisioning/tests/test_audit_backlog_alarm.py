"""The alarm on the serving hosts' audit backlog watches the metric the uploader reports."""

from provisioning.models import Environment
from provisioning.resources.base import Context
from provisioning.resources.cloudwatch import AuditBacklogAlarm, AuditQuarantineAlarm


def test_the_alarm_and_the_task_agree_on_the_metric_and_its_environment():
    spec = Environment(name="backlog", suffix="-bl", is_local=True).spec()
    ctx = Context(spec)
    try:
        ctx.outputs["sns.alarm_topic"] = {"arn": "arn:aws:sns:eu-central-1:123456789012:alarms"}
        alarm = AuditBacklogAlarm(ctx).desired()
        task = ctx.render_json("inference/ecs-task-definition.json")
    finally:
        ctx.close()
    assert (alarm["Namespace"], alarm["MetricName"]) == (
        "CentralLLM/Audit",
        "SpoolOldestUnsentSeconds",
    )
    assert alarm["Dimensions"] == [{"Name": "Environment", "Value": "backlog"}]
    assert alarm["Threshold"] == 300.0 and alarm["ComparisonOperator"].startswith("GreaterThan")
    environment = {
        variable["name"]: variable["value"]
        for variable in task["containerDefinitions"][0]["environment"]
    }
    assert environment["AUDIT_ENVIRONMENT"] == "backlog"  # the dimension the uploader sets


def test_a_quarantined_record_alarms_on_the_metric_the_uploader_reports():
    spec = Environment(name="backlog", suffix="-bl", is_local=True).spec()
    ctx = Context(spec)
    ctx.outputs["sns.alarm_topic"] = {"arn": "arn:aws:sns:eu-central-1:123456789012:alarms"}
    alarm = AuditQuarantineAlarm(ctx).desired()
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == (
        "CentralLLM/Audit",
        "QuarantinedRecords",  # inference.uploader's EMF line
        "Sum",
    )
    assert alarm["Dimensions"] == [{"Name": "Environment", "Value": "backlog"}]
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (
        1.0,
        "GreaterThanOrEqualToThreshold",
    )
