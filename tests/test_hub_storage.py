"""The hub store on SQLite and on a real PostgreSQL: migrations, exactly-once, seq gaps, attribution."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.events import Speech
from edge_agent.schema import Envelope
from hub.db import Database, StorageError, migrations
from hub.scores import Scorer
from hub.storage import Outcome, Store
from tests.hub_support import Station, ingest

SITE = "sh"


def test_migrations_apply_once_and_reopen(hub_store: Store) -> None:
    store = hub_store
    applied = store.db.all("SELECT version, name FROM schema_migrations ORDER BY version")
    assert [int(v) for v, _ in applied] == [v for v, _, _ in migrations()]
    assert Database(store.db.url).migrate() == []  # a second open applies nothing


def test_add_is_idempotent_and_tracks_gaps(hub_store: Store) -> None:
    store = hub_store
    st = Station(SITE, "s01")
    envs = [st.env(Speech(float(i), i + 0.5, "agent"), "c1", "2026-01-05T02:00:00.000Z") for i in range(6)]
    assert store.add(envs[0], envs[0].to_json()) is Outcome.STORED
    assert store.add(envs[0], envs[0].to_json()) is Outcome.DUPLICATE
    for e in (envs[3], envs[5]):
        store.add(e, e.to_json())
    assert store.watermark(SITE, "s01") == (1, 6, [(2, 3), (5, 5)])
    for e in (envs[1], envs[2], envs[4]):
        store.add(e, e.to_json())
    assert store.watermark(SITE, "s01") == (6, 6, [])
    assert store.seqs(SITE, "s01") == [1, 2, 3, 4, 5, 6]
    assert store.count() == 6


def test_batch_rolls_back_as_a_whole(hub_store: Store) -> None:
    store = hub_store
    st = Station(SITE, "s01")
    e1 = st.env(Speech(0.0, 1.0, "agent"), "c1", "2026-01-05T02:00:00.000Z")
    with pytest.raises(StorageError), store.batch():
        store.add(e1, e1.to_json())
        store.db.execute("INSERT INTO no_such_table VALUES (1)")
    assert store.count() == 0


def test_seat_events_without_a_call_are_stored(hub_store: Store) -> None:
    store = hub_store
    st = Station(SITE, "s01")
    e = st.login("a1", "2026-01-05T01:00:00.000Z")
    assert e.call_id is None
    assert store.add(e, e.to_json()) is Outcome.STORED
    assert store.agent_at(SITE, "s01", 1e12) is None  # a seat's login of an agent the hub does not know: nobody
    store.put_agent("a1", "Alice", None)
    assert store.agent_at(SITE, "s01", 1e12) == "a1"


def call_agent(store: Store, call_id: str) -> tuple[str | None, str | None]:
    row = store.db.one("SELECT agent_id, agent_source FROM calls WHERE call_id = ?", (call_id,))
    assert row is not None
    return row[0], row[1]


def test_hot_desking_attribution(hub_store: Store) -> None:
    store = hub_store
    st = Station(SITE, "s07")
    envs = [st.login("a1", "2026-01-05T01:00:00.000Z")]
    envs += st.call("call-1", "2026-01-05T01:10:00.000Z")  # a1's call (ends 01:10, started 140 s earlier)
    envs += [st.logout("2026-01-05T02:00:00.000Z"), st.login("a2", "2026-01-05T02:05:00.000Z")]
    envs += st.call("call-2", "2026-01-05T02:30:00.000Z")
    # the station names another agent on its events, without a login: not taken (docs/trust.md), but counted
    envs += [e for e in st.call("call-3", "2026-01-05T02:40:00.000Z", agent="a9") if e.type != "agent_login"]
    envs += [st.logout("2026-01-05T03:00:00.000Z")]
    envs += st.call("call-4", "2026-01-05T03:10:00.000Z")  # nobody logged in
    store.put_agent("a9", "Known", None)
    ingest(store, envs)
    assert call_agent(store, "call-1") == ("a1", "seat")
    assert call_agent(store, "call-2") == ("a2", "seat")
    assert call_agent(store, "call-3") == ("a2", "seat")
    assert call_agent(store, "call-4") == (None, "seat")
    assert store.counters()["agent_mismatch"] == 1
    day = store.db.all("SELECT agent_id, day, calls FROM agent_daily ORDER BY agent_id")
    # 01:10 UTC is 09:10 in Shanghai: the site's local day
    assert day == [("a1", "2026-01-05", 1), ("a2", "2026-01-05", 2)]


def test_a_late_login_reattributes_calls(hub_store: Store) -> None:
    store = hub_store
    st = Station(SITE, "s08")
    login = st.login("a5", "2026-01-05T04:00:00.000Z")
    call = st.call("call-late", "2026-01-05T04:20:00.000Z")
    ingest(store, call)  # the call arrives before the login that covers it (a station outbox replaying)
    assert call_agent(store, "call-late") == (None, "seat")
    ingest(store, [login])
    assert call_agent(store, "call-late") == ("a5", "seat")
    assert store.db.all("SELECT agent_id, calls, scored FROM agent_daily") == [("a5", 1, 1)]


def test_a_login_moving_a_call_updates_both_rollups(hub_store: Store) -> None:
    store = hub_store
    st = Station(SITE, "s09")
    first = st.login("a1", "2026-01-05T05:00:00.000Z")
    call = st.call("call-x", "2026-01-05T05:20:00.000Z")
    second = st.login("a2", "2026-01-05T05:10:00.000Z")  # a hand-over before the call, delivered late
    ingest(store, [first, *call])
    assert call_agent(store, "call-x") == ("a1", "seat")
    ingest(store, [second])
    assert call_agent(store, "call-x") == ("a2", "seat")
    assert store.db.all("SELECT agent_id, calls FROM agent_daily ORDER BY agent_id") == [("a2", 1)]


def test_unknown_event_types_and_fields_are_kept(hub_store: Store) -> None:
    store = hub_store
    st = Station(SITE, "s01")
    e = st.env({"type": "future_thing", "start": 1.0, "end": 2.0, "novel": {"x": 1}}, "c9", "2026-01-05T02:00:00.000Z")
    assert store.add(e, e.to_json()) is Outcome.STORED
    assert store.call_events("c9")[0]["novel"] == {"x": 1}


def test_bad_database_url_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot open"):
        Store(tmp_path / "missing-dir" / "hub.sqlite")
    with pytest.raises(StorageError, match=r"cannot open the database postgresql://u:\*\*\*@127.0.0.1:1/x"):
        Store("postgresql://u:secret@127.0.0.1:1/x")


def _state(store: Store) -> dict[str, list[tuple[object, ...]]]:
    """Everything ingest book-keeps, without arrival times."""
    queries = {
        "events": "SELECT id, seq, epoch, call_id, type FROM events ORDER BY id",
        "seats": "SELECT site, seat, max_seq, epoch FROM seats ORDER BY site, seat",
        "gaps": "SELECT site, seat, first, last FROM gaps ORDER BY site, seat, first",
        "calls": "SELECT call_id, n_events, summary_id, agent_id, agent_source, day FROM calls ORDER BY call_id",
        "logins": "SELECT event_id, agent_id FROM seat_logins ORDER BY event_id",
        "counters": "SELECT name, value FROM counters ORDER BY name",
    }
    return {k: store.db.all(q) for k, q in queries.items()}


def _tricky_batch() -> list[Envelope]:
    """Duplicates within the batch, a gap opened and filled, a summary amid its call's events, and a station
    that comes back with a new outbox (epoch) mid-batch followed by a straggler of the old one."""
    ts = "2026-01-05T02:00:00.000Z"
    old, new = Station(SITE, "s01"), Station(SITE, "s01")
    other = Station(SITE, "s02")
    e_old = [old.login("a1", "2026-01-05T01:00:00.000Z")]
    e_old += [old.env(Speech(float(i), i + 0.5, "agent"), "c1", ts) for i in range(4)]
    e_old = [e.with_seq(e.seq, "aaaaaaaa") for e in e_old]
    calls = other.call("c2", ts)  # two activity batches and the summary
    late = other.env(Speech(9.0, 9.5, "agent"), "c2", ts)
    e_new = [new.env(Speech(float(i), i + 0.5, "customer"), "c3", ts).with_seq(i + 1, "bbbbbbbb") for i in range(3)]
    return [
        e_old[0],
        e_old[1],
        e_old[3],  # seq 2 missing: a gap...
        calls[0],
        e_old[1],  # ...a duplicate in the same batch...
        e_old[2],  # ...the gap filled
        calls[1],
        e_new[0],  # the station's outbox was wiped: seq from 1 in a new epoch
        calls[2],  # the summary
        late,  # a late event of the call, after its summary
        e_new[2],
        e_old[4],  # a straggler of the retired epoch: stored, its seq not counted
        e_new[1],
    ]


def test_shared_workers_book_at_settle_what_one_by_one_would(hub_store: Store, tmp_path: Path) -> None:
    """Scale-out (`shared`): the seq bookkeeping runs after the commit (`settle_seqs`), not in it. Until then no
    watermark moves, so no ack can cover the events; after it, the same seats, gaps, epochs and counters as
    storing one by one, the late event's call queued for a re-check, nothing left pending."""
    items = [(e, e.to_json()) for e in _tricky_batch()]
    shared = Store(hub_store.db.url, default_tz="Asia/Shanghai", shared=True)
    one_by_one = Store(tmp_path / "one.sqlite", default_tz="Asia/Shanghai")
    try:
        expected = [one_by_one.add(e, text) for e, text in items]
        shared.prepare(items)
        with shared.batch():
            assert shared.add_many(items) == expected
        assert shared.watermark(SITE, "s01") == (0, 0, []) and shared.gaps() == []
        assert shared.pending_seats() == {(SITE, "s01"), (SITE, "s02")}
        assert shared.settle_seqs() == set()
        assert shared.pending_seats() == set()
        got, want = _state(shared), _state(one_by_one)
        # a call's n_events is counted when it is scored on this path (no call row written by every event)
        assert [c[:1] + c[2:] for c in got.pop("calls")] == [c[:1] + c[2:] for c in want.pop("calls")]
        assert got == want
        assert shared.epoch(SITE, "s01") == "bbbbbbbb" and shared.watermark(SITE, "s01") == (3, 3, [])
        assert shared.take_pending()[0] == ["c2"]  # its summary
        assert shared.take_recheck() == ["c2"]  # the event after it
        assert shared.settle_seqs() == set()  # nothing left: a second pass changes nothing
        assert _state(shared)["seats"] == want["seats"]
        Scorer(shared).score(["c2"])
        assert shared.db.scalar("SELECT n_events FROM calls WHERE call_id = 'c2'") == 4
        assert shared.outdated(["c2"]) == []
    finally:
        shared.close()
        one_by_one.close()


