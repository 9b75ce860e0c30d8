"""Scale-out: two hub workers share ingest through an MQTT shared subscription (`$share/hub/...`) on one
database. Each seat's events arrive split between the workers, in any order; the seq bookkeeping runs after the
commit under per-seat locks (`Store.settle_seqs`) and scoring under per-call and per-agent locks: every event
stored once, no ack past a gap or past an uncommitted event, every seat confirmed to its last seq, every call
scored from all its events with one current score, rollups equal to a rebuild. Real Mosquitto, real PostgreSQL
(and SQLite, which serialises writers itself)."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.events import Speech, TalkOver
from edge_agent.mqtt_publisher import BrokerConfig
from edge_agent.schema import Envelope, event_topic
from hub import rollups
from hub.cli import ensure_scorecard
from hub.ingest import Ingest, Outcome
from hub.scorecard import DEFAULT_SCORECARD, Scorecard, load
from hub.scores import Scorer, ScoreRow, import_scorecard, refresh_agent_day
from hub.storage import Store
from tests.broker import Mosquitto, mosquitto  # noqa: F401 - the fixture
from tests.hub_support import Station

SITE, SEATS, CALLS = "scale", 6, 5


@pytest.fixture(params=["postgres", "sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    url = str(tmp_path / "hub.sqlite") if request.param == "sqlite" else request.getfixturevalue("pg_dsn")
    known_agents(url)
    yield url


def known_agents(url: str) -> None:
    """The agents the seats log in, in the directory: a seat's login attributes calls only to known agents
    (docs/trust.md), as an admin would have created them."""
    store = Store(url)
    for i in range(max(SEATS, 8)):
        store.put_agent(f"agent{i}", f"Agent {i}", None)
    store.close()


def fleet() -> dict[str, list[tuple[str, str]]]:
    """Per seat: (topic, payload) in publication order: a login, then CALLS calls."""
    out = {}
    for s in range(SEATS):
        st = Station(SITE, f"seat{s}")
        envs = [st.login(f"agent{s}", "2026-03-02T08:00:00.000Z")]
        for c in range(CALLS):
            envs += st.call(f"seat{s}-call{c}", f"2026-03-02T09:{10 + c:02d}:00.000Z")
        out[st.seat] = [(event_topic(SITE, st.seat), e.to_json()) for e in envs]
    return out


def test_two_workers_share_ingest_without_loss_or_duplicates(
    db_url: str,
    mosquitto: Mosquitto,  # noqa: F811
) -> None:
    streams = fleet()
    total = sum(len(v) for v in streams.values())
    cfg = BrokerConfig.from_url(mosquitto.url)
    stores = [Store(db_url, shared=True) for _ in range(2)]
    ensure_scorecard(stores[0])
    workers = [
        Ingest(st, cfg, f"hub-worker-{i}", scorer=Scorer(st), share_group="hub", max_batch=20)
        for i, st in enumerate(stores)
    ]
    acks: dict[str, int] = {}
    lock = threading.Lock()

    def on_ack(c: mqtt.Client, ud: object, msg: mqtt.MQTTMessage) -> None:
        seat = msg.topic.split("/")[3]
        with lock:
            acks[seat] = max(acks.get(seat, 0), int(json.loads(msg.payload)["seq"]))

    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ack-watcher")
    watcher.on_message = on_ack
    watcher.connect("127.0.0.1", mosquitto.port)
    watcher.subscribe(f"qa/v1/{SITE}/+/ack", qos=1)
    watcher.loop_start()
    pubs = []
    try:
        for w in workers:
            w.start()
            assert w.wait_subscribed(10)
        for seat, msgs in streams.items():
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{seat}")
            c.connect("127.0.0.1", mosquitto.port)
            c.loop_start()
            pubs.append((c, msgs))
        infos = []
        for i in range(max(len(m) for _, m in pubs)):  # seats interleaved, each in its own order
            infos += [c.publish(*m[i], qos=1) for c, m in pubs if i < len(m)]
        for info in infos:
            info.wait_for_publish(30)
        deadline = time.monotonic() + 60
        while stores[0].count() < total and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stores[0].count() == total
        # the broker split the stream: both workers stored a share of it
        stored = [w.outcomes[Outcome.STORED] for w in workers]
        assert sum(stored) == total and min(stored) > 0, stored
        # the seq bookkeeping follows the commit (the workers' ack loops, Store.settle_seqs)
        while (stores[0].pending_seats() or stores[0].gaps()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stores[0].pending_seats() == set()
        assert stores[0].gaps() == []
        for seat, msgs in streams.items():
            assert stores[0].seqs(SITE, seat) == list(range(1, len(msgs) + 1))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with lock:
                if all(acks.get(seat, 0) == len(m) for seat, m in streams.items()):
                    break
            time.sleep(0.1)
        assert acks == {seat: len(m) for seat, m in streams.items()}
        calls = SEATS * CALLS
        while time.monotonic() < deadline:
            if stores[0].db.scalar("SELECT COUNT(*) FROM calls WHERE score IS NOT NULL") == calls:
                break
            time.sleep(0.1)
        assert stores[0].db.scalar("SELECT COUNT(*) FROM calls WHERE score IS NOT NULL") == calls
        # one current score per call even though either worker may have scored it
        assert stores[0].db.scalar("SELECT COUNT(*) FROM scores WHERE current = 1") == calls
        assert {r[0] for r in stores[0].db.all("SELECT DISTINCT agent_id FROM calls")} == {
            f"agent{s}" for s in range(SEATS)
        }
    finally:
        shut_down([c for c, _ in pubs] + [watcher], workers, stores)


# --- the scale-out invariants, one at a time ------------------------------------------------------------------


def shut_down(clients: list[mqtt.Client], workers: list[Ingest], stores: list[Store]) -> None:
    """A test's teardown: MQTT clients first (no more input), then the workers, then their stores."""
    for c in clients:
        c.loop_stop()
        c.disconnect()
    for w in workers:
        w.stop()
    for st in stores:
        st.close()


