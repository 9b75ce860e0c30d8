"""Training material: truth frames and the meeting loader (no torch needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_agent.audio import FRAME, read_call
from edge_agent.features import N_FEATURES
from edge_agent.silero_stream import SileroStream
from edge_agent.speech_model import N_INPUTS, N_MODEL_FEATURES
from models.vad.dataset import frame_features, load_meetings, mulaw, truth_frames
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


def test_frame_features_carry_silero_on_the_gained_audio(real_calls: list[Path]) -> None:
    """Training sees what the station sees: Silero's columns come from the same gained, clipped audio."""
    x = next(iter(read_call(real_calls[0])))  # the first 10 s
    x = x[: len(x) // FRAME * FRAME]
    gain = (12.0, -6.0)
    feats = frame_features(iter([x]), gain)
    assert feats.shape == (len(x) // FRAME, N_MODEL_FEATURES)
    g = np.array([10 ** (gain[0] / 20), 10 ** (gain[1] / 20)], np.float32)
    s = SileroStream()
    expected = np.concatenate([s.process(np.clip(x * g, -1.0, 1.0)), s.finish()])
    np.testing.assert_allclose(feats[:, N_FEATURES:], expected, atol=1e-6)
    assert not np.allclose(feats[:, N_FEATURES:], frame_features(iter([x]))[:, N_FEATURES:], atol=1e-3)


def test_speed_copies_can_carry_soft_and_loud_utterances(tmp_path: Path) -> None:
    """`--level-spread`: each speed-perturbed clip gets its own gain within the range, drawn the same way every time
    (a cached folder stays valid), and the copies without it keep the clip's level."""
    import soundfile as sf

    from models.vad.sources import perturbed

    shared = shared_or_skip()
    clips = sorted((shared / "data" / "fsdd" / "recordings").iterdir())[:12]
    assert len(clips) == 12
    speakers = {"fsdd_x": clips}

    def rms_db(paths: list[Path]) -> np.ndarray:
        return np.array([10 * np.log10(np.mean(sf.read(str(p), dtype="float32")[0] ** 2)) for p in paths])

    plain = rms_db(perturbed(speakers, [1.0], tmp_path / "a")["fsdd_x@1"])
    spread = perturbed(speakers, [1.0], tmp_path / "b", (-15.0, 3.0), seed=5)["fsdd_x@1"]
    gains = rms_db(spread) - plain
    assert np.all(gains > -15.1) and np.all(gains < 3.1) and np.ptp(gains) > 6, gains
    again = perturbed(speakers, [1.0], tmp_path / "c", (-15.0, 3.0), seed=5)["fsdd_x@1"]
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(spread, again, strict=True))
    assert np.allclose(rms_db(perturbed(speakers, [1.0], tmp_path / "d")["fsdd_x@1"]), plain)
