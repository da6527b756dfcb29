"""What of the processes' logs `make run` shows in its terminal: warnings and errors.

Every process writes its whole output to var/log/<name>.log (``services.log_of``); this follows
those files from where they ended when it started and prints the lines that need someone,
prefixed with the process's name. A traceback is shown as its exception line with a pointer
to the log, so the terminal stays readable and the log keeps the frames.
"""

import re
import sys
import threading
from pathlib import Path
from typing import TextIO

from devtools import services

# A logging record at WARNING or worse (`2026-12-05 06:33:01,530 WARNING name message`), or a
# program's own `WARNING: ...`.
NEEDS_SOMEONE = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b")
# Warnings each start prints that ask nothing of a developer (the log keeps them).
ROUTINE = (
    "This is a development server",  # the banner of moto's server (werkzeug) and runserver
    "Memory overcommit must be enabled",  # Redis's advice for production hosts
    "Not Found: /favicon.ico",  # browsers ask for it on every new page
)
COLOURS = re.compile(r"\x1b\[[0-9;]*m")
TRACEBACK = "Traceback (most recent call last):"
CHAINED = ("During handling of the above exception", "The above exception was the direct cause")


class LogTail:
    """The lines added to a log file since the last call, from where it ended at the start
    (a line still being written waits for its end)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0
        self.partial = b""

    def new_lines(self) -> list[str]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            data = self.partial + log.read()
        self.offset += len(data) - len(self.partial)
        *lines, self.partial = data.split(b"\n")
        return [COLOURS.sub("", line.decode(errors="replace")).rstrip() for line in lines]


class _Followed(LogTail):
    def __init__(self, name: str, path: Path, also: re.Pattern | None) -> None:
        super().__init__(path)
        self.name = name
        self.also = also
        self.in_traceback = False

    def shown(self, line: str) -> str | None:
        """What the terminal shows of ``line`` (None: nothing)."""
        if line.startswith(TRACEBACK):
            self.in_traceback = True
            return None
        if self.in_traceback:
            if not line or line[0].isspace() or line.startswith(CHAINED):
                return None  # a frame, or what joins chained exceptions
            self.in_traceback = False
            return f"{self.name}: {line}  (traceback in {_relative(self.path)})"
        if self.also and self.also.search(line):
            return line
        if NEEDS_SOMEONE.search(line) and not any(routine in line for routine in ROUTINE):
            return f"{self.name}: {line}"
        return None


def _relative(path: Path) -> str:
    return str(path.relative_to(services.ROOT)) if path.is_relative_to(services.ROOT) else str(path)


class Terminal:
    """Follows the logs of named processes and prints what needs someone, every ``interval``
    seconds in a thread of its own (``start``) or on demand (``show``)."""

    def __init__(self, out: TextIO = sys.stdout, interval: float = 0.3) -> None:
        self.out = out
        self.interval = interval
        self.followed: list[_Followed] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def follow(self, name: str, also: re.Pattern | None = None) -> None:
        """Follow ``name``'s log from its current end (what earlier runs wrote stays there);
        lines that match ``also`` are the process's own lines for the terminal, shown as
        they are."""
        with self.lock:
            self.followed.append(_Followed(name, services.log_of(name), also))

    def show(self) -> None:
        with self.lock:
            for followed in self.followed:
                for line in followed.new_lines():
                    shown = followed.shown(line)
                    if shown is not None:
                        print(shown, file=self.out, flush=True)

    def start(self) -> "Terminal":
        threading.Thread(target=self._run, name="terminal", daemon=True).start()
        return self

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.show()

    def stop(self) -> None:
        self.stopped.set()
        self.show()
