"""Signed model and config updates: verification, the store's swap and rollback, and the station end to end.

Real parts throughout: Ed25519 keys made by `qa-hub update keygen`, the shipped emotion model (and a copy of it
with one protobuf field appended, so it is a different, loadable file), onnxruntime loading it, a crash in a
real subprocess, a real Mosquitto, and a station analysing real speech.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.commands import ConfigUpdate, UpdateCommand, cmd_topic
from edge_agent.config import EmotionConfig
from edge_agent.emotion_features import N_INPUTS, WINDOW_FRAMES
from edge_agent.emotion_model import shipped_dir
from edge_agent.update_store import Installed, RolledBack, UpdateStore, load_emotion
from edge_agent.updates import UpdateError, UpdateManifest, load_public_keys, sign, verify
from firmware_py.runtime import load_with_remote
from firmware_py.sources import FileSource
from hub.updates import keygen, load_private_key
from tests.broker import Mosquitto, mosquitto, site_password  # noqa: F401 - the fixture
from tests.conftest import ROOT
from tests.test_broker_security import Client as TlsClient
from tests.test_broker_security import broker, site  # noqa: F401 - fixtures
from tests.test_station import SEAT, SITE, by_type, desk_audio, doc, hub, station_for  # noqa: F401 - fixtures
from tests.test_transport import wait_until
from tests.test_transport_faults import Watcher

SHIPPED = shipped_dir() / "emotion-v1.onnx"
GARBAGE = bytes(range(256)) * 40  # validly signed, not a model


def v2_model() -> bytes:
    """The shipped model with a doc_string (ModelProto field 6) appended: still a valid ONNX file (a later
    protobuf field overrides an earlier one), but different bytes, so a different hash."""
    note = b"callqa update test v2"
    return SHIPPED.read_bytes() + bytes([6 << 3 | 2, len(note)]) + note


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    priv, pub, _ = keygen(tmp_path_factory.mktemp("keys"))
    return priv, pub


def command(m: UpdateManifest, payload: bytes) -> UpdateCommand:
    return UpdateCommand(id="u1", manifest=m, payload=base64.b64encode(payload).decode())


def loads(root: Path) -> bool:
    """The current emotion model under `root` loads with the real loader and scores."""
    model = load_emotion(Installed(*_current(root)), EmotionConfig())
    probs = model.predict(np.zeros((2, WINDOW_FRAMES, N_INPUTS), np.float32))
    return probs.shape == (2, 4) and bool(np.allclose(probs.sum(axis=1), 1, atol=1e-4))


def _current(root: Path) -> tuple[UpdateManifest, Path]:
    inst = UpdateStore(root).current("model", "emotion")
    assert inst is not None
    return inst.manifest, inst.path


# --- verify ---------------------------------------------------------------------------------------------------


def test_verify_refuses_tampering_wrong_and_unknown_keys(keys: tuple[Path, Path]) -> None:
    priv, pub = keys
    key, public = load_private_key(priv), load_public_keys([str(pub)])
    data = SHIPPED.read_bytes()
    m = sign("model", "emotion", "2", data, key)
    verify(m, data, public, max_bytes=len(data))
    # the signature covers fields, not JSON: reformatted and reordered on the wire, it still verifies
    wire = json.dumps(dict(reversed(list(m.model_dump().items()))), indent=4)
    verify(UpdateManifest.model_validate_json(wire), data, public)

    tampered = bytearray(data)
    tampered[1000] ^= 1
    with pytest.raises(UpdateError, match=r"payload sha256 \w+ does not match"):
        verify(m, bytes(tampered), public)
    with pytest.raises(UpdateError, match=f"payload is {len(data) - 1} bytes"):
        verify(m, data[:-1], public)
    for field, value in (("version", "9"), ("kind", "config"), ("sha256", "0" * 64), ("size", 1)):
        with pytest.raises(UpdateError, match="bad signature"):
            verify(m.model_copy(update={field: value}), data, public)
    other = Ed25519PrivateKey.generate()
    by_other = sign("model", "emotion", "2", data, other)
    with pytest.raises(UpdateError, match=f"unknown key {by_other.key_id}"):
        verify(by_other, data, public)
    with pytest.raises(UpdateError, match="bad signature"):  # another key posing under the known key's id
        verify(by_other.model_copy(update={"key_id": m.key_id}), data, public)
    with pytest.raises(UpdateError, match="exceed the limit of 1000"):
        verify(m, data, public, max_bytes=1000)
    # the public key is accepted as base64 text, as the file keygen wrote, or as PEM
    text = pub.read_text().strip()
    assert set(load_public_keys([text])) == set(public) == {m.key_id}
    with pytest.raises(UpdateError, match="not a readable file"):
        load_public_keys(["/nonexistent/key.pub"])


# --- the store ------------------------------------------------------------------------------------------------


def test_store_swaps_atomically_refuses_replays_and_rolls_back(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    key, public = load_private_key(keys[0]), load_public_keys([str(keys[1])])
    store = UpdateStore(tmp_path / "updates")
    load = lambda inst: load_emotion(inst, EmotionConfig())  # noqa: E731
    shipped, v2 = SHIPPED.read_bytes(), v2_model()
    m1, m2 = sign("model", "emotion", "1.9", shipped, key), sign("model", "emotion", "1.10", v2, key)
    assert store.apply(m1, shipped, public, load) is not None
    model = store.apply(m2, v2, public, load)  # 1.10 is newer than 1.9: versions compare as numbers
    assert model is not None and model.card.name == "emotion-v1.10"
    assert model.card.sha256 == hashlib.sha256(v2).hexdigest() != m1.sha256
    cur, prev = store.current("model", "emotion"), store.previous("model", "emotion")
    assert cur is not None and prev is not None and (cur.manifest, prev.manifest) == (m2, m1)
    assert cur.path.read_bytes() == v2 and prev.path.read_bytes() == shipped

    # replays: the one in use again is a no-op; an older one (validly signed) is refused, nothing changes
    assert store.apply(m2, v2, public, load) is None
    with pytest.raises(UpdateError, match=r"not newer than the current 1\.10"):
        store.apply(m1, shipped, public, load)
    with pytest.raises(UpdateError, match="not newer"):
        store.apply(sign("model", "emotion", "1.10", shipped, key), shipped, public, load)
    assert store.current("model", "emotion").manifest == m2  # type: ignore[union-attr]

    # validly signed garbage: swapped in, fails to load, rolled back; the old model stays in use and loadable
    bad = sign("model", "emotion", "2", GARBAGE, key)
    with pytest.raises(
        RolledBack, match=r"failed to load \(\w+\.onnx: onnxruntime cannot load it.*rolled back to 1\.10$"
    ):
        store.apply(bad, GARBAGE, public, load)
    assert _current(tmp_path / "updates")[0] == m2 and loads(tmp_path / "updates")
    assert not list((tmp_path / "updates" / "model" / "emotion").glob(f"{bad.sha256}*"))  # removed


CRASH = """
import os, sys
from pathlib import Path
from edge_agent.update_store import UpdateStore
from edge_agent.updates import UpdateManifest
root, manifest, payload = Path(sys.argv[1]), UpdateManifest.model_validate_json(sys.argv[2]), Path(sys.argv[3])
store = UpdateStore(root)
store.stage(manifest, payload.read_bytes())  # the new payload is down, fsynced
# and another write torn half way (what a power cut mid-write leaves)
(root / "model" / "emotion" / ".tmp-current.json.abc").write_text('{"manifest": {"kind": "mo')
os._exit(9)  # the crash: before swap()
"""


def test_a_crash_between_write_and_swap_leaves_current_intact(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    key, public = load_private_key(keys[0]), load_public_keys([str(keys[1])])
    root = tmp_path / "updates"
    v1 = sign("model", "emotion", "1", SHIPPED.read_bytes(), key)
    UpdateStore(root).apply(v1, SHIPPED.read_bytes(), public, lambda i: load_emotion(i, EmotionConfig()))
    (tmp_path / "v2.onnx").write_bytes(v2_model())
    v2 = sign("model", "emotion", "2", v2_model(), key)
    res = subprocess.run(
        [sys.executable, "-c", CRASH, str(root), v2.model_dump_json(), str(tmp_path / "v2.onnx")], cwd=ROOT
    )
    assert res.returncode == 9
    assert (root / "model" / "emotion" / f"{v2.sha256}.onnx").exists()  # written, never pointed at
    store = UpdateStore(root)  # the restart
    assert _current(root)[0] == v1 and loads(root)
    assert not list(root.glob("*/*/.tmp-*"))  # the torn write is cleaned up
    assert (
        store.apply(v2, v2_model(), public, lambda i: load_emotion(i, EmotionConfig())) is not None
    )  # and v2 can follow


# --- the station ----------------------------------------------------------------------------------------------


def test_station_config_updates_and_no_keys(
    tmp_path: Path,
    keys: tuple[Path, Path],
    desk_audio: tuple[Path, float],  # noqa: F811
) -> None:
    """Config updates go through the station's own remote-config validation; without keys nothing is taken."""
    desk, _ = desk_audio
    key = load_private_key(keys[0])
    bare = station_for(doc(tmp_path / "a", "mqtt://127.0.0.1:1", local_api={"enabled": False}), desk)
    good = b"lifecycle:\n  end_silence_s: 42\n"
    error = bare._execute(command(sign("config", "station", "1", good, key), good), "mqtt")
    assert error is not None and "no updates.public_keys" in error and bare.updates.refused == 1
    error = bare._execute(ConfigUpdate(config={"lifecycle": {"end_silence_s": 42}}), "mqtt")  # unsigned
    assert error is not None and "unsigned" in error and bare.updates.unsigned_config_refused == 1
    assert bare.cfg.lifecycle.end_silence_s != 42
    bare.stop(drain_s=0)

    d = doc(tmp_path, "mqtt://127.0.0.1:1", local_api={"enabled": False}, updates={"public_keys": [str(keys[1])]})
    station = station_for(d, desk)
    assert station._execute(command(sign("config", "station", "1", good, key), good), "mqtt") is None
    assert station.cfg.lifecycle.end_silence_s == 42 and station.lifecycle.cfg.end_silence_s == 42
    bad = b"lifecycle:\n  end_silence_s: soon\n"
    error = station._execute(command(sign("config", "station", "2", bad, key), bad), "mqtt")
    assert error is not None and "lifecycle.end_silence_s" in error and "rolled back to 1" in error
    health = station.health()["updates"]
    assert health["current"]["config/station"]["version"] == "1" and health["rolled_back"] == 1
    local = b"mqtt:\n  broker: mqtt://elsewhere:1883\n"  # signed, but not a section remote config may change
    error = station._execute(command(sign("config", "station", "3", local, key), local), "mqtt")
    assert error is not None and "mqtt cannot be changed remotely" in error
    station.stop(drain_s=0)

    (tmp_path / "station.yaml").write_text(json.dumps(d))
    assert load_with_remote(tmp_path / "station.yaml")[0].lifecycle.end_silence_s == 42  # persisted


