"""Durable scoring: a call with a stored summary is scored exactly once eventually, across hub kills, and a call
that cannot be scored costs only itself its score (counted, shown, never said to be "retried" when it is not).

Against the real parts: the store on both backends, and `qa-hub serve` as a process of its own with a real
Mosquitto, SIGKILLed while stations send calls, then started again.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from edge_agent.events import Speech
from edge_agent.mqtt_publisher import BrokerConfig, Publisher
from edge_agent.outbox import Outbox
from edge_agent.schema import Envelope
from hub.cli import ensure_scorecard
from hub.db import Database
from hub.scores import MAX_ATTEMPTS, Scorer, get_scorecard
from hub.storage import Store
from tests.broker import Mosquitto, free_port, mosquitto, port_open  # noqa: F401 - the fixture
from tests.hub_support import ROOT, Station

pytestmark = pytest.mark.abuse  # the abuse and chaos suite (pyproject markers)

SITE = "sh"
GOOD_TS = "2026-03-02T09:00:00.000Z"
POISON_TS = "9999-12-31T12:00:00.000Z"
"""A summary time ingest bounds reject now, as a row stored before the bounds still holds it: its local day is in
the calendar's last week, which the weekly rollup cannot hold (hub.scores.rollup_day_error)."""
PASSWORD = "a long enough password"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "hub.sqlite")
    else:
        yield request.getfixturevalue("pg_dsn")


def new_store(url: str, **kw: bool) -> Store:
    """A store with the shipped scorecard and the agents the tests' seats log in as."""
    store = Store(url, default_tz="UTC", **kw)
    ensure_scorecard(store)
    for k in range(4):
        store.put_agent(f"a{k}", f"Agent {k}", None)
    return store


def add(store: Store, envs: list[Envelope]) -> None:
    for e in envs:
        store.add(e, e.to_json())


def good_calls(st: Station, n: int, agent: str = "a0") -> list[Envelope]:
    envs = [st.login(agent, "2026-03-02T08:00:00.000Z")]
    for k in range(n):
        envs += st.call(f"{st.seat}-c{k:02d}", GOOD_TS)
    return envs


def poison_call(st: Station, call_id: str) -> list[Envelope]:
    """A call whose summary is stamped 9999-12-31, as a hub stored it before ingest bounded event times: made with
    a valid time, then stamped past the validation (the store computes its day as it did then)."""
    envs = st.call(call_id, GOOD_TS)
    object.__setattr__(envs[-1], "ts", POISON_TS)
    return envs


def current_scores(store: Store) -> dict[str, int]:
    """Per call with a summary, how many current scores it has (0 included)."""
    return {
        str(c): int(n)
        for c, n in store.db.all(
            "SELECT c.call_id, (SELECT COUNT(*) FROM scores s WHERE s.call_id = c.call_id AND s.current = 1)"
            " FROM calls c WHERE c.summary_id IS NOT NULL"
        )
    }


def queue(store: Store) -> dict[str, tuple[int, int, str | None]]:
    """The work list: per call (attempts, failed, last error)."""
    rows = store.db.all("SELECT call_id, attempts, failed, last_error FROM score_queue")
    return {str(c): (int(a), int(f), e) for c, a, f, e in rows}


# --- the work list in the store, both backends ------------------------------------------------------------------


def test_a_summary_is_queued_in_its_own_transaction(hub_store: Store) -> None:
    """The queue row commits with the summary: a hub that stops before scoring (a fresh store on the same
    database stands for the restarted one) finds the call queued and scores it once; the row goes with the
    transaction that saves the score, and a second pass scores nothing again."""
    hub_store.put_agent("a1", "A", None)
    st = Station(SITE, "s01")
    add(hub_store, [st.login("a1", "2026-03-02T08:00:00.000Z"), *st.call("c1", GOOD_TS)[:-1]])
    assert queue(hub_store) == {}  # no summary yet: nothing to score
    add(hub_store, st.call("c1", GOOD_TS)[-1:])
    assert queue(hub_store) == {"c1": (0, 0, None)}
    restarted = Store(hub_store.db.url, default_tz="Asia/Shanghai")
    try:
        assert Scorer(restarted).score_pending() == 1
        assert queue(restarted) == {} and current_scores(restarted) == {"c1": 1}
        assert Scorer(restarted).score_pending() == 0
        assert restarted.db.scalar("SELECT COUNT(*) FROM scores") == 1
    finally:
        restarted.close()


