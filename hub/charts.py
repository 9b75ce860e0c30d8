"""Server-side SVG: the call timeline, sparklines, trend lines and histograms (no chart library in the browser).

Every number that goes into the markup is formatted here and every text is escaped, so a payload's strings
cannot inject markup.
"""

from __future__ import annotations

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


def _f(x: float) -> str:
    return f"{x:.1f}"


def timeline(view: CallView, labels: Mapping[str, str], width: int = 960) -> str:
    """Both parties' speech on two lanes, talk-overs between them, dead air and emotion on lanes below."""
    duration = max(float(view.summary.get("duration") or 0.0), 1.0)
    left, lane, gap = 90, 22, 8
    scale = (width - left - 10) / duration
    rows = ["agent", "customer", "talk_over", "dead_air", "emotion"]
    y = {r: 10 + i * (lane + gap) for i, r in enumerate(rows)}
    height = y["emotion"] + lane + 30
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" role="img" aria-label="{escape(labels.get("timeline", "timeline"))}">'
    ]
    for r in rows:
        out.append(f'<text x="4" y="{y[r] + 15}" font-size="12">{escape(labels.get(r, r))}</text>')
        out.append(f'<rect x="{left}" y="{y[r]}" width="{_f(duration * scale)}" height="{lane}" fill="#f4f6f8"></rect>')

    def bar(row: str, start: float, end: float, color: str, title: str, cls: str) -> None:
        x, w = left + start * scale, max((end - start) * scale, 1.0)
        out.append(
            f'<rect class="{cls}" x="{_f(x)}" y="{y[row]}" width="{_f(w)}" height="{lane}" fill="{color}">'
            f"<title>{escape(title)}</title></rect>"
        )

    for e in view.entries:
        t, s, en = e.get("type"), float(e.get("start") or 0), float(e.get("end") or 0)
        span = f"{s:.2f}-{en:.2f} s"
        if t == "speech" and e.get("speaker") in ("agent", "customer"):
            bar(
                str(e["speaker"]),
                s,
                en,
                COLORS[str(e["speaker"])],
                f"{labels.get(str(e['speaker']), '')} {span}",
                "seg",
            )
        elif t == "talk_over":
            kind = str(e.get("kind"))
            color = COLORS.get(kind, "#e0463a")
            bar("talk_over", s, en, color, f"{labels.get(kind, kind)} ({e.get('by')}) {span}", f"to {escape(kind)}")
        elif t == "dead_air":
            bar("dead_air", s, en, COLORS["dead_air"], f"{labels.get('dead_air', 'dead air')} {span}", "da")
        elif t == "emotion":
            label = str(e.get("label", e.get("emotion", "")))
            party = str(e.get("party", e.get("speaker", "")))
            bar("emotion", s, max(en, s + 0.5), COLORS.get(label, "#888"), f"{party}: {label} {span}", "emo")
    # minute ticks
    step = 60 if duration > 180 else 10 if duration < 60 else 30
    t = 0
    while t <= duration:
        x = left + t * scale
        base = y["emotion"] + lane
        out.append(f'<line x1="{_f(x)}" y1="{base}" x2="{_f(x)}" y2="{base + 5}" stroke="#555"></line>')
        out.append(
            f'<text x="{_f(x)}" y="{base + 18}" font-size="10" text-anchor="middle">{t // 60}:{t % 60:02d}</text>'
        )
        t += step
    out.append("</svg>")
    return "".join(out)


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