def test_a_signed_config_changes_only_the_keys_it_names(
    tmp_path: Path,
    keys: tuple[Path, Path],
    desk_audio: tuple[Path, float],  # noqa: F811
) -> None:
    """The hub's tone page sends `analyzer.emotion.anger_alert` alone: the seat's own analyzer settings stay, and
    so do earlier remote values; a section of another `type` replaces the local one whole."""
    desk, _ = desk_audio
    key = load_private_key(keys[0])
    local = {"dead_air": {"min_silence_s": 7.5}, "emotion": {"enabled": True, "min_speech_s": 2.5}}
    d = doc(
        tmp_path,
        "mqtt://127.0.0.1:1",
        local_api={"enabled": False},
        updates={"public_keys": [str(keys[1])]},
        analyzer=local,
    )
    station = station_for(d, desk)
    try:
        alert = b"analyzer:\n  emotion:\n    anger_alert: 0.73\n"
        assert station._execute(command(sign("config", "station", "1", alert, key), alert), "mqtt") is None
        a = station.cfg.analyzer
        assert a.emotion.anger_alert == 0.73 and a.emotion.min_speech_s == 2.5 and a.dead_air.min_silence_s == 7.5
        vad = b"analyzer:\n  vad:\n    type: webrtc\n"
        assert station._execute(command(sign("config", "station", "2", vad, key), vad), "mqtt") is None
        a = station.cfg.analyzer
        assert a.vad.type == "webrtc" and a.emotion.anger_alert == 0.73 and a.dead_air.min_silence_s == 7.5
    finally:
        station.stop(drain_s=0)
    (tmp_path / "station.yaml").write_text(json.dumps(d))
    restarted = load_with_remote(tmp_path / "station.yaml")[0].analyzer  # the same merge from the saved file
    assert restarted.emotion.anger_alert == 0.73 and restarted.dead_air.min_silence_s == 7.5
    assert restarted.vad.type == "webrtc"


