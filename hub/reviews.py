"""Human review of automatic scores: reviewer overrides, agent disputes, lead resolutions, all audited.

- A QA reviewer (or admin) overrides one rule's result on a call with a reason; it applies at once.
- An agent disputes one of their calls, or a single rule on it, with a reason; it stays open.
- The agent's team lead (or an admin) resolves it: `upheld` (optionally with the rule's corrected points,
  which then apply like an override) or `rejected`, with a note.
Every change writes an audit row (who, what, when, the details) and re-derives the call's effective score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from hub.auth import Scope, User
from hub.scores import Scorer, audit, now_iso
from hub.storage import Store


class ReviewError(ValueError):
    """A review that cannot be made: unknown call or rule, wrong state, not allowed."""


@dataclass(frozen=True)
class Review:
    id: int
    call_id: str
    rule_id: str | None
    kind: str
    author: str
    points: float | None
    reason: str
    status: str
    created: str
    resolved_by: str | None
    resolved_at: str | None
    resolution: str | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


_COLS = "id, call_id, rule_id, kind, author, points, reason, status, created, resolved_by, resolved_at, resolution"


def _rule_on_call(store: Store, call_id: str, rule_id: str) -> None:
    if store.db.one("SELECT 1 FROM call_rules WHERE call_id = ? AND rule_id = ?", (call_id, rule_id)) is None:
        raise ReviewError(f"call {call_id} has no scored rule {rule_id!r}")


def override(store: Store, user: User, call_id: str, rule_id: str, points: float, reason: str) -> Review:
    if user.role not in ("admin", "reviewer"):
        raise ReviewError("only QA reviewers and admins override rule results")
    if not reason.strip():
        raise ReviewError("an override needs a reason")
    with store.db.transaction():
        _rule_on_call(store, call_id, rule_id)
        score_id = store.db.scalar("SELECT score_id FROM calls WHERE call_id = ?", (call_id,))
        rid = store.db.scalar(
            "INSERT INTO reviews (call_id, score_id, rule_id, kind, author, points, reason, status, created)"
            " VALUES (?, ?, ?, 'override', ?, ?, ?, 'applied', ?) RETURNING id",
            (call_id, score_id, rule_id, user.username, points, reason, now_iso()),
        )
        audit(store, user.username, "review.override", call_id, {"rule": rule_id, "points": points, "reason": reason})
        Scorer(store).apply_overrides(call_id)
    return get(store, int(rid))


def dispute(store: Store, user: User, call_id: str, rule_id: str | None, reason: str) -> Review:
    agent = store.db.scalar("SELECT agent_id FROM calls WHERE call_id = ?", (call_id,))
    if user.role != "agent" or agent is None or agent != user.agent_id:
        raise ReviewError("agents dispute their own calls")
    if not reason.strip():
        raise ReviewError("a dispute needs a reason")
    with store.db.transaction():
        if rule_id is not None:
            _rule_on_call(store, call_id, rule_id)
        score_id = store.db.scalar("SELECT score_id FROM calls WHERE call_id = ?", (call_id,))
        rid = store.db.scalar(
            "INSERT INTO reviews (call_id, score_id, rule_id, kind, author, reason, status, created)"
            " VALUES (?, ?, ?, 'dispute', ?, ?, 'open', ?) RETURNING id",
            (call_id, score_id, rule_id, user.username, reason, now_iso()),
        )
        audit(store, user.username, "review.dispute", call_id, {"rule": rule_id, "reason": reason})
    return get(store, int(rid))


def resolve(
    store: Store,
    user: User,
    review_id: int,
    decision: Literal["upheld", "rejected"],
    note: str,
    points: float | None = None,
) -> Review:
    r = get(store, review_id)
    if r.kind != "dispute" or r.status != "open":
        raise ReviewError(f"review {review_id} is not an open dispute")
    agent = store.db.scalar("SELECT agent_id FROM calls WHERE call_id = ?", (r.call_id,))
    if user.role not in ("admin", "lead") or not Scope(user).can_see_agent(store, agent):
        raise ReviewError("disputes are resolved by the agent's team lead or an admin")
    if points is not None and (decision != "upheld" or r.rule_id is None):
        raise ReviewError("corrected points go with an upheld dispute of a single rule")
    status = "applied" if points is not None else decision
    with store.db.transaction():
        store.db.execute(
            "UPDATE reviews SET status = ?, points = ?, resolved_by = ?, resolved_at = ?, resolution = ?"
            " WHERE id = ? AND status = 'open'",
            (status, points, user.username, now_iso(), f"{decision}: {note}", review_id),
        )
        detail = {"review": review_id, "decision": decision, "points": points}
        audit(store, user.username, "review.resolve", r.call_id, detail)
        Scorer(store).apply_overrides(r.call_id)
    return get(store, review_id)


def get(store: Store, review_id: int) -> Review:
    row = store.db.one(f"SELECT {_COLS} FROM reviews WHERE id = ?", (review_id,))
    if row is None:
        raise ReviewError(f"no review {review_id}")
    return Review(*row)


def listing(store: Store, scope: Scope, *, status: str | None = None, call_id: str | None = None) -> list[Review]:
    cond, params = scope.agents_sql("c.agent_id")
    sql = (
        f"SELECT {', '.join('r.' + c.strip() for c in _COLS.split(','))} FROM reviews r"
        f" JOIN calls c ON c.call_id = r.call_id WHERE 1 = 1{cond}"
    )
    if status:
        sql += " AND r.status = ?"
        params.append(status)
    if call_id:
        sql += " AND r.call_id = ?"
        params.append(call_id)
    return [Review(*row) for row in store.db.all(sql + " ORDER BY r.id DESC LIMIT 500", params)]
