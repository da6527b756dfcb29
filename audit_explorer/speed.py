"""How fast a project or a user was answered, and what each release did to it: from the
hourly rollups (``rollups.summarize``: TTFT p50/p95, time per output token, tokens/s).

A release went live when its rollout finished (``Release.finished_at`` of a release that is
or was live). It is judged on whole hours, the rollups' grain: ``WINDOW`` before its rollout
began against ``WINDOW`` after the hour it went live in. The hours of the rollout itself,
when old and new tasks both answer, are in neither. A window stops at the neighbouring
release: the hour after the previous one went live, the hour the next one began. Each figure
is compared only when both windows hold ``ENOUGH`` requests that have it; otherwise the
page says how many there were, never a percentage of noise.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from audit_explorer import traffic
from centralllm.audit import rollups
from provisioning.models import Environment, Release

WINDOW = timedelta(hours=6)
ENOUGH = 30  # requests with the figure, in each window
HOUR = timedelta(hours=1)


@dataclass
class Figure:
    """One figure of a window before a release and one after."""

    name: str
    unit: str  # "ms" (compared in percent) or "rate" (in points)
    before: float | None
    after: float | None
    counted: tuple[int, int]  # requests that have the figure, before and after

    @property
    def enough(self) -> bool:
        return min(self.counted) >= ENOUGH and None not in (self.before, self.after)

    @property
    def change(self) -> str:
        """``+38%`` for times, ``+1.6 points`` for a rate."""
        if self.unit == "rate":
            return f"{(self.after - self.before) * 100:+.1f} points"
        if not self.before:
            return "from 0"
        return f"{(self.after / self.before - 1) * 100:+.0f}%"


@dataclass
class ReleaseEffect:
    release: Release
    live_at: datetime
    before: tuple[datetime, datetime]  # [start, end) of whole hours
    after: tuple[datetime, datetime]
    figures: list[Figure]

    @property
    def comparable(self) -> bool:
        return any(figure.enough for figure in self.figures)

    @property
    def requests(self) -> tuple[int, int]:
        """Requests before and after (the error rate counts them all)."""
        return self.figures[-1].counted


def read(
    dimension: str, value: str, start: datetime, end: datetime, *, environment: Environment
) -> tuple[dict, dict]:
    """The traffic page's summary of the range (``traffic.totals``) with ``releases``, the
    effect of each release that went live in it; and what the speed section draws besides
    (the chart's release markers, the rules). The hours before the range that the first
    release's window needs come in the same read."""
    hours = traffic.hours(
        dimension, value, start - WINDOW, end, environment=environment, breakdowns=True
    )
    first = rollups.hour_of(start.isoformat())
    found = traffic.totals([hour for hour in hours if hour["hour"] >= first], start, end)
    nearby = list(
        Release.objects.filter(environment=environment, started_at__lte=end)
        .exclude(finished_at__lt=start - WINDOW - HOUR)
        .order_by("started_at", "id")
    )
    live = [release for release in nearby if _went_live(release, start, end)]
    found["releases"] = [effect(release, nearby, hours, end) for release in live]
    rules = {"window_hours": WINDOW // HOUR, "enough": ENOUGH}
    return found, {"markers": markers(live), **rules}


def _went_live(release: Release, start: datetime, end: datetime) -> bool:
    went = release.outcome in (Release.Outcome.LIVE, Release.Outcome.REPLACED)
    return went and release.finished_at is not None and start <= release.finished_at <= end


def effect(
    release: Release, nearby: list[Release], hours: list[dict], end: datetime
) -> ReleaseEffect:
    """``release``'s figures in its windows before and after (see the module's doc); the
    rollouts of ``nearby`` releases cut them."""
    began, after_start = _hour(release.started_at), _hour(release.finished_at) + HOUR
    before_start, after_end = began - WINDOW, min(after_start + WINDOW, _hour(end) + HOUR)
    for other in nearby:
        if other.finished_at is not None and other.finished_at < release.started_at:
            before_start = max(before_start, _hour(other.finished_at) + HOUR)
        elif other.started_at > release.finished_at:
            after_end = min(after_end, _hour(other.started_at))
    after_end = max(after_end, after_start)
    before = _summary(hours, before_start, began)
    after = _summary(hours, after_start, after_end)
    return ReleaseEffect(
        release=release,
        live_at=release.finished_at,
        before=(before_start, began),
        after=(after_start, after_end),
        figures=[
            Figure(
                "TTFT p95",
                "ms",
                before["p95TtftMs"],
                after["p95TtftMs"],
                (before["ttftCount"], after["ttftCount"]),
            ),
            Figure(
                "time per output token",
                "ms",
                before["msPerOutputToken"],
                after["msPerOutputToken"],
                (before["genRequests"], after["genRequests"]),
            ),
            Figure(
                "error rate",
                "rate",
                _rate(before),
                _rate(after),
                (before["requests"], after["requests"]),
            ),
        ],
    )


def markers(releases: list[Release]) -> list[dict]:
    """Where the TTFT chart marks each release: when it went live."""
    return [
        {
            "time": int(release.finished_at.timestamp()),
            "label": f"release {release.pk} ({release.image_tag}) live",
        }
        for release in releases
    ]


def _summary(hours: list[dict], start: datetime, end: datetime) -> dict:
    first, last = rollups.hour_of(start.isoformat()), rollups.hour_of(end.isoformat())
    return rollups.summarize(hour for hour in hours if first <= hour["hour"] < last)


def _rate(summary: dict) -> float | None:
    return summary["errors"] / summary["requests"] if summary["requests"] else None


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)
