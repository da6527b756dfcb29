from django import template
from django.utils.html import format_html, format_html_join

register = template.Library()

WIDTH, HEIGHT = 120, 24
Number = int | float


@register.simple_tag
def sparkline(
    requests: list[Number],
    errors: list[Number] | None = None,
    *,
    target: Number | None = None,
    label: str = "",
) -> str:
    """Requests per hour as a small line, errors as red bars under it: an inline SVG drawn
    here, so that the page needs no script (the Content-Security-Policy allows none inline)
    and the figure is there before any chart library loads. Styled by console.css.

    Any other series draws the same way with its own ``label``; ``target`` adds a dashed
    line at that value (what scaling holds a metric at)."""
    peak = max([*requests, target or 0], default=0) or 1
    step = WIDTH / max(len(requests) - 1, 1)

    def y(count: Number) -> float:
        return HEIGHT - 1 - count / peak * (HEIGHT - 2)

    points = " ".join(f"{i * step:.1f},{y(count):.1f}" for i, count in enumerate(requests))
    area = f"0,{HEIGHT} {points} {WIDTH},{HEIGHT}"
    bars = format_html_join(
        "",
        '<rect class="errors" x="{}" y="{}" width="{}" height="{}"></rect>',
        (
            (f"{max(i * step - 1, 0):.1f}", f"{y(count):.1f}", 2, f"{HEIGHT - y(count):.1f}")
            for i, count in enumerate(errors or [])
            if count
        ),
    )
    if target is not None:
        level = f"{y(target):.1f}"
        bars += format_html(
            '<line class="target" x1="0" y1="{}" x2="{}" y2="{}"></line>', level, WIDTH, level
        )
    if not label:
        most, failed = max(requests, default=0), sum(errors or [])
        label = f"Requests per hour: {sum(requests):,} in all, at most {most:,}; errors: {failed:,}"
    return format_html(
        '<svg class="sparkline" viewBox="0 0 {} {}" width="{}" height="{}" role="img" '
        'aria-label="{}"><title>{}</title><rect class="frame" width="{}" height="{}"></rect>'
        '<polygon points="{}"></polygon><polyline points="{}"></polyline>{}</svg>',
        WIDTH,
        HEIGHT,
        WIDTH,
        HEIGHT,
        label,
        label,
        WIDTH,
        HEIGHT,
        area,
        points,
        bars,
    )
