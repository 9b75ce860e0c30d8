"""What the QA workflow pages show and accept: queues per role, review rows, a call's forms, form parsing.

The rules themselves live in `hub.reviews` (override, dispute, resolve) and `hub.calibration` (submit, report);
this module only reads for the pages and turns browser form fields into the values those functions take, so
the dashboard's forms and the API cannot disagree.

Queues (what waits for whom, the count in the nav): a team lead or an admin, the open disputes they may
resolve; a QA reviewer, the calls whose calibration another reviewer has started and they have not scored; an
agent, their disputes decided in the last `OUTCOME_DAYS` days.

Calibration is blind: a QA reviewer sees no other reviewer's points for a call until they have submitted their
own (`calibration.blind`); leads and admins, who run the sessions, always see them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hub import calibration, reviews, tone
from hub.auth import Scope, User
from hub.scores import get_scorecard
from hub.storage import Store

OUTCOME_DAYS = 7
"""An agent's decided disputes count in their queue for this many days."""
REASON_MAX = 2000
"""Characters of a reason or note (the API's limit)."""
POINTS_MAX = 1000.0
"""|points| a form may enter for a rule: far beyond any scorecard, short of nonsense."""
QUEUE_ROWS = 200


class FormError(ValueError):
    """A form that cannot be taken; `key` names its one-line message in `hub.web.i18n`."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


@dataclass(frozen=True)
class Queue:
    disputes: int = 0
    """Open disputes this lead or admin may resolve."""
    calibrate: int = 0
    """Calls a QA reviewer is asked to calibrate."""
    outcomes: int = 0
    """An agent's disputes decided lately."""

    @property
    def total(self) -> int:
        return self.disputes + self.calibrate + self.outcomes


def _since(days: int) -> str:
    """An ISO time `days` ago in the format `hub.scores.now_iso` stores (so strings compare as times)."""
    t = datetime.now(UTC) - timedelta(days=days)
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


def queue(store: Store, user: User) -> Queue:
    """The counts behind the nav badge (one small query per role)."""
    cond, params = Scope(user).agents_sql("c.agent_id")
    if user.role in ("admin", "lead"):
        n = store.db.scalar(
            "SELECT COUNT(*) FROM reviews r JOIN calls c ON c.call_id = r.call_id"
            f" WHERE r.kind = 'dispute' AND r.status = 'open'{cond}",
            params,
        )
        return Queue(disputes=int(n or 0))
    if user.role == "reviewer":
        return Queue(calibrate=len(calls_to_calibrate(store, user)))
    n = store.db.scalar(
        "SELECT COUNT(*) FROM reviews r JOIN calls c ON c.call_id = r.call_id"
        f" WHERE r.kind = 'dispute' AND r.status <> 'open' AND r.resolved_at >= ?{cond}",
        [_since(OUTCOME_DAYS), *params],
    )
    return Queue(outcomes=int(n or 0))


