"""The envelope schema and the durable outbox: seq across restarts, order, acks, budget drops counted exactly."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.events import CallSummary, DeadAir, Speech, TalkOver
from edge_agent.outbox import Outbox, OutboxError
from edge_agent.schema import MAX_PAYLOAD_BYTES, Envelope, ModelRef, SchemaError, envelope, from_json
from tests.conftest import ROOT

MODEL = ModelRef("speech-v1", "ab" * 32)


def env(i: int = 0, seat: str = "s01") -> Envelope:
    return envelope(Speech(float(i), float(i) + 1.5, "agent"), seat=seat, site="lab", call_id="c1")


# --- schema ------------------------------------------------------------------------------------------------


def test_envelope_round_trip_every_event_type() -> None:
    events = [
        Speech(1.0, 2.5, "customer"),
        TalkOver(3.0, 4.0, by="customer", kind="backchannel", overlap=0.4),
        DeadAir(5.0, 9.0),
        CallSummary(0.0, 60.0, metrics={"duration": 60.0, "agent": {"talk_time": 20.1}}),
    ]
    for seq, event in enumerate(events, 1):
        e = envelope(event, seat="s01", site="lab", call_id="c1", agent_id="a7", model=MODEL).with_seq(seq)
        wire = e.to_json()
        assert " " not in wire  # compact
        assert from_json(wire) == e and from_json(wire.encode()) == e
        assert json.loads(wire) == e.to_dict()
        assert event.to_dict().items() <= e.to_dict().items()  # the event's own fields, flat and unchanged


def test_readers_ignore_unknown_keys_and_pass_them_through() -> None:
    d = env().with_seq(1).to_dict() | {"confidence": 0.9, "future": {"x": 1}}
    back = from_json(json.dumps(d))
    assert back.fields["confidence"] == 0.9 and back.fields["speaker"] == "agent"
    # an event type this reader does not know yet is still accepted
    new = from_json(json.dumps(d | {"type": "emotion", "label": "calm"}))
    assert new.type == "emotion"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d | {"schema": 2},
        lambda d: d | {"schema": True},
        lambda d: {k: v for k, v in d.items() if k != "id"},
        lambda d: d | {"seq": 0},
        lambda d: d | {"seq": "3"},
        lambda d: d | {"seat": "a/b"},
        lambda d: d | {"site": "+"},
        lambda d: d | {"ts": "2024-01-01T00:00:00"},
        lambda d: d | {"ts": "yesterday Z"},
        lambda d: d | {"start": -1},
        lambda d: d | {"end": 0.5, "start": 1.0},
        lambda d: d | {"speaker": "robot"},
        lambda d: d | {"type": "talk_over"},
        lambda d: d | {"model": {"name": "x", "sha256": "nothex"}},
        lambda d: d | {"call_id": 7},
        lambda d: [d],
    ],
)
def test_invalid_payloads_raise_schema_error(mutate: object) -> None:
    d = env().with_seq(1).to_dict()
    with pytest.raises(SchemaError):
        from_json(json.dumps(mutate(d)))  # type: ignore[operator]


def test_not_json_and_oversized_raise_schema_error() -> None:
    with pytest.raises(SchemaError, match="not JSON"):
        from_json(b"{nope")
    with pytest.raises(SchemaError, match="exceeds"):
        from_json(b" " * (MAX_PAYLOAD_BYTES + 1))


# --- outbox ------------------------------------------------------------------------------------------------


def test_put_stamps_seq_and_survives_reopen(tmp_path: Path) -> None:
    db = tmp_path / "outbox.sqlite"
    with Outbox(db) as ob:
        stamped = ob.put_many(env(i) for i in range(5))
        assert [e.seq for e in stamped] == [1, 2, 3, 4, 5]
        assert ob.put(env(9, seat="s02")).seq == 1  # per seat
        assert ob.ack(stamped[0].id) and not ob.ack(stamped[0].id)
    with Outbox(db) as ob:
        rows = ob.pending(100)
        assert [(r.seat, r.seq) for r in rows] == [("s01", 2), ("s01", 3), ("s01", 4), ("s01", 5), ("s02", 1)]
        assert [json.loads(r.payload)["seq"] for r in rows] == [2, 3, 4, 5, 1]
        assert from_json(rows[0].payload) == stamped[1]
        assert ob.put(env(6)).seq == 6  # the counter continues after the restart
        assert ob.last_seq("s01") == 6 and len(ob) == 6
        # a cursor and a seat filter, as the publisher uses them
        assert [r.seq for r in ob.pending(2, seat="s01", after=rows[1].n)] == [4, 5]


def test_put_rejects_stamped_and_oversized_without_side_effects(tmp_path: Path) -> None:
    with Outbox(tmp_path / "ob.sqlite") as ob:
        with pytest.raises(SchemaError):
            ob.put(env().with_seq(4))
        huge = envelope(
            CallSummary(0.0, 1.0, metrics={"duration": 1.0, "blob": "x" * MAX_PAYLOAD_BYTES}),
            seat="s01",
            site="lab",
            call_id="c1",
        )
        with pytest.raises(SchemaError, match="exceeds"):
            ob.put_many([env(1), huge])  # all or nothing
        assert len(ob) == 0 and ob.last_seq("s01") == 0 and ob.size_bytes == 0
        assert ob.put(env()).seq == 1


def test_row_budget_drops_oldest_and_counts_exactly(tmp_path: Path) -> None:
    db = tmp_path / "ob.sqlite"
    with Outbox(db, max_rows=10) as ob:
        for i in range(25):
            ob.put(env(i))
        assert ob.dropped == 15 and len(ob) == 10
        assert [r.seq for r in ob.pending(100)] == list(range(16, 26))
    with Outbox(db, max_rows=10) as ob:
        ob.put_many(env(i) for i in range(3))
        assert ob.dropped == 18  # persisted and accumulated
        assert [r.seq for r in ob.pending(100)] == list(range(19, 29))


def test_byte_budget_drops_oldest_and_counts_exactly(tmp_path: Path) -> None:
    with Outbox(tmp_path / "ob.sqlite", max_bytes=MAX_PAYLOAD_BYTES) as ob:
        sizes = [len(ob.put(env(i)).to_json().encode()) for i in range(400)]
        # expected: keep the newest rows whose sizes sum to at most the budget
        kept, total = 0, 0
        for s in reversed(sizes):
            if total + s > MAX_PAYLOAD_BYTES:
                break
            kept, total = kept + 1, total + s
        assert len(ob) == kept and ob.dropped == 400 - kept and ob.size_bytes == total
        assert [r.seq for r in ob.pending(1000)] == list(range(400 - kept + 1, 401))


def test_one_process_per_outbox(tmp_path: Path) -> None:
    with Outbox(tmp_path / "ob.sqlite"), pytest.raises(OutboxError, match="in use"):
        Outbox(tmp_path / "ob.sqlite")


def test_put_is_durable_when_the_process_is_killed(tmp_path: Path) -> None:
    """put returns only after the commit: SIGKILL right after it loses nothing."""
    db = tmp_path / "ob.sqlite"
    script = f"""
