"""Scorecard engine on known event sets: per-event points, free occurrences, caps, credits, thresholds,
evidence, low confidence, and versioned re-scoring that keeps history (on both storage backends)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from edge_agent.audio import read_call
from edge_agent.events import CallSummary, DeadAir, TalkOver
from edge_agent.pipeline import Pipeline
from edge_agent.schema import envelope
from edge_agent.wire import to_wire
from hub.scorecard import DEFAULT_SCORECARD, ScorecardError, load, parse
from hub.scores import Scorer, get_scorecard, import_scorecard
from hub.scoring import CallScore, call_view, score_call
from hub.storage import Store
from tests.hub_support import SUMMARY, Station, ingest, known_call_events

CARD = load(DEFAULT_SCORECARD)[0]
TS = "2026-01-05T02:00:00.000Z"


def score_of(envs: list[Any], card: Any = CARD) -> CallScore:
    view = call_view([e.to_dict() for e in envs])
    assert view is not None
    return score_call("c1", card, view)


def items(s: CallScore) -> dict[str, Any]:
    return {i.rule: i for i in s.items}


def test_known_call_rule_by_rule() -> None:
    envs = Station("sh", "s01").call("c1", TS)
    s = score_of(envs)
    it = items(s)
    # 3 interruptions, the first free, -3 each
    assert (it["agent_interruptions"].count, it["agent_interruptions"].points) == (3, -6.0)
    assert (it["agent_backchannels"].count, it["agent_backchannels"].points) == (2, 2.0)  # credit
    assert (it["dead_air"].count, it["dead_air"].points) == (1, -2.0)  # only the 6 s one is >= 5 s
    assert it["quick_responses"].points == 5.0 and it["quick_responses"].value == 0.8
    assert it["slow_responses"].points == 0.0 and it["slow_responses"].applicable
    assert it["agent_talk_ratio"].points == 0.0
    assert not it["calm_with_angry_customer"].applicable  # nobody was angry
    assert s.score == 80 - 6 + 2 - 2 + 5
    assert (s.weight, s.excluded, s.note) == (1.0, False, "")


def test_evidence_points_at_the_batch_and_entry() -> None:
    envs = Station("sh", "s01").call("c1", TS)
    batches = [e for e in envs if e.type == "activity"]
    assert len(batches) == 2  # 120 s windows
    ev = items(score_of(envs))["agent_interruptions"].evidence
    assert [(e.event_id, e.start, e.end) for e in ev] == [
        (batches[0].id, 15.0, 16.0),
        (batches[0].id, 50.0, 51.0),
        (batches[1].id, 130.0, 131.0),
    ]
    for e in ev:  # the index finds the entry in the stored batch
        assert e.index is not None
        entry = batches[0 if e.event_id == batches[0].id else 1].fields["talk_over"][e.index]
        assert entry[:4] == [e.start, e.end, "agent", "interruption"]
    summary_id = envs[-1].id
    assert items(score_of(envs))["quick_responses"].evidence[0].event_id == summary_id


def test_older_per_event_form_scores_the_same() -> None:
    st = Station("sh", "s01")
    per_event = [st.env(e, "c1", TS) for e in known_call_events()]
    batched = Station("sh", "s01").call("c1", TS)
    a, b = score_of(per_event), score_of(batched)
    assert a.score == b.score
    assert [(i.rule, i.points, i.count) for i in a.items] == [(i.rule, i.points, i.count) for i in b.items]


def test_caps_limit_a_rule() -> None:
    evs = [TalkOver(float(i), i + 0.6, "agent", "interruption", 0.6) for i in range(0, 40, 2)]
    envs = Station("sh", "s01").call("c1", TS, events=[*evs, CallSummary(0.0, 60.0, dict(SUMMARY, duration=60.0))])
    it = items(score_of(envs))["agent_interruptions"]
    assert (it.count, it.points, it.capped) == (20, -15.0, True)
    assert len(it.evidence) == 20  # every occurrence is still cited


def test_calm_with_an_angry_customer_is_credited_and_anger_by_the_agent_is_not() -> None:
    st = Station("sh", "s01")
    base = st.call("c1", TS)
    angry = st.env({"type": "emotion", "start": 20.0, "end": 23.0, "party": "customer", "label": "angry",
                    "scores": {"angry": 0.9}}, "c1", TS)  # fmt: skip
    it = items(score_of([angry, *base]))["calm_with_angry_customer"]
    assert (it.points, [e.event_id for e in it.evidence]) == (5.0, [angry.id])
    agent_angry = st.env({"type": "emotion", "start": 30.0, "end": 31.0, "party": "agent", "label": "angry"}, "c1", TS)
    assert items(score_of([angry, agent_angry, *base]))["calm_with_angry_customer"].points == 0.0
    # the station's own event shape (edge_agent.events.Emotion): `speaker`, and an anger alert
    alert = st.env({"type": "emotion", "start": 40.0, "end": 41.0, "speaker": "customer", "label": "neutral",
                    "reason": "anger_alert"}, "c1", TS)  # fmt: skip
    assert items(score_of([alert, *base]))["calm_with_angry_customer"].points == 5.0
    odd = st.env({"type": "emotion", "start": 1.0, "end": 2.0, "party": 7, "label": None}, "c1", TS)
    assert not items(score_of([odd, *base]))["calm_with_angry_customer"].applicable  # odd shapes are ignored


def test_missing_or_null_metric_is_not_applicable_not_a_deduction() -> None:
    summary = dict(SUMMARY, agent_response_latency_mean=None)
    del summary["monotone_agent"]
    envs = Station("sh", "s01").call("c1", TS, summary=summary)
    it = items(score_of(envs))
    assert not it["quick_responses"].applicable and it["quick_responses"].points == 0.0
    assert not it["monotone_agent"].applicable


@pytest.mark.parametrize(("action", "weight", "excluded"), [("downweight", 0.5, False), ("exclude", 0.0, True)])
def test_low_confidence_is_visible(action: str, weight: float, excluded: bool) -> None:
    card = CARD.model_copy(update={"low_confidence": CARD.low_confidence.model_copy(update={"action": action})})
    summary = dict(SUMMARY, quality={"flags": ["low_snr", "new_flag"], "low_confidence": True})
    s = score_of(Station("sh", "s01").call("c1", TS, summary=summary), card)
    assert (s.weight, s.excluded) == (weight, excluded)
    assert "low_snr, new_flag" in s.note


def test_no_summary_no_score() -> None:
    envs = Station("sh", "s01").call("c1", TS)[:-1]
    assert call_view([e.to_dict() for e in envs]) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nversion: 1\nrules: []\n", "rules"),
        ("name: x\nversion: 1\nrules:\n - {id: a, title: t, kind: threshold, metric: m, op: gt, value: 1,"
         " points: 1, colour: red}\n", "colour"),
        ("name: x\nversion: 1\nrules:\n - {id: a, title: t, kind: threshold, metric: m, op: gt, value: 1, points: 1}\n"
         " - {id: a, title: t, kind: threshold, metric: m, op: lt, value: 1, points: 1}\n", "duplicate rule ids: a"),
        ("name: x\nversion: 1\nrules:\n - {id: a, title: t, kind: magic, points: 1}\n", "kind"),
        ("[1, 2", "not YAML"),
        ("- just a list", "YAML mapping"),
    ],
)  # fmt: skip
def test_bad_scorecards_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(ScorecardError, match=message) as err:
        parse(text)
    assert "\n" not in str(err.value)


def current(store: Store, call_id: str) -> tuple[Any, ...]:
    row = store.db.one("SELECT scorecard_version, score, auto_score FROM calls WHERE call_id = ?", (call_id,))
    assert row is not None
    return row


def test_rescoring_under_a_new_version_keeps_history(hub_store: Store) -> None:
    store = hub_store
    st = Station("sh", "s01")
    ingest(store, [st.login("a1", "2026-01-05T01:00:00.000Z"), *st.call("c1", TS)])
    assert current(store, "c1") == (1, 79.0, 79.0)
    text = DEFAULT_SCORECARD.read_text()
    # same version, different rules: refused (a stored score must name exactly the rules that made it)
    with pytest.raises(ScorecardError, match="bump version"):
        import_scorecard(store, text.replace("points: -3", "points: -4"))
    v2 = text.replace("version: 1", "version: 2").replace("points: -3\n    cap: 15", "points: -5\n    cap: 15")
    card2 = import_scorecard(store, v2, activate=False)
    assert get_scorecard(store).version == 1  # type: ignore[union-attr]  # not active until asked
    assert Scorer(store).rescore(card2) == 1
    assert current(store, "c1") == (2, 75.0, 75.0)  # 2 paid interruptions at -5 instead of -3
    history = store.db.all("SELECT version, score, current FROM scores WHERE call_id = 'c1' ORDER BY id")
    assert history == [(1, 79.0, 0), (2, 75.0, 1)]
    assert store.db.all("SELECT score_wsum, weight_sum FROM agent_daily") == [(75.0, 1.0)]
    assert store.db.one("SELECT action, target FROM audit WHERE action = 'rescore'") == ("rescore", "default@2")


def test_late_events_rescore_a_call(hub_store: Store) -> None:
    store = hub_store
    st = Station("sh", "s01")
    envs = st.call("c1", TS)
    ingest(store, envs[1:])  # the second batch and the summary first
    first = current(store, "c1")
    ingest(store, envs[:1])  # then the first activity batch, late
    assert first != current(store, "c1")
    assert len(store.db.all("SELECT id FROM scores WHERE call_id = 'c1'")) == 2


@pytest.mark.slow
def test_a_real_call_is_scored_with_consistent_evidence(real_calls: list[Any]) -> None:
    pipeline = Pipeline()
    events = to_wire(pipeline.run(read_call(real_calls[0], block_seconds=2.0)))
    envs = [envelope(e, seat="s01", site="sh", call_id="real", ts=TS).with_seq(i + 1) for i, e in enumerate(events)]
    summary = events[-1].to_dict()
    s = score_of(envs)
    it = items(s)
    assert it["agent_interruptions"].count == summary["talk_over_counts"]["agent_interruption"]
    assert it["agent_backchannels"].count == summary["talk_over_counts"]["agent_backchannel"]
    ids = {e.id for e in envs}
    assert all(ev.event_id in ids for i in s.items for ev in i.evidence)
    assert 0 <= s.score <= 100
    json.dumps(s.items_json())  # storable as is


def _saved(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "scores": store.db.all(
            "SELECT call_id, scorecard, version, score, max_score, weight, excluded, note, items, current FROM scores"
            " ORDER BY call_id, id"
        ),
        "calls": store.db.all(
            "SELECT call_id, scorecard, scorecard_version, auto_score, score, weight, excluded FROM calls"
            " ORDER BY call_id"
        ),
        "rules": store.db.all("SELECT * FROM call_rules ORDER BY call_id, rule_id"),
        "daily": store.db.all("SELECT * FROM agent_daily ORDER BY agent_id, day"),
    }


def test_a_scoring_process_saves_what_the_hub_process_would(hub_store: Store, tmp_path: Any) -> None:
    """`Scorer(processes=1)` (what `qa-hub serve` runs: the rules applied in a process of its own) against
    scoring in the calling thread: the same scores, rule rows and rollups, a reviewer's override kept through a
    re-score, and the calls still without a summary left alone."""
    from hub.auth import User
    from hub.reviews import override

    here = Store(tmp_path / "here.sqlite", default_tz="Asia/Shanghai")
    import_scorecard(here, load(DEFAULT_SCORECARD)[1])
    pooled = Scorer(hub_store, processes=1)
    try:
        st = Station("sh", "s01")
        envs = [st.login("a1", "2026-01-05T01:00:00.000Z")]
        for k in range(20):  # more than one task's worth for the scoring process
            envs += st.call(f"c{k:02d}", f"2026-01-05T02:{k:02d}:00.000Z")
        envs += st.call("open", TS)[:-1]  # no summary yet
        for s in (here, hub_store):
            ingest(s, envs, score=False)
        assert Scorer(here).score_pending() == pooled.score_pending() == 20
        assert _saved(hub_store) == _saved(here)
        reviewer = User("rev", "reviewer")
        for s in (here, hub_store):
            override(s, reviewer, "c03", "agent_interruptions", 0.0, "not an interruption")
        card = get_scorecard(here)
        assert card is not None
        assert Scorer(here).rescore(card) == pooled.rescore(card) == 20
        assert _saved(hub_store) == _saved(here)
        assert hub_store.db.scalar("SELECT score FROM calls WHERE call_id = 'c03'") == 79.0 + 6.0
        assert pooled.processes == 1  # it never fell back to scoring here
    finally:
        pooled.close()
        here.close()


def test_min_confidence_leaves_unsure_talk_overs_out_and_shows_the_rest() -> None:
    """A rule's `min_confidence` drops talk-overs the station was unsure of; one without a confidence (an older
    station's) still counts; the counted ones cite their confidence, and the call page says it in both languages.
    The confidence travels in the batched wire format and back."""
    from hub.web.explain import breakdown

    evs = [
        TalkOver(10.0, 11.0, "agent", "interruption", 1.0, confidence=0.95),
        TalkOver(20.0, 21.0, "agent", "interruption", 1.0, confidence=0.40),
        TalkOver(30.0, 31.0, "agent", "interruption", 1.0),  # an older station: no confidence
        TalkOver(40.0, 41.0, "agent", "interruption", 1.0, confidence=0.80),
    ]
    envs = Station("sh", "s01").call("c1", TS, events=[*evs, CallSummary(0.0, 60.0, dict(SUMMARY, duration=60.0))])
    batch = next(e for e in envs if e.type == "activity")
    assert [len(x) for x in batch.fields["talk_over"]] == [6, 6, 5, 6]
    text = DEFAULT_SCORECARD.read_text().replace("cap: 15\n", "cap: 15\n    min_confidence: 0.8\n", 1)
    card = parse(text)
    rule = card.rule("agent_interruptions")
    assert rule is not None and getattr(rule, "min_confidence", None) == 0.8
    it = items(score_of(envs, card))["agent_interruptions"]
    assert [(e.start, e.confidence) for e in it.evidence] == [(10.0, 0.95), (30.0, None), (40.0, 0.8)]
    assert (it.count, it.points) == (3, -6.0)  # the first free
    everything = items(score_of(envs))["agent_interruptions"]
    assert everything.count == 4 and [e.confidence for e in everything.evidence] == [0.95, 0.4, None, 0.8]
    stored = score_of(envs, card)
    score = {"score": stored.score, "max_score": stored.max_score, "items": stored.items_json()}
    for lang, word in (("en", "confidence 0.95"), ("zh-CN", "置信度 0.95")):
        rows = {r.rule: r for r in breakdown(score, card, [], lang).rows}
        texts = [m.text for m in rows["agent_interruptions"].moments]
        assert any(word in t for t in texts) and sum("0.8" in t for t in texts) == 1, texts
        assert not any(("confidence" in t or "置信度" in t) for t in texts if t.startswith("30.0")), texts


def test_min_confidence_leaves_unsure_dead_air_out(tmp_path: Any) -> None:
    """The same rule field works on dead air: a dead air Silero half heard speech in is left out of the deduction,
    one from an older station (no confidence) counts, and the confidence travels in the batch and back."""
    from hub.web.explain import breakdown

    evs = [
        DeadAir(10.0, 16.0, confidence=0.97),
        DeadAir(20.0, 26.0, confidence=0.55),  # Silero heard speech in much of it: likely missed speech
        DeadAir(30.0, 36.0),  # an older station: no confidence
        DeadAir(40.0, 42.0, confidence=0.99),  # too short for the rule whatever its confidence
    ]
    envs = Station("sh", "s02").call("c2", TS, events=[*evs, CallSummary(0.0, 60.0, dict(SUMMARY, duration=60.0))])
    batch = next(e for e in envs if e.type == "activity")
    assert [len(x) for x in batch.fields["dead_air"]] == [3, 3, 2, 3]
    text = DEFAULT_SCORECARD.read_text().replace(
        "    min_duration_s: 5\n", "    min_duration_s: 5\n    min_confidence: 0.9\n", 1
    )
    card = parse(text)
    it = items(score_of(envs, card))["dead_air"]
    assert [(e.start, e.confidence) for e in it.evidence] == [(10.0, 0.97), (30.0, None)]
    assert (it.count, it.points) == (2, -4.0)
    assert items(score_of(envs))["dead_air"].count == 3  # the shipped card counts every long one
    stored = score_of(envs, card)
    score = {"score": stored.score, "max_score": stored.max_score, "items": stored.items_json()}
    rows = {r.rule: r for r in breakdown(score, card, [], "en").rows}
    assert any("confidence 0.97" in m.text for m in rows["dead_air"].moments)
    # a reviewer is told where an unsure dead air more likely hides missed speech, in both languages
    everything, shipped = score_of(envs), parse(DEFAULT_SCORECARD.read_text())
    score = {"score": everything.score, "max_score": everything.max_score, "items": everything.items_json()}
    for lang, doubt in (("en", "speech may have been missed"), ("zh-CN", "可能漏听了说话")):
        texts = {
            m.start: m.text for m in {r.rule: r for r in breakdown(score, shipped, [], lang).rows}["dead_air"].moments
        }
        assert doubt in texts[20.0] and not any(doubt in texts[t] for t in (10.0, 30.0)), texts
