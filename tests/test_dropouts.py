"""Broken samples (NaN, ±Inf from a failing driver): zeroed, counted in the summary, harmless to the rest of the call.

Before this was handled, 16 NaN samples in a real call turned all its speech segments into one (or none),
put NaN into the JSON and made `edge-agent replay` exit 1 with a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import soxr

from edge_agent.audio import Resampler, read_call
from edge_agent.config import AnalyzerConfig, MetricsConfig
from edge_agent.features import GATED_AFTER, N_MELS, CallFeatures
from edge_agent.pipeline import Pipeline
from tests.conftest import run_cli, write_wav

ISOLATED = 16  # NaN samples spread over the agent channel: the case
BURST = 160  # 10 ms of broken samples per burst


def analyse(path: Path, cfg: AnalyzerConfig | None = None) -> list[dict[str, Any]]:
    return [e.to_dict() for e in Pipeline(cfg).run(read_call(path, block_seconds=2.0))]


def no_nan_json(events: list[dict[str, Any]]) -> str:
    """The events as the CLI prints them; json refuses NaN and Infinity with allow_nan=False."""
    return "\n".join(json.dumps(e, allow_nan=False) for e in events)


def speech(events: list[dict[str, Any]], who: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "speech" and e["speaker"] == who]


def break_call(x: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    """A copy of x with isolated NaN in the agent channel and NaN / +Inf / -Inf bursts; and how many."""
    y = x.copy()
    n = len(y)
    y[np.linspace(rate, n - rate, ISOLATED).astype(int), 0] = np.nan
    broken = ISOLATED
    for k, (value, cols) in enumerate([(np.nan, [0, 1]), (np.inf, [1]), (-np.inf, [0]), (np.nan, [1])]):
        at = int(n * (0.15 + 0.2 * k))
        y[at : at + BURST, cols] = value
        broken += BURST * len(cols)
    return y, broken


@pytest.fixture(scope="module")
def float_call(real_calls: list[Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    """A real-speech call as a float WAV (which can hold NaN), clean and with broken samples.

    The second call: both of its parties are heard in many segments, which is what broken samples could merge.
    """
    x, rate = sf.read(real_calls[1], dtype="float32")
    out = tmp_path_factory.mktemp("dropouts")
    y, broken = break_call(x, rate)
    clean = write_wav(out / "clean.wav", x, rate, "FLOAT")
    bad = write_wav(out / "broken.wav", y, rate, "FLOAT")
    assert np.isnan(sf.read(bad, dtype="float32")[0]).sum() == ISOLATED + 3 * BURST  # the file keeps them
    return clean, bad, broken


def test_broken_samples_are_counted_and_leave_the_call_intact(float_call: tuple[Path, Path, int]) -> None:
    clean_wav, bad_wav, broken = float_call
    clean, bad = analyse(clean_wav), analyse(bad_wav)
    no_nan_json(bad)
    s, c = bad[-1], clean[-1]
    assert s["quality"]["dropout_samples"] == broken
    assert c["quality"]["dropout_samples"] == 0
    # under 0.1 % of the call: counted, not a reason to distrust it
    assert "dropouts" not in s["quality"]["flags"] and s["quality"]["low_confidence"] == c["quality"]["low_confidence"]
    for who in ("agent", "customer"):
        n_clean, n_bad = len(speech(clean, who)), len(speech(bad, who))
        assert n_clean >= 5
        assert abs(n_bad - n_clean) <= 1, (who, n_clean, n_bad)
        assert s[who]["talk_time"] == pytest.approx(c[who]["talk_time"], rel=0.05)
        assert s[who]["loudness_dbfs"] == pytest.approx(c[who]["loudness_dbfs"], abs=1.0)
    assert s["talk_overs"] == c["talk_overs"] and s["dead_air_count"] == c["dead_air_count"]


def test_live_sized_blocks_count_the_same(float_call: tuple[Path, Path, int]) -> None:
    """Live capture hands 10 ms blocks; a burst split across blocks is still counted sample by sample."""
    _, bad_wav, broken = float_call
    pipe = Pipeline(AnalyzerConfig.model_validate({"emotion": {"enabled": False}}))
    events = [e.to_dict() for e in pipe.run(read_call(bad_wav, block_seconds=0.0137))]
    no_nan_json(events)
    assert events[-1]["quality"]["dropout_samples"] == broken


def test_a_large_share_of_broken_samples_flags_the_call(float_call: tuple[Path, Path, int], tmp_path: Path) -> None:
    clean_wav, _, _ = float_call
    x, rate = sf.read(clean_wav, dtype="float32")
    y = x.copy()
    cut = slice(len(y) // 3, len(y) // 3 + int(0.02 * len(y)))  # 2 % of the customer line lost
    y[cut, 1] = np.nan
    path = write_wav(tmp_path / "lossy.wav", y, rate, "FLOAT")
    events = analyse(path)
    no_nan_json(events)
    q = events[-1]["quality"]
    assert q["dropout_samples"] == cut.stop - cut.start
    assert "dropouts" in q["flags"] and q["low_confidence"]
    # the threshold is a config key: a station that tolerates more is not flagged
    lenient = AnalyzerConfig(metrics=MetricsConfig(max_dropout=0.05))
    assert "dropouts" not in analyse(path, lenient)[-1]["quality"]["flags"]


@pytest.mark.parametrize(("rate", "per_sample"), [(8000, 2), (48000, 1)])
def test_resampler_keeps_dropouts_where_they_were(rate: int, per_sample: int) -> None:
    """soxr never sees NaN (it would smear it and carry it on); the 16 kHz samples at those instants are marked."""
    rng = np.random.default_rng(7)
    x = (0.1 * rng.standard_normal((rate * 3, 2))).astype(np.float32)
    at = np.array([rate // 2 + 101, rate + 7, 2 * rate + 333])
    y = x.copy()
    y[at, 0] = np.nan
    y[at[1], 1] = np.inf
    r = Resampler(rate, 2)
    blocks = [r.process(y[i : i + 1234], last=i + 1234 >= len(y)) for i in range(0, len(y), 1234)]
    out = np.concatenate(blocks)
    bad = ~np.isfinite(out)
    assert bad[:, 0].sum() == len(at) * per_sample and bad[:, 1].sum() == per_sample
    # at the same instants, to the sample
    marked = np.flatnonzero(bad[:, 0])
    assert np.allclose(marked[::per_sample] / 16000, at / rate, atol=1 / rate)
    # everything else is what soxr makes of the call with those samples zeroed: nothing smeared
    zeroed = np.where(np.isfinite(y), y, np.float32(0))
    expected = soxr.resample(zeroed, rate, 16000).astype(np.float32)
    n = min(len(out), len(expected))
    ok = ~bad[:n]
    assert np.allclose(out[:n][ok], expected[:n][ok], atol=1e-4)


def test_a_resampled_file_counts_its_dropouts_once(float_call: tuple[Path, Path, int], tmp_path: Path) -> None:
    clean_wav, _, _ = float_call
    x, rate = sf.read(clean_wav, dtype="float32")
    hi = soxr.resample(x, rate, 48000).astype(np.float32)
    y = hi.copy()
    at = np.linspace(48000, len(y) - 48000, 40).astype(int)
    y[at, 0] = np.nan  # apart by far more than soxr's filter: each covers one 16 kHz sample
    clean = analyse(write_wav(tmp_path / "clean48.wav", hi, 48000, "FLOAT"))
    bad = analyse(write_wav(tmp_path / "bad48.wav", y, 48000, "FLOAT"))
    no_nan_json(bad)
    assert bad[-1]["quality"]["dropout_samples"] == len(at)
    assert abs(len(speech(bad, "agent")) - len(speech(clean, "agent"))) <= 1


def test_analyze_prints_finite_json_for_a_broken_file(float_call: tuple[Path, Path, int]) -> None:
    _, bad_wav, broken = float_call
    res = run_cli("analyze", str(bad_wav))
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "RuntimeWarning" not in res.stderr
    # json.loads would accept NaN and Infinity; refuse them
    lines = [json.loads(x, parse_constant=lambda c: pytest.fail(f"{c} in output")) for x in res.stdout.splitlines()]
    assert lines[-1]["type"] == "call_summary" and lines[-1]["quality"]["dropout_samples"] == broken
    assert len([e for e in lines if e["type"] == "speech"]) >= 10


def underruns(x: np.ndarray, rate: int, at: list[float]) -> np.ndarray:
    """A copy of x with digital silence (an underrun, a dropout zeroed) of 50, 200 and 400 ms at `at` seconds."""
    y = x.copy()
    for t, ms in zip(at, (50, 200, 400), strict=True):
        y[int(t * rate) : int(t * rate) + ms * rate // 1000] = 0.0
    return y


def test_digital_silence_in_line_noise_is_not_speech(real_calls: list[Path], tmp_path: Path) -> None:
    """An underrun hands the pipeline zeros in the middle of a line's noise. Taken for the noise floor they made
    the noise that follows read as speech for seconds (the live capture test saw 0.8 s of agent speech in its
    lead-in); skipped by the floor and leakage estimates, the dead air stays dead air."""
    truth = json.loads(real_calls[0].with_suffix(".json").read_text())
    d0, d1 = max(((d["start"], d["end"]) for d in truth["dead_air"]), key=lambda d: d[1] - d[0])
    assert d1 - d0 > 6.5
    x, rate = sf.read(real_calls[0], dtype="float32")
    gaps = [d0 + 1.0, d0 + 3.0, d0 + 5.0]
    path = write_wav(tmp_path / "underruns.wav", underruns(x, rate, gaps), rate, "FLOAT")
    for events in (analyse(real_calls[0]), analyse(path)):
        heard = [e for e in events if e["type"] == "speech" and d0 + 0.3 < e["start"] < d1 - 0.3]
        assert not [e for e in heard if e["end"] - e["start"] >= 0.5], heard
        dead = [e for e in events if e["type"] == "dead_air" and e["start"] < d1 and e["end"] > d0]
        assert dead and max(min(e["end"], d1) - max(e["start"], d0) for e in dead) > 0.8 * (d1 - d0), dead


def test_a_gated_line_keeps_zero_as_its_floor() -> None:
    """A headset's noise gate, or a line's silence suppression, sends zeros between words: once a channel has had
    more than GATED_AFTER frames of them, they are its floor again, so its speech stands far above it."""
    rng = np.random.default_rng(5)
    frames = 160
    noise = (0.003 * rng.standard_normal(frames * 100)).astype(np.float32)  # 1 s of line noise (-50 dBFS)
    zeros = np.zeros(frames * 50, np.float32)  # 0.5 s of digital silence
    feats = CallFeatures()
    floors = []
    for _ in range(10):  # 5 s of zeros in all
        for part in (noise, zeros):
            block = np.stack([part, part], axis=1)
            feats.process(block)
            floors.append(float(feats.floor[0]._last[:N_MELS].mean()))  # the mel floor in force at the block's end
    # the first underruns are skipped: the floor holds the noise's level through them
    assert floors[1] > -70 and floors[3] > -70
    # after GATED_AFTER frames of zeros the line counts as gated and its floor comes down to the zeros
    assert floors[-1] < -90, floors
    assert GATED_AFTER < 10 * len(zeros) // frames
