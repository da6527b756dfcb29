"""SNS: the topic every alarm notifies, and the environment's alarm e-mail subscribed to it.

Not encrypted: CloudWatch cannot publish to a topic under the AWS-managed key alias/aws/sns
(its key policy does not admit cloudwatch.amazonaws.com, and cannot be changed), so the
alarms would go nowhere without a word. Encrypting needs a customer-managed key whose policy
admits CloudWatch. The messages hold alarm names, metrics and thresholds, nothing secret.
"""

from provisioning.resources.base import Resource, ignoring

# An unconfirmed subscription's ARN, as ListSubscriptionsByTopic reports it.
PENDING_CONFIRMATION = "PendingConfirmation"


class AlarmTopic(Resource):
    """The e-mail subscription is part of the topic: an address removed from the environment
    is unsubscribed. Subscriptions of other protocols (made by hand) are left alone."""

    key = "sns.alarm_topic"
    title = "SNS topic of the alarms"
    service = "sns"
    base_name = "AlarmTopic"

    @property
    def arn(self) -> str:
        # The declared account where there is one: the environment page asks STS nothing.
        account = self.spec.account_id or self.ctx.account_id
        return f"arn:aws:sns:{self.spec.region}:{account}:{self.name}"

    def desired(self) -> dict:
        return {"emails": [self.spec.alarm_email] if self.spec.alarm_email else []}

    def read(self) -> dict | None:
        if not ignoring(lambda: self.client.get_topic_attributes(TopicArn=self.arn), "NotFound"):
            return None
        pages = self.client.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=self.arn)
        subscriptions = [
            {
                "protocol": item["Protocol"],
                "endpoint": item["Endpoint"],
                "arn": item["SubscriptionArn"],
                "pending": item["SubscriptionArn"] == PENDING_CONFIRMATION,
            }
            for page in pages
            for item in page["Subscriptions"]
        ]
        # An address no longer declared but still unconfirmed cannot be unsubscribed: it gets
        # nothing, and SNS deletes it after 48 hours. It is not drift.
        declared = set(self.desired()["emails"])
        emails = {
            item["endpoint"]
            for item in subscriptions
            if item["protocol"] == "email" and (not item["pending"] or item["endpoint"] in declared)
        }
        return {"emails": sorted(emails), "subscriptions": subscriptions}

    def create(self, desired: dict) -> None:
        self.client.create_topic(Name=self.name)  # the update then subscribes the address

    def update(self, desired: dict, current: dict, fields: list[str]) -> None:
        for email in sorted(set(desired["emails"]) - set(current["emails"])):
            self.client.subscribe(TopicArn=self.arn, Protocol="email", Endpoint=email)
            self.ctx.say(f"AWS e-mails {email} a link to confirm: alarms reach it once confirmed")
        self._unsubscribe(current, keep=desired["emails"])

    def delete(self, current: dict) -> None:
        # Deleting a topic leaves its subscriptions behind for a while: remove them first.
        self._unsubscribe(current, keep=[])
        self.client.delete_topic(TopicArn=self.arn)

    def _unsubscribe(self, current: dict, *, keep: list[str]) -> None:
        """The confirmed e-mail subscriptions not in ``keep`` (a pending one cannot be)."""
        for item in current["subscriptions"]:
            if item["protocol"] == "email" and not item["pending"] and item["endpoint"] not in keep:
                self.client.unsubscribe(SubscriptionArn=item["arn"])

    def outputs(self, current: dict) -> dict:
        return {"name": self.name, "arn": self.arn}
