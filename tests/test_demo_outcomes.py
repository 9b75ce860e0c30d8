"""The demo's simulated outcomes (hub/simulated_outcomes.py, issue 22's target "on the demo's simulated outcomes,
the report classifies every planted rule correctly"): the demo's past calls, built as the demo builds them (its
own real-speech compositions, analysed by the station pipeline, dated by its backfill, scored by the hub), get
the demo's simulated outcomes through the real import, and the rule validity report (hub/validity.py) recovers
the plan: `predicts` or `contrary` for every planted rule as its points and the plan's sign say, and no verdict
for the rules planted as unrelated (`no_evidence`, or a `too_few` / `inseparable` the counts bear out), but for
at most one chance finding over the four outcomes, which the report's 5 % error rate per outcome allows. On both
backends. The days, stations and seeds are the demo's defaults; the calls are composed at half its default
`--minutes`, as analysing them is what takes the time (docs/hub.md has the figures at the default length)."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import pytest

from hub import demo, outcomes, simulated_outcomes, validity
from hub.auth import create_user, get_user
from hub.scores import Scorer, get_scorecard
from hub.storage import Store
from tests.conftest import shared_or_skip
from tests.hub_support import SUMMARY, Station, ingest

log = logging.getLogger(__name__)
pytestmark = pytest.mark.slow  # composes and analyses the demo's 32 past calls (about a minute on 2 cores)

STATIONS = 4  # the demo's --stations default
DAYS = demo.HISTORY_DAYS  # its --history-days default
MINUTES = 1.0  # half its --minutes default: past calls of 0.5, 1, 1.5 and 3 min
NOW = 1_796_212_800.0  # 2026-12-02 12:00 UTC, a Wednesday: the same weekdays every run

History = list[tuple[list[Any], dict[str, Any]]]


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    """The demo's past calls, composed and analysed once for the module."""
    shared_or_skip()
    wavs = demo.history_wavs(tmp_path_factory.mktemp("demo"), STATIONS, MINUTES)
    assert len(wavs) == len(demo.HISTORY) * demo.HISTORY_CALLS
    return demo.analyse_history(wavs)


def backfill(store: Store, history: History, tmp: Path) -> int:
    """What the demo's stations send of their past (`demo.past_calls` over each seat's slice of the pool, the
    demo's seed), stored as the hub stores a batch and scored; returns the number of past calls."""
    demo.seed_people(store, STATIONS, tmp / "logins.txt")
    rng = random.Random(7)  # noqa: S311 - the demo's own seed for which past call goes on which day
    calls = 0
    for i in range(STATIONS):
        seat = f"seat{i + 1:02d}"
        batches = demo.past_calls(seat, demo.agent_id(i), demo.seat_pool(history, i), DAYS, rng, NOW)
        # an outbox stamps seqs per seat in the order it was given the envelopes
        envs = [e.with_seq(k) for k, e in enumerate((e for batch in batches for e in batch), 1)]
        store.add_many([(e, e.to_json()) for e in envs])
        calls += len(batches) - 1
    Scorer(store).score_pending()
    return calls


def check(rep: dict[str, Any], points: dict[str, float], chance: list[str]) -> list[str]:
    """Every rule of one outcome's report against the plan; returns the rules it could test (no_evidence or a
    planted verdict), failing on any planted rule misclassified. An unrelated rule called `predicts` or `contrary`
    goes to `chance`: the report's verdicts have a family error rate of 5 % per outcome (hub/validity.py), so over
    four outcomes about one draw in six has one such finding, and the caller bounds how many there may be."""
    outcome = rep["outcome"]
    tested = []
    for r in rep["rules"]:
        rule, verdict = r["rule_id"], r["verdict"]
        expected = simulated_outcomes.expected_verdict(outcome, points[rule], rule)
        where = f"{outcome}/{rule}: {r}"
        if expected != "no_evidence":
            # the plan relies only on rules the report can assess on the demo's calls
            assert min(r["fired"], r["not_fired"]) >= validity.MIN_CALLS, where
            assert verdict == expected, where
            tested.append(rule)
        elif verdict == "too_few":
            assert min(r["fired"], r["not_fired"]) < validity.MIN_CALLS, where
        elif verdict == "inseparable":
            assert r["inseparable_from"], where
        elif verdict in ("predicts", "contrary"):
            assert not (r["adj_lo"] <= 0 <= r["adj_hi"]), where
            chance.append(where)
        else:
            assert verdict == "no_evidence", where
            assert r["adj_lo"] <= 0 <= r["adj_hi"], where
            tested.append(rule)
    return tested


