"""Small charts as inline SVG, drawn on the server: no JavaScript library, nothing from a CDN.

Colours come from the stylesheet (classes ``st-success``, ``st-failed``…), so the charts follow
the page's light or dark theme; every mark has a ``<title>`` (its tooltip, read by screen
readers too)."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from highmark.models import RunRecord


def seconds(run: RunRecord) -> float:
    """How long a run took (or has taken so far), to the millisecond where the row allows."""
    if run.finished_at is not None:
        return max((run.finished_at - run.started_at).total_seconds(), 0.0)
    if run.heartbeat_at is not None:
        return max((run.heartbeat_at - run.started_at).total_seconds(), 0.0)
    return float(run.duration_seconds or 0)


def duration_bars(runs: Sequence[RunRecord], *, width: int = 140, height: int = 28) -> Markup:
    """The durations of ``runs`` (newest first) as bars, oldest left, coloured by status."""
    if not runs:
        return Markup('<span class="muted">no runs</span>')
    ordered = list(reversed(runs))
    longest = max(seconds(r) for r in ordered) or 1.0
    slot = width / max(len(ordered), 20)
    bars = []
    for i, run in enumerate(ordered):
        took = seconds(run)
        h = max(3.0, (height - 2) * took / longest)
        title = (
            f"run {run.run_id}: {run.run_status.value}, {took:.1f}s, {run.rows_read:,} rows read"
        )
        bars.append(
            f'<rect class="st-{run.run_status.value}" x="{i * slot:.1f}" y="{height - h:.1f}" '
            f'width="{max(slot - 1.5, 1):.1f}" height="{h:.1f}">'
            f"<title>{escape(title)}</title></rect>"
        )
    label = f"durations of the last {len(ordered)} runs"
    return Markup(
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{label}">{"".join(bars)}</svg>'
    )


def history_chart(runs: Sequence[RunRecord], *, width: int = 600, height: int = 150) -> Markup:
    """Rows read (bars, coloured by status) and duration (a line) of ``runs`` over time."""
    if not runs:
        return Markup('<p class="muted">No runs yet.</p>')
    ordered = list(reversed(runs))
    pad_left, pad_bottom, pad_top = 44, 18, 8
    plot_w, plot_h = width - pad_left - 44, height - pad_bottom - pad_top
    most_rows = max(r.rows_read for r in ordered) or 1
    longest = max(seconds(r) for r in ordered) or 1.0
    slot = plot_w / max(len(ordered), 30)
    parts = [
        f'<line class="axis" x1="{pad_left}" y1="{pad_top + plot_h}" '
        f'x2="{pad_left + plot_w}" y2="{pad_top + plot_h}"/>',
        f'<text class="axis-label" x="{pad_left - 4}" y="{pad_top + 8}" text-anchor="end">'
        f"{_short(most_rows)}</text>",
        f'<text class="axis-label" x="{pad_left - 4}" y="{pad_top + plot_h}" text-anchor="end">'
        "0</text>",
        f'<text class="axis-label line-label" x="{pad_left + plot_w + 4}" y="{pad_top + 8}">'
        f"{longest:.1f}s</text>",
    ]
    points = []
    for i, run in enumerate(ordered):
        x = pad_left + i * slot
        h = plot_h * run.rows_read / most_rows
        took = seconds(run)
        title = (
            f"run {run.run_id} ({run.run_status.value}): {run.rows_read:,} rows read, "
            f"{took:.1f}s, started {run.started_at:%Y-%m-%d %H:%M} UTC"
        )
        parts.append(
            f'<a href="/runs/{run.run_id}"><rect class="st-{run.run_status.value}" '
            f'x="{x + 1:.1f}" y="{pad_top + plot_h - max(h, 1):.1f}" '
            f'width="{max(slot - 2, 1):.1f}" height="{max(h, 1):.1f}">'
            f"<title>{escape(title)}</title></rect></a>"
        )
        points.append(f"{x + slot / 2:.1f},{pad_top + plot_h - plot_h * took / longest:.1f}")
    parts.append(f'<polyline class="duration-line" points="{" ".join(points)}"/>')
    first, last = ordered[0].started_at, ordered[-1].started_at
    parts.append(
        f'<text class="axis-label" x="{pad_left}" y="{height - 4}">{first:%m-%d %H:%M}</text>'
    )
    parts.append(
        f'<text class="axis-label" x="{pad_left + len(ordered) * slot}" y="{height - 4}" '
        f'text-anchor="end">{last:%m-%d %H:%M}</text>'
    )
    label = f"rows read and duration of the last {len(ordered)} runs"
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{label}">{"".join(parts)}</svg>'
    )


def _short(number: int) -> str:
    for size, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if number >= size:
            return f"{number / size:.1f}{suffix}"
    return str(number)