def test_a_batch_books_exactly_what_one_by_one_would(hub_store: Store, tmp_path: Path) -> None:
    """`add_many` (ingest's group commit: one INSERT, watermarks at the commit, a call's row once) against `add`
    one event at a time: same outcomes, same rows, through duplicates within the batch, a gap opened and filled,
    a summary amid its call's events, and a station that comes back with a new outbox (epoch) mid-batch followed
    by a straggler of the old one."""
    items = [(e, e.to_json()) for e in _tricky_batch()]
    one_by_one = Store(tmp_path / "one.sqlite", default_tz="Asia/Shanghai")
    try:
        expected = [one_by_one.add(e, text) for e, text in items]
        with hub_store.batch():
            got = hub_store.add_many(items)
        assert got == expected
        assert got.count(Outcome.DUPLICATE) == 1
        assert _state(hub_store) == _state(one_by_one)
        assert hub_store.epoch(SITE, "s01") == "bbbbbbbb" and hub_store.watermark(SITE, "s01") == (3, 3, [])
        assert hub_store.take_pending()[0] == one_by_one.take_pending()[0] == ["c2"]
        # and again, every one a duplicate now
        assert hub_store.add_many(items) == [Outcome.DUPLICATE] * len(items)
        assert _state(hub_store) == _state(one_by_one)
    finally:
        one_by_one.close()
