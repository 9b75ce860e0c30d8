"""A call's score in plain words, for the call page: the base, every rule's result with its allowance and cap,
the evidence as sentences with units, and the score's history.

`breakdown` turns a stored score (`hub.web.views.call_detail`) and the scorecard that made it into rows whose numbers
add up on screen: base + each rule's points after review = the call's score (clamped to the scorecard's range,
which a row then says). A rule inside its allowance says so rather than "-0", a rule that could not be
evaluated stays "not applicable" after review unless a reviewer gave it points, and a threshold rule's evidence
is a sentence ("Agent answered in 0.85 s on average after the customer stopped (target: under 1.0 s)"), never
the metric path and operator the scorecard is written in. Everything here is data; the template escapes it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from hub.scorecard import CalmUnderAngerRule, PerEventRule, Scorecard, ThresholdRule
from hub.scoring import event_confidence

# metric path -> (English, Chinese, unit); {v} is the measured value with its unit
_METRICS: dict[str, tuple[str, str, str]] = {
    "agent_response_latency_mean": (
        "Agent answered in {v} on average after the customer stopped",
        "客户说完后坐席平均 {v} 回应",
        "s",
    ),
    "agent.talk_ratio": ("Agent talked {v} of the time", "坐席说话时间占 {v}", "ratio"),
    "customer.talk_ratio": ("Customer talked {v} of the time", "客户说话时间占 {v}", "ratio"),
    "agent.talk_time": ("Agent talked for {v}", "坐席说话 {v}", "s"),
    "customer.talk_time": ("Customer talked for {v}", "客户说话 {v}", "s"),
    "longest_agent_monologue": ("Longest agent monologue: {v}", "坐席最长连续独白 {v}", "s"),
    "duration": ("The call lasted {v}", "通话时长 {v}", "s"),
    "talk_overs": ("Talk-overs: {v}", "抢话 {v} 次", "count"),
    "dead_air_count": ("Dead-air gaps: {v}", "冷场 {v} 次", "count"),
}
# a yes/no metric -> ((English yes, no), (Chinese yes, no))
_FLAGS: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "agent.shouting": (("Agent shouted", "Agent did not shout"), ("坐席大声喊叫", "坐席没有大声喊叫")),
    "customer.shouting": (("Customer shouted", "Customer did not shout"), ("客户大声喊叫", "客户没有大声喊叫")),
    "monotone_agent": (
        ("Agent's delivery was monotone", "Agent's delivery was not monotone"),
        ("坐席语调单一", "坐席语调有起伏"),
    ),
}
_OPS = {
    "en": {"gt": "over", "ge": "at least", "lt": "under", "le": "at most", "eq": "exactly", "ne": "other than"},
    "zh-CN": {"gt": "超过", "ge": "不低于", "lt": "低于", "le": "不超过", "eq": "等于", "ne": "不等于"},
}
# what a scorer writes as a calm-under-anger evidence detail, in words
_DETAILS = {
    "customer angry": ("Customer angry", "客户愤怒"),
    "customer shouting": ("Customer shouting", "客户大声喊叫"),
}
_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "each": "{p} each",
        "once": "{p} once",
        "free": "first {n} free",
        "cap": "at most {c} in all",
        "min_dur": "{s} or longer",
        "min_conf": "only at confidence {c} or more",
        "conf": "confidence {c}",
        "doubt_dead_air": "speech may have been missed here",
        "found": "{n} found",
        "within": "within allowance ({n} of {free} free)",
        "capped": "capped at {c} (uncapped {raw})",
        "none_found": "none found",
        "not_measured": "not measured in this call",
        "no_anger": "the customer was not angry in this call",
        "not_calm": "the agent was not calm",
        "credit_when": "credit when {op} {thr}",
        "deduct_when": "deduction when {op} {thr}",
        "more": "and {n} more",
        "clamped": "limited to {lo}\u2013{hi}",
        "na": "not applicable",
        "within_short": "within allowance",
    },
    "zh-CN": {
        "each": "每次 {p}",
        "once": "一次 {p}",
        "free": "前 {n} 次不扣",
        "cap": "合计最多 {c} 分",
        "min_dur": "时长 {s} 及以上",
        "min_conf": "仅计置信度不低于 {c} 的事件",
        "conf": "置信度 {c}",
        "doubt_dead_air": "此处可能漏听了说话",
        "found": "发现 {n} 次",
        "within": "在允许范围内 ({n}/{free} 次免扣)",
        "capped": "已达上限 {c} 分 (未封顶 {raw})",
        "none_found": "未发现",
        "not_measured": "本通话未测得该指标",
        "no_anger": "本通话客户没有愤怒情绪",
        "not_calm": "坐席未保持冷静",
        "credit_when": "{op} {thr} 时加分",
        "deduct_when": "{op} {thr} 时扣分",
        "more": "另有 {n} 条",
        "clamped": "限定在 {lo}\u2013{hi} 分之间",
        "na": "不适用",
        "within_short": "免扣范围内",
    },
}


@dataclass
class Moment:
    """One piece of timestamped evidence: a span of the call, in words."""

    start: float
    end: float
    text: str


@dataclass
class Row:
    rule: str
    title: str
    terms: str
    """How the rule counts: points each or once, the free allowance, the cap."""
    state: str
    """applied, within_allowance, zero, not_applicable."""
    auto: float
    effective: float
    effective_applicable: bool
    """False while a not-applicable rule has no reviewer's points: it adds nothing and says so."""
    reviewed_by: str | None
    summary: str
    """The rule's outcome in words: what was found, or the measured value against the threshold."""
    moments: list[Moment] = field(default_factory=list)
    more: str = ""
    capped: bool = False
    auto_text: str = ""
    """The automatic points as shown: "-6 (3\u00d7)", "0", "within allowance" or "not applicable"."""
    effective_text: str = ""


