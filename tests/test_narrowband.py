"""Sources captured at 8 kHz get the narrowband weights: the default ones take an empty upper band for silence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
import soxr

from edge_agent.config import AnalyzerConfig
from edge_agent.pipeline import Pipeline
from edge_agent.speech_model import DEFAULT_MODEL, NARROWBAND_MODEL
from edge_agent.vad import config_for_rate
from tests.conftest import run_cli, shared_scorer, truth


def f1(events: list[dict], ref: list[list[float]], party: str, duration: float) -> float:  # type: ignore[type-arg]
    """A party's activity F1 with the shared scorer's own frame definition (../shared/tools, called, not copied)."""
    frames = shared_scorer().frames
    n = int(duration * 100) + 1
    a = frames(ref, n)
    b = frames([(e["start"], e["end"]) for e in events if e["type"] == "speech" and e["speaker"] == party], n)
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


@pytest.fixture(scope="module")
def narrow_call(real_calls: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real-speech call captured at 8 kHz (as a PBX recording or a narrowband capture gives it)."""
    x, rate = sf.read(real_calls[1], dtype="float32")
    out = tmp_path_factory.mktemp("narrow") / "call8k.wav"
    sf.write(out, soxr.resample(x, rate, 8000), 8000, subtype="PCM_16")
    out.with_suffix(".json").write_text(json.dumps(truth(real_calls[1])))
    return out


def analyse(wav: Path, config: Path | None = None) -> list[dict]:  # type: ignore[type-arg]
    args = ["analyze", str(wav)] + (["--config", str(config)] if config else [])
    return [json.loads(line) for line in run_cli(*args).stdout.splitlines()]


def test_an_8khz_call_is_analysed_with_the_narrowband_weights(narrow_call: Path, tmp_path: Path) -> None:
    t = truth(narrow_call)
    never = tmp_path / "never.yaml"
    never.write_text("vad: {type: model, narrowband: never}\n")
    auto, wide = analyse(narrow_call), analyse(narrow_call, never)
    got = {p: f1(auto, t["activity"][p], p, t["duration"]) for p in ("agent", "customer")}
    old = {p: f1(wide, t["activity"][p], p, t["duration"]) for p in ("agent", "customer")}
    # the wideband weights lose the line at 8 kHz; the narrowband ones hear it
    assert old["customer"] < 0.5 and got["customer"] >= 0.8, (got, old)
    assert got["agent"] >= old["agent"] - 0.05, (got, old)


def test_config_for_rate_picks_weights_only_where_it_should(tmp_path: Path) -> None:
    cfg = AnalyzerConfig()
    assert config_for_rate(cfg, 16000) is cfg and config_for_rate(cfg, 48000) is cfg
    narrow = Pipeline(config_for_rate(cfg, 8000))
    assert narrow.backend.name == f"model:{NARROWBAND_MODEL}"  # type: ignore[attr-defined]
    assert Pipeline(cfg).backend.name == f"model:{DEFAULT_MODEL}"
    # off, or weights of the user's own and no narrowband ones beside them: left as configured
    off = AnalyzerConfig.model_validate({"vad": {"type": "model", "narrowband": "never"}})
    assert config_for_rate(off, 8000) is off
    own = AnalyzerConfig.model_validate({"vad": {"type": "model", "weights": "mine.npz"}})
    assert config_for_rate(own, 8000) is own
    both = AnalyzerConfig.model_validate(
        {"vad": {"type": "model", "weights": "mine.npz", "narrowband_weights": "mine-8k.npz"}}
    )
    assert config_for_rate(both, 8000).vad.weights == "mine-8k.npz"  # type: ignore[union-attr]
    # other backends have no weights to swap
    web = AnalyzerConfig.model_validate({"vad": {"type": "webrtc"}})
    assert config_for_rate(web, 8000) is web
