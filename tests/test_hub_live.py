"""The stations' `live` topic on the hub's wall, through a real Mosquitto: signals the station publisher sends
(QoS 0) show on the board and in the API stream within a fraction of a second and are never stored; they run
out; malformed ones are counted and dropped without touching ingest; and a real station runtime playing a
real-speech call feeds the wall with signals the hub understands, every one of them."""

from __future__ import annotations

import itertools
import json
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.commands import CallEnd, CallStart
from edge_agent.mqtt_publisher import BrokerConfig, Publisher
from edge_agent.outbox import Outbox
from edge_agent.schema import live_topic
from firmware_py import config as station_config
from firmware_py.runtime import Station as StationRuntime
from firmware_py.sources import FileSource
from hub.auth import create_user
from hub.ingest import Ingest
from hub.live import SILENT_S, LiveBoard
from hub.storage import Store
from hub.web.app import create_app
from tests.broker import Mosquitto, mosquitto  # noqa: F401 - the fixture
from tests.hub_support import Station
from tests.test_transport import wait_until

SITE, SEAT = "sh", "s21"
PASSWORD = "live wall password"


def seat_of(board: LiveBoard, seat: str = SEAT) -> dict[str, Any] | None:
    return next((s for s in board.snapshot() if s["seat"] == seat), None)


def now_kinds(board: LiveBoard, seat: str = SEAT) -> list[str]:
    s = seat_of(board, seat)
    return [x["kind"] for x in s["now"]] if s else []


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "hub.sqlite", default_tz="Asia/Shanghai")


def test_live_signals_reach_the_wall_and_are_not_stored(
    tmp_path: Path,
    mosquitto: Mosquitto,  # noqa: F811
    store: Store,
) -> None:
    board = LiveBoard()
    broker = BrokerConfig.from_url(mosquitto.url)
    ingest = Ingest(store, broker, client_id="hub-live", on_stored=board.update, on_live=board.live)
    ingest.start()
    try:
        assert ingest.wait_subscribed(10), mosquitto.log_tail()
        # the seat's agent is known from its login event (stored, through the outbox as usual)
        with Outbox(tmp_path / "ob.sqlite") as ob:
            ob.put_many([Station(SITE, SEAT, stamp=False).login("agent-9", "2026-01-05T01:00:00.000Z")])
            with Publisher(ob, site=SITE, seat=SEAT, broker=broker) as pub:
                assert pub.drain(10)
                assert wait_until(lambda: (seat_of(board) or {}).get("agent_id") == "agent-9", 5)
                stored = store.count()

                def signal(payload: dict[str, Any], until: Any) -> float:
                    t0 = time.monotonic()
                    pub.publish_live(payload)  # the station's own call: QoS 0, not through the outbox
                    assert wait_until(lambda: until(), 3), (payload, board.snapshot())
                    return time.monotonic() - t0

                lat = [signal({"type": "call", "call_id": "cti-5", "state": "started", "by": "command"},
                              lambda: (seat_of(board) or {}).get("in_call") is True)]  # fmt: skip
                lat.append(signal({"type": "talk_over", "call_id": "cti-5", "start": 12.4, "by": "agent"},
                                  lambda: now_kinds(board) == ["talk_over"]))  # fmt: skip
                s = seat_of(board)
                assert s is not None and s["call_id"] == "cti-5" and s["now"][0]["by"] == "agent"
                lat.append(signal({"type": "dead_air", "call_id": "cti-5", "start": 20.0},
                                  lambda: now_kinds(board) == ["dead_air"]))  # fmt: skip
                # the API stream the wall reads carries it, scoped like the rest of the wall
                create_user(store, "admin", PASSWORD, "admin")
                client = TestClient(create_app(store, board))
                token = client.post("/api/login", json={"username": "admin", "password": PASSWORD}).json()["token"]
                r = client.get("/api/live/stream?once=true", headers={"Authorization": f"Bearer {token}"})
                frame = json.loads(r.text.removeprefix("data: ").strip())
                seat = next(x for x in frame if x["seat"] == SEAT)
                assert seat["now"][0]["kind"] == "dead_air" and seat["now"][0]["start"] == 20.0
                assert seat["now"][0]["age_s"] >= 0
                # speech again (a talk-over) ends the silence; the call's end clears the wall
                lat.append(signal({"type": "talk_over", "call_id": "cti-5", "start": 31.0, "by": "customer"},
                                  lambda: now_kinds(board) == ["talk_over"]))  # fmt: skip
                lat.append(signal({"type": "call", "call_id": "cti-5", "state": "ended", "reason": "command"},
                                  lambda: (seat_of(board) or {}).get("in_call") is False))  # fmt: skip
                assert now_kinds(board) == []
                assert max(lat) < 2.0, lat  # "at once": well inside the couple of seconds the wall promises
        assert board.live_counts["accepted"] == 5
        assert store.count() == stored  # ephemeral: nothing of it in the database
        assert store.rejected() == {}
    finally:
        ingest.stop()


