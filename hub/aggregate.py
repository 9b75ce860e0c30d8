"""Reading scores back: per agent, team and site, per day/week/month, with trends, distribution and coverage.

Scores are averaged weighted by each call's weight (a low-confidence call counts half, or not at all, as the
scorecard says), always from rollups, never from the calls: `agent_daily` / `agent_rule_daily` kept by
`hub.scores`, and above them the weekly rows and running totals of `hub.rollups`, with which the agents table
costs a few rows per agent whatever the period. Days are the site's local days.
"""

from __future__ import annotations

import functools
import json
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
    # a weight sum is 0 or at least a low-confidence call's weight; from running totals, "0" may be rounding dust
    return round(wsum / w, 1) if w > 1e-6 else None


def agents_table(
    store: Store, scope: Scope, end: date, period: Period = "week", weeks: int = 8, team_id: str | None = None
) -> list[AgentRow]:
    """One row per visible agent: the period's calls and weighted score, the previous period's score, weekly
    scores for the sparkline and the three rules that cost the most. Period figures come from the running
    totals (two rows per agent, hub/rollups.py), the sparkline from the weekly rollup; agents whose running
    totals are being rebuilt are read from the daily rollups instead (same figures, slower)."""
    start, stop, pstart, _ = period_bounds(end, period)
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
    b = _Bounds(stop, _day_before(start), _day_before(pstart), _day_before(monday.isoformat()))
    figures = _from_running_totals(store, b, cond, params)
    figures.update(_from_daily(store, b, start, pstart, monday.isoformat(), cond, params))
    # complete weeks before the current one from the weekly rollup; the current week, up to `end`, from the figures
    slot = {m: i for i, m in enumerate(mondays[:-1])}
    weekly: dict[str, list[float | None]] = {}
    join = " JOIN agents a ON a.agent_id = w.agent_id" if cond else ""
    for agent, week, w, ws in db.all(
        f"SELECT w.agent_id, w.week, w.weight_sum, w.score_wsum FROM agent_weekly w{join}"
        f" WHERE w.week >= ? AND w.week < ?{cond}",
        [mondays[0], mondays[-1], *params],
    ):
        trend = weekly.get(agent)
        if trend is None:
            trend = weekly[agent] = [None] * weeks
        trend[slot[week]] = _mean(ws, w)
    for agent, row in rows.items():
        f = figures.get(agent)
        row.trend = weekly.get(agent) or [None] * weeks
        if f is not None:
            calls, scored, excluded, w, ws = f.current
            row.calls, row.scored, row.excluded = int(calls), int(scored), int(excluded)
            row.score, row.previous = _mean(ws, w), _mean(f.previous[1], f.previous[0])
            row.coverage = round(row.scored / row.calls, 3) if row.calls else None
            if f.rules:
                issues = sorted((p, r, c) for r, (p, c) in f.rules.items())[:3]
                row.top_issues = [{"rule": r, "points": round(p, 1), "calls": c} for p, r, c in issues]
            row.trend[-1] = _mean(f.this_week[1], f.this_week[0])
    return sorted(rows.values(), key=lambda r: (r.score is None, r.score if r.score is not None else 0, r.agent_id))


@dataclass(frozen=True)
class _Bounds:
    end: str
    before_start: str
    before_prev: str
    before_week: str
    """The last day before the current week (a Sunday)."""


@dataclass
class _Figures:
    current: tuple[float, float, float, float, float]
    """calls, scored, excluded, weight sum, weighted score sum."""
    previous: tuple[float, float]
    """weight sum, weighted score sum of the previous period."""
    this_week: tuple[float, float]
    """the same for the current week up to the end day (the sparkline's last point)."""
    rules: dict[str, tuple[float, int]]
    """per rule: the period's deductions and the calls that had them."""


def _day_before(day: str) -> str:
    return (date.fromisoformat(day) - timedelta(days=1)).isoformat()


