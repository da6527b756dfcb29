"""``{% load money %}``: amounts as people read them."""

from decimal import ROUND_HALF_EVEN, Decimal

from django import template

register = template.Library()


@register.filter
def usd(value: Decimal | None) -> str:
    """$1,234.57; under a dollar to four places ($0.0123), where cents would say $0.01."""
    if value is None:
        return "—"
    places = Decimal("0.01") if abs(value) >= 1 or not value else Decimal("0.0001")
    rounded = Decimal(value).quantize(places, ROUND_HALF_EVEN)
    return f"${rounded:,}"