def test_malformed_live_messages_are_counted_and_dropped(mosquitto: Mosquitto, store: Store) -> None:  # noqa: F811
    board = LiveBoard()
    ingest = Ingest(
        store, BrokerConfig.from_url(mosquitto.url), client_id="hub-live-2", on_stored=board.update, on_live=board.live
    )
    ingest.start()
    poker = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="live-poker")
    try:
        assert ingest.wait_subscribed(10)
        poker.connect("127.0.0.1", mosquitto.port)
        poker.loop_start()
        topic = live_topic(SITE, SEAT)
        ts = '"ts":"2026-01-05T01:00:00.000Z"'
        bad = [
            (topic, b"{not json"),  # bad_json
            (topic, b"\xff\xfe"),  # bad_json (not UTF-8)
            (topic, b"[1, 2]"),  # bad_schema: not an object
            (topic, ('{"type":"talk_over",' + ts + ',"start":1.0,"by":"agent"}').encode()),  # no call_id
            (topic, ('{"type":"talk_over","call_id":"c1",' + ts + ',"start":1.0,"by":"boss"}').encode()),
            (topic, b'{"type":"dead_air","call_id":"c1","ts":"yesterday","start":1.0}'),
            (topic, ('{"type":"dead_air","call_id":"c/1",' + ts + ',"start":-4}').encode()),
            (topic, ('{"type":"call","call_id":"c1",' + ts + ',"state":"paused"}').encode()),
            (topic, b'{"type":"talk_over","pad":"' + b"x" * 5000 + b'"}'),  # oversized
            (live_topic(SITE, "s@21"), ('{"type":"call","call_id":"c1",' + ts + ',"state":"started"}').encode()),
            (topic, ('{"type":"anger","call_id":"c1",' + ts + ',"level":0.9}').encode()),  # a newer station's
        ]
        for t, payload in bad:
            poker.publish(t, payload, qos=0)
        good = '{"type":"talk_over","call_id":"c1",' + ts + ',"start":3.5,"by":"customer","novel":1}'
        poker.publish(topic, good.encode(), qos=0)  # unknown fields are fine
        assert wait_until(lambda: sum(board.live_counts.values()) == len(bad) + 1, 5), board.live_counts
        assert board.live_counts == {
            "accepted": 1,
            "unknown_type": 1,
            "oversized": 1,
            "bad_topic": 1,
            "bad_json": 2,
            "bad_schema": 6,
        }
        assert [s["seat"] for s in board.snapshot()] == [SEAT]  # only the good one made a seat
        assert now_kinds(board) == ["talk_over"]
        # ingest itself never noticed: events still flow and are stored
        env = Station(SITE, SEAT).login("a1", "2026-01-05T01:00:00.000Z")
        poker.publish(f"qa/v1/{SITE}/{SEAT}/event", env.to_json(), qos=1).wait_for_publish(5)
        assert wait_until(lambda: store.count() == 1, 5)
        assert store.rejected() == {}
    finally:
        poker.loop_stop()
        poker.disconnect()
        ingest.stop()


