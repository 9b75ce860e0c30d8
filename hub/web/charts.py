"""Server-side SVG: the call timeline, sparklines, trend lines and histograms (no chart library in the browser).

Every number that goes into the markup is formatted here and every text is escaped, so a payload's strings
cannot inject markup.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from hub.scoring import CallView

COLORS = {
    "agent": "#2f6fdf",
    "customer": "#2aa876",
    "interruption": "#e0463a",
    "backchannel": "#f2b632",
    "dead_air": "#9aa0a6",
    "angry": "#c2185b",
    "happy": "#43a047",
    "sad": "#5e35b1",
    "neutral": "#b0bec5",
}


MAX_BARS = 4000
"""Bars one timeline draws at most; segments closer than a pixel merge first, so only crafted input reaches it."""
MAX_TICKS = 16
LABEL_CHARS = 40
"""A payload's label (an emotion, a talk-over kind) is cut to this many characters in a tooltip."""


def _f(x: float) -> str:
    return f"{x:.1f}"


def _num(v: object) -> float:
    """A stored number as a finite float; anything else (a string, NaN, 1e999) as 0."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        x = float(v)
        return x if math.isfinite(x) else 0.0
    return 0.0


def _label(v: object) -> str:
    text = str(v)
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "\u2026"


def _clock(t: float) -> str:
    t = int(t)
    h, m, s = t // 3600, t % 3600 // 60, t % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _tick_step(duration: float) -> float:
    """Seconds between ticks: 10 s, 30 s, 1 min for ordinary calls, then the first round step that keeps the
    axis within MAX_TICKS ticks whatever duration a summary claims."""
    if duration < 60:
        return 10.0
    if duration <= 180:
        return 30.0
    for step in (60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400):
        if duration / step <= MAX_TICKS:
            return float(step)
    return float(math.ceil(duration / MAX_TICKS / 86400) * 86400)


def timeline(view: CallView, labels: Mapping[str, str], width: int = 960) -> str:
    """Both parties' speech on two lanes, talk-overs between them, dead air and emotion on lanes below.

    Drawn at the chart's resolution, whatever the call holds: per lane and colour, segments less than a pixel
    apart merge into one bar (its tooltip says how many), ticks stay within MAX_TICKS, and no more than
    MAX_BARS bars are drawn (a note says how many were left out), so one summary claiming a duration of 1e8 s
    or 50,000 events cannot make the call page huge."""
    duration = max(_num(view.summary.get("duration")), 1.0)
    left, lane, gap = 90, 22, 8
    scale = (width - left - 10) / duration
    rows = ["agent", "customer", "talk_over", "dead_air", "emotion"]
    y = {r: 10 + i * (lane + gap) for i, r in enumerate(rows)}
    height = y["emotion"] + lane + 30
    # data-left / data-scale: where second 0 is and pixels per second, for the page's script that marks a moment
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" role="img" aria-label="{escape(labels.get("timeline", "timeline"))}"'
        f' data-left="{left}" data-scale="{scale:.6g}" data-duration="{duration:.6g}"'
        f' data-height="{y["emotion"] + lane}">'
    ]
    for r in rows:
        out.append(f'<text x="4" y="{y[r] + 15}" font-size="12">{escape(labels.get(r, r))}</text>')
        out.append(f'<rect x="{left}" y="{y[r]}" width="{_f(duration * scale)}" height="{lane}" fill="#f4f6f8"></rect>')

    # (row, colour) -> open bar [x0, x1, first start, last end, title, class, segments]; closed bars go to `bars`
    open_bars: dict[tuple[str, str], list[Any]] = {}
    bars: list[tuple[str, str, list[Any]]] = []

    def bar(row: str, start: float, end: float, color: str, title: str, cls: str) -> None:
        start, end = min(max(start, 0.0), duration), min(max(end, start), duration)
        x0 = left + start * scale
        x1 = x0 + max((end - start) * scale, 1.0)
        cur = open_bars.get((row, color))
        if cur is not None and x0 <= cur[1] + 1.0:  # within a pixel of the open bar: the same bar on screen
            cur[1], cur[3], cur[6] = max(cur[1], x1), max(cur[3], end), cur[6] + 1
            return
        if cur is not None:
            bars.append((row, color, cur))
        open_bars[(row, color)] = [x0, x1, start, end, title, cls, 1]

    for e in view.entries:
        t, s, en = e.get("type"), _num(e.get("start")), _num(e.get("end"))
        span = f"{s:.2f}-{en:.2f} s"
        if t == "speech" and e.get("speaker") in ("agent", "customer"):
            who = str(e["speaker"])
            bar(who, s, en, COLORS[who], f"{labels.get(who, '')} {span}", "seg")
        elif t == "talk_over":
            kind = _label(e.get("kind"))
            color = COLORS.get(kind, "#e0463a")
            title = f"{labels.get(kind, kind)} ({_label(e.get('by'))}) {span}"
            bar("talk_over", s, en, color, title, f"to {escape(kind)}")
        elif t == "dead_air":
            bar("dead_air", s, en, COLORS["dead_air"], f"{labels.get('dead_air', 'dead air')} {span}", "da")
        elif t == "emotion":
            label = _label(e.get("label", e.get("emotion", "")))
            party = _label(e.get("party", e.get("speaker", "")))
            bar("emotion", s, max(en, s + 0.5), COLORS.get(label, "#888"), f"{party}: {label} {span}", "emo")
    bars += [(row, color, cur) for (row, color), cur in open_bars.items()]
    for row, color, (x0, x1, start, end, title, cls, n) in bars[:MAX_BARS]:
        if n > 1:  # merged: the span it covers and how many segments it stands for
            title = f"{title.rsplit(' ', 2)[0]} {start:.2f}-{end:.2f} s ({n} \u00d7)"
        out.append(
            f'<rect class="{cls}" x="{_f(x0)}" y="{y[row]}" width="{_f(x1 - x0)}" height="{lane}" fill="{color}">'
            f"<title>{escape(title)}</title></rect>"
        )
    if len(bars) > MAX_BARS:
        out.append(
            f'<text class="more" x="{width - 10}" y="{height - 2}" font-size="10" text-anchor="end">'
            f"+{len(bars) - MAX_BARS}</text>"
        )
    step = _tick_step(duration)
    base = y["emotion"] + lane
    for i in range(int(duration // step) + 1):
        t = i * step
        x = left + t * scale
        out.append(f'<line x1="{_f(x)}" y1="{base}" x2="{_f(x)}" y2="{base + 5}" stroke="#555"></line>')
        out.append(f'<text x="{_f(x)}" y="{base + 18}" font-size="10" text-anchor="middle">{_clock(t)}</text>')
    out.append('<g class="marks"></g></svg>')  # the moments a click on a deduction marks go here (call.html)
    return "".join(out)


LEGEND = (
    ("agent", "agent"),
    ("customer", "customer"),
    ("interruption", "interruption"),
    ("backchannel", "backchannel"),
    ("dead_air", "dead_air"),
    ("angry", "angry"),
    ("happy", "happy"),
    ("sad", "sad"),
    ("neutral", "neutral"),
)
MARK_COLOR = "#ffd54f"


def legend(labels: Mapping[str, str]) -> str:
    """What each colour of the timeline means, from the same table the timeline is drawn with."""
    items = [
        f'<li data-key="{key}"><span class="swatch" style="background:{COLORS[key]}"></span>'
        f"{escape(labels.get('legend_' + label, labels.get(label, label)))}</li>"
        for key, label in LEGEND
    ]
    items.append(
        f'<li data-key="mark"><span class="swatch" style="background:{MARK_COLOR};outline:1px solid #c69500">'
        f"</span>{escape(labels.get('legend_mark', 'marked moment'))}</li>"
    )
    return f'<ul class="legend" id="legend">{"".join(items)}</ul>'


def sparkline(values: Sequence[float | None], width: int = 120, height: int = 28) -> str:
    pts = [(i, v) for i, v in enumerate(values) if v is not None]
    if len(pts) < 2:
        return f'<svg class="spark" width="{width}" height="{height}"></svg>'
    n = max(len(values) - 1, 1)
    lo, hi = min(v for _, v in pts), max(v for _, v in pts)
    rng = max(hi - lo, 1.0)
    coords = " ".join(f"{_f(i * (width - 4) / n + 2)},{_f(height - 3 - (v - lo) * (height - 6) / rng)}" for i, v in pts)
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f'<polyline fill="none" stroke="#2f6fdf" stroke-width="1.5" points="{coords}"></polyline></svg>'
    )


def trend_chart(points: Sequence[Mapping[str, Any]], width: int = 720, height: int = 200) -> str:
    """Daily weighted mean score (0-100) as a line with dots; days without scored calls are skipped."""
    pts = [(i, float(p["score"])) for i, p in enumerate(points) if p.get("score") is not None]
    left, bottom = 34, 20
    out = [f'<svg class="trend" width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    for grid in (0, 50, 100):
        yy = height - bottom - grid * (height - bottom - 10) / 100
        out.append(f'<line x1="{left}" x2="{width}" y1="{_f(yy)}" y2="{_f(yy)}" stroke="#ddd"></line>')
        out.append(f'<text x="2" y="{_f(yy + 4)}" font-size="10">{grid}</text>')
    n = max(len(points) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return left + i * (width - left - 6) / n, height - bottom - v * (height - bottom - 10) / 100

    if pts:
        out.append(
            '<polyline fill="none" stroke="#2f6fdf" stroke-width="2" points="'
            + " ".join(f"{_f(px)},{_f(py)}" for px, py in (xy(i, v) for i, v in pts))
            + '"></polyline>'
        )
        for i, v in pts:
            cx, cy = xy(i, v)
            out.append(
                f'<circle cx="{_f(cx)}" cy="{_f(cy)}" r="2.5" fill="#2f6fdf">'
                f"<title>{escape(str(points[i]['day']))}: {v:.1f}</title></circle>"
            )
    if points:
        out.append(f'<text x="{left}" y="{height - 4}" font-size="10">{escape(str(points[0]["day"]))}</text>')
        out.append(
            f'<text x="{width - 4}" y="{height - 4}" font-size="10" text-anchor="end">'
            f"{escape(str(points[-1]['day']))}</text>"
        )
    out.append("</svg>")
    return "".join(out)


def histogram(counts: Sequence[int], width: int = 360, height: int = 120) -> str:
    top = float(max(max(counts, default=0), 1))
    bw = (width - 10) / max(len(counts), 1)
    out = [f'<svg class="hist" width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    for i, c in enumerate(counts):
        h = c * (height - 24) / top
        out.append(
            f'<rect x="{_f(5 + i * bw)}" y="{_f(height - 16 - h)}" width="{_f(bw - 2)}" height="{_f(h)}"'
            f' fill="#2f6fdf"><title>{i * 10}-{i * 10 + 10}: {c}</title></rect>'
        )
        out.append(f'<text x="{_f(5 + i * bw)}" y="{height - 4}" font-size="9">{i * 10}</text>')
    out.append("</svg>")
    return "".join(out)
