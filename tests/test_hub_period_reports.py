"""Outcomes in a report's period (hub/web/report_outcomes.py, issue 22): per outcome the calls and mean, and the
relation to the QA score (bottom vs top quartile of score, or the halves around the median when few, and
Pearson's r), checked against an independent computation over scored calls with imported outcomes, scoped by
role exactly like the calls (a lead never sees another team's outcomes), on SQLite and PostgreSQL; the API's
refusals; the agents page, agent page and team report showing it in both languages."""

from __future__ import annotations

import random
import statistics
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from edge_agent.events import CallSummary, DeadAir, Event, Speech, TalkOver
from hub import outcomes
from hub.auth import create_user, get_user
from hub.storage import Store
from hub.web.report_outcomes import QUARTILE_MIN, R_MIN, REFUSED_PREFIX
from tests.hub_support import SUMMARY, Station, api_client, backend_store, ingest

PASSWORD = "period report password"
END = date(2026, 1, 11)  # a Sunday: the week is 2026-01-05 .. 2026-01-11
TEAM = {"a1": "t1", "a2": "t1", "a3": "t2"}
USERS = {  # name: (role, agent, team)
    "admin": ("admin", None, None),
    "rev": ("reviewer", None, None),
    "lead1": ("lead", None, "t1"),
    "lead2": ("lead", None, "t2"),
    "alice": ("agent", "a1", None),
}
# per agent: calls in the week (t1 has 48 with outcomes: quartiles; t2 only 14: halves), and 2 the week before
CALLS_IN_WEEK = {"a1": 26, "a2": 26, "a3": 16}


def call_events(interruptions: int, dead_airs: int, latency: float) -> list[Event]:
    """A call whose score depends on its interruptions (beyond one free: -3 each), dead airs (-2 each) and the
    agent's response latency (under 1 s: +5, over 3 s: -5), so calls differ in score."""
    evs: list[Event] = [Speech(1.0, 5.0, "agent"), Speech(5.5, 25.0, "customer")]
    evs += [TalkOver(10.0 + i, 10.5 + i, "agent", "interruption", 0.5) for i in range(interruptions)]
    evs += [DeadAir(30.0 + 8 * j, 36.0 + 8 * j) for j in range(dead_airs)]
    evs.append(Speech(70.0, 100.0, "agent"))
    summary = dict(SUMMARY, duration=120.0, agent_response_latency_mean=latency)
    return [*sorted(evs, key=lambda e: e.end), CallSummary(0.0, 120.0, summary)]


def populate(store: Store) -> None:
    store.put_site("sh", "Shanghai", "Asia/Shanghai")
    store.put_team("t1", "Team One", "sh")
    store.put_team("t2", "Team Two", "sh")
    for agent, team in TEAM.items():
        store.put_agent(agent, f"Agent {agent}", team)
    rnd = random.Random(22)  # noqa: S311 - a fixed seed for the test's data
    envs = []
    for n, agent in enumerate(TEAM):
        st = Station("sh", f"s{n}")
        days = [(END - timedelta(days=k % 7)) for k in range(CALLS_IN_WEEK[agent])]
        days += [END - timedelta(days=9), END - timedelta(days=10)]  # outside the week
        for k, day in enumerate(days):
            end = f"{day.isoformat()}T{2 + k // 7:02d}:{10 + 3 * (k % 7):02d}:00.000Z"  # 10:10.. in Shanghai
            events = call_events(rnd.randint(0, 5), rnd.randint(0, 3), rnd.choice((0.8, 2.0, 3.5)))
            envs += st.call(f"{agent}-c{k:02d}", end, agent=agent, events=events)
    ingest(store, envs)
    for user, (role, own, own_team) in USERS.items():
        create_user(store, user, PASSWORD, role, agent_id=own, team_id=own_team)
    # outcomes that follow the score (plus noise) for most calls; some calls have none; a custom one for t2 only
    rows: list[tuple[int, dict[str, object]]] = []
    scores = store.db.all("SELECT call_id, agent_id, score FROM calls ORDER BY call_id")
    for line, (call, agent_id, score) in enumerate(scores, start=2):
        if line % 9 == 0:
            continue  # no survey for this call
        csat = min(5.0, max(1.0, round(1 + (float(score) - 55) / 10 + rnd.uniform(-1, 1), 1)))
        row: dict[str, object] = {"call_id": call, "csat": csat, "fcr": int(float(score) + rnd.uniform(-10, 10) > 75)}
        if line % 4 == 0:
            row |= {"complaint": int(float(score) < 70), "repeat": line % 3 == 0, "repeat_days": 7}
        if TEAM[agent_id] == "t2":
            row["custom.nps"] = rnd.randint(0, 10)
        rows.append((line, row))
    admin = get_user(store, "admin")
    assert admin is not None
    result = outcomes.import_rows(store, admin, rows, source="test")
    assert result.refused is None and result.imported == len(rows), result.to_dict()