def rollup_tables(store: Store) -> dict[str, list[tuple[object, ...]]]:
    """Every rollup row (floats rounded: sums may be added in another order; the per-rule JSON parsed)."""
    queries = {
        "daily": "SELECT * FROM agent_daily ORDER BY agent_id, day",
        "rule_daily": "SELECT * FROM agent_rule_daily ORDER BY agent_id, day, rule_id",
        "weekly": "SELECT * FROM agent_weekly ORDER BY agent_id, week",
        "cum": "SELECT agent_id, day, calls, scored, excluded, weight_sum, score_wsum, rules FROM agent_cum"
        " ORDER BY agent_id, day",
        "stale": "SELECT * FROM agent_cum_stale",
    }

    def norm(x: object) -> object:
        if isinstance(x, float):
            return round(x, 6)
        if isinstance(x, str) and x.startswith("{"):
            return json.dumps({k: [round(float(v), 6) for v in vs] for k, vs in json.loads(x).items()}, sort_keys=True)
        return x

    return {k: [tuple(norm(x) for x in row) for row in store.db.all(q)] for k, q in queries.items()}


def rebuilt_from_scratch(store: Store) -> dict[str, list[tuple[object, ...]]]:
    """The rollups recomputed from the calls alone, after emptying them."""
    with store.db.transaction():
        for table in ("agent_daily", "agent_rule_daily", "agent_weekly", "agent_cum", "agent_cum_stale"):
            store.db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
        for agent, day in store.db.all(
            "SELECT DISTINCT agent_id, day FROM calls WHERE agent_id IS NOT NULL AND day IS NOT NULL"
        ):
            refresh_agent_day(store, str(agent), str(day), settle=False)
    rollups.rebuild_all(store)
    return rollup_tables(store)


def store_all(store: Store, envs: list[Envelope]) -> None:
    """What a shared worker's writer does with a batch: prepare, then the batch's transaction."""
    items = [(e, e.to_json()) for e in envs]
    store.prepare(items)
    with store.batch():
        store.add_many(items)


