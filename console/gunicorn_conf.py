"""gunicorn's settings for the console (``gunicorn console.wsgi -c python:console.gunicorn_conf``):
every worker writes its request metrics into one directory, so that a scrape of /metrics,
answered by any one worker, counts all of them (prometheus_client's multiprocess mode).

The directory is ``PROMETHEUS_MULTIPROC_DIR`` (by default one under the system's temporary
directory), emptied at each start: an earlier run's files would count their requests again.
Only the web server's processes get it, not the RQ workers that run from the same image.
"""

import os
import shutil
import tempfile
from pathlib import Path

# Set before the app, and so prometheus_client, is imported: it picks its mode on import.
METRICS_DIR = Path(
    os.environ.setdefault(
        "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), "console-metrics")
    )
)

# --preload loads the app, and makes its metrics' files, before on_starting.
METRICS_DIR.mkdir(parents=True, exist_ok=True)


def on_starting(server) -> None:
    """Before the workers start: an empty directory (the master's own files go too; a forked
    worker makes its own)."""
    shutil.rmtree(METRICS_DIR, ignore_errors=True)
    METRICS_DIR.mkdir(parents=True)


def child_exit(server, worker) -> None:
    """A worker that ended (restarted, killed): its live gauges stop counting."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
