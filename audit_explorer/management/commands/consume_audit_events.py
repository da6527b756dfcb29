import logging
import os
import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from centralllm import aws
from llm_audit_ingest.local import consume, queue_name
from provisioning.models import Environment
from provisioning.resources.base import Context
from provisioning.resources.lambda_ import handler_environment

log = logging.getLogger(__name__)
QUEUE_POLL_SECONDS = 5


class Command(BaseCommand):
    help = (
        "Local mode only: deliver the audit bucket's S3 events from the local ingest queue to "
        "the llm-audit-ingest handler, as Lambda does in AWS. Runs until SIGTERM or Ctrl-C."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="deliver what is queued, then exit")
        parser.add_argument(
            "--environment",
            help="ingest with this environment's settings, as its Lambda would (its table,"
            " redaction rules, retention)",
        )

    def handle(self, *args, once: bool, environment: str | None, **options) -> None:
        if not aws.endpoint_url():
            raise CommandError("AWS_ENDPOINT_URL is not set: in AWS the Lambda ingests events")
        if environment:
            found = Environment.objects.filter(name=environment).first()
            if found is None:
                raise CommandError(f"There is no environment {environment!r}.")
            os.environ.update(handler_environment(Context(found.spec())))
        stop = threading.Event()
        # Finish the event in hand, then stop: an interrupted delivery would be redelivered.
        previous = {
            signum: signal.signal(signum, lambda *_: stop.set())
            for signum in (signal.SIGTERM, signal.SIGINT)
        }
        self.stdout.write(f"consuming audit events from {queue_name()}")
        try:
            handled = consume_while_queue_exists(stop, once=once)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        self.stdout.write(f"handled {handled} audit events")


def consume_while_queue_exists(stop: threading.Event, *, once: bool = False) -> int:
    """``consume``, and when the ingest queue is deleted under it (a destroy of the local
    environment) a warning and a wait until an apply makes it again, rather than an exit
    that would stop `make run`. Returns how many events were handled since the last wait."""
    sqs = aws.client("sqs")
    while True:
        try:
            return consume(stop=stop, once=once)
        except sqs.exceptions.QueueDoesNotExist:
            if once:
                raise
        log.warning(
            "The ingest queue %s is gone (the environment destroyed?): waiting for an apply "
            "to make it again",
            queue_name(),
        )
        while not stop.wait(QUEUE_POLL_SECONDS):
            try:
                sqs.get_queue_url(QueueName=queue_name())
                break
            except sqs.exceptions.QueueDoesNotExist:
                continue
        if stop.is_set():
            return 0