def _from_running_totals(store: Store, b: _Bounds, cond: str, params: list[object]) -> dict[str, _Figures]:
    """Figures of the settled agents: each as the difference of two running-total rows (the latest at or
    before each bound), four bounds per agent whatever the period's length; the differences taken in SQL,
    one row per agent back."""
    db = store.db
    xs = sorted({b.end, b.before_start, b.before_prev, b.before_week})
    values = ", ".join("(CAST(? AS TEXT))" for _ in xs)
    if db.dialect == "sqlite":
        # CROSS JOIN means "in this order" to SQLite: from each (agent, bound) seek its row, never scan the
        # table; and the row's rowid comes straight out of the index seek, saving a second seek by key
        latest = (
            "(SELECT m.rowid FROM agent_cum m WHERE m.agent_id = a.agent_id AND m.day <= b.x"
            " ORDER BY m.day DESC LIMIT 1)"
        )
        row_of = "CROSS JOIN agent_cum c ON c.rowid = k.d"
    else:  # PostgreSQL plans the order itself (and has no CROSS JOIN ... ON)
        latest = "(SELECT MAX(m.day) FROM agent_cum m WHERE m.agent_id = a.agent_id AND m.day <= b.x)"
        row_of = "JOIN agent_cum c ON c.agent_id = k.agent_id AND c.day = k.d"
    diffs, args = [], []
    for column, hi, lo in (
        ("calls", b.end, b.before_start),
        ("scored", b.end, b.before_start),
        ("excluded", b.end, b.before_start),
        ("weight_sum", b.end, b.before_start),
        ("score_wsum", b.end, b.before_start),
        ("weight_sum", b.before_start, b.before_prev),
        ("score_wsum", b.before_start, b.before_prev),
        ("weight_sum", b.end, b.before_week),
        ("score_wsum", b.end, b.before_week),
    ):
        diffs.append(f"SUM(CASE WHEN x = ? THEN {column} ELSE 0 END) - SUM(CASE WHEN x = ? THEN {column} ELSE 0 END)")
        args += [hi, lo]
    sql = (
        f"WITH b(x) AS (VALUES {values}), k AS (SELECT a.agent_id AS agent_id, b.x AS x, {latest} AS d"
        " FROM agents a CROSS JOIN b WHERE a.agent_id NOT IN (SELECT agent_id FROM agent_cum_stale"
        f" WHERE from_day <= ?){cond}), r AS (SELECT k.agent_id AS agent_id, k.x AS x, c.calls AS calls,"
        " c.scored AS scored, c.excluded AS excluded, c.weight_sum AS weight_sum, c.score_wsum AS score_wsum,"
        f" c.rules AS rules FROM k {row_of})"
        f" SELECT agent_id, {', '.join(diffs)}, MAX(CASE WHEN x = ? THEN rules END),"
        " MAX(CASE WHEN x = ? THEN rules END) FROM r GROUP BY agent_id"
        " HAVING SUM(CASE WHEN x = ? THEN 1 ELSE 0 END) > 0"  # no row up to the end: nothing to show
    )
    out: dict[str, _Figures] = {}
    for agent, *v, e_rules, s_rules in db.all(sql, [*xs, b.end, *params, *args, b.end, b.before_start, b.end]):
        rules: dict[str, tuple[float, int]] = {}
        if e_rules != s_rules:  # the same text: no deduction in the period
            before = _rules(s_rules) if s_rules else {}
            for rule, (pts, n) in _rules(e_rules).items():
                ps, ns = before.get(rule, (0.0, 0))
                if pts - ps < -1e-6:  # not just rounding dust between two running sums
                    rules[rule] = (pts - ps, n - ns)
        out[agent] = _Figures((v[0], v[1], v[2], v[3], v[4]), (v[5], v[6]), (v[7], v[8]), rules)
    return out


@functools.lru_cache(maxsize=8192)
def _rules(text: str) -> dict[str, tuple[float, int]]:
    """A running total's per-rule JSON, parsed once: the rows at a period's bounds stay the same all day."""
    return {rule: (float(p), int(n)) for rule, (p, n) in json.loads(text).items()}


def _from_daily(
    store: Store, b: _Bounds, start: str, pstart: str, monday: str, cond: str, params: list[object]
) -> dict[str, _Figures]:
    """Figures of the agents whose running totals are stale, summed from the daily rollups (typically none)."""
    db = store.db
    stale = " AND a.agent_id IN (SELECT agent_id FROM agent_cum_stale WHERE from_day <= ?)"
    cur_, prev_, week_ = "d.day >= ?", "d.day >= ? AND d.day < ?", "d.day >= ?"
    sql = (
        "SELECT d.agent_id,"
        f" SUM(CASE WHEN {cur_} THEN d.calls ELSE 0 END), SUM(CASE WHEN {cur_} THEN d.scored ELSE 0 END),"
        f" SUM(CASE WHEN {cur_} THEN d.excluded ELSE 0 END), SUM(CASE WHEN {cur_} THEN d.weight_sum ELSE 0 END),"
        f" SUM(CASE WHEN {cur_} THEN d.score_wsum ELSE 0 END), SUM(CASE WHEN {prev_} THEN d.weight_sum ELSE 0 END),"
        f" SUM(CASE WHEN {prev_} THEN d.score_wsum ELSE 0 END), SUM(CASE WHEN {week_} THEN d.weight_sum ELSE 0 END),"
        f" SUM(CASE WHEN {week_} THEN d.score_wsum ELSE 0 END)"
        " FROM agent_daily d JOIN agents a ON a.agent_id = d.agent_id"
        f" WHERE d.day >= ? AND d.day <= ?{stale}{cond} GROUP BY d.agent_id"
    )
    first = min(pstart, monday)
    bounds = [start] * 5 + [pstart, start] * 2 + [monday] * 2 + [first, b.end, b.end]
    out: dict[str, _Figures] = {}
    for agent, *v in db.all(sql, [*bounds, *params]):
        f = [float(x) for x in v]
        out[agent] = _Figures((f[0], f[1], f[2], f[3], f[4]), (f[5], f[6]), (f[7], f[8]), {})
    if not out:
        return out
    for agent, rule, pts, calls in db.all(
        "SELECT d.agent_id, d.rule_id, SUM(d.points), SUM(d.calls) FROM agent_rule_daily d"
        f" JOIN agents a ON a.agent_id = d.agent_id WHERE d.day >= ? AND d.day <= ? AND d.points < 0{stale}{cond}"
        " GROUP BY d.agent_id, d.rule_id",
        [start, b.end, b.end, *params],
    ):
        if agent in out:
            out[agent].rules[rule] = (float(pts), int(calls))
    return out


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


