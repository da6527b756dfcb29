"""The action log as a download: a time range of it as CSV or JSON lines, streamed. A JSON
line is the record the audit buckets receive (``core.actions.as_record``); the CSV has its
fields as columns, the changes as JSON text."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime

from django import forms
from django.db.models import QuerySet

from core.actions import as_json_line, as_record
from core.models import Action
from core.spreadsheets import csv_lines

FORMATS = {"csv": "text/csv", "jsonl": "application/x-ndjson"}
COLUMNS = tuple(as_record(Action(pk=0, at=datetime.now(UTC))))
_AS_JSON = ("parameters", "before", "after")
LOCAL_TIME = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


class ExportForm(forms.Form):
    """A range of the log, read in the user's timezone (the middleware activates it)."""

    start = forms.DateTimeField(label="From", widget=LOCAL_TIME)
    end = forms.DateTimeField(label="To", widget=LOCAL_TIME)
    format = forms.ChoiceField(choices=[("csv", "CSV"), ("jsonl", "JSON lines")], initial="csv")

    def clean(self) -> dict:
        cleaned = super().clean()
        for name in ("start", "end"):
            moment = cleaned.get(name)
            try:
                if moment is not None:
                    moment.astimezone(UTC)  # what the database is asked in
            except OverflowError:
                self.add_error(name, "This time is too far from today to be a time in UTC.")
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end and start >= end and not self.errors:
            self.add_error("end", "The end must be after the start.")
        return cleaned


def lines(found: QuerySet[Action], kind: str) -> Iterator[str]:
    """``found`` as JSON lines or as CSV with a header, one line at a time."""
    if kind == "jsonl":
        return (as_json_line(action) for action in found.iterator(chunk_size=500))
    rows = (_csv_row(action) for action in found.iterator(chunk_size=500))
    return csv_lines(rows, COLUMNS)


def _csv_row(action: Action) -> dict:
    record = as_record(action)
    for name in _AS_JSON:
        record[name] = "" if record[name] is None else json.dumps(record[name], sort_keys=True)
    return record
