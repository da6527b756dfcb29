"""GPU cost per project: apportioning, the Price List and CloudWatch as AWS documents them
(Stubber), and the pages and export over real rollups (DynamoDB Local, through the ingest)
and GPU datapoints in the local AWS's CloudWatch (moto)."""

import csv
import io
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import boto3
import pytest
from botocore.stub import Stubber
from django.urls import reverse

from centralllm import aws
from centralllm.audit.ingest import ingest_record
from centralllm.audit.tests.conftest import make_record
from core.models import Action
from costs import apportion, gpu_hours, prices
from costs import ledger as ledgers
from costs.models import Budget, KeptDay
from provisioning.models import Environment

HOUR = timedelta(hours=1)


def test_an_hour_is_split_to_the_millionth_and_adds_up_exactly():
    shares = apportion.split(Decimal("1.000000"), {"a": 1, "b": 1, "c": 1})
    # 333,333 units each and one left: it goes to the largest remainder, ties by name.
    assert shares == {"a": Decimal("0.333334"), "b": Decimal("0.333333"), "c": Decimal("0.333333")}
    uneven = apportion.split(
        apportion.hour_cost(Decimal("1.5"), Decimal("1.212")), {"x": 7, "y": 993}
    )
    assert sum(uneven.values()) == Decimal("1.818000")
    assert uneven == {"x": Decimal("0.012726"), "y": Decimal("1.805274")}


def stubbed(service: str, region: str = "us-east-1"):
    client = boto3.client(
        service, region_name=region, aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(client)
    stubber.activate()
    return client, stubber


def price_list_entry(price: str) -> str:
    """One PriceList entry as GetProducts returns it: a JSON document in a string, with the
    product, its on-demand term and (ignored here) a reserved one (API_pricing_GetProducts,
    https://docs.aws.amazon.com/aws-cost-management/latest/APIReference/API_pricing_GetProducts.html)."""
    sku = "SKU3XAMPLE"
    return json.dumps(
        {
            "product": {
                "productFamily": "Compute Instance",
                "attributes": {
                    "instanceType": "g5.2xlarge",
                    "regionCode": "eu-central-1",
                    "operatingSystem": "Linux",
                    "tenancy": "Shared",
                    "preInstalledSw": "NA",
                    "licenseModel": "No License required",
                    "capacitystatus": "Used",
                    "operation": "RunInstances",
                    "usagetype": "EUC1-BoxUsage:g5.2xlarge",
                },
                "sku": sku,
            },
            "serviceCode": "AmazonEC2",
            "terms": {
                "OnDemand": {
                    f"{sku}.JRTCKXETXF": {
                        "offerTermCode": "JRTCKXETXF",
                        "sku": sku,
                        "effectiveDate": "2026-11-01T00:00:00Z",
                        "priceDimensions": {
                            f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
                                "rateCode": f"{sku}.JRTCKXETXF.6YS6EN2CT7",
                                "description": f"${price} per On Demand Linux g5.2xlarge Hour",
                                "beginRange": "0",
                                "endRange": "Inf",
                                "unit": "Hrs",
                                "pricePerUnit": {"USD": price},
                                "appliesTo": [],
                            }
                        },
                        "termAttributes": {},
                    }
                },
                "Reserved": {
                    f"{sku}.4NA7Y494T4": {
                        "offerTermCode": "4NA7Y494T4",
                        "sku": sku,
                        "priceDimensions": {
                            f"{sku}.4NA7Y494T4.6YS6EN2CT7": {
                                "unit": "Hrs",
                                "pricePerUnit": {"USD": "0.9000000000"},
                                "description": "reserved",
                                "rateCode": f"{sku}.4NA7Y494T4.6YS6EN2CT7",
                                "appliesTo": [],
                            }
                        },
                        "termAttributes": {"LeaseContractLength": "1yr"},
                    }
                },
            },
            "version": "20261120000000",
            "publicationDate": "2026-11-20T00:00:00Z",
        }
    )


