import io
import re

import pytest

from devtools import logs, services

RQ_INFO = (
    "2026-12-05 06:33:21,541 INFO rq.worker Worker 9f: default: provisioning.runs.reap_all() (0a)"
)
TRACEBACK = """\
Traceback (most recent call last):
  File "/app/manage.py", line 22, in <module>
    main()
KeyError: 'x'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/app/manage.py", line 24, in <module>
    raise RuntimeError("the table is missing")
RuntimeError: the table is missing
"""


def _write(name: str, text: str) -> None:
    with open(services.log_of(name), "a") as log:
        log.write(text)


@pytest.fixture(autouse=True)
def _logs_in(tmp_path, monkeypatch):
    monkeypatch.setattr(services, "LOGS", tmp_path)


def test_the_terminal_shows_warnings_errors_and_exceptions_and_not_the_info_lines(tmp_path):
    name, demo = "worker", "demo"
    _write(name, "2026-12-05 06:00:00,000 ERROR from an earlier run\n")
    out = io.StringIO()
    terminal = logs.Terminal(out)
    terminal.follow(name)
    terminal.follow(demo, also=re.compile(r"^Demo traffic"))
    _write(name, f"{RQ_INFO}\n" * 3)
    _write(name, "\x1b[31m\x1b[1mWARNING: This is a development server. Do not use it\x1b[0m\n")
    _write(name, "2026-12-05 06:33:22,000 WARNING django.request Not Found: /x\n")
    _write(name, "\x1b[31m2026-12-05 06:33:23,000 ERROR console.cron the key check failed\x1b[0m\n")
    _write(name, TRACEBACK)
    _write(demo, "2026-12-05 06:33:24,000 INFO axes.apps AXES: BEGIN\n")
    _write(demo, "Demo traffic for local: 40% (800 of 2,000)\n")
    _write(name, "a line not finished yet")
    terminal.show()
    shown = out.getvalue().splitlines()

    log = tmp_path / "worker.log"
    assert shown == [
        f"{name}: 2026-12-05 06:33:22,000 WARNING django.request Not Found: /x",
        f"{name}: 2026-12-05 06:33:23,000 ERROR console.cron the key check failed",
        f"{name}: KeyError: 'x'  (traceback in {log})",
        f"{name}: RuntimeError: the table is missing  (traceback in {log})",
        "Demo traffic for local: 40% (800 of 2,000)",
    ]


def test_a_line_written_in_two_parts_is_shown_once_whole():
    name = "cron"
    out = io.StringIO()
    terminal = logs.Terminal(out)
    terminal.follow(name)
    _write(name, "2026-12-05 06:33:23,000 ERR")
    terminal.show()
    assert out.getvalue() == ""
    _write(name, "OR half and half\n")
    terminal.show()
    assert out.getvalue() == f"{name}: 2026-12-05 06:33:23,000 ERROR half and half\n"
