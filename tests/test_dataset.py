"""Training material: truth frames and the meeting loader (no torch needed)."""

from __future__ import annotations

import numpy as np

from edge_agent.speech_model import N_INPUTS
from models.vad.dataset import load_meetings, mulaw, truth_frames
from tests.conftest import shared_or_skip


def test_truth_frames_from_segments() -> None:
    y = truth_frames({"activity": {"agent": [[0.1, 0.3]], "customer": [[0.2, 0.25]]}}, 40)
    assert y[:, 0].sum() == 20 and y[10, 0] and not y[30, 0]
    assert y[:, 1].sum() == 5 and y[20, 1]


def test_mulaw_round_trip_keeps_the_signal() -> None:
    x = (np.sin(np.linspace(0, 100, 8000)) * 0.3).astype(np.float32)
    y = mulaw(x)
    assert np.max(np.abs(y - x)) < 0.02 and not np.array_equal(x, y)


def test_meetings_become_two_sided_material() -> None:
    shared = shared_or_skip()
    x, y = load_meetings(shared / "data" / "ami-mix", "development", np.random.default_rng(0))
    assert x.shape[1] == N_INPUTS and len(x) == len(y)
    # each mix is used once per side, and never marks both sides at once
    assert y[:, 0].sum() > 0 and y[:, 1].sum() > 0 and not (y[:, 0] & y[:, 1]).any()
