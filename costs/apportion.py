"""Each hour's GPU cost split among projects by their share of the hour's tokens, exactly.

An hour costs its instance-hours times the price, rounded half-even to ``UNIT`` (a millionth
of a dollar). That cost is split by largest remainder: each project gets the whole units of
its exact share, and the units left over go one each to the largest remainders (ties by
name), so the shares add up to the hour's cost to the unit, and any sum of shares (a day, a
project, a month) is exact too. An hour without tokens is idle: its whole cost is one idle
share.
"""

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal

UNIT = Decimal("0.000001")


def hour_cost(instance_hours: Decimal, price: Decimal) -> Decimal:
    return (instance_hours * price).quantize(UNIT, ROUND_HALF_EVEN)


def split(amount: Decimal, weights: Mapping[str, int]) -> dict[str, Decimal]:
    """``amount`` (whole ``UNIT``s, not negative) shared by ``weights``, which add up to more
    than zero: the shares add up to ``amount`` exactly."""
    units = int(amount / UNIT)
    total = sum(weights.values())
    shares, remainders = {}, []
    for name, weight in weights.items():
        shares[name], remainder = divmod(units * weight, total)
        remainders.append((-remainder, name))
    left = units - sum(shares.values())
    for _, name in sorted(remainders)[:left]:
        shares[name] += 1
    return {name: share * UNIT for name, share in shares.items()}