def distribution(
    store: Store, scope: Scope, start: str, stop: str, bins: int = 10, team_id: str | None = None
) -> list[int]:
    """How many scored calls fall in each tenth of 0..100 (the last bin includes 100); counted in SQL. With
    `team_id`, only that team's agents' calls."""
    cond, params = scope.agents_sql("agent_id")
    if team_id is not None:
        cond += " AND agent_id IN (SELECT agent_id FROM agents WHERE team_id = ?)"
        params.append(team_id)
    if store.db.dialect == "sqlite":  # its CAST truncates, as int() does; the fastest form there
        binned = f"MIN({bins - 1}, MAX(0, CAST(score * {bins} / 100 AS INTEGER)))"
    else:  # PostgreSQL's CAST rounds
        binned = "CASE " + " ".join(f"WHEN score < {100 * i / bins!r} THEN {i - 1}" for i in range(1, bins))
        binned += f" ELSE {bins - 1} END"
    rows = store.db.all(
        f"SELECT {binned} AS bin, COUNT(*) FROM calls"
        f" WHERE day >= ? AND day <= ? AND score IS NOT NULL AND excluded = 0{cond} GROUP BY 1",
        [start, stop, *params],
    )
    out = [0] * bins
    for b, n in rows:
        out[int(b)] += int(n)
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


def team_week(store: Store, scope: Scope, team_id: str, end: date, weeks: int = 8) -> dict[str, Any]:
    """The weekly team report's figures over the team's agents: the 7 days to `end` and the 7 before (as
    `groups` gives them to the API), the mean score per calendar week (the last one up to `end`), the week's
    score distribution and its points per rule."""
    start, stop, _, _ = period_bounds(end, "week")
    empty: dict[str, Any] = {"calls": 0, "scored": 0, "excluded": 0, "score": None, "coverage": None}

    def totals(day: date) -> dict[str, Any]:
        return next((g for g in groups(store, scope, "team", day) if g["team"] == team_id), empty)

    db = store.db
    team = " JOIN agents a ON a.agent_id = d.agent_id WHERE a.team_id = ?"
    monday = end - timedelta(days=end.weekday())
    mondays = [(monday - timedelta(weeks=k)).isoformat() for k in range(weeks - 1, -1, -1)]
    by_week = {
        wk: _mean(float(ws), float(w))
        for wk, w, ws in db.all(
            f"SELECT d.week, SUM(d.weight_sum), SUM(d.score_wsum) FROM agent_daily d{team}"
            " AND d.day >= ? AND d.day <= ? GROUP BY d.week",
            (team_id, mondays[0], end.isoformat()),
        )
    }
    rules = [
        {"rule": r, "points": round(float(p), 1), "calls": int(n)}
        for r, p, n in db.all(
            "SELECT d.rule_id, SUM(d.points), SUM(d.calls) FROM agent_rule_daily d"
            f"{team} AND d.day >= ? AND d.day <= ? GROUP BY d.rule_id",
            (team_id, start, stop),
        )
        if float(p) != 0
    ]
    rules.sort(key=lambda r: (r["points"], r["rule"]))  # the costliest first, the credits last
    return {
        "start": start,
        "stop": stop,
        "current": totals(end),
        "previous": totals(end - timedelta(days=7)),
        "weekly": [{"day": m, "score": by_week.get(m)} for m in mondays],
        "distribution": distribution(store, scope, start, stop, team_id=team_id),
        "rules": rules,
    }
