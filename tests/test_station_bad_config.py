"""A signed remote config naming speech or Silero weights that do not load is refused when checked, not applied.

Before: `_check_remote` only validated the document, so the station saved it and then failed to build the new
pipeline (ModelError, SileroError) on the analysis thread, and again at every restart from the saved file. Now the
check builds the pipelines the config makes (wideband, and narrowband for an 8 kHz headset) before anything is
taken. Real parts: Ed25519-signed updates through the station's command queue and update store, the real model
loaders, a running station reading a file source; the broker is unreachable on purpose (no delivery needed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from edge_agent.speech_model import ModelError
from edge_agent.updates import sign
from firmware_py import config as station_config
from firmware_py.runtime import REMOTE_FILE, Station
from firmware_py.sources import FileSource
from hub.updates import load_private_key
from tests.test_station import doc
from tests.test_transport import wait_until
from tests.test_updates import command, keys  # noqa: F401 - the fixture

WIDE = "speech-mlp-v4"


def seat_noise(path: Path) -> Path:
    rng = np.random.default_rng(5)
    sf.write(path, 0.001 * rng.standard_normal((3 * 16000, 2)).astype(np.float32), 16000, subtype="FLOAT")
    return path


@pytest.fixture
def station(tmp_path: Path, keys: tuple[Path, Path]) -> Station:  # noqa: F811
    d = doc(
        tmp_path,
        "mqtt://127.0.0.1:1",
        local_api={"enabled": False},
        lifecycle={"auto": False},
        updates={"public_keys": [str(keys[1])]},
    )
    cfg = station_config.validate(d, "test")
    return Station(cfg, base_doc=d, source=FileSource(seat_noise(tmp_path / "noise.wav"), loop=True))


def test_config_naming_weights_that_do_not_load_is_refused(
    station: Station,
    tmp_path: Path,
    keys: tuple[Path, Path],  # noqa: F811
) -> None:
    key = load_private_key(keys[0])
    corrupt = tmp_path / "narrow.npz"
    corrupt.write_bytes(b"not an npz" * 10)
    bad = [
        ({"weights": str(tmp_path / "missing.npz")}, "missing.npz: cannot read model weights"),
        # the seat captures at 16 kHz, but an 8 kHz headset plugged in later would load these
        ({"narrowband_weights": str(corrupt)}, "narrow.npz: not a speech-model weights file"),
        ({"silero_onnx": str(tmp_path / "silero.onnx")}, "silero.onnx: no such file"),
    ]
    before = station.cfg
    station.start()
    try:
        assert wait_until(lambda: station.blocks >= 3, 10)
        for version, (vad, words) in enumerate(bad, 1):
            payload = yaml.safe_dump({"analyzer": {"vad": {"type": "model", **vad}}}).encode()
            m = sign("config", "station", str(version), payload, key)
            error = station.submit(command(m, payload), "mqtt").result(10)
            assert error is not None and words in error and "\n" not in error and "rolled back" in error, error
            assert error.startswith(f"update config/station {version}: failed to load ("), error
            assert station._thread is not None and station._thread.is_alive()
        assert station.cfg is before and station.models["activity"].name == WIDE
        health = station.health()["updates"]
        assert health["rolled_back"] == 3 and health["applied"] == 0 and "config/station" not in health["current"]
        assert not (station.cfg.state_dir / REMOTE_FILE).exists()
        blocks = station.blocks
        assert wait_until(lambda: station.blocks > blocks + 3, 10)  # still analysing, with the old config

        # a config whose weights load is still taken, and saved for the next start
        good = yaml.safe_dump({"lifecycle": {"auto": False, "end_silence_s": 42}}).encode()
        m = sign("config", "station", "4", good, key)
        assert station.submit(command(m, good), "mqtt").result(10) is None
        assert station.cfg.lifecycle.end_silence_s == 42 and (station.cfg.state_dir / REMOTE_FILE).exists()
    finally:
        station.stop(drain_s=0)


def test_a_saved_remote_config_that_does_not_load_falls_back_to_the_config_file(tmp_path: Path) -> None:
    """A remote config saved before configs were load-checked (or whose weights were deleted since) must not stop
    the station at every restart: it starts on its own config file and says why."""
    d = doc(tmp_path, "mqtt://127.0.0.1:1", local_api={"enabled": False}, lifecycle={"auto": False})
    base = station_config.validate(d, "test")
    base.state_dir.mkdir(parents=True, exist_ok=True)
    saved = {"analyzer": {"vad": {"type": "model", "weights": str(tmp_path / "gone.npz")}}}
    (base.state_dir / REMOTE_FILE).write_text(yaml.safe_dump(saved))
    merged = station_config.validate({**d, **saved}, "saved")  # what load_with_remote hands the station
    station = Station(merged, base_doc=d, source=FileSource(seat_noise(tmp_path / "noise.wav"), loop=True))
    try:
        assert station.cfg.analyzer.vad == base.analyzer.vad and station.remote_doc == {}
        assert station.models["activity"].name == WIDE
        station.start()
        assert wait_until(lambda: station.blocks >= 3, 10)
    finally:
        station.stop(drain_s=0)
    # without a config file to fall back to, the error is the station's to report, not to hide
    with pytest.raises(ModelError, match=r"gone\.npz"):
        Station(merged, source=FileSource(seat_noise(tmp_path / "noise2.wav"), loop=True))