def test_a_poison_call_costs_only_itself_its_score(hub_store: Store, caplog: pytest.LogCaptureFixture) -> None:
    """20 good calls and one whose summary is stamped 9999-12-31, scored in one chunk: the 20 are saved (the
    chunk is split down to the call that fails), the poison is tried MAX_ATTEMPTS times, then set apart as
    failed, counted once and shown; the log says what happens to it and nothing else is said to be retried. A new
    event of the poison call, and a re-score, try it again."""
    hub_store.put_agent("a1", "A", None)
    st = Station(SITE, "s01")
    add(hub_store, [*good_calls(st, 10, "a1"), *poison_call(st, "poison")])
    for k in range(10, 20):
        add(hub_store, st.call(f"s01-c{k:02d}", GOOD_TS))
    assert hub_store.db.scalar("SELECT day FROM calls WHERE call_id = 'poison'") == "9999-12-31"
    scorer = Scorer(hub_store)
    with caplog.at_level(logging.INFO, logger="hub.scores"):
        assert scorer.score_pending() == 20
        scores = current_scores(hub_store)
        assert scores.pop("poison") == 0 and scores == {f"s01-c{k:02d}": 1 for k in range(20)}
        assert queue(hub_store)["poison"][:2] == (1, 0)
        assert hub_store.scoring_status()["retrying"] == 1
        for attempt in range(2, MAX_ATTEMPTS + 1):
            assert scorer.score_pending() == 0
            assert queue(hub_store)["poison"][:2] == (attempt, int(attempt == MAX_ATTEMPTS))
        assert scorer.score_pending() == 0  # set apart: not tried again by itself
    attempts, failed, error = queue(hub_store)["poison"]
    assert (attempts, failed) == (MAX_ATTEMPTS, 1) and error is not None and "9999-12-31" in error
    assert hub_store.counters()["scoring_failed"] == 1
    status = hub_store.scoring_status()
    assert (status["queued"], status["retrying"], status["failed"], status["failed_total"]) == (0, 0, 1, 1)
    assert [c["call_id"] for c in status["failed_calls"]] == ["poison"]
    # the good calls' agent day holds exactly them
    assert hub_store.db.one("SELECT calls, scored FROM agent_daily WHERE agent_id = 'a1'") == (20, 20)
    messages = [r.getMessage() for r in caplog.records]
    assert not any("retried" in m for m in messages), messages
    warned = [m for m in messages if "could not be scored (attempt" in m]
    assert len(warned) == MAX_ATTEMPTS - 1 and all(m.startswith("call poison ") for m in warned)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith("call poison ") and "set apart as failed" in errors[0]
    # it changes (a late event): tried afresh, fails again, counted again once set apart again
    add(hub_store, [st.env(Speech(1.0, 2.0, "agent"), "poison", GOOD_TS)])
    assert queue(hub_store)["poison"][:2] == (0, 0)
    assert scorer.score_pending() == 0 and queue(hub_store)["poison"][:2] == (1, 0)
    # a re-score tries it too (and the good calls get their new current score, one each)
    active = get_scorecard(hub_store)
    assert active is not None
    assert scorer.rescore(active) == 20
    assert queue(hub_store)["poison"][:2] == (2, 0)
    scores = current_scores(hub_store)
    assert scores.pop("poison") == 0 and set(scores.values()) == {1}


def test_a_call_whose_computation_raises_is_isolated(hub_store: Store) -> None:
    """A stored event the rules cannot read (an integer too large for a float, stored before ingest bounded
    numbers): that call fails in the computation (in a scoring process too), the others of its pass are saved."""
    hub_store.put_agent("a1", "A", None)
    st = Station(SITE, "s02")
    add(hub_store, good_calls(st, 20, "a1"))
    bad = st.call("bad", GOOD_TS)
    first = json.loads(bad[0].to_json())
    first["start"] = 10**400  # valid JSON; float() of it raises OverflowError
    hub_store.add(bad[0], json.dumps(first))
    add(hub_store, bad[1:])
    pooled = Scorer(hub_store, processes=1)
    try:
        assert pooled.score_pending() == 20  # 21 calls: the scoring process computes them
    finally:
        pooled.close()
    assert queue(hub_store) == {"bad": (1, 0, queue(hub_store)["bad"][2])}
    assert "OverflowError" in str(queue(hub_store)["bad"][2])
    scores = current_scores(hub_store)
    assert scores.pop("bad") == 0 and set(scores.values()) == {1} and len(scores) == 20