@dataclass
class Breakdown:
    base: float
    rows: list[Row]
    total: float
    """base + the rows' points after review, before the scorecard's range."""
    score: float
    clamped: str
    """Empty, or the range the total was limited to."""


def _num(v: object) -> float:
    if isinstance(v, int | float) and not isinstance(v, bool):
        x = float(v)
        return x + 0.0 if math.isfinite(x) else 0.0  # + 0.0: a stored -0.0 (-3 x 0) is shown as 0, never "-0"
    return 0.0


def _pts(p: float) -> str:
    return f"{p:+g}"


def _secs(v: float, lang: str) -> str:
    text = f"{v:.1f}" if round(v, 1) == round(v, 2) else f"{v:.2f}"
    return f"{text}秒" if lang == "zh-CN" else f"{text} s"


def _unit(v: float, unit: str, lang: str) -> str:
    if unit == "s":
        return _secs(v, lang)
    if unit == "ratio":
        return f"{v * 100:.0f}%" if lang == "zh-CN" else f"{v * 100:.0f} %"
    return f"{v:g}"


def _guess_unit(metric: str) -> str:
    """A metric the phrase table lacks: its unit from its name (a custom scorecard may name any summary field)."""
    if metric.endswith("ratio"):
        return "ratio"
    if any(w in metric for w in ("latency", "time", "monologue", "duration", "_s")):
        return "s"
    return "count"


def threshold_words(rule: ThresholdRule, value: object, lang: str) -> str:
    """The measured value against the rule's threshold, as a sentence with units."""
    zh = lang == "zh-CN"
    w = _WORDS[lang]
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return w["not_measured"]
    if isinstance(value, bool) or isinstance(rule.value, bool):
        flags = _FLAGS.get(rule.metric)
        yes = bool(value)
        if flags is not None:
            return flags[1 if zh else 0][0 if yes else 1]
        return f"{rule.metric}: {('是' if yes else '否') if zh else ('yes' if yes else 'no')}"
    phrase = _METRICS.get(rule.metric)
    unit = phrase[2] if phrase else _guess_unit(rule.metric)
    measured = _unit(_num(value), unit, lang)
    sentence = (phrase[1 if zh else 0] if phrase else f"{rule.metric}: {{v}}").format(v=measured)
    when = w["credit_when" if rule.points > 0 else "deduct_when"].format(
        op=_OPS[lang][rule.op], thr=_unit(_num(rule.value), unit, lang)
    )
    return f"{sentence} ({when})"


