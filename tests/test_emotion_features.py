"""Emotion model input (edge_agent/emotion_features.py): invariants the model relies on, on real speech."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import butter, sosfilt

from edge_agent.emotion_features import (
    N_BANDS,
    N_INPUTS,
    ROW,
    WINDOW_FRAMES,
    EmotionFrontend,
    clip_windows,
    log_mel,
    model_input,
    speech_mask,
)
from tests.conftest import shared_or_skip


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """A real RAVDESS clip (angry, strong intensity), 16 kHz mono."""
    path = shared_or_skip() / "data" / "ravdess" / "Actor_02" / "03-01-05-02-01-01-02.flac"
    x, rate = sf.read(path, dtype="float32")
    assert rate == 16000
    return np.asarray(x, np.float32)


def test_streaming_equals_whole_clip(clip: np.ndarray) -> None:
    keep = speech_mask(clip)
    whole = log_mel(clip, keep)
    fe = EmotionFrontend()
    rng = np.random.default_rng(0)
    parts, pos = [], 0
    n = len(keep)
    while pos < n:  # blocks of 1..37 frames, as live capture would hand them over
        k = min(int(rng.integers(1, 38)), n - pos)
        parts.append(fe.process(clip[pos * 160 : (pos + k) * 160], keep[pos : pos + k]))
        pos += k
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-3)


def test_keep_mask_selects_rows(clip: np.ndarray) -> None:
    every = log_mel(clip)
    keep = speech_mask(clip)
    np.testing.assert_allclose(log_mel(clip, keep), every[keep[: len(every)]], atol=1e-4)
    assert log_mel(clip, np.zeros(len(keep), bool)).shape == (0, ROW)


def test_input_ignores_capture_gain(clip: np.ndarray) -> None:
    keep = speech_mask(clip)
    ref = model_input(clip_windows(log_mel(clip, keep)))
    for gain_db in (-30.0, -6.0):  # downwards: the clip peaks near full scale, and clipping is not a gain
        x = np.clip(clip * np.float32(10 ** (gain_db / 20)), -1, 1)
        got = model_input(clip_windows(log_mel(x, keep)))
        assert got.shape == ref.shape == (got.shape[0], WINDOW_FRAMES, N_INPUTS)
        diff = np.abs(got[..., :N_BANDS] - ref[..., :N_BANDS])  # 0.01 = 0.1 dB
        # only the quietest bands of quiet frames move, where the log floor (-100 dB) starts to count
        assert np.mean(diff < 0.01) > 0.99 and diff.max() < 0.2
        assert np.mean(np.abs(got[..., N_BANDS:] - ref[..., N_BANDS:]) < 1e-3) > 0.97


def test_speech_mask_drops_the_silence_around_speech(clip: np.ndarray) -> None:
    padded = np.concatenate([np.zeros(16000, np.float32), clip, np.zeros(16000, np.float32)])
    padded += np.random.default_rng(1).normal(0, 1e-4, len(padded)).astype(np.float32)
    mask = speech_mask(padded)
    assert not mask[:90].any() and not mask[-90:].any()
    assert 0.5 < mask[100:-100].sum() / 100 < len(clip) / 16000


def test_pitch_of_a_telephone_band_voice() -> None:
    """A 150 Hz harmonic voice through the 300-3400 Hz band (no fundamental left) still reads 150 Hz."""
    t = np.arange(16000) / 16000
    f0 = 150.0
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 20))
    x = sosfilt(butter(6, [300, 3400], btype="bandpass", fs=16000, output="sos"), x).astype(np.float32) * 0.1
    rows = log_mel(x)[10:]
    st, voicing = rows[:, N_BANDS], rows[:, N_BANDS + 1]
    assert np.median(voicing) > 0.8
    hz = 55.0 * 2 ** (np.median(st) / 12)
    assert abs(12 * np.log2(hz / f0)) < 0.5


def test_windows_cover_the_clip() -> None:
    rows = np.random.default_rng(2).normal(size=(237, ROW)).astype(np.float32)
    w = clip_windows(rows)
    assert w.shape == (4, WINDOW_FRAMES, ROW)
    np.testing.assert_array_equal(w[-1], rows[-WINDOW_FRAMES:])
    short = clip_windows(rows[:30])
    assert short.shape == (1, WINDOW_FRAMES, ROW)
    np.testing.assert_array_equal(short[0, 30:60], rows[:30])
    assert clip_windows(rows[:0]).shape[0] == 0
