"""Input stage: rates, sample formats, channel order, and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edge_agent.audio import FRAME, AudioError, Framer, probe, read_call
from tests.conftest import write_wav


def tone_pair(rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.1 * np.sin(2 * np.pi * 1000 * t)], axis=1).astype(np.float32)


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_any_rate_comes_out_at_16k_with_levels_kept(tmp_path: Path, rate: int) -> None:
    path = write_wav(tmp_path / "x.wav", tone_pair(rate, 2.0), rate, "FLOAT")
    out = np.concatenate(list(read_call(path, block_seconds=0.3)))
    assert abs(len(out) - 32000) <= 2
    mid = out[4000:28000]
    # a sine of peak 0.5 has RMS 0.354; resampling must keep level and channel identity
    assert np.sqrt(np.mean(mid[:, 0] ** 2)) == pytest.approx(0.354, rel=0.02)
    assert np.sqrt(np.mean(mid[:, 1] ** 2)) == pytest.approx(0.0707, rel=0.02)


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT", "ULAW", "ALAW"])
def test_sample_formats(tmp_path: Path, subtype: str) -> None:
    path = write_wav(tmp_path / "x.wav", tone_pair(8000), 8000, subtype)
    assert probe(path).subtype == subtype
    out = np.concatenate(list(read_call(path)))
    assert np.sqrt(np.mean(out[2000:14000, 0] ** 2)) == pytest.approx(0.354, rel=0.05)


def test_agent_channel_swaps_columns(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "x.wav", tone_pair(16000))
    a = np.concatenate(list(read_call(path, agent_channel=0)))
    b = np.concatenate(list(read_call(path, agent_channel=1)))
    np.testing.assert_array_equal(a[:, 0], b[:, 1])


def test_framer_hands_out_whole_frames_only() -> None:
    fr = Framer()
    got = [fr.process(np.ones((n, 2), np.float32)) for n in (100, 100, 250, 30)]
    assert [len(g) for g in got] == [0, FRAME, FRAME, FRAME]  # pending 100, 40, 130, 0 samples


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: write_wav(p, np.zeros(16000, np.float32)), "1 channel"),
        (lambda p: write_wav(p, np.zeros((16000, 3), np.float32)), "3 channel"),
        (lambda p: write_wav(p, np.zeros((0, 2), np.float32)), "no audio"),
        (lambda p: p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk"), "not readable"),
        (lambda p: p, "no such file"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path: Path, make, needle: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError) as err:
        list(read_call(path))
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_truncated_file_fails_cleanly_or_reads_what_is_there(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "x.wav", tone_pair(16000, 3.0))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    try:
        out = np.concatenate(list(read_call(path)))
    except AudioError as exc:
        assert "\n" not in str(exc)
    else:
        assert 0 < len(out) <= 3 * 16000
    assert sf.info(str(path)).channels == 2