def terms(rule: Any, lang: str) -> str:
    """How a rule counts, in words: "-3 each · first 1 free · at most 15 in all"."""
    w = _WORDS[lang]
    if isinstance(rule, PerEventRule):
        parts = [w["each"].format(p=_pts(rule.points))]
        if rule.min_duration_s:
            parts.append(w["min_dur"].format(s=_secs(rule.min_duration_s, lang)))
        if rule.min_confidence:
            parts.append(w["min_conf"].format(c=f"{rule.min_confidence:.2f}"))
        if rule.free:
            parts.append(w["free"].format(n=rule.free))
        if rule.cap is not None:
            parts.append(w["cap"].format(c=f"{rule.cap:g}"))
        return " · ".join(parts)
    return w["once"].format(p=_pts(float(getattr(rule, "points", 0.0))))


# a dead air whose confidence is under this is more often speech the station missed than real silence: of those
# under 0.9 on the held-out calls of benchmarks/eval_calls.py, 84 % were false (57 % of all; docs/events.md)
DEAD_AIR_DOUBT = 0.9


def _moment(e: Mapping[str, Any], lang: str, event: str | None = None) -> Moment:
    start, end = _num(e.get("start")), _num(e.get("end"))
    unit = "秒" if lang == "zh-CN" else " s"
    detail = e.get("detail")
    words = _DETAILS.get(detail) if isinstance(detail, str) else None
    # the span itself, then its length or what was seen: never the stored detail verbatim (a seat's word)
    text = f"{start:.1f}\u2013{end:.1f}{unit}"
    text += f" · {words[1 if lang == 'zh-CN' else 0]}" if words else f" · {end - start:.1f}{unit}"
    conf = event_confidence(e)
    # shown so an agent sees how sure the station was
    if conf is not None:
        text += " · " + _WORDS[lang]["conf"].format(c=f"{conf:.2f}")
        if event == "dead_air" and conf < DEAD_AIR_DOUBT:
            text += " · " + _WORDS[lang]["doubt_dead_air"]
    return Moment(start, end, text)