def test_two_shared_workers_never_score_one_call_twice(db_url: str) -> None:
    """Scale-out: what one worker has taken (claimed) the other skips until the claim is old; if both end up
    scoring the same calls, only the first save counts (the second finds them off the list): one score row each."""
    a, b = new_store(db_url, shared=True), new_store(db_url, shared=True)
    try:
        st = Station(SITE, "s03")
        add(a, good_calls(st, 6))
        taken, _ = a.take_pending()
        assert len(taken) == 6
        assert b.take_pending()[0] == []  # claimed by a
        assert b.take_pending(claim_s=0.0)[0] == taken  # a claim that ran out (a crashed worker's) is taken over
        assert Scorer(b).score_pending() == 6  # b takes its own claims again
        # a, slow, still scores what it took: the calls are off the list, so none of its scores is saved
        assert Scorer(a)._score(taken, None, 500, settle=True, queued=set(taken)) == 0
        assert a.db.scalar("SELECT COUNT(*) FROM scores") == 6
        assert current_scores(a) == dict.fromkeys(taken, 1) and queue(a) == {}
    finally:
        a.close()
        b.close()


def test_a_rollup_a_call_left_stays_marked_until_rebuilt(hub_store: Store) -> None:
    """A login delivered late moves a scored call to another agent: the day of the agent it left is marked in the
    same transaction (a fresh store sees the mark before any scoring), and rebuilt by the next pass."""
    for agent in ("a1", "a2"):
        hub_store.put_agent(agent, agent, None)
    st = Station(SITE, "s04")
    login_a1 = st.login("a1", "2026-03-02T08:00:00.000Z")
    late_a2 = st.login("a2", "2026-03-02T08:30:00.000Z")
    add(hub_store, [login_a1, *st.call("s04-c1", GOOD_TS)])
    Scorer(hub_store).score_pending()
    assert hub_store.db.one("SELECT calls FROM agent_daily WHERE agent_id = 'a1'") == (1,)
    add(hub_store, [late_a2])
    other = Store(hub_store.db.url)
    try:
        assert other.db.all("SELECT agent_id, day FROM score_stale") == [("a1", "2026-03-02")]
        assert "s04-c1" in queue(other)
        Scorer(other).score_pending()
        assert other.db.all("SELECT agent_id, calls FROM agent_daily ORDER BY agent_id") == [("a2", 1)]
        assert other.db.scalar("SELECT COUNT(*) FROM score_stale") == 0
    finally:
        other.close()


def test_the_upgrade_queues_calls_an_earlier_hub_never_scored(tmp_path: Path) -> None:
    """Migration 0007 on a database of the in-memory work list's days: the calls stored with a summary and
    never scored (the hub stopped first) are queued, the scored ones are not."""
    store = new_store(str(tmp_path / "hub.sqlite"))
    st = Station(SITE, "s05")
    add(store, good_calls(st, 3))
    Scorer(store).score(["s05-c00"])
    url = store.db.url
    with store.db.transaction():  # back to the schema before 0007
        store.db.execute("DROP TABLE score_queue")
        store.db.execute("DROP TABLE score_stale")
        store.db.execute("DELETE FROM schema_migrations WHERE version = 7")
    store.close()
    db = Database(url)  # migrates
    try:
        assert sorted(str(r[0]) for r in db.all("SELECT call_id FROM score_queue")) == ["s05-c01", "s05-c02"]
    finally:
        db.close()


# --- qa-hub serve, a real process, and a real broker ----------------------------------------------------------


def start_hub(db_url: str, broker: str, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "--db", db_url, "--tz", "UTC", "serve", "--broker", broker,
         "--client-id", "hub-durable", *extra],
        cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    out.close()
    deadline = time.monotonic() + 30
    while "subscribing to" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return proc


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the hub and its scoring process, as a crash or the OOM killer would."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(30)
        except subprocess.TimeoutExpired:
            kill(proc)
    return proc.returncode