def test_signals_run_out_and_wake_the_stream() -> None:
    board = LiveBoard(talk_over_show_s=0.3, dead_air_show_s=0.6)
    ts = "2026-01-05T01:00:00.000Z"
    topic = live_topic(SITE, SEAT)
    talk = {"type": "talk_over", "call_id": "c1", "ts": ts, "start": 1, "by": "agent"}
    assert board.live(topic, json.dumps(talk).encode()) == "accepted"
    v = board.version
    assert now_kinds(board) == ["talk_over"]
    time.sleep(0.4)
    assert board.version > v  # the stream sends a frame without the talk-over
    assert now_kinds(board) == []
    board.live(topic, json.dumps({"type": "dead_air", "call_id": "c1", "ts": ts, "start": 5}).encode())
    time.sleep(0.4)
    assert now_kinds(board) == ["dead_air"]  # dead air shows longer
    time.sleep(0.3)
    assert now_kinds(board) == []
    # a straggler of a call the seat has finished does not bring it back on the wall
    board.live(topic, json.dumps({"type": "call", "call_id": "c1", "ts": ts, "state": "ended"}).encode())
    board.live(topic, json.dumps({"type": "call", "call_id": "c2", "ts": ts, "state": "started"}).encode())
    board.live(topic, json.dumps({"type": "dead_air", "call_id": "c1", "ts": ts, "start": 9}).encode())
    s = seat_of(board)
    assert s is not None and (s["call_id"], s["in_call"], s["now"]) == ("c2", True, [])


class GatedSource(FileSource):
    """The call file, held back until the hub listens (a station that started before its broker connected
    would drop the first live signals, which QoS 0 is allowed to do)."""

    def __init__(self, path: Path, gate: threading.Event) -> None:
        super().__init__(path, realtime=False)
        self.gate = gate

    def read(self, timeout: float) -> Any:
        if not self.gate.is_set():
            self.gate.wait(timeout)
            return None
        return super().read(timeout)


@pytest.mark.slow
def test_a_real_station_feeds_the_wall(
    tmp_path: Path,
    mosquitto: Mosquitto,  # noqa: F811
    store: Store,
    real_calls: list[Path],
) -> None:
    board = LiveBoard()
    outcomes: list[tuple[str, dict[str, Any]]] = []

    def spy(topic: str, payload: bytes) -> None:
        outcomes.append((board.live(topic, payload), json.loads(payload)))

    ingest = Ingest(store, BrokerConfig.from_url(mosquitto.url), client_id="hub-live-3", on_stored=board.update,
                    on_live=spy)  # fmt: skip
    ingest.start()
    gate = threading.Event()
    wav = real_calls[0]
    doc = {
        "station": {"site": SITE, "seat": SEAT, "state_dir": str(tmp_path / "state")},
        "mqtt": {"broker": mosquitto.url},
        "lifecycle": {"auto": False},
        "local_api": {"enabled": False},
        "source": {"type": "file", "file": str(wav)},
    }
    station = StationRuntime(station_config.validate(doc, "test"), base_doc=doc, source=GatedSource(wav, gate))
    try:
        assert ingest.wait_subscribed(10)
        station.start()
        assert wait_until(lambda: station.publisher.connected, 10)
        station.submit(CallStart(call_id="real-1"), "test").result(10)
        gate.set()
        assert wait_until(lambda: station.source.stats.state == "finished", 120)
        station.submit(CallEnd(), "test").result(30)
        assert wait_until(lambda: any(p.get("state") == "ended" for _, p in outcomes), 10)
    finally:
        station.stop()
        ingest.stop()
    kinds = [p["type"] for _, p in outcomes]
    truth = json.loads(wav.with_suffix(".json").read_text())
    assert [o for o, _ in outcomes] == ["accepted"] * len(outcomes)  # the hub reads everything the station says
    assert kinds[0] == "call" and kinds[-1] == "call"
    assert truth["talk_over"] and kinds.count("talk_over") >= 1
    # who holds the floor, on each change: both parties spoke in the call, and at some moment both at once
    speaking = [tuple(p["parties"]) for _, p in outcomes if p["type"] == "speaking"]
    assert {("agent",), ("customer",), ("agent", "customer")} <= set(speaking), speaking
    assert all(a != b for a, b in itertools.pairwise(speaking))  # changes only
    assert all(p["call_id"] == "real-1" for _, p in outcomes)
    s = seat_of(board)
    assert s is not None and s["call_id"] == "real-1" and s["in_call"] is False and s["now"] == []


