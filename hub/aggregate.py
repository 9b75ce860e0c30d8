"""Reading scores back: per agent, team and site, per day/week/month, with trends, distribution and coverage.

Scores are averaged weighted by each call's weight (a low-confidence call counts half, or not at all, as the
scorecard says), always from the `agent_daily` / `agent_rule_daily` rollups kept by `hub.scores`, so the
cost depends on agents x days, not on how many calls are stored. Days are the site's local days.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

from hub.auth import Scope
from hub.storage import Store

Period = Literal["day", "week", "month"]
PERIOD_DAYS: dict[str, int] = {"day": 1, "week": 7, "month": 30}


@dataclass
class AgentRow:
    agent_id: str
    name: str
    team_id: str | None
    calls: int = 0
    scored: int = 0
    excluded: int = 0
    score: float | None = None
    previous: float | None = None
    """The same length of period before this one: the trend's direction."""
    trend: list[float | None] = field(default_factory=list)
    """Weekly weighted means, oldest first (the sparkline)."""
    top_issues: list[dict[str, Any]] = field(default_factory=list)
    coverage: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def period_bounds(end: date, period: Period) -> tuple[str, str, str, str]:
    """(start, end, previous start, previous end) as YYYY-MM-DD, inclusive."""
    n = PERIOD_DAYS[period]
    start = end - timedelta(days=n - 1)
    pend = start - timedelta(days=1)
    return start.isoformat(), end.isoformat(), (pend - timedelta(days=n - 1)).isoformat(), pend.isoformat()


def _mean(wsum: float, w: float) -> float | None:
    return round(wsum / w, 1) if w > 0 else None


def agents_table(
    store: Store, scope: Scope, end: date, period: Period = "week", weeks: int = 8, team_id: str | None = None
) -> list[AgentRow]:
    """One row per visible agent: the period's calls and weighted score, the previous period's score, weekly
    scores for the sparkline and the three rules that cost the most. Aggregated in SQL over the rollups."""
    start, stop, pstart, pstop = period_bounds(end, period)
    monday = end - timedelta(days=end.weekday())
    mondays = [(monday - timedelta(weeks=w)).isoformat() for w in range(weeks - 1, -1, -1)]
    cond, params = scope.agents_sql("a.agent_id")
    if team_id is not None:
        cond += " AND a.team_id = ?"
        params.append(team_id)
    db = store.db
    rows: dict[str, AgentRow] = {
        r[0]: AgentRow(r[0], r[1], r[2])
        for r in db.all(f"SELECT a.agent_id, a.name, a.team_id FROM agents a WHERE 1 = 1{cond}", params)
    }
    if not rows:
        return []
    # one index-only pass over the whole range, split by week and by period in SQL (few hundred rows back)
    first = min(pstart, mondays[0])
    cur_, prev_ = "d.day >= ? AND d.day <= ?", "d.day >= ? AND d.day <= ?"
    sql = (
        "SELECT d.agent_id, d.week,"
        f" SUM(CASE WHEN {cur_} THEN d.calls ELSE 0 END), SUM(CASE WHEN {cur_} THEN d.scored ELSE 0 END),"
        f" SUM(CASE WHEN {cur_} THEN d.excluded ELSE 0 END), SUM(CASE WHEN {cur_} THEN d.weight_sum ELSE 0 END),"
        f" SUM(CASE WHEN {cur_} THEN d.score_wsum ELSE 0 END), SUM(CASE WHEN {prev_} THEN d.weight_sum ELSE 0 END),"
        f" SUM(CASE WHEN {prev_} THEN d.score_wsum ELSE 0 END), SUM(d.weight_sum), SUM(d.score_wsum)"
        " FROM agent_daily d JOIN agents a ON a.agent_id = d.agent_id"
        f" WHERE d.day >= ? AND d.day <= ?{cond} GROUP BY d.agent_id, d.week"
    )
    bounds = [start, stop] * 5 + [pstart, pstop] * 2 + [first, end.isoformat()]
    acc: dict[str, list[float]] = defaultdict(lambda: [0.0] * 7)
    weekly: dict[tuple[str, str], float | None] = {}
    for agent, week, *vals in db.all(sql, [*bounds, *params]):
        a_ = acc[agent]
        for i in range(7):
            a_[i] += float(vals[i])
        weekly[(agent, week)] = _mean(float(vals[8]), float(vals[7]))
    for agent, (calls, scored, excluded, w, ws, pw, pws) in acc.items():
        row = rows[agent]
        row.calls, row.scored, row.excluded = int(calls), int(scored), int(excluded)
        row.score, row.previous = _mean(ws, w), _mean(pws, pw)
        row.coverage = round(row.scored / row.calls, 3) if row.calls else None
    for agent, row in rows.items():
        row.trend = [weekly.get((agent, m)) for m in mondays]
    issues = db.all(
        "SELECT d.agent_id, d.rule_id, SUM(d.points), SUM(d.calls) FROM agent_rule_daily d"
        f" JOIN agents a ON a.agent_id = d.agent_id WHERE d.day >= ? AND d.day <= ? AND d.points < 0{cond}"
        " GROUP BY d.agent_id, d.rule_id",
        [start, stop, *params],
    )
    per: dict[str, list[tuple[float, str, int]]] = defaultdict(list)
    for agent, rule, pts, calls in issues:
        per[agent].append((float(pts), rule, int(calls)))
    for agent, lst in per.items():
        rows[agent].top_issues = [{"rule": r, "points": round(p, 1), "calls": c} for p, r, c in sorted(lst)[:3]]
    return sorted(rows.values(), key=lambda r: (r.score is None, r.score if r.score is not None else 0, r.agent_id))


