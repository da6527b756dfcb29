"""What one GPU instance-hour costs an environment, and where the figure comes from.

In order: the environment's own price (an admin's, for a discount or a reservation); on AWS,
the instance type's on-demand Linux price in the environment's Region from the AWS Price List
Query API (``GetProducts``, https://docs.aws.amazon.com/aws-cost-management/latest/
APIReference/API_pricing_GetProducts.html), kept a day; for the local AWS, which has no Price
List, the pinned table below.
"""

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.cache import cache

from centralllm import aws
from provisioning.models import Environment

# The Price List Query API answers in us-east-1 (also ap-south-1 and eu-central-1), for every
# Region's prices.
PRICING_REGION = "us-east-1"
LIST_PRICE_SECONDS = 24 * 3600  # AWS updates its prices rarely, and never within the hour
# On-demand Linux, shared tenancy, us-east-1, in USD per hour: AWS's public list prices
# (https://aws.amazon.com/ec2/pricing/on-demand/) as widely quoted; g5.xlarge's was checked
# against a June 2026 price survey, the others were not checked here (no internet access).
# Only the local AWS reads them: it has no Price List and its GPUs cost nothing, so these only
# make the local pages' figures realistic. Check the price page before relying on one.
PINNED = {
    "g4dn.xlarge": Decimal("0.526"),
    "g4dn.2xlarge": Decimal("0.752"),
    "g5.xlarge": Decimal("1.006"),
    "g5.2xlarge": Decimal("1.212"),
    "g5.4xlarge": Decimal("1.624"),
    "g6.xlarge": Decimal("0.8048"),
    "g6.2xlarge": Decimal("0.9776"),
}
PINNED_SOURCE = "pinned list price: us-east-1, Linux, on-demand; for the local AWS only"
CURRENCY = "USD"


class PriceUnknown(Exception):
    """No price for the instance type: the message says what to do."""


@dataclass(frozen=True)
class Price:
    per_hour: Decimal
    source: str  # said beside every cost


def hourly_price(environment: Environment) -> Price:
    """The price of one of ``environment``'s GPU instance-hours; PriceUnknown says why none."""
    if environment.gpu_hourly_price is not None:
        return Price(environment.gpu_hourly_price, "the environment's own price")
    kind = environment.instance_type
    if environment.is_local:
        if kind not in PINNED:
            raise PriceUnknown(
                f"No pinned price for {kind}: set the environment's GPU price per instance-hour."
            )
        return Price(PINNED[kind], PINNED_SOURCE)
    key = f"ec2-list-price:{environment.region}:{kind}"
    price = cache.get(key)
    if price is None:
        price = list_price(kind, environment.region)
        cache.set(key, price, LIST_PRICE_SECONDS)
    return Price(price, f"on-demand Linux price of {kind} in {environment.region} (AWS Price List)")


# What narrows the Price List's EC2 products to one: plain Linux on shared hardware, without
# pre-installed software or a license, not a capacity reservation (the attributes AWS's Price
# List documents for AmazonEC2: DescribeServices lists them).
FILTERS = {
    "operatingSystem": "Linux",
    "tenancy": "Shared",
    "preInstalledSw": "NA",
    "licenseModel": "No License required",
    "capacitystatus": "Used",
    "operation": "RunInstances",
}


def list_price(instance_type: str, region: str, *, client: Any = None) -> Decimal:
    """The on-demand hourly price in USD from ``GetProducts``, every page read (``NextToken``).
    Each ``PriceList`` entry is a JSON document (a string) of a product and its terms."""
    client = client or aws.client("pricing", region_name=PRICING_REGION)
    wanted = {**FILTERS, "instanceType": instance_type, "regionCode": region}
    params = {
        "ServiceCode": "AmazonEC2",
        "FormatVersion": "aws_v1",
        "Filters": [
            {"Type": "TERM_MATCH", "Field": field, "Value": value}
            for field, value in wanted.items()
        ],
    }
    found = set()
    while True:
        response = client.get_products(**params)
        for entry in response["PriceList"]:
            found |= _hourly_prices(json.loads(entry))
        if not response.get("NextToken"):
            break
        params["NextToken"] = response["NextToken"]
    if len(found) != 1:
        said = "no" if not found else f"{len(found)} different"
        raise PriceUnknown(
            f"The AWS Price List has {said} on-demand Linux prices for {instance_type} in "
            f"{region}: set the environment's GPU price per instance-hour."
        )
    return found.pop()


def _hourly_prices(product: dict) -> set[Decimal]:
    """The USD prices per hour of a product's on-demand terms."""
    return {
        Decimal(dimension["pricePerUnit"][CURRENCY])
        for term in product.get("terms", {}).get("OnDemand", {}).values()
        for dimension in term["priceDimensions"].values()
        if dimension.get("unit") == "Hrs" and CURRENCY in dimension.get("pricePerUnit", {})
    }
