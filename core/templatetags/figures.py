"""Figures as people read them: ``640 ms``, ``17.8 s``, ``2 min 5 s``, ``12,480``, ``3 min ago``.

Every page uses these rather than printing raw numbers, so a latency never reads ``17844.492 ms``.
"""

from datetime import UTC, datetime
from decimal import Decimal

from django import template
from django.utils import timezone
from django.utils.html import format_html

register = template.Library()

Number = int | float | Decimal


@register.filter
def duration_ms(value: Number | str | None) -> str:
    """Milliseconds in the unit that reads best: 640 ms, 17.8 s, 2 min 5 s, 3 h 12 min."""
    if value is None or value == "":
        return "—"
    ms = float(value)
    if ms < 1000:
        return f"{ms:.0f} ms" if ms >= 10 or ms == int(ms) else f"{ms:.1f} ms"
    seconds = ms / 1000
    if round(seconds, 1) < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


@register.filter
def duration_s(value: Number | str | None) -> str:
    """Seconds, read as ``duration_ms`` reads milliseconds."""
    return "—" if value is None or value == "" else duration_ms(float(value) * 1000)


@register.filter
def count(value: Number | str | None) -> str:
    """A whole number with thousands separators: 12,480."""
    if value is None or value == "":
        return "—"
    return f"{round(float(value)):,}"


@register.filter
def percent(value: Number | str | None, places: int = 1) -> str:
    """A fraction (0.0123) as a percentage: 1.2%."""
    if value is None or value == "":
        return "—"
    return f"{float(value) * 100:.{places}f}%"


def aware(value: str | datetime) -> datetime:
    """An ISO-8601 string or a datetime as an aware datetime; naive ones are UTC, as stored."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if timezone.is_naive(moment) else moment


@register.filter
def when(value: str | datetime | None) -> str:
    """A relative time (``3 min ago``, ``in 2 d``) with the exact time, in the viewer's
    timezone, on hover; a ``<time>`` element, so it never wraps and machines can read it."""
    if not value:
        return "—"
    moment = aware(value)
    local = timezone.localtime(moment)
    exact = f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}"
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        moment.astimezone(UTC).isoformat(timespec="seconds"),
        exact,
        relative(moment),
    )


def relative(moment: datetime, now: datetime | None = None) -> str:
    """``just now``, ``45 s ago``, ``3 min ago``, ``5 h ago``, ``12 d ago``, or ``in ...``."""
    now = now or timezone.now()
    seconds = (now - moment).total_seconds()
    later = seconds < 0
    seconds = abs(seconds)
    if seconds < 5:
        return "just now"
    if seconds < 60:
        text = f"{seconds:.0f} s"
    elif seconds < 3600:
        text = f"{seconds // 60:.0f} min"
    elif seconds < 48 * 3600:
        text = f"{seconds // 3600:.0f} h"
    elif seconds < 60 * 86400:
        text = f"{seconds // 86400:.0f} d"
    else:
        return f"on {timezone.localtime(moment):%Y-%m-%d}"
    return f"in {text}" if later else f"{text} ago"
