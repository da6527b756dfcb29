"""What a CSV hands to a spreadsheet, made safe to open."""

import csv
import io
from collections.abc import Iterable, Iterator, Sequence

# A spreadsheet runs a cell starting with one of these as a formula (=HYPERLINK(...) in a
# prompt or a user name, typed by any caller): quoted, it stays text (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert(value: object) -> object:
    """``value``, quoted if a spreadsheet would run it as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_lines(rows: Iterable[dict], columns: Sequence[str]) -> Iterator[str]:
    """The rows as CSV with a header, a line at a time (for a streamed download), every cell a
    spreadsheet would run made inert."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({name: inert(value) for name, value in row.items()})
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()