def test_a_hub_killed_while_calls_arrive_scores_every_call_once(
    db_url: str,
    tmp_path: Path,
    mosquitto: Mosquitto,  # noqa: F811
) -> None:
    """Four stations send calls through Mosquitto to `qa-hub serve`; the hub is SIGKILLed while calls are stored
    and not yet scored, and started again. Every call with a stored summary ends with exactly one current score
    that counts all its events, and nothing is left queued."""
    store = new_store(db_url)
    log = tmp_path / "hub.log"
    seats, per_seat = 4, 50
    broker = BrokerConfig.from_url(mosquitto.url, reconnect_max_s=3)
    proc = start_hub(db_url, mosquitto.url, log, "--no-http")
    outboxes = [Outbox(tmp_path / f"ob{k}.sqlite") for k in range(seats)]
    pubs = [Publisher(ob, site=SITE, seat=f"s{k}", broker=broker, resend_s=5.0) for k, ob in enumerate(outboxes)]

    def produce(k: int) -> None:
        st = Station(SITE, f"s{k}", stamp=False)
        outboxes[k].put_many([st.login(f"a{k}", "2026-03-02T08:00:00.000Z")])
        for c in range(per_seat):
            outboxes[k].put_many(st.call(f"s{k}-c{c:02d}", GOOD_TS))
            pubs[k].notify()
            time.sleep(0.06)

    unscored_at_kill = []
    try:
        for p in pubs:
            p.start()
        producers = [threading.Thread(target=produce, args=(k,)) for k in range(seats)]
        for t in producers:
            t.start()
        for _ in range(2):  # killed twice while calls arrive
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # a moment when calls are stored and not scored yet
                waiting = store.db.scalar(
                    "SELECT COUNT(*) FROM calls WHERE summary_id IS NOT NULL AND score_id IS NULL"
                )
                if waiting and store.db.scalar("SELECT COUNT(*) FROM scores"):
                    break
                time.sleep(0.02)
            kill(proc)
            unscored = store.db.scalar("SELECT COUNT(*) FROM calls WHERE summary_id IS NOT NULL AND score_id IS NULL")
            lost = store.db.scalar(
                "SELECT COUNT(*) FROM calls c WHERE summary_id IS NOT NULL AND score_id IS NULL"
                " AND NOT EXISTS (SELECT 1 FROM score_queue q WHERE q.call_id = c.call_id)"
            )
            assert lost == 0  # every call the kill left unscored is on the durable work list
            unscored_at_kill.append(int(unscored))
            time.sleep(0.5)
            proc = start_hub(db_url, mosquitto.url, log, "--no-http")
        for t in producers:
            t.join(60)
        for p in pubs:
            assert p.drain(60), mosquitto.log_tail()
        total = seats * per_seat
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            scores = current_scores(store)
            if len(scores) == total and set(scores.values()) == {1}:
                break
            time.sleep(0.2)
        assert sum(unscored_at_kill) > 0, unscored_at_kill  # the kills did land between storing and scoring
        scores = current_scores(store)
        assert len(scores) == total and set(scores.values()) == {1}, (unscored_at_kill, log.read_text()[-3000:])
        assert store.outdated(sorted(scores)) == []  # each current score counts all its call's events
        assert queue(store) == {}
        assert store.counters().get("scoring_failed") is None
    finally:
        for p in pubs:
            p.stop()
        for ob in outboxes:
            ob.close()
        rc = stop(proc)
        store.close()
    assert rc == 0, log.read_text()[-3000:]


def test_a_hub_started_with_a_poison_call_queued_scores_the_rest_and_shows_it(
    db_url: str,
    tmp_path: Path,
    mosquitto: Mosquitto,  # noqa: F811
) -> None:
    """A database holding 20 queued good calls and one stamped 9999-12-31 (stored before ingest bounds times):
    `qa-hub serve` scores the 20 on its first pass, tries the poison MAX_ATTEMPTS times while idle, sets it
    apart, and shows it to an admin in `/api/stats`; its log never says a call is retried."""
    store = new_store(db_url)
    st = Station(SITE, "s06")
    add(store, [*good_calls(st, 20), *poison_call(st, "poison")])
    store.close()
    r = subprocess.run(
        [sys.executable, "-m", "hub.cli", "--db", db_url, "user", "create", "admin", "--role", "admin"],
        input=PASSWORD, capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    port = free_port()
    log = tmp_path / "hub.log"
    proc = start_hub(db_url, mosquitto.url, log, "--http", f"127.0.0.1:{port}")
    store = Store(db_url)
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and queue(store).get("poison", (0, 0, None))[1] != 1:
            time.sleep(0.2)
        scores = current_scores(store)
        assert scores.pop("poison") == 0 and scores == {f"s06-c{k:02d}": 1 for k in range(20)}, log.read_text()
        assert queue(store)["poison"][:2] == (MAX_ATTEMPTS, 1)
        assert store.counters()["scoring_failed"] == 1
        while not port_open(port):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        base = f"http://127.0.0.1:{port}"
        token = httpx.post(f"{base}/api/login", json={"username": "admin", "password": PASSWORD}).json()["token"]
        stats = httpx.get(f"{base}/api/stats", headers={"Authorization": f"Bearer {token}"}).json()
        shown = stats["scoring"]
        assert (shown["failed"], shown["failed_total"], shown["queued"]) == (1, 1, 0)
        assert shown["failed_calls"][0]["call_id"] == "poison" and "9999-12-31" in shown["failed_calls"][0]["error"]
    finally:
        rc = stop(proc)
        store.close()
    text = log.read_text()
    assert rc == 0, text[-3000:]
    assert "retried" not in text, text
    assert text.count("could not be scored (attempt") == MAX_ATTEMPTS - 1
    assert text.count("set apart as failed (counted in scoring_failed)") == 1
    assert "Traceback" not in text, text