def calls_to_calibrate(store: Store, user: User) -> list[dict[str, Any]]:
    """Calls another reviewer has calibrated and `user` (a QA reviewer) has not: call, agent, reviewers so far."""
    if user.role != "reviewer":
        return []
    cond, params = Scope(user).agents_sql("c.agent_id")
    rows = store.db.all(
        "SELECT k.call_id, c.agent_id, a.name, c.site, c.started, COUNT(DISTINCT k.reviewer) FROM calibrations k"
        " JOIN calls c ON c.call_id = k.call_id LEFT JOIN agents a ON a.agent_id = c.agent_id"
        f" WHERE k.call_id NOT IN (SELECT call_id FROM calibrations WHERE reviewer = ?){cond}"
        " GROUP BY k.call_id, c.agent_id, a.name, c.site, c.started ORDER BY c.started DESC LIMIT ?",
        [user.username, *params, QUEUE_ROWS],
    )
    keys = ("call_id", "agent_id", "agent_name", "site", "started", "reviewers")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def epoch(iso: str | None) -> float | None:
    """Seconds since the epoch of a stored ISO time (`now_iso`), for the pages' site-local formatting."""
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def review_rows(store: Store, rows: list[reviews.Review]) -> list[dict[str, Any]]:
    """Reviews for the page: each with `disputed` (the rule's points when it was disputed: the latest override
    applied before it, else the automatic points; for a whole-call dispute the call's score now), `site` (for
    local times), `agent_name`, the decision apart from its note, and times as epoch seconds."""
    if not rows:
        return []
    ids = [r.id for r in rows]
    marks = ", ".join("?" for _ in ids)
    extra = {
        int(i): (disputed, site, agent, name, score)
        for i, disputed, site, agent, name, score in store.db.all(
            "SELECT r.id, COALESCE((SELECT o.points FROM reviews o WHERE o.call_id = r.call_id"
            "  AND o.rule_id = r.rule_id AND o.status = 'applied' AND o.points IS NOT NULL AND o.id < r.id"
            "  ORDER BY o.id DESC LIMIT 1), cr.auto_points), c.site, c.agent_id, a.name, c.score"
            " FROM reviews r JOIN calls c ON c.call_id = r.call_id"
            " LEFT JOIN call_rules cr ON cr.call_id = r.call_id AND cr.rule_id = r.rule_id"
            f" LEFT JOIN agents a ON a.agent_id = c.agent_id WHERE r.id IN ({marks})",
            ids,
        )
    }
    out = []
    for r in rows:
        disputed, site, agent, name, score = extra.get(r.id, (None, None, None, None, None))
        decision, _, note = (r.resolution or "").partition(": ")
        out.append(
            {
                **r.to_dict(),
                "disputed": disputed if r.rule_id is not None else score,
                "site": site,
                "agent_id": agent,
                "agent_name": name or agent,
                "decision": decision if r.resolution else None,
                "note": note,
                "created_ts": epoch(r.created),
                "resolved_ts": epoch(r.resolved_at),
            }
        )
    return out


def call_calibration(store: Store, user: User, call_id: str) -> dict[str, Any]:
    """The call's calibration for `user`: their own points, how many reviewers have scored it, and (unless
    blind) every reviewer's points per rule with the spread."""
    rows = store.db.all(
        "SELECT reviewer, rule_id, points FROM calibrations WHERE call_id = ? ORDER BY reviewer, rule_id", (call_id,)
    )
    mine = {str(rule): float(p) for who, rule, p in rows if who == user.username}
    names = sorted({str(who) for who, _, _ in rows})
    blind = calibration.blind(user, bool(mine))
    by_rule: dict[str, dict[str, float]] = {}
    if not blind:
        for who, rule, p in rows:
            by_rule.setdefault(str(rule), {})[str(who)] = float(p)
    return {
        "mine": mine,
        "submitted": bool(mine),
        "reviewers": len(names),
        "blind": blind,
        "names": [] if blind else names,
        "by_rule": by_rule,
        "spread": {r: max(v.values()) - min(v.values()) for r, v in by_rule.items()},
    }