def breakdown(
    score: Mapping[str, Any],
    card: Scorecard | None,
    reviews: Sequence[Mapping[str, Any]],
    lang: str,
    titles: Mapping[str, str] | None = None,
) -> Breakdown:
    """The rows of a stored score (`call_detail`'s `score`) in `lang`; `card` is the scorecard that made it
    (None only if it was deleted from under the score: then the rows carry no terms)."""
    w = _WORDS[lang]
    rules = {r.id: r for r in card.rules} if card else {}
    # the latest applied review with points per rule is the one in force (hub.scores.Scorer.apply_overrides)
    by: dict[str, str] = {}
    for r in sorted(reviews, key=lambda r: int(r.get("id") or 0)):
        if r.get("status") == "applied" and r.get("rule_id") and r.get("points") is not None:
            by[str(r["rule_id"])] = str(r.get("resolved_by") or r.get("author") or "")
    rows = []
    for item in score.get("items") or []:
        rid = str(item.get("rule"))
        rule = rules.get(rid)
        auto = _num(item.get("points"))
        applicable = item.get("applicable", True) is not False
        effective = _num(item.get("effective_points", auto))
        count = int(_num(item.get("count")))
        event = rule.event if isinstance(rule, PerEventRule) else None
        moments = [_moment(e, lang, event) for e in item.get("evidence") or [] if isinstance(e, Mapping)]
        total_ev = int(_num(item.get("evidence_total", len(moments))))
        if not applicable:
            state = "not_applicable"
            summary = w["no_anger"] if isinstance(rule, CalmUnderAngerRule) else w["not_measured"]
        elif isinstance(rule, PerEventRule) and 0 < count <= rule.free and auto == 0:
            state, summary = "within_allowance", w["within"].format(n=count, free=rule.free)
        elif auto == 0:
            state = "zero"
            summary = w["none_found"] if isinstance(rule, PerEventRule) else ""
        else:
            state, summary = "applied", ""
        if isinstance(rule, ThresholdRule):
            # the sentence replaces the evidence's stored `metric = v (op x)`: the whole call is its span
            summary = threshold_words(rule, item.get("value"), lang) if applicable else summary
            moments, total_ev = [], 0
        elif isinstance(rule, PerEventRule) and count and state != "within_allowance":
            summary = w["found"].format(n=count)
            if rule.free:
                summary += " · " + w["free"].format(n=rule.free)
            if item.get("capped") and rule.cap is not None:
                raw = rule.points * max(0, count - rule.free)
                summary += " · " + w["capped"].format(c=f"{rule.cap:g}", raw=_pts(raw))
        elif isinstance(rule, CalmUnderAngerRule) and applicable and auto == 0:
            summary = w["not_calm"]
        reviewed = rid in by
        shown = applicable or reviewed
        if state in ("not_applicable", "within_allowance"):
            auto_text = w["na" if state == "not_applicable" else "within_short"]
        else:
            auto_text = f"{_pts(auto)} ({count}\u00d7)" if auto and count > 1 else _pts(auto) if auto else "0"
        if not shown:
            eff_text = w["na"]
        elif not reviewed and effective == auto:
            eff_text = auto_text.split(" (")[0] if state == "applied" else auto_text
        else:
            eff_text = _pts(effective) if effective else "0"
        rows.append(
            Row(
                capped=bool(item.get("capped")),
                auto_text=auto_text,
                effective_text=eff_text,
                rule=rid,
                title=(titles or {}).get(rid) or str(item.get("title") or rid),
                terms=terms(rule, lang) if rule is not None else "",
                state=state,
                auto=auto,
                effective=effective,
                effective_applicable=shown,
                reviewed_by=by.get(rid),
                summary=summary,
                moments=moments,
                more=w["more"].format(n=f"{total_ev - len(moments):,}") if total_ev > len(moments) else "",
            )
        )
    base = float(card.base) if card else 0.0
    total = round(base + sum(r.effective for r in rows), 2)
    lo, hi = (card.min_score, card.max_score) if card else (-math.inf, math.inf)
    clamped = w["clamped"].format(lo=f"{lo:g}", hi=f"{hi:g}") if not lo <= total <= hi else ""
    return Breakdown(base, rows, total, _num(score.get("score")), clamped)


def history(detail: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The call's score history, oldest first: every score (the first, re-scores), every override and every
    dispute (at its resolution once resolved); each entry is its row with `kind` and `at` (an ISO time)."""
    out: list[dict[str, Any]] = [
        {**h, "kind": "score", "at": str(h.get("created") or ""), "first": i == 0}
        for i, h in enumerate(detail.get("history") or [])
    ]
    for r in detail.get("reviews") or []:
        at = r.get("resolved_at") or r.get("created") or ""
        out.append({**r, "kind": str(r.get("kind")), "at": str(at)})
    return sorted(out, key=lambda e: e["at"])


def local_time(iso: str | None, tz: tzinfo) -> str:
    """A stored ISO time (UTC) as the site's local "YYYY-MM-DD HH:MM"; what cannot be read, as it is."""
    if not iso:
        return ""
    try:
        t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso[:32]
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def calibration_grid(scores: Sequence[Mapping[str, Any]]) -> tuple[list[str], dict[str, dict[str, float]]]:
    """Calibration points as a grid: the reviewers (columns) and, per rule, each reviewer's points."""
    reviewers = sorted({str(k["reviewer"]) for k in scores})
    grid: dict[str, dict[str, float]] = {}
    for k in scores:
        grid.setdefault(str(k["rule_id"]), {})[str(k["reviewer"])] = _num(k["points"])
    return reviewers, grid
