"""docs/event.schema.json agrees with what the station really sends and what the hub's reader accepts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from edge_agent.audio import read_call
from edge_agent.cli import model_ref
from edge_agent.config import AnalyzerConfig
from edge_agent.pipeline import Pipeline
from edge_agent.schema import SchemaError, envelope, from_json
from edge_agent.wire import DEFAULT_BATCH_S, expand_activity, to_wire
from tests.conftest import ROOT

SCHEMA_FILE = ROOT / "docs" / "event.schema.json"


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@pytest.fixture(scope="module")
def real_envelopes(real_calls: list[Path]) -> list[dict[str, Any]]:
    """Wire-form envelopes of real analyses, as the outbox stores and publishes them. The talk-over checks are off
    so that these three short calls carry several talk-overs through the wire (what the checks drop is
    test_pipeline's business)."""
    pipeline = Pipeline(AnalyzerConfig.model_validate({"talk_over": {"confirm_min_s": 0, "own_voice": []}}))
    model = model_ref(pipeline)
    out: list[dict[str, Any]] = []
    for i, wav in enumerate(real_calls):
        pipeline.reset()
        agent = "a7" if i % 2 == 0 else None  # with and without the optional agent_id
        analyzed = list(pipeline.run(read_call(wav)))
        # what `analyze` prints and what the station publishes (turn-taking batched as `activity`)
        for seq, ev in enumerate(analyzed + to_wire(analyzed), 1):
            env = envelope(ev, seat="s01", site="lab", call_id=f"call-{i}", agent_id=agent, model=model)
            out.append(json.loads(env.with_seq(seq, "00c0ffee00c0ffee").to_json()))
    return out


def test_activity_batches_carry_every_turn_taking_event(real_envelopes: list[dict[str, Any]]) -> None:
    plain = [
        e
        for e in real_envelopes
        if e["type"] in ("speech", "talk_over", "dead_air") or (e["type"] == "emotion" and e["reason"] == "change")
    ]
    batches = [e for e in real_envelopes if e["type"] == "activity"]
    assert batches and all(b["end"] - b["start"] <= DEFAULT_BATCH_S for b in batches)
    key = lambda e: (e["call_id"], e["type"], e["start"], e["end"])  # noqa: E731
    expanded = [x | {"call_id": b["call_id"]} for b in batches for x in expand_activity(b)]
    assert sorted(map(key, expanded)) == sorted(map(key, plain))
    fields = ("start", "by", "kind", "overlap", "confidence")
    talk_overs = sorted(tuple(e[k] for k in fields) for e in plain if e["type"] == "talk_over")
    batched = sorted(tuple(x[k] for k in fields) for x in expanded if x["type"] == "talk_over")
    assert talk_overs and talk_overs == batched
    # the station's model sends how sure it was of each newcomer
    assert all(0 <= t[-1] <= 1 for t in talk_overs) and len({t[-1] for t in talk_overs}) > 1
    # and how sure Silero was that nobody spoke in each dead air
    dead = sorted((e["call_id"], e["start"], e["end"], e["confidence"]) for e in plain if e["type"] == "dead_air")
    assert dead == sorted(
        (x["call_id"], x["start"], x["end"], x["confidence"]) for x in expanded if x["type"] == "dead_air"
    )
    assert dead and all(0 <= d[-1] <= 1 for d in dead)


def test_real_envelopes_validate(validator: Draft202012Validator, real_envelopes: list[dict[str, Any]]) -> None:
    types = {e["type"] for e in real_envelopes}
    assert {"speech", "activity", "call_summary"} <= types
    for env in real_envelopes:
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(env)]
        assert not errors, (env["type"], errors)
    summaries = [e for e in real_envelopes if e["type"] == "call_summary"]
    assert len(summaries) == 6 and all("model" in e for e in summaries)
    # every metric the analyzer emits is documented in the schema (a new one must be added there too)
    documented = validator.schema["allOf"][2]["then"]["properties"]
    for s in summaries:
        extra = set(s) - set(documented) - set(validator.schema["properties"])
        assert not extra, f"call_summary fields missing from docs/event.schema.json: {sorted(extra)}"
        for party in ("agent", "customer"):
            assert set(s[party]) <= set(documented[party]["properties"])


