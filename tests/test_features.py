"""Feature stage: mel energies, noise floor and leakage on signals whose truth is known."""

from __future__ import annotations

import numpy as np

from edge_agent.audio import FRAME
from edge_agent.crosstalk import LeakageEstimator
from edge_agent.features import N_FEATURES, N_MELS, CallFeatures, LogMel, NoiseFloor, mel_filterbank


def test_filterbank_covers_the_band_once() -> None:
    fb = mel_filterbank()
    assert fb.shape == (257, N_MELS)
    np.testing.assert_allclose(fb.sum(axis=0), 1.0, rtol=1e-5)


def test_frame_level_is_dbfs_of_the_hop() -> None:
    x = np.full(FRAME * 10, 0.1, np.float32)
    _, level, _ = LogMel().process(x)
    np.testing.assert_allclose(level, 20 * np.log10(0.1), atol=0.01)


def test_in_band_level_reads_white_noise_as_dbfs_and_ignores_what_is_above_the_band() -> None:
    rng = np.random.default_rng(1)
    noise = (rng.standard_normal(FRAME * 200) * 0.05).astype(np.float32)
    _, level, band = LogMel().process(noise)
    # white noise: the in-band level reads the noise's own dBFS (past the first window's ramp-in)
    np.testing.assert_allclose(band[5:].mean(), level[5:].mean(), atol=1.0)
    # a 7.9 kHz tone is above the model's band: loud on the frame level, near silent in band
    t = np.arange(FRAME * 50) / 16000
    _, level, band = LogMel().process((0.3 * np.sin(2 * np.pi * 7900 * t)).astype(np.float32))
    assert level[5:].mean() > -15 and band[5:].mean() < level[5:].mean() - 40


def test_noise_floor_ignores_speech_bursts_and_follows_the_noise() -> None:
    rng = np.random.default_rng(0)
    noise_db = -60 + rng.normal(0, 1, (1000, N_MELS)).astype(np.float32)
    bursts = noise_db.copy()
    for s in range(100, 1000, 200):
        bursts[s : s + 80] += 30  # 0.8 s "speech" every 2 s
    floor = NoiseFloor(N_MELS).process(bursts)
    assert np.all(np.abs(floor[300:] + 60) < 4)


def test_streaming_is_independent_of_block_size() -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((FRAME * 700, 2)) * 0.05).astype(np.float32)
    x[FRAME * 200 : FRAME * 400, 0] *= 8
    whole = CallFeatures().process(x)[0]
    cf = CallFeatures()
    parts = [cf.process(x[i : i + FRAME * 7])[0] for i in range(0, len(x), FRAME * 7)]
    pieces = np.concatenate(parts)
    assert whole.shape == (700, N_FEATURES)
    np.testing.assert_allclose(whole, pieces, atol=1e-4)


def test_leakage_gain_is_learned_and_own_speech_stands_out() -> None:
    """Target = a -20 dB copy of the reference delayed 20 ms, plus its own bursts.

    The gain settles near -20 dB (a little under: against the loudest of the last 40 ms, rising
    syllables read lower), leakage alone gives no excess and the target's own bursts stand out.
    """
    n = 3000
    t = np.arange(n + 2) / 100
    envelope = -30 + 12 * np.sin(2 * np.pi * 4 * t)  # 4 Hz syllable rhythm
    ref = np.repeat(envelope[2:, None], N_MELS, axis=1).astype(np.float32)
    target = np.repeat(envelope[:-2, None] - 20.0, N_MELS, axis=1).astype(np.float32)
    own = np.zeros(n, bool)
    own[2500:2600] = True
    target[own] = -20.0
    est = LeakageEstimator(N_MELS)
    excess = est.process(target, ref, np.full((n, N_MELS), 30.0, np.float32))
    assert -26.0 < est.gain_db.mean() <= -19.0
    assert np.median(excess[2000:2500]) < 3.0
    assert np.median(excess[own]) > 8.0
