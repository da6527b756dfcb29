"""What RQ's cron scheduler enqueues (``manage.py rqcron console.cron``, one process per
deployment): the runs' reaper (``provisioning.cron``), the API keys' schedule (rotations
whose grace is over, expired keys, the dashboard's key alerts) and the end of temporary quota
increases. Jobs are idempotent, so a restart or a second scheduler only repeats a check."""

from rq import cron

import provisioning.cron  # noqa: F401 - registers the reaper
from console.api_keys import check_keys
from console.usage_plans import revert_due_increases

KEYS_SECONDS = 60

cron.register(check_keys, queue_name="default", interval=KEYS_SECONDS, job_timeout=300)
cron.register(revert_due_increases, queue_name="default", interval=KEYS_SECONDS, job_timeout=300)
