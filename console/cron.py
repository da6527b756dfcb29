"""What RQ's cron scheduler enqueues (``manage.py rqcron console.cron``, one process per
deployment): the runs' reaper (``provisioning.cron``) and the audit exports' (as often), the
action log's shipping to the audit buckets (``audit_explorer.action_stream``), the API keys'
schedule (rotations whose grace is over, expired keys, the dashboard's key alerts) and the end
of temporary quota increases, and the audit trail's daily jobs: yesterday's completeness check
(at 00:30 UTC, so that records still on their way have arrived) and the previews past their
retention; locally, the GPU group's in-service instances as AWS would publish them
(``costs.gpu_hours``). Jobs are idempotent, so a restart or a second scheduler only repeats a
check."""

from rq import cron

import provisioning.cron  # registers the runs' reaper
from api_access.api_keys import check_keys
from api_access.usage_plans import revert_due_increases
from audit_explorer import action_stream
from audit_explorer.audit_runs import check_yesterday
from audit_explorer.exports import reap_all as reap_exports
from audit_explorer.retention import drop_due_previews
from costs.gpu_hours import publish_local as publish_local_gpu_hours

KEYS_SECONDS = 60

cron.register(
    reap_exports, queue_name="default", interval=provisioning.cron.REAP_SECONDS, job_timeout=60
)
# The action log to the audit buckets: within a minute of each action, S3 willing.
cron.register(
    action_stream.ship, queue_name="default", interval=action_stream.SHIP_SECONDS, job_timeout=60
)
cron.register(check_keys, queue_name="default", interval=KEYS_SECONDS, job_timeout=300)
cron.register(revert_due_increases, queue_name="default", interval=KEYS_SECONDS, job_timeout=300)
cron.register(check_yesterday, queue_name="default", cron="30 0 * * *", job_timeout=300)
# The local AWS's stand-in for the GPU group's metrics (a no-op against AWS).
cron.register(publish_local_gpu_hours, queue_name="default", interval=KEYS_SECONDS, job_timeout=60)
cron.register(drop_due_previews, queue_name="default", cron="0 2 * * *", job_timeout=6 * 3600)