def test_the_wall_names_the_agent_the_hub_holds_not_the_one_a_seat_claims(store: Store) -> None:
    """A seat's events name an agent (`agent_id`) and its login events name one: with the hub's login state
    behind it (`agent_of`, as `qa-hub serve` wires it) the wall shows only an agent the hub holds as logged in
    there, so a seat cannot put itself on another agent's (or team's) wall."""
    store.put_agent("agent-9", "Nine", None)
    board = LiveBoard(agent_of=lambda site, seat: store.agent_at(site, seat, time.time()))
    seat = Station(SITE, SEAT)
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 5))
    later = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 2))

    def feed(*envs: Any) -> None:
        for env in envs:
            store.add(env, env.to_json())
            board.update(env)

    feed(seat.login("agent-9", now))
    assert (seat_of(board) or {}).get("agent_id") == "agent-9"
    # a call whose events name another agent: the wall keeps the logged-in one
    speech = {"type": "speech", "speaker": "agent", "start": 1.0, "end": 2.0}
    feed(seat.env(speech, "call-1", now, agent="agent-7"))
    assert (seat_of(board) or {}).get("agent_id") == "agent-9"
    # a login of an agent the hub does not know attributes nothing, on the wall as in the calls
    feed(seat.login("agent-unknown", later), seat.env(speech, "call-2", later, agent="agent-unknown"))
    assert (seat_of(board) or {}).get("agent_id") is None
    # without the hub's state behind it (a bare board) the seat's own login is shown, as before
    bare = LiveBoard()
    bare.update(seat.login("agent-3", now))
    assert (seat_of(bare) or {}).get("agent_id") == "agent-3"


# --- what the wall tells: state, deduplicated alerts, the running "now" --------------------------------------------

ANGRY = {"type": "emotion", "start": 20.0, "end": 24.0, "party": "customer", "label": "angry"}


def signal(board: LiveBoard, **payload: Any) -> str:
    payload.setdefault("ts", "2026-01-05T01:00:00.000Z")
    return board.live(live_topic(SITE, SEAT), json.dumps(payload).encode())


