"""The environment page's scaling section in Debian's chromium: drawn on the server, with no
script and nothing the Content-Security-Policy refuses (the ``page`` fixture holds that)."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from centralllm import aws, serving
from devtools.testing import log_in
from provisioning import scaling
from provisioning.models import Environment

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_viewer_sees_the_queue_against_its_target_and_what_the_local_aws_cannot_show(
    page, live_server, viewer
):
    tag = uuid.uuid4().hex[:8]
    environment = Environment.objects.create(
        name=f"scaled-{tag}", suffix=f"-s{tag}", is_local=True, target_requests_per_task=8
    )
    now = datetime.now(UTC)
    aws.client("cloudwatch").put_metric_data(
        Namespace=serving.NAMESPACE,
        MetricData=[
            {
                "MetricName": serving.REQUESTS_IN_FLIGHT,
                "Dimensions": serving.dimensions(environment.name),
                "Value": value,
                "Timestamp": now - timedelta(minutes=minutes),
            }
            for minutes, value in ((50, 2.0), (30, 12.0), (10, 6.0))
        ],
    )
    log_in(page, live_server.url, "vera")

    page.goto(f"{live_server.url}/environments/{environment.name}/")

    section = page.locator("section#scaling")
    expect(section.get_by_role("heading", name="Scaling", exact=True)).to_be_visible()
    expect(section.locator("[data-scaling-target]")).to_have_text(
        "No scaling target in AWS yet: an apply registers it."
    )
    queue = section.get_by_role("img", name="Requests in flight per task over the last 6 h")
    expect(queue).to_be_visible()
    expect(queue.locator("line.target")).to_have_count(1)
    # Three datapoints 20 minutes apart are three dots: the 5-minute steps between them have
    # none, which is no figure, not 0 in flight.
    expect(queue.locator("circle")).to_have_count(3)
    expect(queue.locator("polyline")).to_have_count(0)
    expect(section.locator("[data-scaling-charts]")).to_contain_text("6.0 target 8")
    expect(section.locator("[data-stand-in]")).to_have_text(scaling.STAND_IN_LIMITS)
    page.screenshot(path="var/scaling.png", full_page=True)