def _broken(good: dict[str, Any], summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    def without(d: dict[str, Any], key: str) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k != key}

    return {
        "no id": without(good, "id"),
        "schema 2": good | {"schema": 2},
        "seq 0": good | {"seq": 0},
        "seq as string": good | {"seq": "7"},
        "seat with a slash": good | {"seat": "a/b"},
        "ts not UTC": good | {"ts": "2024-05-01T09:30:12.345+02:00"},
        "negative start": good | {"start": -1.0},
        "bad speaker": good | {"speaker": "supervisor"},
        "speech without speaker": without(good, "speaker"),
        "short model hash": good | {"model": {"name": "m", "sha256": "abc"}},
        "summary without duration": without(summary, "duration"),
        "talk_over without kind": good | {"type": "talk_over", "by": "agent", "overlap": 0.5},
        "no call_id": without(good, "call_id"),
        "epoch not hex": good | {"epoch": "XYZ"},
        "activity without customer": good | {"type": "activity", "agent": [[1.0, 2.0]]},
        "activity with a negative delta": good | {"type": "activity", "agent": [10, -120], "customer": []},
        "activity with seconds": good | {"type": "activity", "agent": [[1.0, 2.0]], "customer": []},
        "talk_over surer than sure": good
        | {"type": "talk_over", "by": "agent", "kind": "interruption", "overlap": 0.5, "confidence": 1.5},
        "talk_over confidence as text": good
        | {"type": "talk_over", "by": "agent", "kind": "interruption", "overlap": 0.5, "confidence": "high"},
        "batched talk_over surer than sure": good
        | {"type": "activity", "agent": [], "customer": [], "talk_over": [[1.0, 2.0, "agent", "interruption", 0.5, 2]]},
        "dead_air surer than sure": good | {"type": "dead_air", "confidence": 1.01},
        "batched dead_air with a negative confidence": good
        | {"type": "activity", "agent": [], "customer": [], "dead_air": [[1.0, 5.0, -0.1]]},
        "batched dead_air of four items": good
        | {"type": "activity", "agent": [], "customer": [], "dead_air": [[1.0, 5.0, 0.9, 0.1]]},
        "batched talk_over of seven items": good
        | {
            "type": "activity",
            "agent": [],
            "customer": [],
            "talk_over": [[1.0, 2.0, "agent", "interruption", 0.5, 0.9, 0.1]],
        },
    }


def test_broken_envelopes_fail_both_the_schema_and_the_reader(
    validator: Draft202012Validator, real_envelopes: list[dict[str, Any]]
) -> None:
    good = next(e for e in real_envelopes if e["type"] == "speech")
    summary = next(e for e in real_envelopes if e["type"] == "call_summary")
    assert validator.is_valid(good)
    for what, bad in _broken(good, summary).items():
        assert not validator.is_valid(bad), what
        with pytest.raises(SchemaError):
            from_json(json.dumps(bad))
    # JSON Schema cannot say "even length"; the reader does
    with pytest.raises(SchemaError, match="pairs"):
        from_json(json.dumps(good | {"type": "activity", "agent": [10, 120, 5], "customer": []}))


def test_unknown_fields_and_types_pass_both(
    validator: Draft202012Validator, real_envelopes: list[dict[str, Any]]
) -> None:
    good = next(e for e in real_envelopes if e["type"] == "speech")
    summary = next(e for e in real_envelopes if e["type"] == "call_summary")
    newer = [
        good | {"emotion": {"valence": 0.2}},
        summary | {"new_metric": 1.5, "agent": summary["agent"] | {"jitter_ms": 3}},
        good | {"type": "hold", "reason": "transfer"},
        {k: v for k, v in good.items() if k not in ("call_id", "speaker")}
        | {"type": "agent_login", "start": 0, "end": 0},
    ]
    for env in newer:
        assert validator.is_valid(env)
        assert from_json(json.dumps(env)).id == env["id"]
