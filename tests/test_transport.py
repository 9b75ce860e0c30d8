"""Station -> real Mosquitto -> hub store: exactly once in effect, across broker restarts and station crashes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.events import Speech
from edge_agent.mqtt_publisher import BrokerConfig, BrokerUrlError, Publisher, new_client
from edge_agent.outbox import Outbox
from edge_agent.schema import (
    MAX_PAYLOAD_BYTES,
    ZLIB,
    Envelope,
    ack_topic,
    decode_payload,
    encode_payload,
    envelope,
    event_topic,
)
from edge_agent.wire import expand_activity
from hub.ingest import HubStore, Ingest, Outcome
from tests.broker import Mosquitto, free_port, mosquitto  # noqa: F401 - the fixture
from tests.conftest import ROOT, run_cli, write_wav

SITE, SEAT = "lab", "s01"


def wait_until(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def events(n: int, seat: str = SEAT, call_id: str = "c1") -> list[Envelope]:
    return [envelope(Speech(float(i), i + 0.5, "agent"), seat=seat, site=SITE, call_id=call_id) for i in range(n)]


@pytest.fixture
def hub(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Ingest]:  # noqa: F811
    store = HubStore(tmp_path / "hub.sqlite")
    ingest = Ingest(store, BrokerConfig.from_url(mosquitto.url), client_id="test-hub")
    ingest.start()
    try:
        assert ingest.wait_subscribed(10), mosquitto.log_tail()
        yield ingest
    finally:
        ingest.stop()
        store.close()


def assert_exactly_once(store: HubStore, n: int, seat: str = SEAT) -> None:
    assert store.seqs(SITE, seat) == list(range(1, n + 1))  # every seq once: nothing lost, nothing twice
    assert store.count() == n
    assert store.gaps() == []


def test_events_arrive_exactly_once(tmp_path: Path, mosquitto: Mosquitto, hub: Ingest) -> None:  # noqa: F811
    with Outbox(tmp_path / "ob.sqlite") as ob:
        ob.put_many(events(300))
        with Publisher(ob, site=SITE, seat=SEAT, broker=BrokerConfig.from_url(mosquitto.url)) as pub:
            assert pub.drain(20), mosquitto.log_tail()
        assert len(ob) == 0
    assert wait_until(lambda: hub.store.count() == 300, 10)
    assert_exactly_once(hub.store, 300)
    assert hub.outcomes[Outcome.STORED] == 300


def produce_in_background(ob: Outbox, pub: Publisher, batches: list[list[Envelope]]) -> threading.Thread:
    """The station keeps producing (a batch every 20 ms) while a test breaks the broker."""

    def produce() -> None:
        for batch in batches:
            ob.put_many(batch)
            pub.notify()
            time.sleep(0.02)

    producer = threading.Thread(target=produce)
    producer.start()
    return producer


def test_broker_restart_mid_stream_loses_nothing(tmp_path: Path, mosquitto: Mosquitto, hub: Ingest) -> None:  # noqa: F811
    total = 600
    with Outbox(tmp_path / "ob.sqlite") as ob:
        pub = Publisher(ob, site=SITE, seat=SEAT, broker=BrokerConfig.from_url(mosquitto.url))
        pub.start()
        # the station keeps producing while the broker goes away and comes back
        producer = produce_in_background(ob, pub, [events(20, call_id=f"c{i}") for i in range(total // 20)])
        try:
            assert wait_until(lambda: hub.store.count() >= 100, 15)
            mosquitto.stop()  # clean shutdown: the broker saves sessions and queued messages
            at_stop = hub.store.count()
            time.sleep(0.3)
            mosquitto.start()
            producer.join(30)
            assert pub.drain(30), mosquitto.log_tail()
        finally:
            producer.join(30)
            pub.stop()
    assert at_stop < total and pub.connects >= 2  # the restart did land mid-stream
    assert wait_until(lambda: hub.store.count() >= total, 20)
    time.sleep(0.3)  # any late duplicate would land now
    assert_exactly_once(hub.store, total)
    assert hub.connects >= 2


def test_broker_killed_mid_stream_loses_nothing(tmp_path: Path, mosquitto: Mosquitto, hub: Ingest) -> None:  # noqa: F811
    """SIGKILL: the broker loses what it PUBACKed but had neither saved nor forwarded; the hub's acks cover it."""
    total = 1500
    with Outbox(tmp_path / "ob.sqlite") as ob:
        pub = Publisher(ob, site=SITE, seat=SEAT, broker=BrokerConfig.from_url(mosquitto.url), resend_s=5.0)
        pub.start()
        producer = produce_in_background(ob, pub, [events(50, call_id=f"c{i}") for i in range(total // 50)])
        try:
            assert wait_until(lambda: hub.store.count() >= 300, 15)
            mosquitto.kill()  # no clean shutdown: nothing since the last autosave is kept
            at_kill = hub.store.count()
            time.sleep(0.3)
            mosquitto.start()
            producer.join(30)
            assert pub.drain(30), mosquitto.log_tail()  # drained = confirmed by the hub, not just PUBACKed
        finally:
            producer.join(30)
            pub.stop()
        assert len(ob) == 0 and ob.dropped == 0
    assert at_kill < total and pub.connects >= 2 and hub.connects >= 2  # the kill did land mid-stream
    assert pub.confirmed == total
    time.sleep(0.3)  # any late duplicate would land now
    assert_exactly_once(hub.store, total)
    assert hub.outcomes[Outcome.STORED] == total


def test_station_killed_mid_publish_resumes_from_outbox(
    tmp_path: Path,
    mosquitto: Mosquitto,  # noqa: F811
    hub: Ingest,
) -> None:
    db = tmp_path / "ob.sqlite"
    total = 2000
    script = f"""
import time
from edge_agent.events import Speech
from edge_agent.mqtt_publisher import BrokerConfig, Publisher
from edge_agent.outbox import Outbox
from edge_agent.schema import envelope
ob = Outbox({str(db)!r})
ob.put_many(envelope(Speech(float(i), i + 0.5, "agent"), seat="{SEAT}", site="{SITE}", call_id="c1")
            for i in range({total}))
print("queued", flush=True)
Publisher(ob, site="{SITE}", seat="{SEAT}", broker=BrokerConfig.from_url({mosquitto.url!r})).start()
time.sleep(60)
"""
    station = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert station.stdout is not None and station.stdout.readline().strip() == "queued"
        assert wait_until(lambda: hub.store.count() >= 200, 15)
    finally:
        station.send_signal(signal.SIGKILL)  # mid-publish: some rows sent, some acked, some not
        station.wait(10)
    at_kill = hub.store.count()
    with Outbox(db) as ob:
        left = len(ob)
        # rows leave only on the hub's (throttled) ack, so all may still be there; the hub had some
        assert 0 < left and at_kill < total, "the kill should land mid-stream"
        with Publisher(ob, site=SITE, seat=SEAT, broker=BrokerConfig.from_url(mosquitto.url)) as pub:
            assert pub.drain(20)
    assert wait_until(lambda: hub.store.count() >= total, 20)
    time.sleep(0.3)
    assert_exactly_once(hub.store, total)
    assert hub.outcomes[Outcome.STORED] == total  # re-sent rows the hub already had came in as duplicates


def test_status_is_retained_with_last_will(tmp_path: Path, mosquitto: Mosquitto) -> None:  # noqa: F811
    seen: dict[str, str] = {}
    got = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        seen[msg.topic] = msg.payload.decode()
        got.set()

    def status() -> dict[str, str]:
        seen.clear()
        got.clear()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="watcher")
        c.on_message = on_message
        c.connect("127.0.0.1", mosquitto.port)
        c.subscribe(f"qa/v1/{SITE}/{SEAT}/status/#", qos=1)
        c.loop_start()
        got.wait(5)
        time.sleep(0.2)
        c.disconnect()
        c.loop_stop()
        return dict(seen)

    with Outbox(tmp_path / "ob.sqlite") as ob:
        pub = Publisher(ob, site=SITE, seat=SEAT, broker=BrokerConfig.from_url(mosquitto.url))
        pub.start()
        assert wait_until(lambda: pub.connected, 10)
        s = status()
        assert s[f"qa/v1/{SITE}/{SEAT}/status"] == "online"
        assert json.loads(s[f"qa/v1/{SITE}/{SEAT}/status/health"])["dropped"] == 0
        # an unclean loss of the station: the broker publishes its will
        assert pub.client.socket() is not None
        pub.client.socket().close()  # type: ignore[union-attr]
        assert wait_until(lambda: status().get(f"qa/v1/{SITE}/{SEAT}/status") == "offline", 10)
        pub.stop()


def test_malformed_payloads_are_rejected_and_counted(mosquitto: Mosquitto, hub: Ingest) -> None:  # noqa: F811
    good = events(1)[0].with_seq(1)
    bad = {
        Outcome.BAD_JSON: b"{not json",
        Outcome.BAD_SCHEMA: json.dumps(good.to_dict() | {"schema": 99}).encode(),
        Outcome.OVERSIZED: b"x" * (70 * 1024),
        Outcome.TOPIC_MISMATCH: events(1, seat="s02")[0].with_seq(1).to_json().encode(),
    }
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="vandal")
    c.connect("127.0.0.1", mosquitto.port)
    c.loop_start()
    try:
        for payload in bad.values():
            c.publish(event_topic(SITE, SEAT), payload, qos=1).wait_for_publish(5)
        c.publish(event_topic(SITE, SEAT), good.to_json(), qos=1).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()
    assert wait_until(lambda: hub.store.count() == 1, 10)  # ingest carried on after the bad ones
    assert hub.store.rejected() == {str(o): 1 for o in bad}
    assert all(hub.outcomes[o] == 1 for o in bad)


def test_gaps_are_reported_and_closed_by_late_events(tmp_path: Path) -> None:
    store = HubStore(tmp_path / "hub.sqlite")
    ingest = Ingest(store, BrokerConfig("127.0.0.1", 1))  # handle() needs no broker
    envs = [e.with_seq(i) for i, e in enumerate(events(6), 1)]
    topic = event_topic(SITE, SEAT)
    for i in (1, 2, 5):
        assert ingest.handle(topic, envs[i - 1].to_json().encode()) == Outcome.STORED
    assert [(g.first, g.last) for g in store.gaps()] == [(3, 4)]
    assert ingest.handle(topic, envs[3].to_json().encode()) == Outcome.STORED  # seq 4 arrives late
    assert [(g.first, g.last) for g in store.gaps()] == [(3, 3)]
    assert ingest.handle(topic, envs[3].to_json().encode()) == Outcome.DUPLICATE
    assert ingest.handle(topic, envs[2].to_json().encode()) == Outcome.STORED
    assert store.gaps() == []
    assert ingest.handle("qa/v1/lab/s01/other", b"{}") == Outcome.BAD_TOPIC
    store.close()


def test_broker_url() -> None:
    assert BrokerConfig.from_url("mqtt://hub.local") == BrokerConfig("hub.local", 1883)
    b = BrokerConfig.from_url("mqtts://u:p%40ss@10.0.0.2:8884")
    assert (b.host, b.port, b.tls, b.username, b.password) == ("10.0.0.2", 8884, True, "u", "p@ss")
    assert "p@ss" not in repr(b)
    for url in ("http://x:1", "mqtt://", "mqtt://x:99999", "mqtt://x/path"):
        with pytest.raises(BrokerUrlError):
            BrokerConfig.from_url(url)


def test_reconnect_backoff_is_jittered_per_station() -> None:
    """A broker restart must not see a whole site reconnect at 1 s, 2 s, 4 s... in lockstep."""
    cfg = BrokerConfig("127.0.0.1", 1, reconnect_max_s=30)
    clients = [new_client(cfg, f"seat-{i}") for i in range(20)]
    mins = [c._reconnect_min_delay for c in clients]
    maxs = [c._reconnect_max_delay for c in clients]
    assert all(0.5 <= m <= 1.5 for m in mins) and all(21 <= m <= 30 for m in maxs)
    assert len({round(m, 3) for m in mins}) > 10 and len({round(m, 3) for m in maxs}) > 10


# --- the replay CLI ----------------------------------------------------------------------------------------


@pytest.fixture
def call_wav(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    t = np.arange(16000 * 4) / 16000
    x = (0.001 * rng.standard_normal((len(t), 2))).astype(np.float32)
    voiced = (np.sin(2 * np.pi * 150 * t) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)
    x[8000:28000, 0] += 0.3 * voiced[8000:28000]
    x[40000:60000, 1] += 0.3 * voiced[40000:60000]
    return write_wav(tmp_path / "call.wav", x)


def test_replay_publishes_a_call(tmp_path: Path, mosquitto: Mosquitto, hub: Ingest, call_wav: Path) -> None:  # noqa: F811
    analyzed = [json.loads(x) for x in run_cli("analyze", str(call_wav)).stdout.splitlines()]
    ob = str(tmp_path / "ob.sqlite")
    common = ["--seat", SEAT, "--site", SITE, "--outbox", ob, "--agent", "a7"]
    # broker unreachable: exit 3, events kept for the next run
    dead = f"mqtt://127.0.0.1:{free_port()}"
    res = run_cli("replay", str(call_wav), *common, "--broker", dead, "--timeout", "1")
    assert res.returncode == 3, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "kept in" in res.stderr
    res = run_cli("replay", str(call_wav), *common, "--broker", mosquitto.url, "--timeout", "20")
    assert res.returncode == 0, res.stderr
    stored = hub.store.payloads()
    n = len(stored) // 2  # two calls: the one kept from the failed run, then this one
    assert wait_until(lambda: hub.store.count() == 2 * n, 10)
    assert_exactly_once(hub.store, 2 * n)
    stored = hub.store.payloads()
    # on the wire turn-taking is batched as `activity`; expanded, it is exactly what `analyze` printed
    first_call = stored[:n]
    assert [e["type"] for e in first_call] == ["activity"] * (n - 1) + ["call_summary"]
    expanded = [{k: v for k, v in x.items() if k != "index"} for e in first_call[:-1] for x in expand_activity(e)]
    key = lambda e: (e["type"], e["start"], e["end"])  # noqa: E731
    assert sorted(expanded, key=key) == sorted(analyzed[:-1], key=key)
    assert len({e["call_id"] for e in stored}) == 2 and {e["agent_id"] for e in stored} == {"a7"}
    assert len({e["epoch"] for e in stored}) == 1
    summary = stored[n - 1]
    assert summary["type"] == "call_summary" and summary["model"]["sha256"]
    assert len(json.dumps(summary, separators=(",", ":"))) <= 1536  # the size budget


def test_replay_of_a_call_with_broken_samples_reaches_the_hub(
    tmp_path: Path,
    mosquitto: Mosquitto,  # noqa: F811
    hub: Ingest,
    real_calls: list[Path],
) -> None:
    """NaN from a failing driver once made replay exit 1 with a traceback (JSON refuses NaN)."""
    import soundfile as sf

    x, rate = sf.read(real_calls[2], dtype="float32")
    x[np.linspace(rate, len(x) - rate, 16).astype(int), 0] = np.nan
    x[len(x) // 2 : len(x) // 2 + 160, :] = np.inf
    wav = write_wav(tmp_path / "nan.wav", x, rate, "FLOAT")
    ob = str(tmp_path / "ob.sqlite")
    res = run_cli("replay", str(wav), "--seat", SEAT, "--site", SITE, "--outbox", ob, "--broker", mosquitto.url)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert wait_until(lambda: any(e["type"] == "call_summary" for e in hub.store.payloads()), 10)
    stored = hub.store.payloads()
    assert_exactly_once(hub.store, len(stored))
    summary = next(e for e in stored if e["type"] == "call_summary")
    assert summary["quality"]["dropout_samples"] == 16 + 2 * 160
    turns = [x for e in stored if e["type"] == "activity" for x in expand_activity(e)]
    assert sum(x["type"] == "speech" and x["speaker"] == "agent" for x in turns) >= 5  # segments kept, not one
    assert len(json.dumps(summary, separators=(",", ":"), allow_nan=False)) <= 1536


@pytest.mark.parametrize(
    ("extra", "needle"),
    [(["--broker", "http://nowhere"], "broker"), (["--broker", "mqtt://x:1", "--seat", "a/b"], "seat")],
)
def test_replay_bad_input_exits_2(tmp_path: Path, call_wav: Path, extra: list[str], needle: str) -> None:
    args = ["replay", str(call_wav), "--seat", SEAT, "--site", SITE, "--outbox", str(tmp_path / "ob.sqlite")]
    res = run_cli(*args, *extra)
    assert res.returncode == 2 and needle in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_replay_mono_file_exits_2(tmp_path: Path) -> None:
    mono = write_wav(tmp_path / "mono.wav", np.zeros(16000, np.float32))
    ob = str(tmp_path / "ob.sqlite")
    res = run_cli("replay", str(mono), "--seat", SEAT, "--site", SITE, "--broker", "mqtt://127.0.0.1:1", "--outbox", ob)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1


def test_zlib_payloads_are_read_and_bad_ones_counted(tmp_path: Path) -> None:
    store = HubStore(tmp_path / "hub.sqlite")
    ingest = Ingest(store, BrokerConfig("127.0.0.1", 1))  # handle() needs no broker
    topic = event_topic(SITE, SEAT)
    good = [e.with_seq(i) for i, e in enumerate(events(3), 1)]
    try:
        assert ingest.handle(topic, encode_payload(good[0].to_json(), ZLIB)) is Outcome.STORED
        assert ingest.handle(topic, encode_payload(good[1].to_json(), None)) is Outcome.STORED
        # one envelope's JSON padded with spaces past the limit once inflated: ~200 bytes on the wire
        bomb = zlib.compress(good[2].to_json().encode() + b" " * MAX_PAYLOAD_BYTES, 9)
        assert len(bomb) < 1024
        assert ingest.handle(topic, bomb) is Outcome.OVERSIZED
        packed = encode_payload(good[2].to_json(), ZLIB)
        assert ingest.handle(topic, packed[:-5]) is Outcome.BAD_JSON  # truncated
        assert ingest.handle(topic, packed + b"tail") is Outcome.BAD_JSON  # bytes after the stream
        assert ingest.handle(topic, zlib.compress(b"\xff\xfe not utf-8")) is Outcome.BAD_JSON
        assert ingest.handle(topic, zlib.compress(b"[1, 2]")) is Outcome.BAD_SCHEMA
        assert ingest.handle(topic, packed) is Outcome.STORED  # and the seat carries on
        assert store.seqs(SITE, SEAT) == [1, 2, 3]
        assert store.rejected() == {"oversized": 1, "bad_json": 3, "bad_schema": 1}
        # plain JSON with leading whitespace is still plain JSON, not mistaken for zlib
        assert decode_payload(b' \n{"a": 1}') == ' \n{"a": 1}'
    finally:
        store.close()


def test_station_compresses_only_for_a_hub_that_reads_zlib(
    tmp_path: Path,
    mosquitto: Mosquitto,  # noqa: F811
    hub: Ingest,
) -> None:
    wire: list[bytes] = []
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="wire-watcher")
    watcher.on_message = lambda c, u, m: wire.append(bytes(m.payload))
    watcher.connect("127.0.0.1", mosquitto.port)
    watcher.subscribe(event_topic(SITE, SEAT), qos=1)
    watcher.loop_start()
    try:
        with Outbox(tmp_path / "ob.sqlite") as ob:
            with Publisher(ob, site=SITE, seat=SEAT, broker=BrokerConfig.from_url(mosquitto.url)) as pub:
                assert pub.encoding is None  # nothing heard from the hub yet: plain JSON
                ob.put_many(events(50, call_id="c1"))
                pub.notify()
                assert pub.drain(20), mosquitto.log_tail()
                assert pub.encoding == ZLIB  # the hub's ack listed it
                ob.put_many(events(50, call_id="c2"))
                pub.notify()
                assert pub.drain(20), mosquitto.log_tail()
                # a hub that does not list zlib (an older one) gets plain JSON again
                watcher.publish(
                    ack_topic(SITE, SEAT), json.dumps({"seq": 100, "epoch": ob.epoch}), qos=1, retain=True
                ).wait_for_publish(5)
                assert wait_until(lambda: pub.encoding is None, 10)
        assert wait_until(lambda: len(wire) >= 100, 10)
    finally:
        watcher.disconnect()
        watcher.loop_stop()
    assert_exactly_once(hub.store, 100)
    assert wire[0][:1] == b"{" and wire[-1][:1] != b"{"  # JSON before the first ack, zlib after it
    texts = [decode_payload(p) for p in wire]
    assert sorted({json.loads(t)["seq"] for t in texts}) == list(range(1, 101))
    packed = [p for p in wire if p[:1] != b"{"]
    assert all(len(p) < len(decode_payload(p).encode()) for p in packed)  # even a ~200-byte speech event shrinks
