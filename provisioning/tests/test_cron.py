"""The reaper runs on RQ's cron scheduler: a run whose worker died is failed though nobody
looks at it."""

from datetime import timedelta

import django_rq
import pytest
from django.utils import timezone
from django_rq.cron import DjangoCronScheduler
from rq import SimpleWorker

from provisioning import cron, runs
from provisioning.models import Run


@pytest.mark.django_db
def test_the_scheduler_enqueues_the_reaper_and_it_fails_a_dead_run(environment, redis_conn):
    run = runs.start(environment, "apply", actor=None, enqueue=False)
    silent = timezone.now() - timedelta(minutes=5)
    Run.objects.filter(pk=run.pk).update(
        status="running", heartbeat_at=silent, worker_name="gone-worker"
    )
    scheduler = DjangoCronScheduler()
    scheduler.load_config_from_file("provisioning.cron")
    [job] = scheduler.get_jobs()
    assert (job.func, job.interval) == (runs.reap_all, cron.REAP_SECONDS)

    scheduler.enqueue_jobs()
    queue = django_rq.get_queue("default")
    SimpleWorker([queue], connection=queue.connection).work(burst=True)

    run.refresh_from_db()
    assert run.status == "failed"
    assert "gone-worker" in run.explanation and "stopped answering" in run.explanation
    assert runs.holder_of(environment) is None
