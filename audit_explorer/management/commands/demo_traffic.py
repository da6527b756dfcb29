import contextlib
import io

from django.core.management.base import BaseCommand

from audit_explorer import demo


class Command(BaseCommand):
    help = (
        "Load demo traffic through the real audit path (objects in the audit bucket, the ingest "
        "handler): five projects, their users, errors, slow outliers and streaming, spread over "
        "the last days. Loading again adds nothing: the request ids repeat."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--records", type=int, default=2000)
        parser.add_argument("--days", type=int, default=30)

    def handle(self, *args, records: int, days: int, **options) -> None:
        with contextlib.redirect_stdout(io.StringIO()):  # the handler's one log line per record
            loaded = demo.load(records, days=days)
        self.stdout.write(f"loaded {loaded} demo requests over the last {days} days")