def test_alerts_are_raised_once_per_kind_and_cleared_when_the_call_ends() -> None:
    board = LiveBoard(dead_air_alert_s=10.0)
    st = Station(SITE, SEAT)
    ts = "2026-01-05T01:00:00.000Z"
    board.update(st.env(ANGRY, "c1", ts, "a1"))
    board.update(st.env({**ANGRY, "start": 50.0, "end": 53.0}, "c1", ts, "a1"))
    board.update(st.env({**ANGRY, "start": 35.0, "end": 36.0, "reason": "anger_alert"}, "c1", ts, "a1"))
    board.update(st.env({"type": "dead_air", "start": 60.0, "end": 72.0}, "c1", ts, "a1"))
    board.update(st.env({"type": "dead_air", "start": 80.0, "end": 99.5}, "c1", ts, "a1"))
    board.update(st.env({"type": "dead_air", "start": 100.0, "end": 103.0}, "c1", ts, "a1"))  # short: no alert
    s = seat_of(board)
    assert s is not None and s["state"] == "in_call"
    by_kind = {a["kind"]: a for a in s["alerts"]}
    assert [a["kind"] for a in s["alerts"]] == ["customer_anger", "dead_air"]  # one entry each, in raising order
    assert (by_kind["customer_anger"]["count"], by_kind["customer_anger"]["at"]) == (3, 20.0)
    assert by_kind["customer_anger"]["last_at"] == 50.0
    assert (by_kind["dead_air"]["count"], by_kind["dead_air"]["seconds"]) == (2, 19.5)  # the longest
    assert s["alert"] is not None and s["alert"]["kind"] == "dead_air"  # the latest raised is the current one
    # the call's end (its summary) clears them; a late batch of it raises nothing again
    board.update(st.env({"type": "call_summary", "start": 0.0, "end": 110.0, "duration": 110.0}, "c1", ts, "a1"))
    s = seat_of(board)
    assert s is not None and (s["state"], s["alerts"], s["alert"], s["call_s"]) == ("idle", [], None, None)
    board.update(st.env({**ANGRY, "start": 105.0, "end": 107.0}, "c1", ts, "a1"))
    s = seat_of(board)
    assert s is not None and (s["state"], s["alerts"]) == ("idle", [])
    # the live `ended` signal clears them too, and the next call starts clean
    board.update(st.env(ANGRY, "c2", ts, "a1"))
    assert [a["kind"] for a in (seat_of(board) or {})["alerts"]] == ["customer_anger"]
    assert signal(board, type="call", call_id="c2", state="ended") == "accepted"
    s = seat_of(board)
    assert s is not None and (s["state"], s["alerts"], s["alert"]) == ("idle", [], None)


def test_the_running_now_counts_the_call_time_and_shows_what_happens() -> None:
    board = LiveBoard()
    assert signal(board, type="call", call_id="c1", state="started") == "accepted"
    s = seat_of(board)
    assert s is not None and s["state"] == "in_call" and s["call_s"] is not None and 0 <= s["call_s"] < 1
    time.sleep(0.3)
    assert 0.3 <= (seat_of(board) or {})["call_s"] < 1.3  # it runs
    # a talk-over 40 s into the call: the hub heard its start late, so the call began (at least) 40 s ago
    signal(board, type="talk_over", call_id="c1", start=40.0, by="customer")
    s = seat_of(board)
    assert s is not None and 40.0 <= s["call_s"] < 41.5
    assert [(x["kind"], x["by"]) for x in s["now"]] == [("talk_over", "customer")]
    signal(board, type="dead_air", call_id="c1", start=45.0)
    assert now_kinds(board) == ["dead_air"]
    assert 45.0 <= (seat_of(board) or {})["call_s"] < 46.5  # the silence began 45 s in, heard just now
    # a stored event's end says the same; one that places the start later never moves the clock forward
    board.update(Station(SITE, SEAT).env(ANGRY, "c1", "2026-01-05T01:00:00.000Z"))
    s = seat_of(board)
    assert s is not None and 45.0 <= s["call_s"] < 46.5 and s["alert"]["kind"] == "customer_anger"
    signal(board, type="call", call_id="c1", state="ended")
    s = seat_of(board)
    assert s is not None and (s["state"], s["call_s"], s["now"]) == ("idle", None, [])


