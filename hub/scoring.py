"""Scoring a call: a scorecard applied to the call's stored events, every point tied to its evidence.

`score_call` is pure (events in, `CallScore` out): it expands `activity` batches back into speech,
talk-over and dead-air entries (evidence = the batch's event id plus the entry's index), accepts the older
one-event-per-segment form too, reads emotion events defensively (any shape, unknown labels ignored), and
lists every rule of the scorecard with its points, how often it fired, and the evidence. A rule that could
not be evaluated (its metric missing or null) says so instead of scoring.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge_agent.wire import expand_activity
from hub.scorecard import CalmUnderAngerRule, PerEventRule, Scorecard, ThresholdRule

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
    "eq": operator.eq,
    "ne": operator.ne,
}


@dataclass(frozen=True)
class Evidence:
    event_id: str
    """The stored event (an `activity` batch for turn-taking entries)."""
    start: float
    """Seconds from the start of the call."""
    end: float
    index: int | None = None
    """Position of the entry inside its `activity` batch's list."""
    detail: str = ""
    confidence: float | None = None
    """The event's own confidence (a talk-over's), where the station sent one."""


@dataclass(frozen=True)
class RuleResult:
    rule: str
    title: str
    kind: str
    points: float
    """What the rule added (credit, > 0) or took away (deduction, < 0), after `free` and `cap`."""
    count: int
    """Occurrences (per_event) or 1 when a once-only rule fired."""
    evidence: list[Evidence] = field(default_factory=list)
    value: float | bool | None = None
    """The metric a threshold rule compared."""
    applicable: bool = True
    capped: bool = False


@dataclass(frozen=True)
class CallScore:
    call_id: str
    scorecard: str
    version: int
    score: float
    max_score: float
    weight: float
    """Weight in averages: 1, the scorecard's low-confidence weight, or 0 when excluded."""
    excluded: bool
    note: str
    items: list[RuleResult]

    def items_json(self) -> list[dict[str, Any]]:
        # vars() rather than dataclasses.asdict: asdict deep-copies, which dominated saving a score
        return [{**vars(i), "evidence": [dict(vars(e)) for e in i.evidence]} for i in self.items]


@dataclass(frozen=True)
class CallView:
    """A call's events in the shape rules read them."""

    summary: Mapping[str, Any]
    summary_id: str
    entries: list[dict[str, Any]]
    """speech / talk_over / dead_air / emotion entries, each with `event_id` (and `index` from a batch)."""
    by_type: Mapping[str, list[tuple[dict[str, Any], float, float]]] = field(default_factory=dict)
    """The entries of each type, in the same order, with their start and end as numbers (what rules filter on:
    scoring is a good part of the hub's CPU, and every rule used to scan and convert every entry)."""

    def of_type(self, etype: str) -> list[tuple[dict[str, Any], float, float]]:
        if self.by_type or not self.entries:
            return self.by_type.get(etype, [])
        return [(e, _num(e.get("start")), _num(e.get("end"))) for e in self.entries if e.get("type") == etype]


def call_view(events: Iterable[Mapping[str, Any]]) -> CallView | None:
    """None when the call has no `call_summary` yet (not scorable)."""
    summary: Mapping[str, Any] | None = None
    summary_id = ""
    entries: list[dict[str, Any]] = []
    for ev in events:
        etype = ev.get("type")
        if etype == "activity":
            try:
                expanded = expand_activity(ev)
            except (KeyError, TypeError, ValueError):
                continue  # a malformed batch cannot be cited; the summary still scores
            entries += [{**x, "event_id": ev["id"]} for x in expanded]
        elif etype in ("speech", "talk_over", "dead_air", "emotion"):
            entries.append({**ev, "event_id": ev["id"], "index": None})
        elif etype == "call_summary":
            summary, summary_id = ev, str(ev["id"])
    if summary is None:
        return None
    keyed = sorted((_num(e.get("start")), _num(e.get("end")), i) for i, e in enumerate(entries))  # i: stable
    by_type: dict[str, list[tuple[dict[str, Any], float, float]]] = {}
    ordered = []
    for start, end, i in keyed:
        e = entries[i]
        ordered.append(e)
        by_type.setdefault(str(e.get("type")), []).append((e, start, end))
    return CallView(summary, summary_id, ordered, by_type)


def _num(v: object) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0.0


def event_confidence(e: Mapping[str, Any]) -> float | None:
    """An event's confidence if it carries a usable one (ingest bounds it to 0..1; an older station sends none)."""
    v = e.get("confidence")
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1 else None


def _sure_enough(e: Mapping[str, Any], least: float) -> bool:
    conf = event_confidence(e)
    return least <= 0 or conf is None or conf >= least


