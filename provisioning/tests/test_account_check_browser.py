""" "Check this account" from the browser: Debian's chromium through Playwright, a live server,
and the moto server as the account."""

import uuid

import pytest
from playwright.sync_api import expect

from centralllm import aws
from devtools.testing import log_in
from provisioning.account_check import QUICK_CLIENTS
from provisioning.models import Environment

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REGION = "us-west-2"  # no other test uses it


def test_an_operator_checks_the_account_before_creating_the_environment(
    page, live_server, operator
):
    ec2 = aws.client("ec2", region_name=REGION, **QUICK_CLIENTS)
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.7.1.0/24", AvailabilityZone=f"{REGION}a")[
        "Subnet"
    ]["SubnetId"]
    group = ec2.create_security_group(
        GroupName=f"central-llm-{uuid.uuid4().hex[:8]}", Description="Central LLM", VpcId=vpc
    )["GroupId"]
    account = aws.client("sts", region_name=REGION).get_caller_identity()["Account"]
    log_in(page, live_server.url, "otto")
    page.goto(f"{live_server.url}/environments/new/")
    page.locator("#id_name").fill("eu-prod")
    page.locator("#id_region").fill(REGION)
    page.locator("#id_account_id").fill(account)
    page.locator("#id_suffix").fill(f"-c{uuid.uuid4().hex[:8]}")
    page.locator("#id_vpc_id").fill(vpc)
    page.locator("#id_subnet_ids").fill(f"{subnet},subnet-0000000000000dead")
    page.locator("#id_security_group_id").fill(group)
    expect(page.locator("#id_vpc_id_helptext")).to_contain_text("VPC console → Your VPCs")

    page.get_by_role("button", name="Check this account").click()

    checks = page.locator("#account-check")
    expect(checks.locator('[data-check="account"] td').nth(1)).to_have_text("passed")
    expect(checks.locator('[data-check="network"] td')).to_have_text(
        ["network", "failed", f"subnets not found in {REGION}: subnet-0000000000000dead"]
    )
    expect(checks.locator('[data-check="availability zones"] td').nth(1)).to_have_text(
        "could not check"
    )
    expect(checks).to_contain_text("Nothing is saved until you Create.")
    # In place: the same page, the values as typed, nothing saved.
    assert page.url == f"{live_server.url}/environments/new/"
    expect(page.locator("#id_vpc_id")).to_have_value(vpc)
    assert not Environment.objects.filter(name="eu-prod").exists()
    page.screenshot(path="var/account-check.png", full_page=True)
