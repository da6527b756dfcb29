import os
import signal
import sys

import django_rq
from django.core.management.base import BaseCommand, CommandError

from api_access import api_keys
from audit_explorer import dead_letters, demo
from core.refusals import Refused
from provisioning.models import Environment
from provisioning.resources.base import Context


class Command(BaseCommand):
    help = (
        "Load demo traffic into an environment through the real audit path (objects in the "
        "audit bucket, the ingest handler): five projects with their users and API keys, "
        "errors, slow outliers and streaming, over the last days and the last hour. Running "
        "it again finishes a load cut short and adds nothing twice; --new adds another load."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--records", type=int, default=int(os.environ.get("DEMO_RECORDS") or 2000)
        )
        parser.add_argument("--days", type=int, default=30)
        parser.add_argument("--environment", default="local")
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="only into an empty audit table, or the rest of a load cut short (make run)",
        )
        parser.add_argument(
            "--new", action="store_true", help="another load, drawn now, beside the last one"
        )

    def handle(
        self, *args, records: int, days: int, environment: str, if_empty: bool, new: bool, **_
    ) -> None:
        found = Environment.objects.filter(name=environment).first()
        if found is None:
            raise CommandError(f"There is no environment {environment!r}.")
        if records < 1 or days < 1:
            raise CommandError("--records and --days are at least 1.")
        say = f"Demo traffic for {found.name}:"
        connection = django_rq.get_connection("default")
        last = demo.progress(connection, found.name)
        if last and last.state == "loading":
            raise CommandError(
                f"{say} a load is running ({last.done:,} of {last.records:,}); see the Audit page"
            )
        if if_empty and last and not last.finished:
            load = last  # cut short (make run stopped): the rest of the same records
        elif if_empty and not demo.table_is_empty(**found.audit_table()):
            self.stdout.write(f"{say} none loaded, the audit table holds records already")
            return
        elif last and not new and not if_empty and last.same_as(records, days):
            load = last
        else:
            load = demo.begin(
                connection, found.name, records=records, days=days, key_ids=self._keys(found)
            )
        if load.finished:
            self.stdout.write(
                f"{say} these {load.records:,} requests were loaded on {load.finished:%Y-%m-%d}; "
                "--new loads another set, drawn now"
            )
            return
        if load.done:
            self.stdout.write(f"{say} loading the rest, from {load.done:,} of {load.records:,}")
        else:
            self.stdout.write(
                f"{say} loading {load.records:,} requests over the last {load.days} days"
            )
        # Stopped (make run's Ctrl-C): the progress says so at once, and the next run resumes.
        previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        try:
            with dead_letters.handler_settings(Context(found.spec())):  # as its Lambda ingests
                demo.run(
                    connection,
                    load,
                    bucket=found.resource_name("AuditBucket"),
                    report=lambda done, total: self.stdout.write(
                        f"{say} {done * 100 // total}% ({done:,} of {total:,})"
                    ),
                )
        finally:
            signal.signal(signal.SIGTERM, previous)
        self.stdout.write(f"{say} loaded {load.records:,} requests over the last {load.days} days")

    def _keys(self, environment: Environment) -> dict[str, str]:
        """The demo projects' API keys on the environment's plan, made where missing."""
        try:
            return api_keys.keys_for_projects(
                environment, demo.projects(), owner="demo", actor=None
            )
        except Refused as exc:
            self.stdout.write(f"The requests name made-up API keys: {exc}")
            return {}
