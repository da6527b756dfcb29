import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from centralllm import aws
from llm_audit_ingest.local import consume, queue_name


class Command(BaseCommand):
    help = (
        "Local mode only: deliver the audit bucket's S3 events from the local ingest queue to "
        "the llm-audit-ingest handler, as Lambda does in AWS. Runs until SIGTERM or Ctrl-C."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true", help="deliver what is queued, then exit")

    def handle(self, *args, once: bool, **options) -> None:
        if not aws.endpoint_url():
            raise CommandError("AWS_ENDPOINT_URL is not set: in AWS the Lambda ingests events")
        stop = threading.Event()
        # Finish the event in hand, then stop: an interrupted delivery would be redelivered.
        previous = {
            signum: signal.signal(signum, lambda *_: stop.set())
            for signum in (signal.SIGTERM, signal.SIGINT)
        }
        self.stdout.write(f"consuming audit events from {queue_name()}")
        try:
            handled = consume(stop=stop, once=once)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        self.stdout.write(f"handled {handled} audit events")
