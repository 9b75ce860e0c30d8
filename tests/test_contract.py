"""The round-trip contract: what `edge-agent analyze CALL.wav` prints is what the hub stores and serves.

For real calls (real speech composed by ../shared/tools/compose_calls.py: the RAVDESS call the other tests use and
one from angry EmoDB speakers, so the emotion model emits changes), the real `edge-agent analyze` output is
compared with what the hub serves on `GET /api/calls/{id}/events` after the station's path: the same pipeline
run by the real `edge-agent replay` (wire batching, the durable outbox, the publisher), a real Mosquitto, and the
hub's real ingest and store. The comparison is of multisets of normalised events (every type: speech,
talk_over, dead_air, emotion, call_summary; `activity` batches expanded with `edge_agent.wire.expand_activity`,
envelope headers dropped, numbers to the wire's 2 decimals), so any event dropped, added or changed on the
way fails it.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from benchmarks.compose import compose_calls
from edge_agent.wire import expand_activity
from hub.auth import create_user
from hub.ingest import Ingest
from hub.web.app import create_app
from tests.broker import Mosquitto, mosquitto  # noqa: F401 - the fixture
from tests.conftest import run_cli, shared_or_skip
from tests.test_transport import hub  # noqa: F401 - the fixture: an ingest on a real Mosquitto

pytestmark = pytest.mark.abuse  # the abuse and chaos suite (pyproject markers)

SITE = "lab"
HEADER = ("schema", "id", "seq", "epoch", "site", "seat", "call_id", "agent_id", "ts", "model")
"""Envelope fields: the transport's, not the analysis'."""
TYPES = ("speech", "talk_over", "dead_air", "emotion", "call_summary")


@pytest.fixture(scope="module")
def angry_call(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-minute call between two angry EmoDB speakers (real German speech, real noise)."""
    shared = shared_or_skip()
    emodb = shared / "data" / "emodb"
    rows = [line.split(",") for line in (emodb / "labels.csv").read_text().splitlines()[1:]]
    speakers: dict[str, list[str]] = {}
    for file, speaker, emotion, *_ in rows:
        if emotion == "angry" and speaker in ("emodb_03", "emodb_14"):
            speakers.setdefault(speaker, []).append(str(emodb / file))
    out = tmp_path_factory.mktemp("angry")
    manifest = out / "angry.json"
    manifest.write_text(json.dumps({"speakers": speakers}))
    noise = [shared / "data" / "noise" / "babble.flac"]
    return compose_calls(out / "calls", 1, 1, 11, noise, manifest)[0]


def normalise(event: dict[str, Any]) -> str:
    """One event as analysis output: no header, no batch index, numbers to 2 decimals; canonical JSON."""
    body = {k: v for k, v in event.items() if k not in HEADER and k != "index"}
    return json.dumps(_round(body), sort_keys=True, separators=(",", ":"))


def _round(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 2)
    if isinstance(v, dict):
        return {k: _round(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_round(x) for x in v]
    return v


def served_as_analysis(served: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The hub's stored events of one call, `activity` batches expanded back into the events they carry."""
    out: list[dict[str, Any]] = []
    for e in served:
        out += expand_activity(e) if e["type"] == "activity" else [e]
    return out


def test_what_analyze_prints_is_what_the_hub_serves(
    tmp_path: Path,
    mosquitto: Mosquitto,  # noqa: F811
    hub: Ingest,  # noqa: F811
    real_calls: list[Path],
    angry_call: Path,
) -> None:
    calls = {"ravdess": real_calls[0], "angry": angry_call}
    printed: dict[str, list[dict[str, Any]]] = {}
    for name, wav in calls.items():
        res = run_cli("analyze", str(wav))
        assert res.returncode == 0, res.stderr
        printed[name] = [json.loads(line) for line in res.stdout.splitlines()]
        # the station's path: the same analysis, batched for the wire, outbox, publisher, broker, hub
        outbox = str(tmp_path / f"{name}.sqlite")
        res = run_cli("replay", str(wav), "--seat", f"seat-{name}", "--site", SITE, "--broker", mosquitto.url,
                      "--agent", f"agent-{name}", "--timeout", "30", "--outbox", outbox)  # fmt: skip
        assert res.returncode == 0, res.stderr + mosquitto.log_tail()

    store = hub.store
    create_user(store, "qa", "correct horse battery", "admin")
    client = TestClient(create_app(store))
    token = client.post("/api/login", json={"username": "qa", "password": "correct horse battery"}).json()["token"]
    for name, events in printed.items():
        (call_id,) = {str(r[0]) for r in store.db.all("SELECT call_id FROM events WHERE seat = ?", (f"seat-{name}",))}
        r = client.get(f"/api/calls/{call_id}/events", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        served = served_as_analysis(r.json())
        assert {e["type"] for e in served} <= set(TYPES)
        want, got = Counter(map(normalise, events)), Counter(map(normalise, served))
        missing, extra = want - got, got - want
        assert not missing and not extra, f"{name}: lost on the way {list(missing)[:3]}, not printed {list(extra)[:3]}"
        assert sum(got.values()) == len(events)
        assert r.json() == store.call_events(call_id)  # served as stored

    # the calls exercise what the contract is about: every type, and emotion changes batched on the wire
    types = Counter(e["type"] for events in printed.values() for e in events)
    assert all(types[t] > 0 for t in TYPES), types
    changes = [e for e in printed["angry"] if e["type"] == "emotion" and e["reason"] == "change"]
    assert any(e["label"] == "angry" for e in changes), [e["label"] for e in changes]
    batched = [x for e in store.payloads() if e["type"] == "activity" for x in e.get("emotion", [])]
    assert len(batched) == sum(
        1 for es in printed.values() for e in es if e["type"] == "emotion" and e["reason"] == "change"
    )


def test_a_dropped_or_changed_event_fails_the_comparison() -> None:
    """The normalisation keeps what analysis decides: a changed label, time, score or a missing event differs."""
    scores = {"neutral": 0.1, "happy": 0.0, "angry": 0.8, "sad": 0.1}
    emotion = {"type": "emotion", "start": 1.0, "end": 2.0, "speaker": "agent", "label": "angry", "reason": "change",
               "scores": scores, "arousal": 0.5, "valence": -0.4}  # fmt: skip
    printed = Counter(map(normalise, [emotion, {"type": "dead_air", "start": 3.0, "end": 7.25}]))
    stored = {**emotion, "id": "x", "seq": 4, "index": 0, "call_id": "c"}
    assert Counter(map(normalise, [stored, {"type": "dead_air", "start": 3.0, "end": 7.25}])) == printed
    for changed in ({"label": "neutral"}, {"end": 2.01}, {"scores": {**scores, "angry": 0.7}}):
        assert (
            Counter(map(normalise, [{**emotion, **changed}, {"type": "dead_air", "start": 3.0, "end": 7.25}]))
            != printed
        )
    assert Counter(map(normalise, [emotion])) != printed