def test_a_watermark_never_covers_an_uncommitted_or_missing_event(pg_dsn: str) -> None:
    """Two shared workers on PostgreSQL store one seat's events split and out of order: the watermark (what an
    ack confirms, and what the station then deletes) stops below a gap, ignores another worker's uncommitted
    events, is left alone while another worker holds the seat, and only ever moves up."""
    known_agents(pg_dsn)
    a, b = Store(pg_dsn, shared=True), Store(pg_dsn, shared=True)
    st = Station(SITE, "s1")
    envs = [st.env(Speech(float(i), i + 0.5, "agent"), "c1", "2026-03-02T09:00:00.000Z") for i in range(6)]
    seen: list[int] = []

    def mark() -> tuple[int, int, list[tuple[int, int]]]:
        wm = a.watermark(SITE, "s1")
        assert not seen or wm[0] >= seen[-1]  # monotonic
        seen.append(wm[0])
        return wm

    try:
        store_all(a, [envs[0], envs[1], envs[3]])
        assert mark() == (0, 0, [])  # stored, not yet counted: nothing to ack
        assert a.settle_seqs() == set()
        assert mark() == (2, 4, [(3, 3)])
        items = [(e, e.to_json()) for e in (envs[2], envs[4])]
        b.prepare(items)
        with b.batch():
            b.add_many(items)
            a.settle_seqs([(SITE, "s1")])  # b's rows are not committed: they must not count
            assert mark() == (2, 4, [(3, 3)])
        with b.db.transaction():
            assert b._try_lock_seats([(SITE, "s1")]) == [(SITE, "s1")]  # b settling the seat right now
            assert a.settle_seqs([(SITE, "s1")]) == {(SITE, "s1")}  # busy: a leaves it, without waiting
            assert mark() == (2, 4, [(3, 3)])
        assert a.settle_seqs([(SITE, "s1")]) == set()
        assert mark() == (5, 5, [])
        store_all(b, [envs[5], envs[4]])  # a re-sent duplicate with it
        assert b.settle_seqs() == set()
        assert mark() == (6, 6, []) and a.pending_seats() == set()
        assert a.counters().get("seq_regressions") is None
    finally:
        a.close()
        b.close()


def test_a_crashed_workers_uncounted_events_are_acked_by_another(
    db_url: str,
    mosquitto: Mosquitto,  # noqa: F811
) -> None:
    """A worker commits events and dies before its ack loop counts them: another worker's sweep finds them in
    `seq_pending` and acks the seat, so the station stops re-sending and can delete its rows."""
    crashed = Store(db_url, shared=True)
    st = Station(SITE, "s7")
    envs = [st.login("agent7", "2026-03-02T08:00:00.000Z"), *st.call("s7-c1", "2026-03-02T09:10:00.000Z")]
    store_all(crashed, envs)
    crashed.close()
    acks: list[int] = []
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ack-watcher-crash")
    watcher.on_message = lambda c, ud, msg: acks.append(int(json.loads(msg.payload)["seq"]))
    watcher.connect("127.0.0.1", mosquitto.port)
    watcher.subscribe(f"qa/v1/{SITE}/s7/ack", qos=1)
    watcher.loop_start()
    survivor = Store(db_url, shared=True)
    worker = Ingest(survivor, BrokerConfig.from_url(mosquitto.url), "hub-survivor", share_group="hub")
    try:
        worker.start()
        assert worker.wait_subscribed(10)
        deadline = time.monotonic() + 20
        while len(envs) not in acks and time.monotonic() < deadline:
            time.sleep(0.1)
        assert acks and max(acks) == len(envs)
        assert survivor.pending_seats() == set() and survivor.gaps() == []
    finally:
        worker.stop()
        watcher.loop_stop()
        watcher.disconnect()
        survivor.close()


def scored_fleet(store: Store, agents: int = 4, days: int = 3) -> list[str]:
    """Calls of several agents over several days, stored (not scored); their ids."""
    ids = []
    for n in range(agents):
        st = Station(SITE, f"seat{n}")
        envs = [st.login(f"agent{n}", "2026-03-01T08:00:00.000Z")]
        for d in range(days):
            for c in range(3):
                call = f"seat{n}-d{d}-c{c}"
                envs += st.call(call, f"2026-03-0{d + 2}T09:{10 + c:02d}:00.000Z")
                ids.append(call)
        store_all(store, envs)
    store.settle_seqs()
    return ids


