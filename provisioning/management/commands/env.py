from django.core.management.base import BaseCommand, CommandError, OutputWrapper

from core.refusals import Refused
from provisioning import engine, runs
from provisioning.engine_runs import describe_change
from provisioning.jobs import execute
from provisioning.models import Environment, Run
from provisioning.resources.base import Progress


class PrintedProgress(Progress):
    """Progress as readable lines: one per resource, with what it waits for in between."""

    def __init__(self, stdout: OutputWrapper, style, *, verbosity: int = 1) -> None:
        self.stdout = stdout
        self.style = style
        self.verbosity = verbosity
        self.titles: dict[str, str] = {}

    def started(self, step: str, title: str) -> None:
        self.titles[step] = title

    def message(self, step: str, text: str) -> None:
        self.stdout.write(f"  {self.titles.get(step, step)}: {text}")

    def finished(self, step: str, outcome: str) -> None:
        if outcome == "unchanged" and self.verbosity < 1:
            return  # -v 0: only what changed (`make run` applies at every start)
        style = str if outcome == "unchanged" else self.style.SUCCESS
        self.stdout.write(f"{self.titles[step]}: {style(outcome)}")

    def failed(self, step: str, error: str) -> None:
        self.stdout.write(self.style.ERROR(f"{self.titles[step]}: failed: {error}"))


class Command(BaseCommand):
    help = "Plan, apply, destroy or show the drift of an environment's AWS resources."

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=["plan", "apply", "destroy", "drift"])
        parser.add_argument("name", help="the environment's name, e.g. local or staging")
        parser.add_argument("--confirm", default="", help="destroy: the environment's name")
        parser.add_argument(
            "--delete-data", action="store_true", help="destroy: delete the audit buckets and table"
        )
        parser.add_argument(
            "--confirm-data", default="", help="destroy --delete-data: the confirmation phrase"
        )

    def handle(self, *args, action: str, name: str, **options) -> None:
        try:
            environment = Environment.objects.get(name=name)
        except Environment.DoesNotExist:
            known = ", ".join(Environment.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"No environment named {name!r} (known: {known}).") from None
        parameters = {}
        if action == "destroy":
            parameters = {
                "confirm": options["confirm"],
                "delete_data": options["delete_data"],
                "confirm_data": options["confirm_data"],
            }
            try:
                engine.check_destroy_confirmed(
                    name,
                    options["confirm"],
                    delete_data=options["delete_data"],
                    confirm_data=options["confirm_data"],
                )
            except Refused as exc:
                raise CommandError(
                    f"{exc} Pass it with --confirm (--confirm-data for the data)."
                ) from None
        try:
            # Recorded as a run like any other, so the console's history shows it.
            run = runs.start(environment, action, actor=None, parameters=parameters, enqueue=False)
        except Refused as exc:
            raise CommandError(str(exc)) from None
        progress = PrintedProgress(self.stdout, self.style, verbosity=options["verbosity"])
        execute(run.pk, echo=progress)
        run.refresh_from_db()
        if run.status != Run.Status.SUCCEEDED:
            raise CommandError(f"{action} #{run.pk} {run.status}: {run.explanation}")
        if action in ("plan", "drift"):
            self._print_changes(action, run.result["changes"])
            return
        calls = run.result["calls"]
        self.stdout.write(
            f"{action} of {name} done: {calls.get('mutating', 0)} changing and "
            f"{calls.get('read', 0)} reading AWS calls."
        )

    def _print_changes(self, action: str, changes: list[dict]) -> None:
        pending = [change for change in changes if change["action"] != engine.NONE]
        for change in pending:
            self.stdout.write(describe_change(change))
        if not pending:
            self.stdout.write("No changes: the environment matches its declaration.")
        elif action == "plan":
            self.stdout.write(f"{len(pending)} of {len(changes)} resources to change.")