def test_the_report_recovers_the_planted_rules(hub_store: Store, history: History, tmp_path: Path) -> None:
    store = hub_store
    past = backfill(store, history, tmp_path)
    scored = int(store.db.scalar("SELECT COUNT(*) FROM calls WHERE score_id IS NOT NULL") or 0)
    assert scored == past > 200, (scored, past)
    distinct = len({frozenset(f.fired) for f in simulated_outcomes.scored_calls(store)})

    admin = get_user(store, "admin")
    assert admin is not None
    result = simulated_outcomes.import_simulated(store, admin)
    assert result.refused is None and result.imported == scored, result.to_dict()
    # labelled as simulated wherever imports are listed
    (listed,) = outcomes.recent_imports(store, admin)
    assert listed["source"] == "simulated" and "simulated by the demo" in listed["filename"], listed
    assert simulated_outcomes.imported(store)
    # deterministic: the same seed gives every call the same outcomes, another seed other ones
    facts = simulated_outcomes.scored_calls(store)
    again = [simulated_outcomes.simulate(f) for f in facts]
    stored = {(str(c), str(n)): float(v) for c, n, v in store.db.all("SELECT call_id, name, value FROM call_outcomes")}
    assert all(stored[(str(row["call_id"]), "csat")] == row["csat"] for row in again)
    other = [simulated_outcomes.simulate(f, seed=1) for f in facts]
    assert any(a["csat"] != b["csat"] for a, b in zip(again, other, strict=True))

    card = get_scorecard(store)
    assert card is not None
    points = {r.id: r.points for r in card.rules}
    assert set(simulated_outcomes.PLAN) == set(validity.BETTER)
    planted = {rule for rules in simulated_outcomes.PLAN.values() for rule in rules}
    assert planted <= set(points), planted - set(points)
    verdicts: dict[str, dict[str, str]] = {}
    confounded: list[str] = []
    chance: list[str] = []
    for outcome in simulated_outcomes.PLAN:
        rep = validity.report(store, card.name, card.version, outcome)
        assert rep["simulated"] is True and rep["calls"] == scored, rep
        tested = check(rep, points, chance)
        verdicts[outcome] = {r["rule_id"]: r["verdict"] for r in rep["rules"]}
        # the report tests more than the planted rules: at least three unrelated ones per outcome get a verdict
        assert len(set(tested) - set(simulated_outcomes.PLAN[outcome])) >= 3, (outcome, verdicts[outcome])
        confounded += [
            f"{outcome}/{r['rule_id']}"
            for r in rep["rules"]
            if r["rule_id"] not in simulated_outcomes.PLAN[outcome]
            and r["verdict"] == "no_evidence"
            and r["raw_lo"] is not None
            and (r["raw_lo"] > 0 or r["raw_hi"] < 0)
        ]
    # at most one chance finding in the whole report: two or more, at 5 % per outcome, happen about once in 70
    # draws (a sweep of 200 seeds on the demo's calls of 2026-12-04 saw none with two; 83 % of seeds had none)
    assert len(chance) <= 1, chance
    # the confounders matter: some unrelated rule differs between the piles of calls as such (length, anger), and
    # only the adjustment clears it
    assert confounded, verdicts
    log.info("%s: %d past calls (%d distinct fired sets), verdicts %s; raw-only: %s; chance findings: %s",
             store.db.dialect, scored, distinct, verdicts, confounded, chance)  # fmt: skip