def test_the_list_price_reads_every_page_of_get_products():
    client, stubber = stubbed("pricing")
    filters = [
        {"Type": "TERM_MATCH", "Field": field, "Value": value}
        for field, value in {
            **prices.FILTERS,
            "instanceType": "g5.2xlarge",
            "regionCode": "eu-central-1",
        }.items()
    ]
    asked = {"ServiceCode": "AmazonEC2", "FormatVersion": "aws_v1", "Filters": filters}
    # A page may come back empty with more to come: only NextToken says when it ends.
    stubber.add_response(
        "get_products", {"FormatVersion": "aws_v1", "PriceList": [], "NextToken": "p2"}, asked
    )
    stubber.add_response(
        "get_products",
        {"FormatVersion": "aws_v1", "PriceList": [price_list_entry("1.4590000000")]},
        {**asked, "NextToken": "p2"},
    )

    assert prices.list_price("g5.2xlarge", "eu-central-1", client=client) == Decimal("1.459")
    stubber.assert_no_pending_responses()

    stubber.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": []})
    with pytest.raises(prices.PriceUnknown, match=r"no on-demand Linux prices for g5\.2xlarge"):
        prices.list_price("g5.2xlarge", "eu-central-1", client=client)


def test_instance_hours_read_every_page_of_get_metric_data():
    environment = Environment(name="stub", suffix="-stub")
    client, stubber = stubbed("cloudwatch", "eu-central-1")
    start = datetime(2026, 11, 27, 5, 20, tzinfo=UTC)
    end = datetime(2026, 11, 27, 7, 30, tzinfo=UTC)
    asked = {
        "MetricDataQueries": [
            {
                "Id": "inService",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/AutoScaling",
                        "MetricName": "GroupInServiceInstances",
                        "Dimensions": [
                            {"Name": "AutoScalingGroupName", "Value": "central-llm-gpu-stub"}
                        ],
                    },
                    "Period": 3600,
                    "Stat": "Average",
                },
                "ReturnData": True,
            }
        ],
        "StartTime": datetime(2026, 11, 27, 5, tzinfo=UTC),  # the whole first hour
        "EndTime": datetime(2026, 11, 27, 8, tzinfo=UTC),  # the end of end's hour
        "ScanBy": "TimestampAscending",
    }

    def page(hours: list[int], values: list[float], **more) -> dict:
        result = {
            "Id": "inService",
            "Label": "GroupInServiceInstances",
            "Timestamps": [datetime(2026, 11, 27, hour, tzinfo=UTC) for hour in hours],
            "Values": values,
            "StatusCode": "PartialData" if more else "Complete",
        }
        return {"MetricDataResults": [result], "Messages": [], **more}

    stubber.add_response("get_metric_data", page([5], [1.5], NextToken="n2"), asked)
    stubber.add_response("get_metric_data", page([7], [2.0]), {**asked, "NextToken": "n2"})

    found = gpu_hours.instance_hours(environment, start, end, client=client)

    assert found == {"2026-11-27T05": Decimal("1.5"), "2026-11-27T07": Decimal("2.0")}


