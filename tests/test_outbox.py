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
            CallSummary(0.0, 1.0, metrics={"duration": 1.0, "blob": ["x" * 1000] * (MAX_PAYLOAD_BYTES // 1000 + 1)}),
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


def test_budget_counts_only_never_sent_rows_as_dropped(tmp_path: Path) -> None:
    """Evicted rows the broker acknowledged, or the client was handed, may be at the hub: counted apart."""
    db = tmp_path / "ob.sqlite"
    with Outbox(db, max_rows=10) as ob:
        stamped = ob.put_many(env(i) for i in range(10))
        for e in stamped[:4]:
            assert ob.mark_sent(e.id)  # PUBACKed, not yet confirmed by the hub
        rows = ob.pending(100)
        ob.note_handed(rows[5].n)  # 5 and 6 handed to the client, no PUBACK yet
        ob.put_many(env(i) for i in range(10, 18))  # 8 over budget: seq 1..8 go
        assert ob.evicted_unconfirmed == 6 and ob.dropped == 2 and len(ob) == 10
        assert [r.seq for r in ob.pending(100)] == list(range(9, 19))
    with Outbox(db, max_rows=10) as ob:  # persisted; a new process has handed nothing yet
        ob.put_many(env(i) for i in range(3))
        assert ob.evicted_unconfirmed == 6 and ob.dropped == 5


def test_an_outbox_restored_from_an_older_copy_continues_above_its_seqs(tmp_path: Path) -> None:
    """The lock file beside the database remembers the counters: a restored copy's seqs jump past what its newer
    self issued (the hub holds other events under those), and its own rows keep their ids and seqs."""
    db = tmp_path / "ob.sqlite"
    with Outbox(db) as ob:
        copied = ob.put_many(env(i) for i in range(5))
        epoch = ob.epoch
    backup = tmp_path / "backup.sqlite"
    backup.write_bytes(db.read_bytes())
    with Outbox(db) as ob:
        ob.put_many(env(i) for i in range(7))
        assert ob.last_seq("s01") == 12
    db.write_bytes(backup.read_bytes())
    with Outbox(db) as ob:
        assert ob.epoch == epoch and ob.counter("restores") == 1
        assert [(r.id, r.seq) for r in ob.pending(100)] == [(e.id, e.seq) for e in copied]
        assert ob.put(env()).seq == 13  # not 6: seqs 6..12 are another event's at the hub
    with Outbox(db) as ob:  # an ordinary reopen is not a restore
        assert ob.counter("restores") == 1 and ob.put(env()).seq == 14
    (tmp_path / "ob.sqlite.lock").unlink()
    db.unlink()
    with Outbox(db) as ob:  # a wiped outbox is a new epoch: its seqs start at 1 again
        assert ob.epoch != epoch and ob.put(env()).seq == 1 and ob.counter("restores") == 0


def test_resync_numbers_unsent_rows_above_the_hubs(tmp_path: Path) -> None:
    """A copy restored with its lock file is found out by the hub's ack: rows this process put and never handed
    out move above the hub's seq; the copy's rows and rows already handed out keep theirs."""
    db = tmp_path / "ob.sqlite"
    with Outbox(db) as ob:
        ob.put_many(env(i) for i in range(3))
    with Outbox(db) as ob:
        mine = ob.put_many(env(i) for i in range(4))  # seq 4..7, colliding with the hub's 4..20
        ob.note_handed(ob.pending(100)[3].n)  # seq 4 went out already
        size = ob.size_bytes
        assert ob.resync("s01", 20) == 3
        rows = ob.pending(100)
        assert [r.seq for r in rows] == [1, 2, 3, 4, 21, 22, 23] and [r.id for r in rows[3:]] == [e.id for e in mine]
        assert [from_json(r.payload).seq for r in rows] == [r.seq for r in rows]  # the envelope says so too
        assert ob.size_bytes == size + 3  # seq 5 -> 21: one digit more each
        assert ob.last_seq("s01") == 23 and ob.put(env()).seq == 24 and ob.counter("restores") == 1