import os, signal
from edge_agent.events import Speech
from edge_agent.outbox import Outbox
from edge_agent.schema import envelope
ob = Outbox({str(db)!r})
for i in range(50):
    ob.put(envelope(Speech(float(i), i + 1.0, "agent"), seat="s01", site="lab", call_id="c1"))
os.kill(os.getpid(), signal.SIGKILL)
"""
    res = subprocess.run([sys.executable, "-c", script], cwd=ROOT, timeout=60)
    assert res.returncode == -signal.SIGKILL
    with Outbox(db) as ob:
        assert [r.seq for r in ob.pending(100)] == list(range(1, 51))
        assert ob.put(env()).seq == 51


def test_sent_rows_stay_until_the_hub_confirms(tmp_path: Path) -> None:
    with Outbox(tmp_path / "ob.sqlite") as ob:
        stamped = ob.put_many(env(i) for i in range(8))
        for e in stamped[:6]:
            assert ob.mark_sent(e.id, when=100.0)  # PUBACKed long ago
        assert len(ob) == 8  # a PUBACK deletes nothing
        assert [r.seq for r in ob.sent_before(200.0, seat="s01", upto=10**9)] == [1, 2, 3, 4, 5, 6]
        assert [r.seq for r in ob.sent_before(200.0, seat="s01", upto=stamped[2].seq)] == [1, 2, 3]
        assert ob.sent_before(50.0, upto=10**9) == []
        # the hub has 1..6 except 3..4 (the gap): only those rows go
        assert ob.confirm("s01", 6, [(3, 4)]) == 4
        assert [r.seq for r in ob.pending(100)] == [3, 4, 7, 8]
        assert ob.confirm("s01", 4) == 2 and ob.confirm("s02", 8) == 0
        assert len(ob) == 2 and ob.size_bytes == sum(len(e.to_json().encode()) for e in stamped[6:])


def test_an_older_outbox_is_migrated_in_place(tmp_path: Path) -> None:
    db = tmp_path / "ob.sqlite"
    old = sqlite3.connect(db)
    old.executescript(
        "CREATE TABLE outbox (n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, seat TEXT NOT NULL,"
        " site TEXT NOT NULL, seq INTEGER NOT NULL, payload TEXT NOT NULL, size INTEGER NOT NULL,"
        " created REAL NOT NULL);"
        "CREATE TABLE seat_seq (seat TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);"
    )
    e = env().with_seq(1)
    old.execute(
        "INSERT INTO outbox (id, seat, site, seq, payload, size, created) VALUES (?, ?, ?, ?, ?, ?, 0)",
        (e.id, e.seat, e.site, 1, e.to_json(), len(e.to_json())),
    )
    old.execute("INSERT INTO seat_seq VALUES ('s01', 1)")
    old.commit()
    old.close()
    with Outbox(db) as ob:
        assert [r.id for r in ob.pending()] == [e.id] and ob.put(env()).seq == 2
        assert ob.mark_sent(e.id, when=1.0) and [r.id for r in ob.sent_before(2.0, upto=10**9)] == [e.id]
    with Outbox(db) as ob:  # and opens again as a current one
        assert len(ob) == 2