def put_in_service(environment: Environment, hour: datetime, values: list[int]) -> None:
    """Datapoints as AWS publishes them, spread over ``hour``, into the local CloudWatch."""
    aws.client("cloudwatch").put_metric_data(
        Namespace=gpu_hours.NAMESPACE,
        MetricData=[
            {
                "MetricName": gpu_hours.METRIC,
                "Dimensions": [
                    {"Name": "AutoScalingGroupName", "Value": gpu_hours.group_name(environment)}
                ],
                "Timestamp": hour + timedelta(minutes=5 + 50 * index // len(values)),
                "Value": value,
            }
            for index, value in enumerate(values)
        ],
    )


EVIL = '=HYPERLINK("http://x")'


@pytest.fixture
def charged(audited):
    """Three hours ago alpha 200 tokens and beta 100 on 1.5 instances; two hours ago alpha
    and EVIL 100 each on one; an hour ago one instance idle. At $1.212 (g5.2xlarge, pinned):
    alpha 1.212 + 0.606, beta 0.606, EVIL 0.606, idle 1.212: 4.242 in all."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    first, second, third = now - 3 * HOUR, now - 2 * HOUR, now - HOUR
    for project, hour, user, key in (
        ("alpha", first, "ann", "key-a"),
        ("alpha", first, "ann", "key-a"),
        ("beta", first, "bob", "key-a"),
        ("alpha", second, "ann", "key-a"),
        (EVIL, second, "eve", "key-e"),
    ):
        usage = {"prompt_tokens": 40, "completion_tokens": 60, "total_tokens": 100}
        ingest_record(
            make_record(
                project=project,
                user=user,
                api_key_id=key,
                usage=usage,
                created_at=hour + timedelta(minutes=30),
            )
        )
    put_in_service(audited, first, [1, 2])
    put_in_service(audited, second, [1, 1])
    put_in_service(audited, third, [1])
    return first, third + HOUR - timedelta(seconds=1)


def test_the_project_page_and_the_chargeback_export_agree_and_add_up(
    client, viewer, audited, charged
):
    first, last = charged
    client.force_login(viewer)

    page = client.get(
        reverse("audit_explorer:traffic"), {"project": "alpha", "range": "24h"}
    ).content.decode()

    assert 'data-cost="1.818000"' in page and "$1.82</strong> for 300 tokens" in page
    assert "$6,060.00 per million tokens" in page  # 1.818 / 300 tokens * 1,000,000
    assert 'class="cost-chart"' in page and "style=" not in page.split('id="project-cost"')[1]

    rows = []
    for month in sorted({first.strftime("%Y-%m"), last.strftime("%Y-%m")}):
        url = reverse("costs:chargeback", args=[audited.name, month])
        rows += list(csv.DictReader(io.StringIO(client.get(url).content.decode())))
    total = sum(Decimal(row["EffectiveCost"]) for row in rows)
    assert total == Decimal("4.242000")  # 1.5 * 1.212 + 1.212 + 1.212, to the millionth
    by_project = {}
    for row in rows:
        by_project.setdefault(row["x_Project"], Decimal(0))
        by_project[row["x_Project"]] += Decimal(row["EffectiveCost"])
    assert by_project == {
        "alpha": Decimal("1.818"),
        "beta": Decimal("0.606"),
        f"'{EVIL}": Decimal("0.606"),  # quoted: a spreadsheet keeps it text
        "": Decimal("1.212"),  # the idle hour
    }
    idle = [row for row in rows if row["x_Allocation"] == "idle"]
    assert {row["ConsumedQuantity"] for row in idle} == {""}
    alpha = [row for row in rows if row["x_Project"] == "alpha"]
    assert {row["x_User"] for row in alpha} == {"ann"} and {r["ConsumedUnit"] for r in alpha} == {
        "Tokens"
    }
    assert {row["BillingCurrency"] for row in rows} == {"USD"}
    exported = Action.objects.filter(verb="costs.chargeback_export")
    assert exported.count() >= 1 and exported.first().actor_name == "vera"


def test_a_kept_ledger_equals_a_fresh_one_and_reads_again_only_what_changed(audited, charged):
    """Kept hours serve while the status classes count them as kept: a late record, a late
    datapoint and a new price show at once, exactly as a ledger read afresh shows them."""
    first, last = charged
    calls, consistent = Counter(), set()

    def count(params, model, **_) -> None:
        calls[model.name] += 1
        reads = params.get("RequestItems", {"": params}).values()  # a BatchGetItem's or a Query
        consistent.update(read.get("ConsistentRead", False) for read in reads)

    def ledger() -> ledgers.Ledger:
        calls.clear()
        consistent.clear()
        return ledgers.compute(audited, first, last, prices.hourly_price(audited))

    def fresh() -> ledgers.Ledger:
        KeptDay.objects.filter(environment=audited).delete()
        return ledger()

    events = audited.client("dynamodb").meta.events
    events.register("provide-client-params.dynamodb", count)
    try:
        cold = fresh()
        assert calls == {"Query": 8 * (5 + 3)}  # the status classes, alpha, beta and EVIL
        assert ledger() == cold and calls == {"Query": 40}  # the counts only

        # A record of the first hour arrives late (a host's spool, a redrive): that hour
        # alone is read again, by key: its 40 status-class items, then alpha's and beta's.
        usage = {"prompt_tokens": 40, "completion_tokens": 60, "total_tokens": 100}
        ingest_record(
            make_record(project="beta", usage=usage, created_at=first + timedelta(minutes=40))
        )
        late = ledger()
        assert calls == {"Query": 40, "BatchGetItem": 2}
        # Strongly consistent, every read: an eventually consistent one may miss a write
        # made just before it ("Read consistency", Amazon DynamoDB Developer Guide,
        # https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.ReadConsistency.html);
        # the local stand-ins answer both alike.
        assert consistent == {True}
        assert late.project("beta").tokens == 200 and late == fresh()

        # A late datapoint for the idle hour and a new price: no token read again.
        put_in_service(audited, last.replace(minute=0, second=0), [3])
        audited.gpu_hourly_price = Decimal("2")
        audited.save()
        repriced = ledger()
        assert calls == {"Query": 40} and repriced.gpu_hours == Decimal("4.5")
        assert repriced.total == Decimal("9") and repriced == fresh()
    finally:
        events.unregister("provide-client-params.dynamodb", count)


def test_budgets_are_set_by_admins_and_warned_about_on_the_dashboard(
    client, operator, admin_user, audited, charged
):
    url = reverse("costs:budget-set", args=[audited.name])
    client.force_login(operator)
    assert client.post(url, {"project": "alpha", "monthly_usd": "2"}).status_code == 403

    client.force_login(admin_user)
    client.post(url, {"project": "alpha", "monthly_usd": "2"})

    budget = Budget.objects.get(environment=audited, project="alpha")
    assert budget.set_by_name == "ada"
    assert Action.objects.get(verb="costs.budget_set").after == {"monthly_usd": "2"}
    now = datetime.now(UTC)
    spent = ledgers.ledger(audited, now.replace(day=1, hour=0, minute=0), now).project("alpha")
    percent = int(spent.cost * 100 / 2)  # 90% unless the month began within the hours
    dashboard = client.get(reverse("dashboard")).content.decode()
    warned = f"project alpha has cost {percent}% of its monthly budget"
    assert (warned in dashboard) == (percent >= 80)
    assert "nothing is cut off" in dashboard or percent < 80

    page = client.get(reverse("costs:environment", args=[audited.name])).content.decode()
    assert "(set by ada)" in page and "Set budget" in page
    assert 'class="cost-chart"' in page and "style=" not in page  # the CSP allows none


def test_the_local_stand_in_publishes_what_the_local_group_holds(audited):
    name = gpu_hours.group_name(audited)
    ec2 = aws.client("ec2")
    template = ec2.create_launch_template(
        LaunchTemplateName=name, LaunchTemplateData={"ImageId": "ami-12c6146b"}
    )["LaunchTemplate"]
    autoscaling = aws.client("autoscaling")
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"]},
        MinSize=0,
        MaxSize=2,
        DesiredCapacity=2,
        AvailabilityZones=[f"{audited.region}a"],
    )
    try:
        assert gpu_hours.publish_local() >= 1
        now = datetime.now(UTC)
        found = gpu_hours.instance_hours(audited, now - HOUR, now)
        assert found[now.strftime("%Y-%m-%dT%H")] == Decimal("2")
    finally:
        autoscaling.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)


def test_only_an_admin_sets_the_environment_s_own_price_and_a_missing_one_is_said(
    client, operator, admin_user, audited
):
    edit = reverse("provisioning:environment-edit", args=[audited.name])
    for user, posted in ((operator, "0.5"), (admin_user, "0.8125")):
        client.force_login(user)
        form = client.get(edit).context["form"]
        data = {name: value for name, value in form.initial.items() if value is not None}
        client.post(edit, {**data, "gpu_hourly_price": posted})
    audited.refresh_from_db()
    assert prices.hourly_price(audited) == prices.Price(
        Decimal("0.8125"), "the environment's own price"
    )
    assert Action.objects.filter(verb="environment.update", actor_name="ada").exists()

    audited.gpu_hourly_price, audited.instance_type = None, "p9.nothing"
    audited.save()
    page = client.get(reverse("costs:environment", args=[audited.name])).content.decode()
    assert "Cost not known: No pinned price for p9.nothing" in page


def test_a_month_without_gpu_hours_says_so_instead_of_an_empty_chart(client, viewer, audited):
    client.force_login(viewer)
    page = client.get(reverse("costs:environment", args=[audited.name]), {"month": "2001-01"})
    assert "No GPU cost in this range: no hour had an instance in service." in page.content.decode()
    assert 'class="cost-chart"' not in page.content.decode()


@pytest.mark.parametrize("month", ["0001-01", "9999-12", "1999-13", "2026-1x"])
def test_a_month_out_of_reach_gets_a_message_not_a_500(client, admin_user, audited, month):
    """The page's neighbours of 0001-01 and 9999-12 (the month before, the month after) were
    beyond Python's dates: a 500 for anyone who typed a year."""
    client.force_login(admin_user)
    page = client.get(reverse("costs:environment", args=[audited.name]), {"month": month})
    assert page.status_code == 200
    assert (
        f"Give a month as YYYY-MM, from 2000 on. (not &#x27;{month}&#x27;)" in page.content.decode()
    )
    export = client.get(reverse("costs:chargeback", args=[audited.name, month]))
    assert export.status_code == 404