def test_workers_started_together_on_a_fresh_database_agree_on_one_active_scorecard(db_url: str) -> None:
    """Workers started at once (systemd instances, the benchmark) each import the shipped card into a fresh
    database, and admins may activate versions at the same moment: no import fails, one card is active."""
    text = load(DEFAULT_SCORECARD)[1]
    stores = [Store(db_url, shared=True) for _ in range(4)]
    errors: list[BaseException] = []

    def together(jobs: list[tuple[Store, str | None]]) -> None:
        gate = threading.Barrier(len(jobs))

        def run(store: Store, card: str | None) -> None:
            try:
                gate.wait(10)
                if card is None:
                    ensure_scorecard(store)
                else:
                    import_scorecard(store, card)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=job) for job in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)

    try:
        together([(st, None) for st in stores])
        db = stores[0].db
        assert errors == []
        assert db.all("SELECT name, version, active FROM scorecards") == [("default", 1, 1)]
        for round_ in range(3):  # four new versions activated at once, three times over
            versions = [2 + 4 * round_ + i for i in range(4)]
            together(
                [(st, text.replace("version: 1", f"version: {v}", 1)) for st, v in zip(stores, versions, strict=True)]
            )
            assert errors == []
            active = db.all("SELECT version FROM scorecards WHERE active = 1")
            assert len(active) == 1 and active[0][0] in versions
        assert db.scalar("SELECT COUNT(*) FROM scorecards") == 13
    finally:
        for st in stores:
            st.close()


