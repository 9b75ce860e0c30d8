"""The hub's trust model (docs/trust.md) against the real parts: Mosquitto with the shipped production config and
per-seat credentials (deploy/mosquitto/provision_site.py), the real hub ingest, both store backends.

Each test is a finding of issue 19 re-run: a seat rewriting another seat's call; a fabricated call shown to the
agent it names; a junk flood that passed validation but could not be stored, never acknowledged, stalling every
seat (after a restart too); NaN and infinities stored.
"""

from __future__ import annotations

import json
import math
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.events import Speech, TalkOver
from edge_agent.mqtt_publisher import Publisher
from edge_agent.outbox import Outbox
from edge_agent.schema import Envelope, event_topic
from hub.auth import create_user
from hub.auth import login as auth_login
from hub.ingest import Ingest
from hub.scores import Scorer
from hub.storage import Store, scoped_call_id
from hub.web.app import create_app
from tests.broker import PRODUCTION_CONF, ROOT, Mosquitto, mosquitto_binary, site_broker, site_password
from tests.hub_support import SUMMARY, Station
from tests.test_transport import wait_until

pytestmark = pytest.mark.abuse  # the abuse and chaos suite (pyproject markers)

SITE = "lon"
SEAT_A, SEAT_B = "desk-1", "desk-2"
LOGIN_TS = "2026-01-05T01:00:00.000Z"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    script = ROOT / "deploy" / "mosquitto" / "provision_site.py"
    cmd = [sys.executable, str(script), "--site", SITE, "--seats", SEAT_A, SEAT_B, "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


@pytest.fixture
def broker(tmp_path: Path, site: Path) -> Iterator[Mosquitto]:
    binary = mosquitto_binary()
    if binary is None:
        pytest.fail("mosquitto is not installed: apt-get install mosquitto (.ci/run does)")
    b = Mosquitto(tmp_path / "broker", binary, PRODUCTION_CONF, site_dir=site)
    b.start()
    yield b
    b.stop()


def raw_client(broker: Mosquitto, site: Path, user: str) -> mqtt.Client:
    """A bare paho client with `user`'s credentials (the attacker's own seat, or the CTI), connected."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=user)
    c.tls_set(ca_certs=str(site / "ca.crt"), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    c.username_pw_set(user, site_password(site, user))
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    assert wait_until(c.is_connected, 10), broker.log_tail()
    return c


def publish_all(c: mqtt.Client, items: list[tuple[str, bytes]]) -> None:
    infos = [c.publish(topic, payload, qos=1) for topic, payload in items]
    for info in infos:
        info.wait_for_publish(30)


def send(tmp_path: Path, name: str, broker: Mosquitto, site: Path, seat: str, envs: list[Envelope]) -> None:
    """Through a real station outbox and publisher with the seat's own credentials, until the hub acked all."""
    with Outbox(tmp_path / f"{name}.sqlite") as ob:
        ob.put_many(envs)
        with Publisher(ob, site=SITE, seat=seat, broker=site_broker(site, broker.port, seat)) as pub:
            assert pub.drain(60), broker.log_tail()


def cti_login(broker: Mosquitto, site: Path, seat: str, agent: str) -> None:
    cti = raw_client(broker, site, "cti")
    try:
        body = json.dumps({"agent_id": agent, "ts": LOGIN_TS, "id": f"login-{seat}"})
        publish_all(cti, [(f"qa/v1/{SITE}/{seat}/cmd/login", body.encode())])
    finally:
        cti.loop_stop()
        cti.disconnect()


def call_row(store: Store, call_id: str) -> tuple[object, ...]:
    row = store.db.one(
        "SELECT c.site, c.seat, c.agent_id, a.team_id, c.score, c.summary_id, c.n_events, c.duration"
        " FROM calls c LEFT JOIN agents a ON a.agent_id = c.agent_id WHERE c.call_id = ?",
        (call_id,),
    )
    assert row is not None
    return row


def start_hub(store: Store, broker: Mosquitto, site: Path) -> Ingest:
    ingest = Ingest(
        store, site_broker(site, broker.port, "hub"), client_id="hub", scorer=Scorer(store), score_interval_s=0.1
    )
    ingest.start()
    assert ingest.wait_subscribed(10), broker.log_tail()
    return ingest


def test_a_seat_cannot_rewrite_another_seats_call(
    tmp_path: Path, broker: Mosquitto, site: Path, hub_store: Store
) -> None:
    store = hub_store
    store.put_team("t1", "Team One")
    store.put_team("t2", "Team Two")
    store.put_agent("a1", "Alice", "t1")
    store.put_agent("a2", "Bob", "t2")
    ingest = start_hub(store, broker, site)
    try:
        cti_login(broker, site, SEAT_A, "a1")  # the trusted login state: from the CTI, through the ACL
        cti_login(broker, site, SEAT_B, "a2")
        assert wait_until(lambda: store.db.scalar("SELECT COUNT(*) FROM seat_logins WHERE source = 'cti'") == 2, 10)
        send(
            tmp_path,
            "a",
            broker,
            site,
            SEAT_A,
            Station(SITE, SEAT_A, stamp=False).call("V-1", "2026-01-05T01:10:00.000Z"),
        )
        assert wait_until(lambda: call_row(store, "V-1")[4] is not None, 20)
        before = call_row(store, "V-1")
        assert before[:4] == (SITE, SEAT_A, "a1", "t1")
        events_before = store.call_events("V-1")
        scores_before = store.db.all("SELECT id, score FROM scores WHERE call_id = 'V-1'")

        # seat B, on its own topic with its own credentials: events and a second, much worse summary for A's call,
        # naming its own agent in the header
        attacker = Station(SITE, SEAT_B, stamp=False)
        bad = dict(SUMMARY, duration=300.0, talk_overs=40, dead_air_count=30)
        evs = [TalkOver(float(i), i + 1.0, "agent", "interruption", 1.0) for i in range(0, 60, 2)]
        forged = [attacker.env(e, "V-1", "2026-01-05T01:30:00.000Z", "a2") for e in evs]
        forged += attacker.call("V-1", "2026-01-05T01:31:00.000Z", summary=bad)
        send(tmp_path, "b", broker, site, SEAT_B, forged)  # acknowledged: B's station does not resend forever

        assert wait_until(lambda: store.rejected().get("foreign_call") == len(forged), 10), store.rejected()
        time.sleep(1.0)  # a re-score, had one been queued, would have happened by now
        assert call_row(store, "V-1") == before  # site, seat, agent, team, score, summary, events, duration
        assert store.call_events("V-1") == events_before
        assert store.db.all("SELECT id, score FROM scores WHERE call_id = 'V-1'") == scores_before
        assert ingest.outcomes["foreign_call"] == len(forged)
        # B's events are B's own call, apart, under an id no other seat can name
        scoped = scoped_call_id("V-1", SITE, SEAT_B)
        assert wait_until(lambda: call_row(store, scoped)[4] is not None, 10)
        assert call_row(store, scoped)[:3] == (SITE, SEAT_B, "a2") and len(store.call_events(scoped)) == len(forged)

        # squatting: B names a call id before the seat it belongs to does (CTI call ids are guessable); A's call
        # then arrives whole, apart from B's, scored and attributed to A's agent, and B's events never enter it
        squat = [attacker.env(e, "V-2", "2026-01-05T01:40:00.000Z") for e in evs[:5]]
        send(tmp_path, "b2", broker, site, SEAT_B, squat)
        assert wait_until(lambda: store.db.scalar("SELECT seat FROM calls WHERE call_id = 'V-2'") == SEAT_B, 10)
        real = Station(SITE, SEAT_A, stamp=False).call("V-2", "2026-01-05T01:50:00.000Z")
        send(tmp_path, "a2", broker, site, SEAT_A, real)
        kept = scoped_call_id("V-2", SITE, SEAT_A)
        assert wait_until(lambda: call_row(store, kept)[4] is not None, 20)
        row = call_row(store, kept)
        assert row[:4] == (SITE, SEAT_A, "a1", "t1") and row[6] == len(real) and row[4] == before[4]
        assert store.rejected().get("foreign_call") == len(forged) + len(real)
    finally:
        ingest.stop()


def test_a_fabricated_call_is_not_shown_to_the_agent_it_names(
    tmp_path: Path, broker: Mosquitto, site: Path, hub_store: Store
) -> None:
    store = hub_store
    store.put_team("t1", "Team One")
    store.put_agent("victim", "Victor", "t1")
    create_user(store, "victor", "victor-password", "agent", agent_id="victim")
    ingest = start_hub(store, broker, site)
    try:
        seat = Station(SITE, SEAT_B, stamp=False)
        # header agent_id only, no login; then a seat-sent login of an agent the hub does not know
        fake = [seat.env(e, "FAKE-1", "2026-01-05T02:10:00.000Z", "victim") for e in [Speech(1.0, 9.0, "agent")]]
        fake += [e for e in seat.call("FAKE-1", "2026-01-05T02:10:00.000Z", agent="victim") if e.type != "agent_login"]
        fake += [seat.login("nobody-known", "2026-01-05T02:20:00.000Z")]
        fake += seat.call("FAKE-2", "2026-01-05T02:40:00.000Z")
        send(tmp_path, "b", broker, site, SEAT_B, fake)
        assert wait_until(lambda: store.db.scalar("SELECT COUNT(*) FROM calls WHERE summary_id IS NOT NULL") == 2, 10)
        assert store.db.all("SELECT call_id, agent_id FROM calls ORDER BY call_id") == [
            ("FAKE-1", None),
            ("FAKE-2", None),
        ]
        assert store.counters().get("agent_mismatch", 0) >= 1
        assert store.db.scalar("SELECT COUNT(*) FROM agents WHERE agent_id = 'nobody-known'") == 0
        token, _ = auth_login(store, "victor", "victor-password")
        client = TestClient(create_app(store))
        h = {"Authorization": f"Bearer {token}"}
        r = client.get("/api/calls", headers=h)
        assert r.status_code == 200 and "FAKE-" not in r.text
        assert client.get("/api/calls/FAKE-1", headers=h).status_code == 404
    finally:
        ingest.stop()


def junk(n: int) -> list[tuple[str, bytes]]:
    """`n` messages from seat B that parse as JSON but are out of bounds, each kind in turn (issue 19)."""
    base = {
        "schema": 1,
        "seat": SEAT_B,
        "site": SITE,
        "call_id": "J-1",
        "ts": "2026-01-05T03:00:00.000Z",
        "type": "speech",
        "start": 1.0,
        "end": 2.0,
        "speaker": "agent",
    }
    kinds = [
        lambda d: json.dumps({**d, "seq": 2**63}),
        lambda d: json.dumps(d).replace('"start": 1.0', '"start": 1e400'),
        lambda d: json.dumps({**d, "type": "call_summary", "duration": 1e15}),
        lambda d: json.dumps({**d, "ts": "0001-01-01T00:00:00.000Z"}),
        lambda d: json.dumps(d)[:-1] + ', "x": ' + "[" * 30000 + "]" * 30000 + "}",
        lambda d: json.dumps(d)[:-1] + ', "label": "\\ud800"}',
        lambda d: json.dumps({**d, "schema": 1.0}),
        lambda d: json.dumps(d)[:-1] + ', "score": NaN}',
    ]
    out = []
    for i in range(n):
        d = {**base, "id": f"junk{i:06d}", "seq": i + 1}
        out.append((event_topic(SITE, SEAT_B), kinds[i % len(kinds)](d).encode()))
    return out


JUNK_REASONS = ["out_of_range", "out_of_range", "out_of_range", "out_of_range", "too_deep", "bad_text", "bad_schema",
                "out_of_range"]  # fmt: skip


def no_nan_stored(store: Store) -> None:
    def refuse(name: str) -> float:
        raise AssertionError(f"{name} stored")

    for (payload,) in store.db.all("SELECT payload FROM events"):
        json.loads(payload, parse_constant=refuse)  # NaN, Infinity, -Infinity
    for (health,) in store.db.all("SELECT health FROM devices WHERE health IS NOT NULL"):
        json.loads(health, parse_constant=refuse)
    for (v,) in store.db.all("SELECT duration FROM calls WHERE duration IS NOT NULL"):
        assert math.isfinite(float(v))


def test_a_junk_flood_is_rejected_acknowledged_and_stalls_nobody(
    tmp_path: Path, broker: Mosquitto, site: Path, hub_store: Store
) -> None:
    store = hub_store
    n = 1008  # more than the broker's in-flight window to the hub (1000)
    ingest = start_hub(store, broker, site)
    ingest.stop()  # the hub is down while the junk arrives: the broker holds it all for the hub's session
    attacker = raw_client(broker, site, SEAT_B)
    try:
        publish_all(attacker, junk(n))
        health = b'{"pending": NaN, "agent_id": "a1", "x": 1e400}'  # a bounded health report: dropped
        attacker.publish(f"qa/v1/{SITE}/{SEAT_B}/status/health", health, qos=1).wait_for_publish(5)
    finally:
        attacker.loop_stop()
        attacker.disconnect()
    ingest = start_hub(store, broker, site)
    try:
        honest = Station(SITE, SEAT_A, stamp=False)
        t0 = time.monotonic()
        send(tmp_path, "a1", broker, site, SEAT_A, honest.call("H-1", "2026-01-05T03:10:00.000Z"))
        assert time.monotonic() - t0 < 30
        want: dict[str, int] = {}
        for i in range(n):
            want[JUNK_REASONS[i % len(JUNK_REASONS)]] = want.get(JUNK_REASONS[i % len(JUNK_REASONS)], 0) + 1
        assert wait_until(lambda: store.rejected() == want, 20), store.rejected()
    finally:
        ingest.stop()
    # a restart: nothing of the flood comes back (all of it was acknowledged), and an honest seat is stored at once
    ingest = start_hub(store, broker, site)
    try:
        send(
            tmp_path,
            "a2",
            broker,
            site,
            SEAT_A,
            Station(SITE, SEAT_A, stamp=False).call("H-2", "2026-01-05T03:20:00.000Z"),
        )
        time.sleep(0.5)
        assert store.rejected() == want
        assert {k: v for k, v in ingest.outcomes.items() if v} == {"stored": len(store.call_events("H-2"))}
    finally:
        ingest.stop()
    assert store.db.scalar("SELECT COUNT(*) FROM events WHERE seat = ?", (SEAT_B,)) == 0
    assert store.db.scalar("SELECT health FROM devices WHERE seat = ?", (SEAT_B,)) is None
    no_nan_stored(store)


def refuse_poison(store: Store) -> None:
    """A database that refuses some valid events (a trigger): what validation cannot foresee."""
    if store.db.dialect == "sqlite":
        store.db.execute(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON events WHEN NEW.id LIKE 'poison%'"
            " BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    else:
        store.db.execute(
            "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN IF NEW.id LIKE 'poison%' THEN"
            " RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        store.db.execute(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION refuse_poison()"
        )


def test_unstorable_messages_are_counted_and_acknowledged(
    tmp_path: Path, broker: Mosquitto, site: Path, hub_store: Store
) -> None:
    store = hub_store
    refuse_poison(store)
    n = 1005
    seat = Station(SITE, SEAT_B)
    poison = [seat.env(Speech(1.0, 2.0, "agent"), f"P-{i // 50}", "2026-01-05T04:00:00.000Z") for i in range(n)]
    items = [
        (event_topic(SITE, SEAT_B), replace(e, id=f"poison{i:06d}").to_json().encode()) for i, e in enumerate(poison)
    ]
    ingest = start_hub(store, broker, site)
    ingest.stop()
    attacker = raw_client(broker, site, SEAT_B)
    try:
        publish_all(attacker, items)
    finally:
        attacker.loop_stop()
        attacker.disconnect()
    ingest = start_hub(store, broker, site)
    try:
        send(
            tmp_path,
            "a",
            broker,
            site,
            SEAT_A,
            Station(SITE, SEAT_A, stamp=False).call("H-3", "2026-01-05T04:10:00.000Z"),
        )
        assert wait_until(lambda: store.rejected().get("unstorable") == n, 60), store.rejected()
        assert store.db.scalar("SELECT COUNT(*) FROM events WHERE id LIKE 'poison%'") == 0
        assert store.db.scalar("SELECT COUNT(*) FROM calls WHERE call_id LIKE 'P-%'") == 0  # nothing half-way
    finally:
        ingest.stop()
    ingest = start_hub(store, broker, site)
    try:
        time.sleep(1.0)
        assert store.rejected().get("unstorable") == n  # acknowledged: not redelivered after the restart
    finally:
        ingest.stop()
