"""Summary metrics on signals whose answer is known (arithmetic), and on real speech."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.audio import FRAME, SAMPLE_RATE
from edge_agent.config import MetricsConfig
from edge_agent.metrics import CallMetrics, LevelHistogram, PitchTracker, SyllableCounter


def test_histogram_quantiles_and_power_mean() -> None:
    h = LevelHistogram()
    h.add(np.array([-30.0] * 50 + [-20.0] * 50, np.float32))
    assert h.quantile(0.25) == -30 and h.quantile(0.9) == -20
    assert h.power_mean_db() == pytest.approx(10 * np.log10((1e-3 + 1e-2) / 2), abs=0.01)


@pytest.mark.parametrize("f0", [110.0, 220.0])
def test_pitch_of_a_harmonic_tone(f0: float) -> None:
    t = np.arange(SAMPLE_RATE * 2) / SAMPLE_RATE
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)).astype(np.float32) * 0.1
    p = PitchTracker()
    n = len(x) // FRAME
    for i in range(0, n, 37):  # odd block size: the tail must carry across blocks
        k = min(37, n - i)
        p.process(x[i * FRAME : (i + k) * FRAME], np.ones(k, bool))
    s = p.summary()
    assert s["pitch_median_hz"] == pytest.approx(f0, rel=0.03)
    assert s["pitch_variability_st"] < 0.5


def test_syllable_rate_of_a_modulated_level() -> None:
    # 4 Hz level modulation of 12 dB for 10 s inside speech: 40 syllable-like peaks
    t = np.arange(1000) / 100
    level = (-30 + 6 * np.sin(2 * np.pi * 4 * t)).astype(np.float32)
    c = SyllableCounter()
    for i in range(0, 1000, 64):
        c.process(level[i : i + 64], np.ones(len(level[i : i + 64]), bool))
    assert 36 <= c.peaks <= 41


def test_latency_monologue_and_talk_time() -> None:
    m = CallMetrics(MetricsConfig(), dead_air_s=3.0)
    act = np.zeros((2000, 2), bool)
    act[0:300, 1] = True  # customer 0-3 s
    act[350:1200, 0] = True  # agent answers after 0.5 s, talks 8.5 s
    act[600:650, 1] = True  # a 0.5 s customer backchannel does not end the monologue
    act[1400:1600, 1] = True  # customer 14-16 s
    act[1700:1800, 0] = True  # agent answers after 1.0 s
    level = np.full((2000, 2), -30.0, np.float32)
    m.process(act, level, np.zeros((2000 * FRAME, 2), np.float32))
    s = m.summary()
    assert s["agent_response_latency_mean"] == pytest.approx(0.75)
    assert s["longest_agent_monologue"] == pytest.approx(8.5)
    assert s["agent"]["talk_time"] == pytest.approx(9.5)
    assert s["overlap_time"] == pytest.approx(0.5)
    assert s["customer"]["talk_ratio"] == pytest.approx(5.5 / 15.0, abs=1e-3)
