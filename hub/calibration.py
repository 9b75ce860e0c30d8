"""Calibration: several reviewers score the same calls rule by rule; how far apart are they, and from the machine?

Per rule, over every call with at least one calibration: the mean absolute difference and the share within
`tolerance` points between each pair of reviewers on the same call, and between each reviewer and the
automatic result; the Pearson correlation of reviewers' points with the automatic points; and the overturn
rate (reviewer results outside the tolerance of the automatic one, plus applied overrides, over all reviewed
results). Rules overturned at least `flag_at` of the time are flagged: their thresholds need tuning.

Blind: a QA reviewer sees no other reviewer's points for a call before submitting their own (`blind`), so the
report a reviewer reads counts only the calls they have calibrated themselves; team leads and admins, who run
calibration sessions, see every call in their scope.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any

from hub.auth import Scope, User
from hub.scores import audit, now_iso
from hub.storage import Store


class CalibrationError(ValueError):
    pass


def submit(store: Store, user: User, call_id: str, points: dict[str, float]) -> int:
    """A reviewer's own per-rule points for a call (replacing their earlier ones for those rules)."""
    if user.role not in ("admin", "reviewer", "lead"):
        raise CalibrationError("calibration is for QA reviewers, team leads and admins")
    with store.db.transaction():
        known = {r[0] for r in store.db.all("SELECT rule_id FROM call_rules WHERE call_id = ?", (call_id,))}
        unknown = sorted(set(points) - known)
        if not known or unknown:
            raise CalibrationError(f"call {call_id} has no scored rule(s) {', '.join(unknown) or '(none scored)'}")
        for rule_id, p in points.items():
            store.db.execute(
                "INSERT INTO calibrations VALUES (?, ?, ?, ?, ?) ON CONFLICT (call_id, reviewer, rule_id)"
                " DO UPDATE SET points = excluded.points, created = excluded.created",
                (call_id, user.username, rule_id, float(p), now_iso()),
            )
        audit(store, user.username, "calibration.submit", call_id, {"points": points})
    return len(points)


def blind(user: User, submitted: bool) -> bool:
    """Whether `user` may not yet see other reviewers' points for a call (`submitted`: their own are in)."""
    return user.role == "reviewer" and not submitted


@dataclass(frozen=True)
class RuleAgreement:
    rule: str
    calls: int
    reviewers: int
    pair_mad: float | None
    """Mean |a - b| over pairs of reviewers on the same call."""
    pair_within: float | None
    """Share of those pairs within the tolerance."""
    auto_mad: float | None
    auto_within: float | None
    correlation: float | None
    """Pearson r of reviewer points with automatic points (None when either side is constant)."""
    overturn_rate: float
    overrides: int
    flagged: bool


def report(store: Store, scope: Scope, tolerance: float = 1.0, flag_at: float = 0.3) -> list[dict[str, Any]]:
    cond, params = scope.agents_sql("c.agent_id")
    mine, mine_params = "", []
    if blind(scope.user, False):  # a reviewer: only the calls they have scored themselves
        mine, mine_params = (
            " AND k.call_id IN (SELECT call_id FROM calibrations WHERE reviewer = ?)",
            [scope.user.username],
        )
    rows = store.db.all(
        "SELECT k.call_id, k.reviewer, k.rule_id, k.points, r.auto_points FROM calibrations k"
        " JOIN calls c ON c.call_id = k.call_id"
        " LEFT JOIN call_rules r ON r.call_id = k.call_id AND r.rule_id = k.rule_id"
        f" WHERE 1 = 1{cond}{mine}",
        [*params, *mine_params],
    )
    overrides: dict[str, int] = dict(
        store.db.all(
            "SELECT r.rule_id, COUNT(*) FROM reviews r JOIN calls c ON c.call_id = r.call_id"
            f" WHERE r.status = 'applied' AND r.rule_id IS NOT NULL{cond} GROUP BY r.rule_id",
            params,
        )
    )
    by_rule: dict[str, dict[str, list[tuple[str, float, float | None]]]] = defaultdict(lambda: defaultdict(list))
    for call_id, reviewer, rule_id, pts, auto in rows:
        by_rule[rule_id][call_id].append((reviewer, float(pts), None if auto is None else float(auto)))
    out = []
    for rule_id in sorted(set(by_rule) | set(overrides)):
        calls = by_rule.get(rule_id, {})
        pair_d = [abs(a[1] - b[1]) for entries in calls.values() for a, b in combinations(entries, 2)]
        auto_pairs: list[tuple[float, float]] = [
            (e[1], e[2]) for entries in calls.values() for e in entries if e[2] is not None
        ]
        auto_d = [abs(p - a) for p, a in auto_pairs]
        n_over = int(overrides.get(rule_id, 0))
        outside = sum(d > tolerance for d in auto_d)
        rate = (outside + n_over) / (len(auto_d) + n_over) if auto_d or n_over else 0.0
        out.append(
            RuleAgreement(
                rule=rule_id,
                calls=len(calls),
                reviewers=len({e[0] for entries in calls.values() for e in entries}),
                pair_mad=_mean(pair_d),
                pair_within=_share(pair_d, tolerance),
                auto_mad=_mean(auto_d),
                auto_within=_share(auto_d, tolerance),
                correlation=_corr(auto_pairs),
                overturn_rate=round(rate, 3),
                overrides=n_over,
                flagged=rate >= flag_at and (len(auto_d) + n_over) > 0,
            )
        )
    return [asdict(a) for a in out]


def _mean(xs: list[float]) -> float | None:
    return round(statistics.fmean(xs), 3) if xs else None


def _share(xs: list[float], tol: float) -> float | None:
    return round(sum(x <= tol + 1e-9 for x in xs) / len(xs), 3) if xs else None


def _corr(pairs: list[tuple[float, float]]) -> float | None:
    xs = [p for p, _ in pairs]
    ys = [a for _, a in pairs]
    if len(xs) < 2 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    return round(statistics.correlation(xs, ys), 3)