def test_device_status_sets_the_seat_offline_and_back(hub_store: Store) -> None:
    """The retained status in the devices table (ingest's `handle_status` -> `Store.set_status`), both backends:
    an offline station's seat is offline on the wall whatever it last said, and comes back when online."""
    from hub.web.views import DEVICE_STATUS_SQL

    board = LiveBoard(devices_every_s=0.0)
    read = lambda: hub_store.db.all(DEVICE_STATUS_SQL)  # noqa: E731
    signal(board, type="call", call_id="c1", state="started")
    signal(board, type="talk_over", call_id="c1", start=3.0, by="agent")
    hub_store.set_status(SITE, SEAT, status="offline")
    hub_store.set_status(SITE, "s99", status="online", health={"pending": 0})
    v = board.version
    board.sync_devices(read)
    assert board.version > v  # the stream sends the change
    s = seat_of(board)
    assert s is not None and (s["status"], s["state"], s["now"]) == ("offline", "offline", [])
    quiet = seat_of(board, "s99")  # a seat known only by its status is on the wall too
    assert quiet is not None and (quiet["state"], quiet["status"]) == ("idle", "online")
    assert quiet["last_seen"] is not None
    v = board.version
    board.sync_devices(read)
    assert board.version == v  # nothing changed: no frame
    hub_store.set_status(SITE, SEAT, status="online")
    board.sync_devices(read)
    s = seat_of(board)
    assert s is not None and (s["status"], s["state"], s["call_id"]) == ("online", "in_call", "c1")
    # read at most every `devices_every_s`, however many streams ask
    slow = LiveBoard(devices_every_s=60.0)
    reads: list[int] = []
    for _ in range(5):
        slow.sync_devices(lambda: reads.append(1) or read())
    assert len(reads) == 1
    # a station that hangs sends no last will: silent for SILENT_S, its seat is offline though 'online' is retained
    hub_store.db.execute("UPDATE devices SET last_seen = ? WHERE seat = ?", (time.time() - SILENT_S - 5, SEAT))
    board.sync_devices(read)
    s = seat_of(board)
    assert s is not None and (s["status"], s["state"], s["now"]) == ("online", "offline", [])


def test_the_api_names_the_agent_from_the_directory(hub_store: Store) -> None:
    """`/api/live` shows the name of the agent the hub holds as logged in (never the one the events name), the
    device status and the state, for staff, scoped like the rest of the wall."""
    hub_store.put_agent("agent-9", "Nine Zhang", None)
    hub_store.put_agent("agent-7", "Seven Li", None)
    board = LiveBoard(agent_of=lambda site, seat: hub_store.agent_at(site, seat, time.time()), devices_every_s=0.0)
    seat = Station(SITE, SEAT)
    when = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 5))
    for env in (seat.login("agent-9", when), seat.env(ANGRY, "call-1", when, agent="agent-7")):
        hub_store.add(env, env.to_json())
        board.update(env)
    hub_store.set_status(SITE, SEAT, status="online")
    create_user(hub_store, "admin", PASSWORD, "admin")
    client = TestClient(create_app(hub_store, board))
    token = client.post("/api/login", json={"username": "admin", "password": PASSWORD}).json()["token"]
    r = client.get("/api/live", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    s = next(x for x in r.json() if x["seat"] == SEAT)
    assert (s["agent_id"], s["agent_name"], s["state"], s["status"]) == ("agent-9", "Nine Zhang", "in_call", "online")
    assert [a["kind"] for a in s["alerts"]] == ["customer_anger"]


def test_who_is_speaking_runs_in_the_now_column_and_stops_with_the_call() -> None:
    board = LiveBoard()
    assert signal(board, type="speaking", call_id="c1", start=3.0, parties=["customer"]) == "accepted"
    s = seat_of(board)
    assert s is not None and s["state"] == "in_call" and s["speaking"] == ["customer"]
    signal(board, type="speaking", call_id="c1", start=7.5, parties=["agent", "customer"])
    assert (seat_of(board) or {})["speaking"] == ["agent", "customer"]
    signal(board, type="speaking", call_id="c1", start=9.0, parties=[])
    assert (seat_of(board) or {})["speaking"] == []
    signal(board, type="speaking", call_id="c1", start=9.5, parties=["agent"])
    # a bad party or more than two is the station's bug: counted, the wall keeps what it had
    assert signal(board, type="speaking", call_id="c1", start=10.0, parties=["supervisor"]) == "bad_schema"
    assert signal(board, type="speaking", call_id="c1", start=10.0, parties=["agent"] * 3) == "bad_schema"
    assert (seat_of(board) or {})["speaking"] == ["agent"]
    signal(board, type="call", call_id="c1", state="ended")
    assert (seat_of(board) or {})["speaking"] == []
    # the next call starts with nobody speaking
    signal(board, type="call", call_id="c2", state="started")
    assert (seat_of(board) or {})["speaking"] == []