# --- the independent computation ----------------------------------------------------------------------------------


def take(scored: list[tuple[float, float]], k: int) -> float:
    """The mean outcome of the first `k` of `scored` ((score, outcome) in the order to take them), the calls tied
    on the score at the cut counted with their share: the average over every way to break the tie."""
    total, taken, i = 0.0, 0, 0
    while taken < k:
        tie = [v for s, v in scored[i:] if s == scored[i][0]]
        use = min(len(tie), k - taken)
        total += statistics.fmean(tie) * use
        taken, i = taken + use, i + len(tie)
    return total / k


def expected(store: Store, agents: set[str], start: str, stop: str) -> dict[str, dict[str, Any]]:
    """Per outcome, from the calls and outcomes read plainly and computed here call by call with `statistics`."""
    calls = {
        str(c): (str(a), float(s) if s is not None else None, int(x))
        for c, a, s, x, d in store.db.all("SELECT call_id, agent_id, score, excluded, day FROM calls")
        if a in agents and start <= str(d) <= stop
    }
    by_name: dict[str, list[tuple[str, float | None, float]]] = {}
    for call, name, value in store.db.all("SELECT call_id, name, value FROM call_outcomes"):
        if call in calls:
            _, score, excluded = calls[call]
            by_name.setdefault(str(name), []).append((str(call), None if excluded else score, float(value)))
    out: dict[str, dict[str, Any]] = {}
    for name, items in by_name.items():
        scored = sorted((s, v) for _, s, v in items if s is not None)
        n = len(scored)
        k = n // 4 if n >= QUARTILE_MIN else n // 2
        xs, ys = [s for s, _ in scored], [v for _, v in scored]
        out[name] = {
            "calls": len(items),
            "mean": statistics.fmean(v for _, _, v in items),
            "scored": n,
            "split": "quartile" if n >= QUARTILE_MIN else "median",
            "low": (k, take(scored, k)),
            "high": (k, take(scored[::-1], k)),
            # no r of a constant, nor of fewer than R_MIN calls (two points always lie on a line)
            "r": statistics.correlation(xs, ys) if len(set(ys)) > 1 and len(set(xs)) > 1 and n >= R_MIN else None,
            "tied_at_cut": 0 < k < n and (scored[k - 1][0] == scored[k][0] or scored[n - k][0] == scored[n - k - 1][0]),
        }
    return out


def check(got: dict[str, Any], want: dict[str, dict[str, Any]]) -> None:
    assert [o["name"] for o in got["outcomes"]] == sorted(
        want, key=lambda n: (outcomes.STANDARD.index(n) if n in outcomes.STANDARD else 9, n)
    )
    for o in got["outcomes"]:
        w = want[o["name"]]
        assert (o["calls"], o["scored"], o["split"]) == (w["calls"], w["scored"], w["split"]), o["name"]
        assert o["mean"] == pytest.approx(w["mean"], abs=1e-9)
        assert (o["low"]["calls"], o["high"]["calls"]) == (w["low"][0], w["high"][0])
        assert o["low"]["mean"] == pytest.approx(w["low"][1], abs=1e-9)
        assert o["high"]["mean"] == pytest.approx(w["high"][1], abs=1e-9)
        if w["r"] is None:
            assert o["r"] is None
        else:
            assert o["r"] == pytest.approx(w["r"], abs=1e-9)
            if o["scored"] > 3 and abs(o["r"]) < 1:  # Fisher's interval needs n > 3
                assert o["r_lo"] < o["r"] < o["r_hi"]
            else:
                assert o["r_lo"] is o["r_hi"] is None
        assert o["diff"] == pytest.approx(w["high"][1] - w["low"][1], abs=1e-9)


