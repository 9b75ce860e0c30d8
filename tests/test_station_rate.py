"""The station analyses with the speech weights for the rate its headset captures at, on a real audio stack.

A line captured below 16 kHz has no upper band, which the wideband weights take for silence (customer F1 0.0 on
a real 8 kHz call); `edge-agent analyze` picks the narrowband weights for such files (`vad.config_for_rate`),
and so must the station, for the rate the device opened at: known only once it is open, so chosen between calls.
The private PulseAudio server and its ALSA devices are tests/audio_stack.py's (through tests/test_capture.py's
`stack` fixture); the broker is unreachable on purpose: nothing here needs events delivered.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from edge_agent.commands import CallEnd, CallStart
from firmware_py import config as station_config
from firmware_py.capture import Capture, CaptureConfig
from firmware_py.lifecycle import State
from firmware_py.runtime import Station
from tests.audio_stack import PulseStack
from tests.test_capture import HEADSET, stack  # noqa: F401 - the fixture
from tests.test_station import doc
from tests.test_transport import wait_until

WIDE, NARROW = "speech-mlp-v4", "speech-mlp-v3-narrowband"


def line_noise(path: Path, seconds: float = 6.0) -> Path:
    """Quiet line noise at 48 kHz for the null sink: audio flows, nobody speaks (no automatic call)."""
    rng = np.random.default_rng(3)
    sf.write(path, 0.001 * rng.standard_normal((int(seconds * 48000), 2)).astype(np.float32), 48000, subtype="FLOAT")
    return path


def station_at(tmp_path: Path, rate: int) -> tuple[Station, Capture]:
    d = doc(tmp_path, "mqtt://127.0.0.1:1", local_api={"enabled": False}, lifecycle={"auto": False})
    cfg = station_config.validate(d, "test")
    cap = Capture(CaptureConfig(device=HEADSET, samplerate=rate))
    return Station(cfg, base_doc=d, source=cap), cap


def weights(station: Station) -> str:
    """The card of the speech model the station's pipeline actually runs, and what health reports for it."""
    model: Any = getattr(station.lifecycle.pipeline.backend, "model", None)
    assert model is not None
    assert station.health()["models"]["activity"]["name"] == model.card.name
    return str(model.card.name)


def test_8_khz_capture_switches_to_narrowband_between_calls(
    stack: PulseStack,  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="firmware_py.runtime")
    stack.play(line_noise(tmp_path / "noise.wav"))
    station, cap = station_at(tmp_path, 8000)
    assert weights(station) == WIDE  # nothing known before the device opens: as configured
    # queued before the first block: the call is running when the 8 kHz audio arrives, and keeps its weights
    started = station.submit(CallStart(call_id="c1"), "local")
    station.start()
    try:
        assert started.result(10) is None
        assert wait_until(lambda: station.blocks >= 5 and cap.stats.device_rate == 8000, 15), cap.stats
        assert station.lifecycle.state is State.IN_CALL and weights(station) == WIDE
        assert station.submit(CallEnd(call_id="c1"), "local").result(10) is None
        assert wait_until(lambda: station.models["activity"].name == NARROW, 10), station.models
        assert weights(station) == NARROW
        health = station.health()
        assert health["analysis_rate"] == 8000 and health["calls"] == 1  # the rebuild keeps the call count
        blocks = station.blocks
        assert wait_until(lambda: station.blocks > blocks + 3, 10)  # and goes on analysing
    finally:
        station.stop(drain_s=0)
    said = [r.getMessage() for r in caplog.records if "speech weights" in r.getMessage()]
    assert said == [f"speech weights {NARROW} for 8000 Hz capture (were {WIDE})"], said


def test_48_khz_capture_keeps_wideband(stack: PulseStack, tmp_path: Path) -> None:  # noqa: F811
    stack.play(line_noise(tmp_path / "noise.wav"))
    station, cap = station_at(tmp_path, 48000)
    station.start()
    try:
        assert wait_until(lambda: station.rate == 48000 and station.blocks >= 5, 15), cap.stats
        assert weights(station) == WIDE and station.lifecycle.state is State.IDLE
        assert station.health()["analysis_rate"] == 48000
    finally:
        station.stop(drain_s=0)
