"""The rollups above the daily ones (hub/rollups.py) on both backends: the agents table read from the running
totals and weekly rows equals the one summed from the daily rollups, for every period, end day and scope,
after scoring, reviews, re-attribution and a re-score; the score distribution binned in SQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from hub import aggregate, rollups
from hub.auth import Scope, User
from hub.reviews import override
from hub.scorecard import DEFAULT_SCORECARD
from hub.scores import Scorer, import_scorecard
from hub.storage import Store, zone
from tests.hub_support import SUMMARY, Station, ingest, known_call_events

AGENTS = {"a1": "t1", "a2": "t1", "a3": "t2"}
SCOPES = [User("admin", "admin"), User("lead", "lead", team_id="t1"), User("ag", "agent", agent_id="a3")]


def ts(days_ago: int, hour: int = 3) -> str:
    t = datetime.now(UTC).replace(hour=hour, minute=0, second=0, microsecond=0) - timedelta(days=days_ago)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build(store: Store) -> None:
    """Ten weeks of calls of three agents with different deductions, a low-confidence call now and then."""
    store.put_site("sh", "Shanghai", "Asia/Shanghai")
    for team in ("t1", "t2"):
        store.put_team(team, team, "sh")
    for agent, team in AGENTS.items():
        store.put_agent(agent, agent.upper(), team)
    envs = []
    for n, agent in enumerate(AGENTS):
        st = Station("sh", f"s{n}")
        for day in range(n, 72, 3):
            events = known_call_events()
            events = events[(day // 3) % 5 :]  # fewer deductions on some calls: the scores differ
            low = (day + n) % 7 == 0
            summary = dict(
                SUMMARY, duration=140.0, quality={"flags": ["low_snr"] if low else [], "low_confidence": low}
            )
            envs += st.call(f"{agent}-{day}", ts(day), agent=agent, events=events, summary=summary)
    ingest(store, envs)


def tables(store: Store) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    today = datetime.now(zone("Asia/Shanghai")).date()
    ends = [today, today - timedelta(days=10), today - timedelta(days=today.weekday() + 5), date(2020, 1, 1)]
    out = {}
    for user in SCOPES:
        for period in ("day", "week", "month"):
            for end in ends:
                rows = aggregate.agents_table(store, Scope(user), end, period)
                out[(user.username, period, end.isoformat())] = [r.to_dict() for r in rows]
    return out


def from_daily(store: Store) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """The same tables with every agent's running totals marked stale: summed from the daily rows."""
    with store.db.transaction():
        store.db.execute("DELETE FROM agent_cum_stale")
        store.db.execute("INSERT INTO agent_cum_stale SELECT agent_id, '0000-01-01' FROM agents")
    try:
        return tables(store)
    finally:
        assert rollups.settle_all(store) == len(AGENTS)


def test_running_totals_match_the_daily_rollups(hub_store: Store) -> None:
    store = hub_store
    build(store)
    assert rollups.stale(store) == {}  # scoring settled what it touched
    fast = tables(store)
    assert any(r["top_issues"] and r["previous"] is not None for t in fast.values() for r in t)  # not all empty
    assert sum(1 for r in fast[("admin", "month", datetime.now(zone("Asia/Shanghai")).date().isoformat())]
               if r["calls"]) == 3  # fmt: skip
    assert fast == from_daily(store)
    # a reviewer's override, a late login moving a call to another agent: both rollups follow
    call = store.db.scalar("SELECT call_id FROM calls WHERE agent_id = 'a1' ORDER BY started DESC LIMIT 1")
    override(store, User("rev", "reviewer"), call, "dead_air", 0, "hold music")
    st = Station("sh", "s9")
    moved = st.call("moved", ts(2, hour=5))
    ingest(store, moved)
    ingest(store, [st.login("a2", ts(2, hour=4))])
    assert store.db.scalar("SELECT agent_id FROM calls WHERE call_id = 'moved'") == "a2"
    assert rollups.stale(store) == {}
    after = tables(store)
    assert after != fast
    assert after == from_daily(store)


def test_a_rescore_settles_once_and_matches(hub_store: Store) -> None:
    store = hub_store
    build(store)
    text = DEFAULT_SCORECARD.read_text().replace("version: 1", "version: 2").replace("points: -3", "points: -4")
    card = import_scorecard(store, text, activate=False)
    before = tables(store)
    n = Scorer(store).rescore(card)
    assert n == store.db.scalar("SELECT COUNT(*) FROM calls")
    assert rollups.stale(store) == {}
    after = tables(store)
    assert after != before
    assert after == from_daily(store)


def test_stale_agents_are_read_from_the_daily_rows(hub_store: Store) -> None:
    store = hub_store
    build(store)
    good = tables(store)
    # what a migration leaves: totals missing altogether, every agent stale; the answers do not change
    with store.db.transaction():
        store.db.execute("DELETE FROM agent_cum")
        store.db.execute("INSERT INTO agent_cum_stale SELECT agent_id, MIN(day) FROM agent_daily GROUP BY agent_id")
    assert tables(store) == good
    assert rollups.settle_all(store) == len(AGENTS)
    assert store.db.scalar("SELECT COUNT(DISTINCT agent_id) FROM agent_cum") == len(AGENTS)
    assert tables(store) == good


def python_bins(store: Store) -> list[int]:
    out = [0] * 10
    for (s,) in store.db.all("SELECT score FROM calls WHERE score IS NOT NULL AND excluded = 0"):
        out[min(9, max(0, int(float(s) * 10 / 100)))] += 1
    return out


def test_distribution_bins_in_sql(hub_store: Store) -> None:
    store = hub_store
    build(store)
    admin = Scope(User("admin", "admin"))
    expected = python_bins(store)
    assert sum(expected) > 10 and max(expected) < sum(expected)  # several bins in use
    assert aggregate.distribution(store, admin, "2000-01-01", "2100-01-01") == expected
    with store.db.transaction():  # the edges: 100 in the last bin, 59.99 below 60, 60 in 60-70
        for call, score in (("a1-3", 100.0), ("a1-6", 59.99), ("a1-9", 60.0), ("a1-12", 0.0)):
            store.db.execute("UPDATE calls SET score = ?, excluded = 0 WHERE call_id = ?", (score, call))
    expected = python_bins(store)
    assert expected[9] >= 1 and expected[0] >= 1
    assert aggregate.distribution(store, admin, "2000-01-01", "2100-01-01") == expected