def agent_trend(store: Store, agent_id: str, end: date, days: int = 90) -> list[dict[str, Any]]:
    start = (end - timedelta(days=days - 1)).isoformat()
    rows = store.db.all(
        "SELECT day, calls, scored, excluded, weight_sum, score_wsum FROM agent_daily"
        " WHERE agent_id = ? AND day >= ? AND day <= ? ORDER BY day",
        (agent_id, start, end.isoformat()),
    )
    return [
        {"day": d, "calls": int(c), "scored": int(s), "excluded": int(x), "score": _mean(float(ws), float(w))}
        for d, c, s, x, w, ws in rows
    ]


CALL_COLS = (
    "call_id, site, seat, agent_id, started, day, duration, score, auto_score, weight, excluded, low_confidence,"
    " flags, scorecard, scorecard_version"
)


def call_dicts(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    names = [c.strip() for c in CALL_COLS.split(",")]
    return [dict(zip(names, r, strict=True)) for r in rows]


def agent_calls(
    store: Store, agent_id: str, start: str, stop: str, order: Literal["worst", "best", "recent"], limit: int = 5
) -> list[dict[str, Any]]:
    sql = f"SELECT {CALL_COLS} FROM calls WHERE agent_id = ? AND day >= ? AND day <= ?"
    if order == "recent":
        sql += " ORDER BY started DESC"
    else:
        sql += " AND score IS NOT NULL AND excluded = 0 ORDER BY score " + ("ASC" if order == "worst" else "DESC")
    return call_dicts(store.db.all(sql + " LIMIT ?", (agent_id, start, stop, limit)))


def groups(
    store: Store, scope: Scope, by: Literal["team", "site"], end: date, period: Period = "week"
) -> list[dict[str, Any]]:
    """Per team or site: calls, scored, weighted mean, coverage; for the scope's agents only."""
    start, stop, _, _ = period_bounds(end, period)
    key = "a.team_id" if by == "team" else "COALESCE(t.site, '')"
    cond, params = scope.agents_sql("a.agent_id")
    rows = store.db.all(
        f"SELECT {key}, SUM(d.calls), SUM(d.scored), SUM(d.excluded), SUM(d.weight_sum), SUM(d.score_wsum)"
        " FROM agent_daily d JOIN agents a ON a.agent_id = d.agent_id LEFT JOIN teams t ON t.team_id = a.team_id"
        f" WHERE d.day >= ? AND d.day <= ?{cond} GROUP BY {key} ORDER BY {key}",
        [start, stop, *params],
    )
    return [
        {
            by: k,
            "calls": int(c),
            "scored": int(s),
            "excluded": int(x),
            "score": _mean(float(ws), float(w)),
            "coverage": round(int(s) / int(c), 3) if c else None,
        }
        for k, c, s, x, w, ws in rows
    ]


def distribution(store: Store, scope: Scope, start: str, stop: str, bins: int = 10) -> list[int]:
    """How many scored calls fall in each tenth of 0..100 (the last bin includes 100)."""
    cond, params = scope.agents_sql("agent_id")
    rows = store.db.all(
        f"SELECT score FROM calls WHERE day >= ? AND day <= ? AND score IS NOT NULL AND excluded = 0{cond}",
        [start, stop, *params],
    )
    out = [0] * bins
    for (s,) in rows:
        out[min(bins - 1, max(0, int(float(s) * bins / 100)))] += 1
    return out


def coverage(store: Store, scope: Scope, start: str, stop: str) -> dict[str, int]:
    """Calls seen (any event), complete (summary arrived) and scored, over the period's complete calls."""
    cond, params = scope.agents_sql("agent_id")
    row = store.db.one(
        "SELECT COUNT(*), SUM(CASE WHEN score IS NOT NULL AND excluded = 0 THEN 1 ELSE 0 END), SUM(excluded)"
        f" FROM calls WHERE day >= ? AND day <= ?{cond}",
        [start, stop, *params],
    )
    incomplete = 0
    if scope.user.sees_all:
        # calls without a summary yet have no day (the calls_day index answers this)
        incomplete = int(store.db.scalar("SELECT COUNT(*) FROM calls WHERE day IS NULL") or 0)
    seen, scored, excluded = (int(x or 0) for x in (row or (0, 0, 0)))
    return {"calls": seen, "scored": scored, "excluded": excluded, "incomplete": incomplete}