# --- fixtures -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """One populated store per backend (ingesting and scoring 74 calls once)."""
    with backend_store(request, tmp_path_factory.mktemp("period")) as store:
        populate(store)
        yield store


def client(store: Store, user: str) -> TestClient:
    return api_client(store, user, PASSWORD)


WEEK = ("2026-01-05", "2026-01-11")
Q = f"period=week&end={END.isoformat()}"


# --- tests --------------------------------------------------------------------------------------------------------


def test_the_world_has_what_the_checks_need(world: Store) -> None:
    """Varied scores, outcomes on most calls in and out of the week: else the checks below prove little."""
    scores = {float(s) for (s,) in world.db.all("SELECT score FROM calls WHERE score IS NOT NULL")}
    assert len(scores) >= 8
    want = expected(world, {"a1", "a2"}, *WEEK)
    assert want["csat"]["split"] == "quartile" and want["csat"]["r"] > 0.5
    # calls tied on the score at a quartile's or half's edge (shared, not cut by an arbitrary order)
    assert any(w["tied_at_cut"] for w in expected(world, set(TEAM), *WEEK).values())
    assert expected(world, {"a3"}, *WEEK)["csat"]["split"] == "median"
    assert set(want) == {"csat", "fcr", "complaint", "repeat"}


@pytest.mark.parametrize(
    ("user", "query", "agents"),
    [
        ("admin", "scope=center", {"a1", "a2", "a3"}),
        ("rev", "scope=team&id=t2", {"a3"}),
        ("admin", "scope=agent&id=a2", {"a2"}),
        ("lead1", "scope=center", {"a1", "a2"}),  # a lead's center is their team
        ("lead1", "scope=team&id=t1", {"a1", "a2"}),
        ("lead2", "scope=center", {"a3"}),
        ("alice", "scope=center", {"a1"}),  # an agent's: themself
        ("alice", "scope=agent&id=a1", {"a1"}),
    ],
)
def test_the_api_matches_an_independent_computation(world: Store, user: str, query: str, agents: set[str]) -> None:
    r = client(world, user).get(f"/api/reports/outcomes?{query}&{Q}")
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["start"], got["stop"]) == WEEK
    check(got, expected(world, agents, *WEEK))


def test_a_lead_never_sees_another_teams_outcomes(world: Store) -> None:
    c = client(world, "lead1")
    for path in ("scope=team&id=t2", "scope=agent&id=a3"):
        r = c.get(f"/api/reports/outcomes?{path}&{Q}")
        assert r.status_code == 404 and r.json()["detail"].startswith("no such")
    center = c.get(f"/api/reports/outcomes?scope=center&{Q}").json()
    # team 2's custom outcome and its numbers are nowhere in team 1's lead's report
    assert "custom.nps" not in {o["name"] for o in center["outcomes"]}
    both = expected(world, {"a1", "a2", "a3"}, *WEEK)["csat"]
    mine = next(o for o in center["outcomes"] if o["name"] == "csat")
    assert mine["calls"] < both["calls"] and mine["calls"] == expected(world, {"a1", "a2"}, *WEEK)["csat"]["calls"]
    alice = client(world, "alice")
    for path in ("scope=team&id=t1", "scope=agent&id=a2"):
        assert alice.get(f"/api/reports/outcomes?{path}&{Q}").status_code == 404