def test_two_scorers_at_once_keep_one_current_score_and_exact_rollups(db_url: str) -> None:
    """Two workers' scorers score the same calls (every agent's) at the same time, again and again: no save
    fails (call locks, then agent locks, each in one order: no deadlock), every call has exactly one current
    score and the one its row names, and the rollups equal a rebuild from the calls."""
    a, b = Store(db_url, shared=True), Store(db_url, shared=True)
    ensure_scorecard(a)
    ids = scored_fleet(a)
    saved: list[int] = []
    errors: list[BaseException] = []

    def run(store: Store, order: list[str]) -> None:
        try:
            scorer = Scorer(store)
            saved.extend(scorer.score(order, chunk=5) for _ in range(3))
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [
            threading.Thread(target=run, args=(a, ids)),
            threading.Thread(target=run, args=(b, list(reversed(ids)))),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == [] and saved == [len(ids)] * 6
        db = a.db
        assert db.scalar("SELECT COUNT(*) FROM scores") == 6 * len(ids)
        assert db.all("SELECT call_id FROM scores WHERE current = 1 GROUP BY call_id HAVING COUNT(*) <> 1") == []
        assert db.scalar("SELECT COUNT(*) FROM scores WHERE current = 1") == len(ids)
        assert db.scalar("SELECT COUNT(*) FROM calls c JOIN scores s ON s.id = c.score_id WHERE s.current = 1") == len(
            ids
        )
        assert db.scalar("SELECT COUNT(*) FROM agent_cum_stale") == 0
        now = rollup_tables(a)
        assert len(now["daily"]) == 4 * 3
        assert now == rebuilt_from_scratch(a)
    finally:
        a.close()
        b.close()


def test_a_score_read_before_a_late_event_is_not_made_current(db_url: str) -> None:
    """Worker A reads a call's events and scores them; meanwhile worker B stores a late event of the call. A's
    score must not become current over the events it never saw: it is put back and scored again from all."""
    a, b = Store(db_url, shared=True), Store(db_url, shared=True)
    ensure_scorecard(a)
    st = Station(SITE, "s3")
    envs = [st.login("agent3", "2026-03-02T08:00:00.000Z"), *st.call("s3-c1", "2026-03-02T09:10:00.000Z")]
    store_all(a, envs)
    late = st.env(TalkOver(60.0, 61.0, "agent", "interruption", 1.0), "s3-c1", "2026-03-02T09:10:00.000Z")

    class Interleaved(Scorer):
        def _compute(self, card: Scorecard, calls: list[tuple[str, list[str]]]) -> list[ScoreRow]:
            rows = super()._compute(card, calls)
            store_all(b, [late])  # committed after A read the call, before A saves
            return rows

    try:
        assert a.take_pending()[0] == ["s3-c1"]
        assert Interleaved(a).score(["s3-c1"]) == 0
        assert a.db.scalar("SELECT COUNT(*) FROM scores") == 0
        assert a.take_pending()[0] == ["s3-c1"]  # back on the list
        assert Scorer(a).score(["s3-c1"]) == 1
        n = a.db.scalar("SELECT COUNT(*) FROM events WHERE call_id = 's3-c1'")
        assert a.db.scalar("SELECT n_events FROM calls WHERE call_id = 's3-c1'") == n == len(envs)
        assert a.outdated(["s3-c1"]) == []
    finally:
        a.close()
        b.close()


def test_two_workers_out_of_order_acks_never_pass_a_gap(
    db_url: str,
    mosquitto: Mosquitto,  # noqa: F811
) -> None:
    """Each seat's events published shuffled (summaries before their calls' other events, logins late) and
    split between two workers: every ack, when it arrives, covers only events already stored contiguously; at
    the end every seat is acked to its last seq, each call scored from all its events with one current score,
    nothing left uncounted, and the rollups equal a rebuild from the calls."""
    rng = random.Random(7)  # noqa: S311 - a test's shuffle
    streams = fleet()
    for msgs in streams.values():
        rng.shuffle(msgs)
    total = sum(len(v) for v in streams.values())
    cfg = BrokerConfig.from_url(mosquitto.url)
    stores = [Store(db_url, shared=True) for _ in range(2)]
    ensure_scorecard(stores[0])
    checker = Store(db_url)
    workers = [
        Ingest(st, cfg, f"hub-ooo-{i}", scorer=Scorer(st), share_group="hub", max_batch=7, score_interval_s=0.1)
        for i, st in enumerate(stores)
    ]
    acks: dict[str, int] = {}
    violations: list[tuple[str, int]] = []
    lock = threading.Lock()

    def on_ack(c: mqtt.Client, ud: object, msg: mqtt.MQTTMessage) -> None:
        seat, seq = msg.topic.split("/")[3], int(json.loads(msg.payload)["seq"])
        if not set(range(1, seq + 1)) <= set(checker.seqs(SITE, seat)):
            violations.append((seat, seq))
        with lock:
            acks[seat] = max(acks.get(seat, 0), seq)

    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ack-watcher-ooo")
    watcher.on_message = on_ack
    watcher.connect("127.0.0.1", mosquitto.port)
    watcher.subscribe(f"qa/v1/{SITE}/+/ack", qos=1)
    watcher.loop_start()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sim-ooo")
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    try:
        for w in workers:
            w.start()
            assert w.wait_subscribed(10)
        infos = []
        for i in range(max(len(m) for m in streams.values())):
            infos += [pub.publish(*m[i], qos=1) for m in streams.values() if i < len(m)]
            time.sleep(0.01)  # several batches, so acks go out while gaps are open
        for info in infos:
            info.wait_for_publish(30)
        want = {seat: len(m) for seat, m in streams.items()}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with lock:
                if acks == want:
                    break
            time.sleep(0.1)
        assert acks == want and violations == []
        assert stores[0].count() == total and stores[0].gaps() == [] and stores[0].pending_seats() == set()
        assert min(w.outcomes[Outcome.STORED] for w in workers) > 0
        calls = SEATS * CALLS
        db = stores[0].db
        complete = (
            "SELECT COUNT(*) FROM calls c WHERE c.score IS NOT NULL AND"
            " c.n_events = (SELECT COUNT(*) FROM events e WHERE e.call_id = c.call_id)"
        )
        while db.scalar(complete) != calls and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # a re-score still in flight would show below
        assert db.scalar(complete) == calls
        assert db.all("SELECT call_id FROM scores WHERE current = 1 GROUP BY call_id HAVING COUNT(*) <> 1") == []
        assert db.scalar("SELECT COUNT(*) FROM scores WHERE current = 1") == calls
        assert {r[0] for r in db.all("SELECT DISTINCT agent_id FROM calls")} == {f"agent{s}" for s in range(SEATS)}
        for w in workers:
            w.stop()
        assert rollup_tables(stores[0]) == rebuilt_from_scratch(stores[0])
    finally:
        shut_down([pub, watcher], workers, [*stores, checker])