def call_actions(store: Store, user: User, detail: dict[str, Any], lang: str) -> dict[str, Any]:
    """What `_call_actions.html` needs: which forms this user may use on this call, its rules (titles in the
    page's language, points now), the user's own disputes there, and the calibration (`call_calibration`)."""
    call = detail["call"]
    score = detail.get("score")
    rules: list[dict[str, Any]] = []
    if score is not None:
        card = get_scorecard(store, score["scorecard"], score["version"])
        zh = {r.id: r.title_zh or r.title for r in card.rules} if card else {}
        rules = [
            {
                "rule": item["rule"],
                "title": zh.get(item["rule"], item["title"]) if lang == "zh-CN" else item["title"],
                "auto": item["points"],
                "points": item["effective_points"],
                "applicable": item.get("applicable", True),
            }
            for item in score["items"]
        ]
    own = user.role == "agent" and call.get("agent_id") is not None and call["agent_id"] == user.agent_id
    return {
        "rules": rules,
        "can_dispute": own and bool(rules),
        "can_override": user.role in ("admin", "reviewer") and bool(rules),
        "can_calibrate": user.role in ("admin", "reviewer", "lead") and bool(rules),
        "my_disputes": [r for r in detail.get("reviews", []) if r["kind"] == "dispute" and own],
        "calibration": call_calibration(store, user, call["call_id"]) if rules else None,
        "can_tone": user.role in tone.LABEL_ROLES,
        "tone": call_tone(store, user, call["call_id"]) if user.role in tone.LABEL_ROLES else None,
    }


def call_tone(store: Store, user: User, call_id: str) -> dict[str, Any]:
    """The call's tone for `user`: the customer anger the station measured (and whether it alerted), the
    user's own labels and, unless blind (a QA reviewer who has not labelled it yet, as in calibration), every
    reviewer's."""
    events = store.call_events(call_id)
    labels = tone.call_labels(store, call_id)
    mine = {r["party"]: r["label"] for r in labels if r["reviewer"] == user.username}
    blind = calibration.blind(user, bool(mine))
    by_reviewer: dict[str, dict[str, str]] = {}
    for r in labels:
        by_reviewer.setdefault(r["reviewer"], {})[r["party"]] = r["label"]
    return {
        "score": tone.anger_score(events),
        "alerted": tone.raised_alert(events),
        "mine": mine,
        "blind": blind,
        "reviewers": len(by_reviewer),
        "by_reviewer": {} if blind else by_reviewer,
    }


# --- form fields -> values ------------------------------------------------------------------------------------------


def text(value: object, key: str = "err_reason", required: bool = True) -> str:
    """A reason or note: a string of at most REASON_MAX characters, not blank when `required`."""
    s = value.strip() if isinstance(value, str) else ""
    if len(s) > REASON_MAX:
        raise FormError("err_too_long")
    if required and not s:
        raise FormError(key)
    return s


def points(value: object, required: bool = True) -> float | None:
    """A rule's points as typed: a finite number within ±POINTS_MAX; blank is None unless `required`."""
    s = value.strip() if isinstance(value, str) else ""
    if not s:
        if required:
            raise FormError("err_points")
        return None
    try:
        p = float(s.replace("\u2212", "-").replace(",", "."))  # a typographic minus, a decimal comma
    except ValueError:
        raise FormError("err_points") from None
    if not math.isfinite(p) or abs(p) > POINTS_MAX:
        raise FormError("err_points")
    return p


def rule(value: object, known: set[str], optional: bool = False) -> str | None:
    """A rule id chosen in a form: one the call was scored on (or none, for a whole-call dispute)."""
    s = value.strip() if isinstance(value, str) else ""
    if not s and optional:
        return None
    if s not in known:
        raise FormError("err_rule")
    return s


def calibration_points(form: Any, known: set[str]) -> dict[str, float]:
    """`p.<rule>` fields of a calibration form: each filled one a valid number, at least one filled."""
    out: dict[str, float] = {}
    for r in sorted(known):
        p = points(form.get(f"p.{r}"), required=False)
        if p is not None:
            out[r] = p
    if not out:
        raise FormError("err_no_points")
    return out


def tone_labels(form: Any) -> dict[str, str]:
    """`tone.customer` (required) and `tone.agent` (optional: blank is none) of a tone form, each a known label."""
    out: dict[str, str] = {}
    for party in tone.PARTIES:
        value = form.get(f"tone.{party}")
        s = value.strip() if isinstance(value, str) else ""
        if not s and party != "customer":
            continue
        if s not in tone.LABELS:
            raise FormError("err_tone")
        out[party] = s
    return out