def test_planted_rules_are_rules_of_the_shipped_scorecard() -> None:
    """The plan names rules the shipped scorecard has and outcomes the report reads (a renamed rule would
    silently plant nothing), and what each planted rule should be called follows from its points."""
    from hub.scorecard import DEFAULT_SCORECARD, load

    card = load(DEFAULT_SCORECARD)[0]
    points = {r.id: r.points for r in card.rules}
    expect = {
        (outcome, rule): simulated_outcomes.expected_verdict(outcome, points[rule], rule)
        for outcome, rules in simulated_outcomes.PLAN.items()
        for rule in rules
    }
    assert expect == {
        ("csat", "agent_interruptions"): "predicts",
        ("csat", "calm_with_angry_customer"): "predicts",
        ("csat", "agent_talk_ratio"): "contrary",
        ("fcr", "agent_backchannels"): "predicts",
        ("repeat", "dead_air"): "predicts",
    }
    assert simulated_outcomes.expected_verdict("complaint", -3.0, "agent_interruptions") == "no_evidence"


def test_what_the_generator_reads_and_who_may_import(hub_store: Store) -> None:
    """The generator reads a call's anger from whatever summary a station sent (a malformed `emotion.ang` is a
    calm customer, never an error), leaves out calls the import could not name, and only an admin or QA
    reviewer gives every call simulated outcomes; a second import with the same seed stores the same values."""
    store = hub_store
    station = Station("sh", "s01")
    summaries = {
        "angry": dict(SUMMARY, emotion={"ang": [80, 10]}),
        "calm": dict(SUMMARY, emotion={"ang": [49.9, 90]}),
        "odd": dict(SUMMARY, emotion={"ang": ["80", None]}),
        "none": dict(SUMMARY, duration=700.0),
    }
    envs = []
    for k, (call, summary) in enumerate(summaries.items()):
        envs += station.call(call, f"2026-01-05T0{k + 1}:00:00.000Z", agent="a1", summary=summary)
    ingest(store, envs)
    facts = {f.call_id: f for f in simulated_outcomes.scored_calls(store)}
    assert set(facts) == set(summaries)
    assert {c for c, f in facts.items() if f.angry_start} == {"angry"}
    assert simulated_outcomes.length_bin(facts["none"].duration_s) == 3 > simulated_outcomes.length_bin(120.0) == 1
    # the known call's 3 agent interruptions beyond the free one fire agent_interruptions on every call
    assert all("agent_interruptions" in f.fired for f in facts.values())
    # a call stored under a scoped id (another seat's claim) has no id an export could name: left out
    store.db.execute("UPDATE calls SET call_id = 'x@sh@s02' WHERE call_id = 'odd'")
    assert "x@sh@s02" not in {f.call_id for f in simulated_outcomes.scored_calls(store)}

    create_user(store, "lead1", "pw-lead-0001", "lead", team_id="t1")
    create_user(store, "alice", "pw-alice-001", "agent", agent_id="a1")
    create_user(store, "boss", "pw-boss-0001", "admin")
    for name in ("lead1", "alice"):
        user = get_user(store, name)
        assert user is not None
        with pytest.raises(PermissionError):
            simulated_outcomes.import_simulated(store, user)
    assert not simulated_outcomes.imported(store)
    boss = get_user(store, "boss")
    assert boss is not None
    first = simulated_outcomes.import_simulated(store, boss)
    assert first.refused is None and first.imported == 3, first.to_dict()
    values = store.db.all("SELECT call_id, name, value FROM call_outcomes ORDER BY call_id, name")
    assert {r[1] for r in values} == set(outcomes.STANDARD)
    assert all(1 <= v <= 5 for _, n, v in values if n == "csat")
    assert all(v in (0.0, 1.0) for _, n, v in values if n != "csat")
    second = simulated_outcomes.import_simulated(store, boss)
    assert second.imported == 3 and second.import_id != first.import_id
    assert store.db.all("SELECT call_id, name, value FROM call_outcomes ORDER BY call_id, name") == values
