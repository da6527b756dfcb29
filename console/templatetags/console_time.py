from datetime import datetime
from functools import cache

from django import template
from django.utils import timezone
from django.utils.html import format_html_join

from console import timezones
from core.templatetags.figures import aware

register = template.Library()


@register.filter
def local_time(value: str | datetime | None) -> str:
    """An ISO-8601 UTC time (as audit records hold them) in the viewer's timezone."""
    if not value:
        return ""
    local = timezone.localtime(aware(value))
    return f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond // 1000:03d} {local.tzname()}"


@register.simple_tag
def timezone_options() -> str:
    """The ~600 names as <option>s, built once per process: every audit page offers them."""
    return _options()


@cache
def _options() -> str:
    return format_html_join("", '<option value="{}">', ((name,) for name in timezones.names()))