def metric(summary: Mapping[str, Any], path: str) -> Any:
    node: Any = summary
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _emotion_party(e: Mapping[str, Any]) -> str | None:
    party = e.get("party", e.get("speaker"))
    return party if isinstance(party, str) else None


def _angry(e: Mapping[str, Any]) -> bool:
    label = e.get("label", e.get("emotion"))
    return (isinstance(label, str) and label.lower() in ("angry", "anger")) or e.get("reason") == "anger_alert"


def _ev(e: Mapping[str, Any], detail: str = "") -> Evidence:
    return Evidence(str(e["event_id"]), _num(e.get("start")), _num(e.get("end")), e.get("index"), detail)


def _per_event(rule: PerEventRule, view: CallView) -> RuleResult:
    match = list(rule.match.items())
    shortest = rule.min_duration_s - 1e-9
    hits = [
        (e, start, end)
        for e, start, end in view.of_type(rule.event)
        if end - start >= shortest and all(e.get(k) == v for k, v in match) and _sure_enough(e, rule.min_confidence)
    ]
    n = len(hits)
    raw = rule.points * max(0, n - rule.free)
    capped = rule.cap is not None and abs(raw) > rule.cap
    points = math.copysign(rule.cap, raw) if capped and rule.cap is not None else raw
    evidence = [
        Evidence(str(e["event_id"]), start, end, e.get("index"), f"{end - start:.2f} s", event_confidence(e))
        for e, start, end in hits
    ]
    return RuleResult(rule.id, rule.title, rule.kind, round(points, 3), n, evidence, capped=capped)


def _threshold(rule: ThresholdRule, view: CallView) -> RuleResult:
    value = metric(view.summary, rule.metric)
    ok_type = isinstance(value, bool) if isinstance(rule.value, bool) else isinstance(value, int | float)
    if value is None or not ok_type:
        return RuleResult(rule.id, rule.title, rule.kind, 0.0, 0, value=None, applicable=False)
    fired = _OPS[rule.op](value, rule.value)
    duration = _num(view.summary.get("duration"))
    evidence = (
        [Evidence(view.summary_id, 0.0, duration, None, f"{rule.metric} = {value} ({rule.op} {rule.value})")]
        if fired
        else []
    )
    return RuleResult(rule.id, rule.title, rule.kind, rule.points if fired else 0.0, int(fired), evidence, value)


def _calm_under_anger(rule: CalmUnderAngerRule, view: CallView) -> RuleResult:
    emotions = [e for e, _, _ in view.of_type("emotion")]
    angry_customer = [e for e in emotions if _emotion_party(e) == "customer" and _angry(e)]
    evidence = [_ev(e, "customer angry") for e in angry_customer]
    if not angry_customer and metric(view.summary, "customer.shouting") is True:
        evidence = [Evidence(view.summary_id, 0.0, _num(view.summary.get("duration")), None, "customer shouting")]
    if not evidence:
        return RuleResult(rule.id, rule.title, rule.kind, 0.0, 0, applicable=False)
    agent_angry = any(_emotion_party(e) == "agent" and _angry(e) for e in emotions)
    calm = not agent_angry and metric(view.summary, "agent.shouting") is not True
    return RuleResult(rule.id, rule.title, rule.kind, rule.points if calm else 0.0, int(calm), evidence if calm else [])


def score_call(call_id: str, card: Scorecard, view: CallView) -> CallScore:
    items: list[RuleResult] = []
    for rule in card.rules:
        if isinstance(rule, PerEventRule):
            items.append(_per_event(rule, view))
        elif isinstance(rule, ThresholdRule):
            items.append(_threshold(rule, view))
        else:
            items.append(_calm_under_anger(rule, view))
    total = card.base + sum(i.points for i in items)
    score = round(min(card.max_score, max(card.min_score, total)), 2)
    quality = view.summary.get("quality")
    low = isinstance(quality, Mapping) and quality.get("low_confidence") is True
    weight, excluded, note = 1.0, False, ""
    if low:
        flags = quality.get("flags") if isinstance(quality, Mapping) else None
        why = ", ".join(str(f) for f in flags) if isinstance(flags, list) and flags else "low_confidence"
        action = card.low_confidence.action
        if action == "exclude":
            weight, excluded, note = 0.0, True, f"excluded: low confidence ({why})"
        elif action == "downweight":
            weight = card.low_confidence.weight
            note = f"weighted {weight:g}: low confidence ({why})"
        else:
            note = f"low confidence ({why}), scored as any call"
    return CallScore(call_id, card.name, card.version, score, card.max_score, weight, excluded, note, items)
