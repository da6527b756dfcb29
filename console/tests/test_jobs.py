import django_rq
from rq import SimpleWorker

from console import health


def test_job_enqueued_through_django_rq_runs_in_a_worker(redis_conn):
    queue = django_rq.get_queue("default")
    job = queue.enqueue(health.check_aws)

    assert job.get_status() == "queued"
    # SimpleWorker runs in this process: a forking worker would share the test database connection.
    worked = SimpleWorker([queue], connection=queue.connection).work(burst=True)

    assert worked
    job.refresh()
    assert job.get_status() == "finished"
    assert job.return_value().ok is True
    assert "account" in job.return_value().detail


def test_queues_have_explicit_timeouts():
    timeouts = {
        name: django_rq.get_queue(name)._default_timeout
        for name in ("default", "provisioning", "audit")
    }

    assert timeouts == {"default": 300, "provisioning": 3600, "audit": 120}
