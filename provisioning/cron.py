"""What RQ's cron scheduler enqueues (``manage.py rqcron provisioning.cron``, one process per
deployment): the reaper, so a run whose worker died is failed within a minute even when no
one is looking at it. Pages reap what they show as well."""

from rq import cron

from provisioning.runs import reap_all

REAP_SECONDS = 20

cron.register(reap_all, queue_name="default", interval=REAP_SECONDS, job_timeout=60)
