from datetime import UTC, datetime

from django import template
from django.utils import timezone

from console import timezones

register = template.Library()


@register.filter
def local_time(value: str | datetime | None) -> str:
    """An ISO-8601 UTC time (as audit records hold them) in the viewer's timezone."""
    if not value:
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=UTC)
    local = timezone.localtime(moment)
    return f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond // 1000:03d} {local.tzname()}"


@register.simple_tag
def timezone_names() -> list[str]:
    return timezones.names()
