"""Rollups above the per-agent daily ones, so that the agents table costs the same for a day, a week or a month.

`agent_daily` / `agent_rule_daily` (hub/scores.py) hold one row per agent and day (and rule). Summing a month
of them for 500 agents is 15,000 daily rows plus 75,000 rule rows, which SQLite groups in ~200 ms. Two more
tables, both derived from those daily rows and kept up to date in the same transaction:

- `agent_weekly`: per agent and week (Monday), the sums the 8-week sparkline needs; recomputed from the week's
  daily rows whenever one of them changes (`touch`).
- `agent_cum`: per agent and day with calls, the agent's running totals from their first day up to and
  including that day (calls, scored, excluded, weight sum, weighted score sum, and as JSON, per rule, the
  deductions and the calls that had them). Any period's totals are then one row at its end minus one row
  before its start: two index seeks per agent, whatever the period's length.

A change on an agent's day makes every running total from that day on stale: `touch` records the earliest
such day in `agent_cum_stale` and `settle` rebuilds those rows from the daily ones (callers settle before
their transaction commits). A re-score of everything settles once at the end instead of after every chunk; in
between, and after the migration that added these tables until the first `settle`, readers take stale agents'
figures from the daily rows directly (`hub.aggregate`), so answers never depend on whether rollups are settled.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import date, timedelta

from hub.db import StorageError
from hub.storage import Store, lock_key

log = logging.getLogger(__name__)

CUM_COLS = ("calls", "scored", "excluded", "weight_sum", "score_wsum")


def week_of(day: str) -> str:
    d = date.fromisoformat(day)
    return (d - timedelta(days=d.weekday())).isoformat()


def touch(store: Store, agent_id: str, day: str) -> None:
    """The agent's daily rows for `day` changed (inside the caller's transaction): recompute the week's row
    and mark the running totals stale from `day`."""
    db = store.db
    week = week_of(day)
    db.execute("DELETE FROM agent_weekly WHERE agent_id = ? AND week = ?", (agent_id, week))
    db.execute(
        "INSERT INTO agent_weekly SELECT agent_id, ?, SUM(calls), SUM(scored), SUM(excluded), SUM(weight_sum),"
        " SUM(score_wsum) FROM agent_daily WHERE agent_id = ? AND day >= ? AND day <= ? GROUP BY agent_id",
        (week, agent_id, week, (date.fromisoformat(week) + timedelta(days=6)).isoformat()),
    )
    db.execute(
        "INSERT INTO agent_cum_stale (agent_id, from_day) VALUES (?, ?) ON CONFLICT (agent_id) DO UPDATE SET"
        " from_day = CASE WHEN excluded.from_day < agent_cum_stale.from_day THEN excluded.from_day"
        " ELSE agent_cum_stale.from_day END",
        (agent_id, day),
    )


def lock_agents(store: Store, agents: Iterable[str]) -> None:
    """Take the agents' rollup locks for the rest of the caller's transaction (PostgreSQL advisory locks; SQLite
    has one writer at a time anyway): two transactions rebuilding one agent's daily rows or running totals at
    once would collide on them or leave one's stale figures. Taken in key order, several in one statement, so two
    transactions never wait on each other in a circle; a lock already held is taken again at no cost."""
    if store.db.dialect != "postgres":
        return
    keys = sorted({lock_key("agent", a) for a in agents})
    if keys:
        store.db.execute("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(? AS bigint[])) AS t(k)", (keys,))


def stale(store: Store) -> dict[str, str]:
    """Agents whose running totals are stale, with the first day that is."""
    return {str(a): str(d) for a, d in store.db.all("SELECT agent_id, from_day FROM agent_cum_stale")}


def settle(store: Store, agents: Iterable[str] | None = None) -> int:
    """Rebuild the stale running totals of `agents` (None: every stale agent) inside the caller's transaction,
    or in one transaction of its own when there is none; returns how many agents were rebuilt."""
    with store.db.transaction():
        mine = set(stale(store) if agents is None else agents)
        lock_agents(store, mine)
        marks = stale(store)  # as it is once the locks are ours
        todo = sorted(mine & set(marks))
        for agent in todo:
            _rebuild(store, agent, marks[agent])
    return len(todo)


def settle_all(store: Store, per_transaction: int = 20) -> int:
    """Settle every stale agent, a few per transaction so ingest is never held up for long (after a re-score of
    everything, or the migration that introduced these rollups)."""
    agents = sorted(stale(store))
    for i in range(0, len(agents), per_transaction):
        try:
            settle(store, agents[i : i + per_transaction])
        except StorageError:  # another worker rebuilding the same agents at its start: they stay stale or are done
            log.warning("could not settle %d agents' running totals now; read from daily rows meanwhile",
                        len(agents[i : i + per_transaction]), exc_info=True)  # fmt: skip
    if agents:
        log.info("rebuilt the running rollup totals of %d agents", len(agents))
    return len(agents)


def _rebuild(store: Store, agent_id: str, from_day: str) -> None:
    db = store.db
    base = db.one(
        "SELECT calls, scored, excluded, weight_sum, score_wsum, rules FROM agent_cum"
        " WHERE agent_id = ? AND day < ? ORDER BY day DESC LIMIT 1",
        (agent_id, from_day),
    )
    totals: list[float] = [float(x) for x in base[:5]] if base else [0.0] * 5
    rules: dict[str, list[float]] = json.loads(base[5]) if base else {}
    per_day: dict[str, list[tuple[str, float, int]]] = {}
    for day, rule, points, calls in db.all(
        "SELECT day, rule_id, points, calls FROM agent_rule_daily WHERE agent_id = ? AND day >= ? AND points < 0",
        (agent_id, from_day),
    ):
        per_day.setdefault(str(day), []).append((str(rule), float(points), int(calls)))
    rows = []
    for day, *vals in db.all(
        "SELECT day, calls, scored, excluded, weight_sum, score_wsum FROM agent_daily"
        " WHERE agent_id = ? AND day >= ? ORDER BY day",
        (agent_id, from_day),
    ):
        for i in range(5):
            totals[i] += float(vals[i])
        for rule, points, calls in sorted(per_day.get(str(day), ())):
            acc = rules.setdefault(rule, [0.0, 0])
            acc[0] += points
            acc[1] += calls
        rows.append(
            (agent_id, day, int(totals[0]), int(totals[1]), int(totals[2]), totals[3], totals[4],
             json.dumps(rules, separators=(",", ":"), sort_keys=True))
        )  # fmt: skip
    db.execute("DELETE FROM agent_cum WHERE agent_id = ? AND day >= ?", (agent_id, from_day))
    db.executemany(
        "INSERT INTO agent_cum (agent_id, day, calls, scored, excluded, weight_sum, score_wsum, rules)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (agent_id, day) DO UPDATE SET calls = excluded.calls,"
        " scored = excluded.scored, excluded = excluded.excluded, weight_sum = excluded.weight_sum,"
        " score_wsum = excluded.score_wsum, rules = excluded.rules",
        rows,
    )
    db.execute("DELETE FROM agent_cum_stale WHERE agent_id = ?", (agent_id,))


def rebuild_all(store: Store) -> int:
    """Rebuild both rollups of every agent from the daily ones (daily rows written by other means than the
    scorer: a bulk import, the benchmark's generator); returns how many agents."""
    with store.db.transaction():
        store.db.execute("DELETE FROM agent_weekly")
        store.db.execute(
            "INSERT INTO agent_weekly SELECT agent_id, week, SUM(calls), SUM(scored), SUM(excluded), SUM(weight_sum),"
            " SUM(score_wsum) FROM agent_daily GROUP BY agent_id, week"
        )
        store.db.execute("DELETE FROM agent_cum_stale")
        store.db.execute("INSERT INTO agent_cum_stale SELECT agent_id, MIN(day) FROM agent_daily GROUP BY agent_id")
    return settle_all(store)
