from datetime import UTC, datetime, timedelta

import pytest
from django.template import Context, Template
from django.utils import timezone

from core.templatetags.figures import count, duration_ms, duration_s, percent, relative
from core.templatetags.sparkline import sparkline


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (None, "—"),
        (0, "0 ms"),
        (3.25, "3.2 ms"),
        (640, "640 ms"),
        (999.4, "999 ms"),
        (1500, "1.5 s"),
        (17844.492, "17.8 s"),
        (59_940, "59.9 s"),
        (59_960, "1 min"),
        (125_000, "2 min 5 s"),
        (120_000, "2 min"),
        (3_600_000 * 3 + 12 * 60_000, "3 h 12 min"),
        (86_400_000 * 3, "3 d"),
    ],
)
def test_durations_read_in_the_unit_that_fits(ms, text):
    assert duration_ms(ms) == text


def test_seconds_counts_and_percentages():
    assert duration_s(125) == "2 min 5 s"
    assert count(12480) == "12,480"
    assert count("1234567.6") == "1,234,568"
    assert count(None) == "—"
    assert percent(0.0123) == "1.2%"


def test_relative_times_both_ways():
    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    assert relative(now - timedelta(seconds=2), now) == "just now"
    assert relative(now - timedelta(seconds=45), now) == "45 s ago"
    assert relative(now - timedelta(minutes=3, seconds=50), now) == "3 min ago"
    assert relative(now - timedelta(hours=5), now) == "5 h ago"
    assert relative(now - timedelta(days=12), now) == "12 d ago"
    assert relative(now + timedelta(days=3), now) == "in 3 d"
    assert relative(now - timedelta(days=400), now) == "on 2025-10-31"


def test_when_shows_the_time_relative_and_the_exact_time_in_the_viewers_timezone_on_hover():
    def when(moment) -> str:
        template = Template("{% load figures %}{{ moment|when }}")
        with timezone.override("Europe/Paris"):
            return template.render(Context({"moment": moment}))

    html = when("2026-12-05T10:00:00+00:00")
    assert 'datetime="2026-12-05T10:00:00+00:00"' in html
    assert 'title="2026-12-05 11:00:00 CET"' in html
    # The text is the relative time, from now (a fixed moment's would change with the clock).
    assert when(timezone.now() - timedelta(minutes=3, seconds=30)).endswith(">3 min ago</time>")


def test_a_sparkline_breaks_where_a_step_has_no_figure():
    drawn = sparkline([1, 2, None, 3, None, 4, 5])

    assert drawn.count("<polyline") == 2  # 1 to 2 and 4 to 5; 3 stands alone between gaps
    assert drawn.count("<circle") == 1
    assert 'aria-label="Requests per hour: 15 in all, at most 5; errors: 0"' in drawn
