"""VAD stage: hysteresis smoothing arithmetic, streaming exactness, and the backends on real speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_agent.audio import read_call
from edge_agent.config import SileroVadConfig, SmoothingConfig, WebrtcVadConfig
from edge_agent.pipeline import Pipeline
from edge_agent.vad import Smoother, make_backend
from tests.conftest import truth


def smooth(p: list[float], **kw: float) -> np.ndarray:
    cfg = SmoothingConfig(**kw)  # type: ignore[arg-type]
    s = Smoother(cfg)
    probs = np.stack([np.array(p, np.float32)] * 2, axis=1)
    return np.concatenate([s.process(probs), s.finish()])[:, 0]


def test_short_blips_are_dropped_and_onsets_dated_back() -> None:
    p = [0.0] * 10 + [0.9] * 5 + [0.0] * 10 + [0.9] * 30 + [0.0] * 30
    act = smooth(p, min_speech_ms=100, hangover_ms=100)
    assert not act[:25].any()  # 50 ms blip under the 100 ms minimum
    assert act[25] and not act[24]  # onset dated back to the first high frame
    assert len(act) == len(p)


def test_hangover_bridges_short_pauses_only() -> None:
    p = [0.9] * 20 + [0.1] * 8 + [0.9] * 20 + [0.1] * 20 + [0.9] * 20
    act = smooth(p, min_speech_ms=50, hangover_ms=100)
    assert act[20:28].all()  # 80 ms pause bridged
    assert not act[48:68].any()  # 200 ms pause is real, dated back to its start
    assert act[68:].all()


def test_hysteresis_keeps_speech_between_thresholds() -> None:
    p = [0.9] * 10 + [0.45] * 50 + [0.1] * 30
    act = smooth(p, threshold_on=0.5, threshold_off=0.4, min_speech_ms=50, hangover_ms=50)
    assert act[:60].all() and not act[61:].any()


def test_smoother_is_exact_for_any_block_size() -> None:
    rng = np.random.default_rng(3)
    probs = rng.random((2000, 2)).astype(np.float32)
    a = Smoother(SmoothingConfig())
    whole = np.concatenate([a.process(probs), a.finish()])
    b = Smoother(SmoothingConfig())
    parts = [b.process(probs[i : i + 3]) for i in range(0, 2000, 3)]
    np.testing.assert_array_equal(whole, np.concatenate([*parts, b.finish()]))


@pytest.mark.parametrize("cfg", [WebrtcVadConfig(type="webrtc"), SileroVadConfig(type="silero")])
def test_single_channel_backends_run_on_real_speech(real_calls: list[Path], cfg: WebrtcVadConfig) -> None:
    """The plain VADs plug into the same pipeline; what they call speech is someone's real speech.

    (They confuse leakage with the party itself, which is why the two-channel model is the default.)
    """
    wav = real_calls[0]
    pipe = Pipeline(backend=make_backend(cfg))
    events = [e.to_dict() for e in pipe.run(read_call(wav))]
    anyone = np.zeros(int(truth(wav)["duration"] * 100) + 1, bool)
    for who in ("agent", "customer"):
        for s, e in truth(wav)["activity"][who]:
            anyone[round(s * 100) : round(e * 100)] = True
    hyp = np.zeros_like(anyone)
    for e in events:
        if e["type"] == "speech":
            hyp[round(e["start"] * 100) : round(e["end"] * 100)] = True
    assert hyp.sum() > 500
    assert (hyp & anyone).sum() / hyp.sum() > 0.7