def hub_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, cwd=ROOT)


def test_model_update_end_to_end(
    tmp_path: Path,
    mosquitto: Mosquitto,  # noqa: F811
    hub: Any,  # noqa: F811
    desk_audio: tuple[Path, float],  # noqa: F811
) -> None:
    """The hub CLI signs and publishes; the station applies a real model and reports it, rolls a corrupt one
    back and keeps analysing with the model it had, refuses a forged one, and comes back up with the update."""
    desk, _ = desk_audio
    res = hub_cli("update", "keygen", "--out", str(tmp_path / "keys"))
    assert res.returncode == 0, res.stderr
    priv, pub = tmp_path / "keys" / "update-signing.key", tmp_path / "keys" / "update-signing.pub"
    assert priv.stat().st_mode & 0o077 == 0
    assert hub_cli("update", "keygen", "--out", str(tmp_path / "keys")).returncode == 2  # never overwritten
    (tmp_path / "v2.onnx").write_bytes(v2_model())
    (tmp_path / "v3.onnx").write_bytes(GARBAGE)
    sha2 = hashlib.sha256(v2_model()).hexdigest()

    d = doc(
        tmp_path,
        mosquitto.url,
        lifecycle={"auto": False},
        source={"realtime": True, "loop": True},
        local_api={"enabled": False},
        updates={"public_keys": [str(pub)]},
    )
    station = station_for(d, desk)
    station.source = FileSource(desk, realtime=True, loop=True)
    base = f"qa/v1/{SITE}/{SEAT}"
    watcher = Watcher(mosquitto.port, f"{base}/cmd_result", f"{base}/status/health")

    def health() -> dict[str, Any]:
        return json.loads(watcher.last(f"{base}/status/health") or "{}")

    def results() -> list[dict[str, Any]]:
        return [json.loads(p) for t, p in watcher.seen if t.endswith("/cmd_result")]

    publish = ["update", "publish", "--kind", "model", "--name", "emotion", "--key", str(priv), "--site", SITE]
    publish += ["--broker", mosquitto.url]
    bad = hub_cli(*publish, "--version", "two", "--file", str(tmp_path / "v2.onnx"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "version" in bad.stderr  # one line, no traceback
    station.start()
    try:
        assert wait_until(lambda: station.publisher.connected, 10)
        # (1) a real model to this seat: applied, health names it
        res = hub_cli(*publish, "--version", "2", "--file", str(tmp_path / "v2.onnx"), "--seat", SEAT, "--wait", "20")
        assert res.returncode == 0, res.stdout + res.stderr
        assert json.loads(res.stdout.splitlines()[-1])["ok"] is True
        assert wait_until(lambda: health().get("models", {}).get("emotion", {}).get("sha256") == sha2, 10)
        assert health()["models"]["emotion"]["name"] == "emotion-v2"
        assert health()["updates"]["current"]["model/emotion"] == {"version": "2", "sha256": sha2}

        # (2) validly signed garbage to the whole site (retained): rolled back, v2 stays
        res = hub_cli(*publish, "--version", "3", "--file", str(tmp_path / "v3.onnx"))
        assert res.returncode == 0 and "(retained)" in res.stdout, res.stdout + res.stderr
        assert wait_until(lambda: any(not r["ok"] and "rolled back to 2" in r["error"] for r in results()), 10)
        assert station.updates.rolled_back == 1 and station.models["emotion"].sha256 == sha2

        # (3) a forged one: the manifest's version changed after signing
        body = json.loads(_signed_body(priv, v2_model(), "4"))  # a genuine signature over version 4 ...
        body["manifest"]["version"] = "5"  # ... claimed as 5
        body["id"] = "forged"
        _publish(mosquitto.port, cmd_topic(SITE, SEAT, "update"), json.dumps(body))
        assert wait_until(lambda: any(r["id"] == "forged" for r in results()), 10)
        forged = next(r for r in results() if r["id"] == "forged")
        assert forged["ok"] is False and "bad signature" in forged["error"]
        assert wait_until(lambda: health().get("updates", {}).get("refused") == 1, 10)
        assert health()["models"]["emotion"]["sha256"] == sha2

        # the station keeps analysing, with v2: a call's summary names it
        _publish(mosquitto.port, cmd_topic(SITE, SEAT, "call_start"), json.dumps({"call_id": "CTI-UPD"}))
        assert wait_until(lambda: station.lifecycle.call is not None, 10)
        time.sleep(3.0)
        _publish(mosquitto.port, cmd_topic(SITE, SEAT, "call_end"), "{}")
        assert wait_until(lambda: station.lifecycle.call is None, 10)
        assert station.publisher.drain(20)
    finally:
        station.stop()
        watcher.close()
    summary = by_type(hub.store.payloads(), "call_summary")
    assert [s["call_id"] for s in summary] == ["CTI-UPD"]
    assert summary[0]["emotion"]["model"] == f"emotion-v2:{sha2[:8]}"
    # a restart comes up with the update in use
    again = station_for(d, desk)
    assert again.models["emotion"].sha256 == sha2
    again.stop(drain_s=0)


def _signed_body(priv: Path, payload: bytes, version: str) -> str:
    m = sign("model", "emotion", version, payload, load_private_key(priv))
    return json.dumps({"manifest": m.model_dump(), "payload": base64.b64encode(payload).decode()})


def _publish(port: int, topic: str, payload: str) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{time.monotonic_ns()}")
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish(topic, payload, qos=1).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


def test_config_is_taken_only_signed_through_the_production_broker(
    tmp_path: Path,
    broker: Mosquitto,  # noqa: F811
    site: Path,  # noqa: F811
    keys: tuple[Path, Path],
    desk_audio: tuple[Path, float],  # noqa: F811
) -> None:
    """The issue's attack on the shipped broker config: the `cti` (and the `hub`) credentials send the station an
    unsigned `cmd/config` turning emotion off, dead air to 120 s and automatic calls off. A station (with update
    keys) refuses it with a one-line error and counts it; the CTI's call start/end, login/logout and privacy
    still work; the same document signed by the admin (`qa-hub update publish --kind config` as `hub-admin`) is
    taken."""
    desk, _ = desk_audio
    seat, lon = "desk-1", "lon"
    mqtt_cfg = {
        "broker": f"mqtts://127.0.0.1:{broker.port}",
        "username": seat,
        "password": site_password(site, seat),
        "ca_certs": str(site / "ca.crt"),
    }
    d = doc(tmp_path, "unused", mqtt=mqtt_cfg, local_api={"enabled": False}, updates={"public_keys": [str(keys[1])]})
    d["station"] |= {"site": lon, "seat": seat}
    d["source"] |= {"realtime": True, "loop": True}
    station = station_for(d, desk)
    station.source = FileSource(desk, realtime=True, loop=True)
    base = f"qa/v1/{lon}/{seat}"
    cti, hub_user = TlsClient(broker, site, "cti"), TlsClient(broker, site, "hub")
    cti.sub(f"{base}/cmd_result")
    hostile = {
        "analyzer": {"emotion": {"enabled": False}, "dead_air": {"min_silence_s": 120}},
        "lifecycle": {"auto": False},
    }

    def result(cmd_id: str) -> dict[str, Any] | None:
        return next((r for r in (json.loads(p) for _, p in cti.got) if r["id"] == cmd_id), None)

    def send(client: TlsClient, name: str, body: dict[str, Any]) -> dict[str, Any]:
        client.pub(f"{base}/cmd/{name}", json.dumps(body))
        assert wait_until(lambda: result(body["id"]) is not None, 10), broker.log_tail()
        r = result(body["id"])
        assert r is not None
        return r

    station.start()
    try:
        assert wait_until(lambda: station.publisher.connected, 10), broker.log_tail()
        time.sleep(0.3)  # subscribed
        for who, client in (("cti", cti), ("hub", hub_user)):
            r = send(client, "config", {"id": f"cfg-{who}", "config": hostile})
            assert r["ok"] is False and "unsigned" in r["error"] and "\n" not in r["error"]
        assert station.cfg.analyzer.emotion.enabled and station.cfg.lifecycle.auto
        assert station.cfg.analyzer.dead_air.min_silence_s != 120
        assert station.updates.unsigned_config_refused == 2 and station.publisher.commands_rejected == 0
        # what the CTI must still do: unsigned and honoured
        for name, body in (
            ("login", {"agent_id": "a7"}),
            ("privacy", {"on": True}),
            ("privacy", {"on": False}),
            ("call_start", {"call_id": "CTI-CFG"}),
            ("call_end", {"call_id": "CTI-CFG"}),
            ("logout", {}),
        ):
            r = send(cti, name, {"id": f"{name}-{body.get('on', '')}", **body})
            assert r["ok"] is True, r
        assert station.lifecycle.calls_started == 1 and station.lifecycle.agent_id is None
        # signed by the admin's key and published with the admin's broker user: taken
        (tmp_path / "cfg.yaml").write_text(json.dumps({"lifecycle": {"auto": False, "end_silence_s": 42}}))
        res = subprocess.run(
            [sys.executable, "-m", "hub.cli", "update", "publish", "--kind", "config", "--name", "station",
             "--version", "1", "--file", str(tmp_path / "cfg.yaml"), "--key", str(keys[0]), "--site", lon,
             "--seat", seat, "--broker", f"mqtts://hub-admin@127.0.0.1:{broker.port}",
             "--ca-certs", str(site / "ca.crt"), "--wait", "20"],
            capture_output=True, text=True, cwd=ROOT,
            env={**os.environ, "EDGE_AGENT_MQTT_PASSWORD": site_password(site, "hub-admin")},
        )  # fmt: skip
        assert res.returncode == 0, res.stdout + res.stderr
        assert json.loads(res.stdout.splitlines()[-1])["ok"] is True
        assert wait_until(lambda: station.cfg.lifecycle.end_silence_s == 42, 10)
        # as the hub's own ingest user it is refused before connecting: the broker makes the user the client id,
        # so it would disconnect the running hub and discard its persistent session
        hub_pw = site_password(site, "hub")
        refused = subprocess.run(
            [sys.executable, "-m", "hub.cli", "update", "publish", "--kind", "config", "--name", "station",
             "--version", "2", "--file", str(tmp_path / "cfg.yaml"), "--key", str(keys[0]), "--site", lon,
             "--seat", seat, "--broker", f"mqtts://hub@127.0.0.1:{broker.port}", "--ca-certs", str(site / "ca.crt")],
            capture_output=True, text=True, cwd=ROOT, env={**os.environ, "EDGE_AGENT_MQTT_PASSWORD": hub_pw},
        )  # fmt: skip
        assert refused.returncode == 2 and "hub-admin" in refused.stderr and "Traceback" not in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert not station.cfg.lifecycle.auto and station.updates.applied == 1
    finally:
        station.stop()
        cti.close()
        hub_user.close()
