"""Station outbox -> real Mosquitto -> hub ingest on each storage backend: stored once, acknowledged, the seat's
agent attributed from login events, the call scored, the device's availability from its last will."""

from __future__ import annotations

from pathlib import Path

from edge_agent.mqtt_publisher import BrokerConfig, Publisher
from edge_agent.outbox import Outbox
from hub.ingest import Ingest, Outcome
from hub.live import LiveBoard
from hub.scores import Scorer
from hub.storage import Store
from tests.broker import Mosquitto, mosquitto  # noqa: F401 - the fixture
from tests.hub_support import Station
from tests.test_transport import wait_until

SITE, SEAT = "sh", "s42"


def test_station_to_scored_call(tmp_path: Path, mosquitto: Mosquitto, hub_store: Store) -> None:  # noqa: F811
    store = hub_store
    board = LiveBoard()
    ingest = Ingest(
        store, BrokerConfig.from_url(mosquitto.url), client_id="test-hub", scorer=Scorer(store), on_stored=board.update
    )
    ingest.start()
    try:
        assert ingest.wait_subscribed(10), mosquitto.log_tail()
        st = Station(SITE, SEAT, stamp=False)
        store.put_agent("agent-7", "Agent 7", None)  # a seat's login attributes calls only to a known agent
        envs = [st.login("agent-7", "2026-01-05T01:00:00.000Z")]
        envs += st.call("cti-1", "2026-01-05T01:10:00.000Z")  # no agent in the header: the seat's login says
        envs += st.call("cti-2", "2026-01-05T01:20:00.000Z")
        envs += [st.logout("2026-01-05T01:30:00.000Z")]
        with Outbox(tmp_path / "ob.sqlite") as ob:
            ob.put_many(envs)
            with Publisher(ob, site=SITE, seat=SEAT, broker=BrokerConfig.from_url(mosquitto.url)) as pub:
                assert pub.drain(30), mosquitto.log_tail()  # the hub's ack watermark confirmed every row
                assert wait_until(lambda: store.db.scalar("SELECT status FROM devices") == "online", 10)
            assert len(ob) == 0
        assert store.count() == len(envs)
        assert store.seqs(SITE, SEAT) == list(range(1, len(envs) + 1))
        assert wait_until(lambda: store.db.scalar("SELECT COUNT(*) FROM calls WHERE score IS NOT NULL") == 2, 10)
        rows = store.db.all("SELECT call_id, agent_id, agent_source, score FROM calls ORDER BY call_id")
        assert rows == [("cti-1", "agent-7", "seat", 79.0), ("cti-2", "agent-7", "seat", 79.0)]
        assert store.db.all("SELECT agent_id, calls, scored FROM agent_daily") == [("agent-7", 2, 2)]
        # a clean stop publishes `offline` (a crash would leave it to the last will)
        assert wait_until(lambda: store.db.scalar("SELECT status FROM devices") == "offline", 10)
        assert ingest.outcomes[Outcome.STORED] == len(envs)
        seat = board.snapshot()[0]
        assert (seat["seat"], seat["agent_id"], seat["in_call"]) == (SEAT, None, False)  # logged out at the end
    finally:
        ingest.stop()


def test_malformed_and_health_messages(mosquitto: Mosquitto, hub_store: Store) -> None:  # noqa: F811
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    ingest = Ingest(hub_store, BrokerConfig.from_url(mosquitto.url), client_id="test-hub-2")
    ingest.start()
    try:
        assert ingest.wait_subscribed(10)
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="poker")
        c.connect("127.0.0.1", mosquitto.port)
        c.loop_start()
        c.publish(f"qa/v1/{SITE}/s1/event", b"{not json", qos=1).wait_for_publish(5)
        c.publish(f"qa/v1/{SITE}/s1/status/health", b'{"ts":"x","pending":17,"dropped":0}', qos=1, retain=True)
        c.publish(f"qa/v1/{SITE}/s1/status/health", b"[broken", qos=1).wait_for_publish(5)
        assert wait_until(lambda: hub_store.rejected().get("bad_json") == 1, 10)
        assert wait_until(lambda: hub_store.db.scalar("SELECT health FROM devices") is not None, 10)
        assert '"pending": 17' in hub_store.db.scalar("SELECT health FROM devices")
        c.loop_stop()
        c.disconnect()
    finally:
        ingest.stop()


def test_many_seats_interleaved_exactly_once(tmp_path: Path, mosquitto: Mosquitto, hub_store: Store) -> None:  # noqa: F811
    n_seats = 3
    ingest = Ingest(hub_store, BrokerConfig.from_url(mosquitto.url), client_id="test-hub-3", scorer=Scorer(hub_store))
    ingest.start()
    pubs = []
    try:
        assert ingest.wait_subscribed(10)
        total = 0
        for i in range(n_seats):
            st = Station(SITE, f"seat{i}", stamp=False)
            hub_store.put_agent(f"ag{i}", f"Agent {i}", None)
            envs = [st.login(f"ag{i}", "2026-01-05T01:00:00.000Z")]
            for k in range(5):
                envs += st.call(f"s{i}-c{k}", f"2026-01-05T0{k + 2}:00:00.000Z")
            total += len(envs)
            ob = Outbox(tmp_path / f"ob{i}.sqlite")
            ob.put_many(envs)
            pub = Publisher(ob, site=SITE, seat=f"seat{i}", broker=BrokerConfig.from_url(mosquitto.url))
            pub.start()
            pubs.append((ob, pub))
        for _, pub in pubs:
            assert pub.drain(30)
        assert hub_store.count() == total
        assert hub_store.gaps() == []
        assert wait_until(lambda: hub_store.db.scalar("SELECT COUNT(*) FROM calls WHERE score IS NOT NULL") == 15, 10)
        per_agent = hub_store.db.all("SELECT agent_id, COUNT(*) FROM calls GROUP BY agent_id ORDER BY agent_id")
        assert per_agent == [(f"ag{i}", 5) for i in range(n_seats)]
    finally:
        for ob, pub in pubs:
            pub.stop()
            ob.close()
        ingest.stop()
