"""Scale-out: two hub workers share ingest through an MQTT shared subscription (`$share/hub/...`) on one
database. Each seat's events arrive split between the workers, in any order; the per-seat lock keeps the seq
bookkeeping right: every event stored once, no gap left, every seat confirmed to its last seq, every call
scored once. Real Mosquitto, real PostgreSQL (and SQLite, which serialises writers itself)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.mqtt_publisher import BrokerConfig
from edge_agent.schema import event_topic
from hub.cli import ensure_scorecard
from hub.ingest import Ingest, Outcome
from hub.scores import Scorer
from hub.storage import Store
from tests.broker import Mosquitto, mosquitto  # noqa: F401 - the fixture
from tests.hub_support import Station

SITE, SEATS, CALLS = "scale", 6, 5


@pytest.fixture(params=["postgres", "sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "hub.sqlite")
    else:
        yield request.getfixturevalue("pg_dsn")


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
        for c, _ in pubs:
            c.loop_stop()
            c.disconnect()
        watcher.loop_stop()
        watcher.disconnect()
        for w in workers:
            w.stop()
        for st in stores:
            st.close()
