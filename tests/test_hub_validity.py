"""Rule validity (hub/validity.py, issue 22) on hubs whose calls are scored from their events: a planted effect
of one rule is found and a rule with none is not (both backends); a rule that fires mostly on long calls, when
only length matters, shows a raw difference and no adjusted one; rules firing on the same calls are inseparable;
a rare rule is too_few; the incrementally kept tables equal a rebuild after scoring, re-scoring with a second
version, late events and re-imported outcomes (both backends); the API's roles, 404s and 422s; the CLI."""

from __future__ import annotations

import csv
import io
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import NormalDist
from typing import Any

import pytest

from edge_agent.events import CallSummary, DeadAir, Event, Speech, TalkOver
from hub import outcomes, validity
from hub.auth import User, create_user
from hub.cli import main as cli_main
from hub.scorecard import DEFAULT_SCORECARD, load, parse
from hub.scores import Scorer, import_scorecard
from hub.storage import Store
from tests.hub_support import SUMMARY, Station, api_client

ADMIN = User("tester", "admin", None, None)
T0 = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)


def seeded(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - synthetic test data, not secrets


def summary(
    duration: float = 300.0,
    latency: float = 1.5,
    monotone: bool = False,
    monologue: float = 20.0,
    ang: float | None = None,
) -> dict[str, Any]:
    """A summary under which only the named threshold rules fire (1.5 s is neither quick nor slow)."""
    s = dict(SUMMARY, duration=duration, agent_response_latency_mean=latency, monotone_agent=monotone,
             longest_agent_monologue=monologue)  # fmt: skip
    if ang is not None:
        s["emotion"] = {"ang": [ang, 10]}
    return s


class Calls:
    """Calls built from known events on ten seats, stored in batches and scored by the real scorer."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.stations = [Station("sh", f"s{i:02d}") for i in range(10)]
        self.n = 0

    def add(self, specs: list[dict[str, Any]], extra: list[list[Event]] | None = None) -> list[str]:
        envs, ids = [], []
        for k, spec in enumerate(specs):
            i = self.n
            self.n += 1
            call = f"call-{i:04d}"
            ids.append(call)
            events: list[Event] = [Speech(1.0, 5.0, "agent"), *(extra[k] if extra else [])]
            events = [*sorted(events, key=lambda e: e.end), CallSummary(0.0, 1.0, {})]
            end = (T0 + timedelta(minutes=i)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            envs += self.stations[i % 10].call(call, end, events=events, summary=spec)
        for j in range(0, len(envs), 500):
            self.store.add_many([(e, e.to_json()) for e in envs[j : j + 500]])
        Scorer(self.store).score_pending()
        return ids

    def late(self, call: str, event: Event) -> None:
        i = int(call.split("-")[1])
        env = self.stations[i % 10].env(event, call, T0.isoformat().replace("+00:00", "Z"))
        self.store.add(env, env.to_json())


def give(store: Store, values: dict[str, dict[str, Any]]) -> None:
    rows = [(n, {"call_id": c, **v}) for n, (c, v) in enumerate(values.items(), 1)]
    result = outcomes.import_rows(store, ADMIN, rows, source="test")
    assert result.refused is None, result.to_dict()


def by_rule(rep: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["rule_id"]: r for r in rep["rules"]}


# --- the figures ----------------------------------------------------------------------------------------------------


def test_a_planted_effect_is_found_and_a_null_rule_is_not(hub_store: Store) -> None:
    rng = seeded(22)
    specs, csat = [], []
    for _ in range(240):
        slow, mono = rng.random() < 0.4, rng.random() < 0.4
        specs.append(summary(duration=rng.choice([60.0, 200.0, 400.0, 900.0]), latency=3.5 if slow else 1.5,
                             monotone=mono, ang=rng.choice([None, 20.0, 70.0])))  # fmt: skip
        # slow responses cost a point of satisfaction; monotone delivery costs nothing
        csat.append(min(5.0, max(1.0, round(4.0 - 1.0 * slow + rng.gauss(0, 0.7), 1))))
    ids = Calls(hub_store).add(specs)
    give(hub_store, {c: {"csat": y} for c, y in zip(ids, csat, strict=True)})
    rep = validity.report(hub_store, "default", 1, "csat")
    rules = by_rule(rep)
    assert rep["calls"] == 240 and rep["better"] == "higher" and rep["simulated"] is False
    assert rules["slow_responses"]["verdict"] == "predicts", rules["slow_responses"]
    assert rules["slow_responses"]["adj_lo"] < -1.0 < rules["slow_responses"]["adj_hi"] < 0  # the planted -1
    assert rules["monotone_agent"]["verdict"] == "no_evidence", rules["monotone_agent"]
    assert rules["monotone_agent"]["adj_lo"] < 0 < rules["monotone_agent"]["adj_hi"]
    # rules the calls never break: too few calls to say anything
    assert rules["agent_interruptions"]["verdict"] == "too_few" and rules["agent_interruptions"]["fired"] == 0
    # the most disagreeing rule first: slow responses agree (a deduction going with lower csat), so it is last of
    # the rules with a verdict
    tested = [r["rule_id"] for r in rep["rules"] if r["agreement"] is not None]
    assert tested[-1] == "slow_responses" and rules["slow_responses"]["agreement"] > 3
    # the score carries the same signal: a higher score goes with higher csat
    assert rep["total"]["verdict"] == "predicts" and rep["total"]["slope_per_10"] > 0 and rep["total"]["r"] > 0.2
    # 4 lengths x 3 anger states, all present
    assert sum(s["calls"] for s in rep["strata"]) == 240 and len(rep["strata"]) == 12
    assert {(s["length_bin"], s["anger"]) for s in rep["strata"]} == {(b, a) for b in range(4) for a in range(3)}
    assert rep["z"] == round(NormalDist().inv_cdf(1 - 0.05 / 4), 4)  # Bonferroni over the two rules tested
    # the lower-is-better direction flips the good scale: slow responses then "go with" better complaints
    give(hub_store, {c: {"complaint": int(y < 3)} for c, y in zip(ids, csat, strict=True)})
    comp = by_rule(validity.report(hub_store, "default", 1, "complaint"))
    assert comp["slow_responses"]["verdict"] == "predicts" and comp["slow_responses"]["adj_diff"] > 0


def test_a_confounded_rule_shows_a_raw_difference_but_no_adjusted_one(tmp_path: Path) -> None:
    store = Store(tmp_path / "hub.sqlite", default_tz="Asia/Shanghai")
    import_scorecard(store, load(DEFAULT_SCORECARD)[1])
    rng = seeded(5)
    specs, csat = [], []
    for _ in range(300):
        long = rng.random() < 0.5
        # long monologues happen mostly on long calls; satisfaction depends on the length alone
        monologue = 90.0 if rng.random() < (0.8 if long else 0.15) else 20.0
        specs.append(summary(duration=900.0 if long else 60.0, monologue=monologue))
        csat.append(min(5.0, max(1.0, round((2.6 if long else 4.2) + rng.gauss(0, 0.6), 1))))
    ids = Calls(store).add(specs)
    give(store, {c: {"csat": y} for c, y in zip(ids, csat, strict=True)})
    rule = by_rule(validity.report(store, "default", 1, "csat"))["long_monologue"]
    assert rule["raw_hi"] < 0, rule  # the raw difference alone would call it predictive
    assert rule["verdict"] == "no_evidence" and rule["adj_lo"] < 0 < rule["adj_hi"], rule
    assert abs(rule["adj_diff"]) < abs(rule["raw_diff"]) / 3
    store.close()


def test_inseparable_and_too_few(tmp_path: Path) -> None:
    store = Store(tmp_path / "hub.sqlite", default_tz="Asia/Shanghai")
    import_scorecard(store, load(DEFAULT_SCORECARD)[1])
    rng = seeded(9)
    specs: list[dict[str, Any]] = []
    extra: list[list[Event]] = []
    for i in range(120):
        both = rng.random() < 0.5  # slow responses and monotone delivery always together
        specs.append(summary(latency=3.5 if both else 1.5, monotone=both))
        # dead air on 5 calls only
        extra.append([DeadAir(6.0, 14.0)] if i < 5 else [])
    ids = Calls(store).add(specs, extra)
    give(store, {c: {"csat": rng.choice([2, 3, 4, 5])} for c in ids})
    rules = by_rule(validity.report(store, "default", 1, "csat"))
    assert rules["slow_responses"]["verdict"] == "inseparable"
    assert rules["slow_responses"]["inseparable_from"] == ["monotone_agent"]
    assert rules["monotone_agent"]["verdict"] == "inseparable"
    assert rules["monotone_agent"]["inseparable_from"] == ["slow_responses"]
    assert rules["slow_responses"]["adj_diff"] is None and rules["slow_responses"]["raw_diff"] is not None
    assert rules["dead_air"]["verdict"] == "too_few" and rules["dead_air"]["fired"] == 5
    assert rules["dead_air"]["not_fired"] == 115 and rules["dead_air"]["agreement"] is None
    # no rule here has a verdict to rank it by: all in scorecard order
    assert all(r["agreement"] is None for r in validity.report(store, "default", 1, "csat")["rules"])
    store.close()


# --- incremental == rebuild -------------------------------------------------------------------------------------------


def snapshot(store: Store) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    rows = store.db.all("SELECT * FROM call_validity ORDER BY call_id, scorecard, version")
    cells = store.db.all("SELECT * FROM validity_cells ORDER BY scorecard, version, outcome, length_bin, anger, fired")
    return (
        [tuple(r) for r in rows],
        [(*c[:7], *(round(float(x), 6) + 0.0 for x in c[7:])) for c in cells],
    )


def test_incremental_cells_equal_a_rebuild(hub_store: Store) -> None:
    rng = seeded(3)
    calls = Calls(hub_store)

    def spec() -> dict[str, Any]:
        return summary(duration=rng.choice([60.0, 400.0]), latency=rng.choice([1.5, 2.5, 3.5]),
                       monotone=rng.random() < 0.3, ang=rng.choice([None, 80.0]))  # fmt: skip

    extra: list[list[Event]] = [[TalkOver(2.0, 2.5, "agent", "backchannel", 0.5)] if i % 3 else [] for i in range(40)]
    ids = calls.add([spec() for _ in range(40)], extra)
    give(hub_store, {c: {"csat": rng.randint(1, 5), "custom.nps": rng.randint(0, 10)} for c in ids[:30]})
    # a second version (slow from 2 s), re-applied to every call: the first version's rows stay
    text = load(DEFAULT_SCORECARD)[1].replace("version: 1", "version: 2").replace("value: 3.0", "value: 2.0")
    import_scorecard(hub_store, text, activate=False)
    Scorer(hub_store).rescore(parse(text))
    # late events re-score some calls under the active version 1: their fired sets change
    for c in ids[:8]:
        calls.late(c, DeadAir(20.0, 28.0))
    Scorer(hub_store).score_pending()
    # changed and new outcomes, then calls that arrive after the outcomes of others
    give(hub_store, {c: {"csat": rng.randint(1, 5), "complaint": rng.randint(0, 1)} for c in ids[20:40]})
    more = calls.add([spec() for _ in range(10)])
    give(hub_store, {c: {"csat": 3} for c in more})
    kept = snapshot(hub_store)
    versions = {(v["scorecard"], v["version"]): v for v in validity.versions(hub_store)}
    assert versions[("default", 1)]["calls"] == 50 and versions[("default", 2)]["calls"] == 40
    assert versions[("default", 1)]["outcome_calls"] == 50 and versions[("default", 2)]["outcome_calls"] == 40
    assert validity.outcome_names(hub_store, "default", 1) == ["csat", "complaint", "custom.nps"]
    assert any("dead_air" in r[5] for r in kept[0] if r[2] == 1)  # the late events moved calls' fired sets
    assert validity.rebuild(hub_store) == 90
    assert snapshot(hub_store) == kept
    assert len(kept[1]) > 20


def test_a_scorer_and_an_import_at_once_keep_the_cells_exact(hub_store: Store) -> None:
    """A second connection re-scores the calls (under both versions, again and again) while the first imports
    changed outcomes for them: no save or import fails, and the cells equal a rebuild."""
    rng = seeded(11)
    ids = Calls(hub_store).add([summary(latency=rng.choice([1.5, 3.5]), monotone=rng.random() < 0.5)
                                for _ in range(60)])  # fmt: skip
    give(hub_store, {c: {"csat": 3} for c in ids})
    text = load(DEFAULT_SCORECARD)[1].replace("version: 1", "version: 2").replace("value: 3.0", "value: 2.0")
    import_scorecard(hub_store, text, activate=False)
    other = Store(hub_store.db.url, default_tz="Asia/Shanghai")
    errors: list[BaseException] = []

    def rescore() -> None:
        try:
            for card in [parse(text), load(DEFAULT_SCORECARD)[0]] * 3:
                Scorer(other).score(list(reversed(ids)), card, chunk=7)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=rescore)
    worker.start()
    try:
        for k in range(6):
            give(hub_store, {c: {"csat": (i + k) % 5 + 1, "fcr": k % 2} for i, c in enumerate(ids)})
    finally:
        worker.join(120)
        other.close()
    assert errors == []
    kept = snapshot(hub_store)
    assert {r[2] for r in kept[0]} == {1, 2}
    validity.rebuild(hub_store)
    assert snapshot(hub_store) == kept


def test_first_report_builds_the_tables_of_a_hub_scored_before_them(tmp_path: Path) -> None:
    store = Store(tmp_path / "hub.sqlite", default_tz="Asia/Shanghai")
    import_scorecard(store, load(DEFAULT_SCORECARD)[1])
    ids = Calls(store).add([summary(latency=3.5 if i % 2 else 1.5) for i in range(30)])
    give(store, {c: {"fcr": i % 2} for i, c in enumerate(ids)})
    kept = snapshot(store)
    # as a hub upgraded from before migration 0010 holds them: scores, no validity rows, no counter
    store.db.execute("DELETE FROM call_validity")
    store.db.execute("DELETE FROM validity_cells")
    store.db.execute("DELETE FROM counters WHERE name = ?", (validity.BUILT,))
    rep = validity.report(store, "default", 1, "fcr")
    assert rep["calls"] == 30 and by_rule(rep)["slow_responses"]["fired"] == 15
    assert snapshot(store) == kept
    assert store.counters()[validity.BUILT] == 1
    store.close()


# --- API and CLI ----------------------------------------------------------------------------------------------------

PASSWORD = "correct horse battery"


@pytest.fixture
def api_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "hub.sqlite", default_tz="Asia/Shanghai")
    import_scorecard(store, load(DEFAULT_SCORECARD)[1])
    rng = seeded(1)
    ids = Calls(store).add([summary(latency=rng.choice([1.5, 3.5])) for _ in range(40)])
    give(store, {c: {"csat": rng.randint(1, 5), "custom.nps": rng.randint(0, 10)} for c in ids})
    for name, role, agent, team in (("admin", "admin", None, None), ("rev", "reviewer", None, None),
                                    ("lead1", "lead", None, "t1"), ("ag1", "agent", "a1", None)):  # fmt: skip
        create_user(store, name, PASSWORD, role, agent_id=agent, team_id=team)
    try:
        yield store
    finally:
        store.close()


def test_api_roles_formats_and_refusals(api_store: Store) -> None:
    for user in ("admin", "rev", "lead1"):
        c = api_client(api_store, user, PASSWORD)
        index = c.get("/api/validity")
        assert index.status_code == 200
        assert index.json()["versions"] == [
            {"scorecard": "default", "version": 1, "calls": 40, "outcome_calls": 40, "outcomes": ["csat", "custom.nps"]}
        ]
        r = c.get("/api/validity/default/1?outcome=csat")
        assert r.status_code == 200 and r.json() == validity.report(api_store, "default", 1, "csat")
    agent = api_client(api_store, "ag1", PASSWORD)
    assert agent.get("/api/validity").status_code == 403
    assert agent.get("/api/validity/default/1?outcome=csat").status_code == 403
    c = api_client(api_store, "rev", PASSWORD)
    custom = c.get("/api/validity/default/1", params={"outcome": "custom.nps", "better": "lower"}).json()
    assert custom["better"] == "lower" and custom["calls"] == 40
    r = c.get("/api/validity/default/1", params={"outcome": "csat", "format": "csv", "lang": "zh-CN"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert table[0][0] == "规则" and len(table) == 1 + 10 + 1 and table[-1][0] == "(total)"
    assert {row[0] for row in table[1:-1]} == {r.id for r in load(DEFAULT_SCORECARD)[0].rules}
    before = api_store.counters()
    for path, status in (
        ("/api/validity/default/9?outcome=csat", 404),
        ("/api/validity/nosuch/1?outcome=csat", 404),
        ("/api/validity/default/1?outcome=custom.never", 404),
        ("/api/validity/default/1?outcome=satisfaction", 404),
        ("/api/validity/default/x?outcome=csat", 422),
        ("/api/validity/default/1?outcome=csat&better=sideways", 422),
        ("/api/validity/default/1?outcome=csat&format=xml", 422),
        ("/api/validity/default/1?outcome=csat&lang=fr", 422),
        (f"/api/validity/default/1?outcome={'x' * 100}", 422),
    ):
        r = c.get(path)
        assert r.status_code == status, (path, r.text)
        assert "\n" not in r.json()["detail"] and "Traceback" not in r.text
    after = api_store.counters()
    assert after.get("validity_refused.unknown", 0) - before.get("validity_refused.unknown", 0) == 4
    assert after.get("validity_refused.bad_params", 0) - before.get("validity_refused.bad_params", 0) == 5


def test_cli_rebuild_and_report(api_store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "hub.sqlite")
    assert cli_main(["--db", db, "validity", "rebuild"]) == 0
    assert "40 call scores" in capsys.readouterr().out
    assert cli_main(["--db", db, "validity", "report", "--version", "1", "--outcome", "csat", "--csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0][:2] == ["rule", "title"] and len(rows) == 12
    assert cli_main(["--db", db, "validity", "report", "--version", "7"]) == 2
    assert "no scorecard default version 7" in capsys.readouterr().err
