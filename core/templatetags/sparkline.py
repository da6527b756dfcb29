from collections.abc import Callable

from django import template
from django.utils.html import format_html, format_html_join

from core.templatetags.figures import duration_ms

register = template.Library()

WIDTH, HEIGHT = 120, 24
Number = int | float


def _scale(peak: Number, height: int) -> Callable[[Number], float]:
    """The y of a value from 0 to ``peak`` in a box ``height`` high (0 at the bottom)."""
    peak = peak or 1
    return lambda value: height - 1 - value / peak * (height - 2)


@register.simple_tag
def sparkline(
    requests: list[Number | None],
    errors: list[Number] | None = None,
    *,
    target: Number | None = None,
    label: str = "",
) -> str:
    """Requests per hour as a small line, errors as red bars under it: an inline SVG drawn
    here, so that the page needs no script (the Content-Security-Policy allows none inline)
    and the figure is there before any chart library loads. Styled by console.css.

    Any other series draws the same way with its own ``label``; ``target`` adds a dashed
    line at that value (what scaling holds a metric at). A ``None`` is a step with no figure:
    the line breaks there rather than fall to 0."""
    measured = [count for count in requests if count is not None]
    y = _scale(max([*measured, target or 0], default=0), HEIGHT)
    step = WIDTH / max(len(requests) - 1, 1)

    stretches: list[list[tuple[float, float]]] = [[]]
    for i, count in enumerate(requests):
        if count is None:
            stretches.append([])
        else:
            stretches[-1].append((i * step, y(count)))
    shapes = format_html_join(
        "",
        '<polygon points="{0},{2} {1} {3},{2}"></polygon><polyline points="{1}"></polyline>',
        (
            (
                f"{stretch[0][0]:.1f}",
                " ".join(f"{across:.1f},{up:.1f}" for across, up in stretch),
                HEIGHT,
                f"{stretch[-1][0]:.1f}",
            )
            for stretch in stretches
            if len(stretch) > 1
        ),
    ) + format_html_join(
        "",
        '<circle cx="{}" cy="{}" r="1.5"></circle>',
        (
            (f"{stretch[0][0]:.1f}", f"{stretch[0][1]:.1f}")
            for stretch in stretches
            if len(stretch) == 1
        ),
    )
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
        most, failed = max(measured, default=0), sum(errors or [])
        label = f"Requests per hour: {sum(measured):,} in all, at most {most:,}; errors: {failed:,}"
    return format_html(
        '<svg class="sparkline" viewBox="0 0 {} {}" width="{}" height="{}" role="img" '
        'aria-label="{}"><title>{}</title><rect class="frame" width="{}" height="{}"></rect>'
        "{}{}</svg>",
        WIDTH,
        HEIGHT,
        WIDTH,
        HEIGHT,
        label,
        label,
        WIDTH,
        HEIGHT,
        shapes,
        bars,
    )


TREND_WIDTH, TREND_HEIGHT = 600, 100


@register.simple_tag
def trend(label: str, times: list[int], values: list[float | None], markers: list[dict]) -> str:
    """Milliseconds per hour (``times``, epoch seconds) as a line broken where an hour has
    none, and a vertical mark at each of ``markers`` (``{"time", "label"}``), drawn as the
    sparkline is: on the server, styled by console.css, no script."""
    measured = [value for value in values if value is not None]
    y = _scale(max(measured, default=0), TREND_HEIGHT)
    first, last = (times[0], times[-1]) if times else (0, 1)

    def x(time: float) -> float:
        return (time - first) / ((last - first) or 1) * TREND_WIDTH

    runs: list[list[str]] = [[]]  # the points of each stretch of hours with a figure
    for time, value in zip(times, values, strict=True):
        if value is None:
            runs.append([])
        else:
            runs[-1].append(f"{x(time):.1f},{y(value):.1f}")
    lines = format_html_join(
        "",
        '<polyline points="{}"></polyline>',
        ((" ".join(points),) for points in runs if len(points) > 1),
    )
    dots = format_html_join(
        "",
        '<circle cx="{}" cy="{}" r="2"></circle>',
        (tuple(points[0].split(",")) for points in runs if len(points) == 1),
    )
    marks = format_html_join(
        "",
        '<line class="marker" x1="{0}" x2="{0}" y1="0" y2="{1}"><title>{2}</title></line>',
        ((f"{x(m['time']):.1f}", TREND_HEIGHT, m["label"]) for m in markers),
    )
    most = duration_ms(max(measured)) if measured else "no figure"
    described = f"{label}: at most {most}" + "".join(f"; {m['label']}" for m in markers)
    return format_html(
        '<svg class="trend" viewBox="0 0 {} {}" role="img" aria-label="{}"><title>{}</title>'
        '<rect class="frame" width="{}" height="{}"></rect>{}{}{}<text x="4" y="12">{}</text>'
        "</svg>",
        TREND_WIDTH,
        TREND_HEIGHT,
        described,
        described,
        TREND_WIDTH,
        TREND_HEIGHT,
        lines,
        dots,
        marks,
        f"max {most}",
    )