def test_periods_and_nothing_imported(world: Store) -> None:
    c = client(world, "admin")
    day = c.get(f"/api/reports/outcomes?scope=center&period=day&end={END.isoformat()}").json()
    check(day, expected(world, set(TEAM), END.isoformat(), END.isoformat()))
    month = c.get(f"/api/reports/outcomes?scope=center&period=month&end={END.isoformat()}").json()
    assert month["start"] == "2025-12-13"
    check(month, expected(world, set(TEAM), "2025-12-13", END.isoformat()))
    assert month["outcomes"][0]["calls"] > next(o for o in day["outcomes"] if o["name"] == "csat")["calls"]
    empty = c.get("/api/reports/outcomes?scope=center&end=2025-06-01").json()
    assert empty["outcomes"] == []


def test_bad_parameters_are_refused_in_one_line_and_counted(world: Store) -> None:
    c = client(world, "rev")
    before = sum(v for k, v in world.counters().items() if k.startswith(REFUSED_PREFIX))
    for query, word in [
        ("scope=planet", "scope"),
        ("scope=team", "id"),
        ("scope=center&id=t1", "id"),
        ("scope=agent&id=" + "x" * 200, "id"),
        ("period=year", "period"),
        ("end=2026-13-01", "YYYY-MM-DD"),
        ("end=0001-01-02", "YYYY-MM-DD"),  # the week before would start before the calendar
    ]:
        r = c.get(f"/api/reports/outcomes?{query}")
        assert r.status_code == 422, query
        detail = r.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail and word in detail, (query, detail)
    after = sum(v for k, v in world.counters().items() if k.startswith(REFUSED_PREFIX))
    assert after - before == 7
    assert c.get("/api/reports/outcomes?scope=team&id=nope").status_code == 404


def _section(html: str) -> str:
    start = html.index('id="period-outcomes"')
    return html[start : html.index("</section>", start)]


@pytest.mark.parametrize(
    ("lang", "title", "csat", "none"),
    [
        ("en", "Outcomes in this period", "Customer satisfaction", "No outcomes imported for this period."),
        ("zh-CN", "本周期的通话结果", "客户满意度", "本周期尚未导入通话结果。"),
    ],
)
def test_the_pages_show_the_outcomes_of_their_period(world: Store, lang: str, title: str, csat: str, none: str) -> None:
    c = client(world, "lead1")
    api = c.get(f"/api/reports/outcomes?scope=center&{Q}").json()
    want = {o["name"]: o for o in api["outcomes"]}
    # the agents overview links to the period's outcomes on their own page (it stays as cheap as before)
    overview = c.get(f"/agents?{Q}&lang={lang}").text
    assert 'id="period-outcomes"' not in overview
    assert f'href="/reports/outcomes?period=week&amp;end={END.isoformat()}"' in overview
    page = _section(c.get(f"/reports/outcomes?{Q}&lang={lang}").text)
    assert title in page and csat in page and f"n={want['csat']['scored']}" in page
    assert f"{want['csat']['r']:+.2f}" in page and f"{want['csat']['mean']:.2f}" in page
    assert f"{100 * want['fcr']['mean']:.0f} %" in page  # a yes/no outcome as a rate
    assert "Agent a3" not in page and "nps" not in page
    team = _section(c.get(f"/reports/team/t1?end={END.isoformat()}&lang={lang}").text)
    assert f"{want['csat']['r']:+.2f}" in team  # the team report's week is the same week
    assert c.get(f"/reports/team/t2?end={END.isoformat()}&lang={lang}").status_code == 404
    agent_api = c.get(f"/api/reports/outcomes?scope=agent&id=a1&period=month&end={END.isoformat()}").json()
    agent = _section(c.get(f"/agents/a1?end={END.isoformat()}&lang={lang}").text)
    a1 = next(o for o in agent_api["outcomes"] if o["name"] == "csat")
    assert f"{a1['r']:+.2f}" in agent and f"n={a1['scored']}" in agent
    assert "scope=agent&amp;period=month&amp;end=2026-01-11&amp;id=a1" in agent  # the JSON link: the same numbers
    assert none in _section(c.get(f"/reports/outcomes?end=2025-06-01&lang={lang}").text)
