"""The `edge-agent analyze` contract other tools depend on, and its bad-input behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli, write_wav

TYPES = {"speech", "talk_over", "dead_air", "emotion", "call_summary"}


def test_json_lines_contract(real_calls: list[Path]) -> None:
    res = run_cli("analyze", str(real_calls[0]))
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert all({"type", "start", "end"} <= e.keys() and e["type"] in TYPES for e in lines)
    assert lines[-1]["type"] == "call_summary" and sum(e["type"] == "call_summary" for e in lines) == 1
    speech = [e for e in lines if e["type"] == "speech"]
    assert {e["speaker"] for e in speech} == {"agent", "customer"}
    assert all(0 <= e["start"] < e["end"] <= lines[-1]["duration"] + 0.01 for e in speech)
    for e in lines:
        if e["type"] == "talk_over":
            assert e["by"] in ("agent", "customer") and e["kind"] in ("interruption", "backchannel")
            assert e["end"] - e["start"] >= 0.3 - 1e-9
        if e["type"] == "dead_air":
            assert e["end"] - e["start"] >= 3.0 - 1e-9
    s = lines[-1]
    for key in (
        "agent",
        "customer",
        "overlap_time",
        "silence_time",
        "talk_over_counts",
        "dead_air_count",
        "dead_air_longest",
        "longest_agent_monologue",
        "agent_response_latency_mean",
        "quality",
    ):
        assert key in s
    for key in ("talk_time", "talk_ratio", "loudness_dbfs", "shouting", "speaking_rate_sps", "pitch_variability_st"):
        assert key in s["agent"]


def test_agent_channel_option_swaps_roles(real_calls: list[Path]) -> None:
    a = [json.loads(x) for x in run_cli("analyze", str(real_calls[0])).stdout.splitlines()]
    b = [json.loads(x) for x in run_cli("analyze", str(real_calls[0]), "--agent-channel", "1").stdout.splitlines()]
    assert a[-1]["agent"]["talk_time"] == pytest.approx(b[-1]["customer"]["talk_time"], rel=0.2)


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: write_wav(p, (np.random.default_rng(0).standard_normal(16000) * 0.1).astype(np.float32)), "channel"),
        (lambda p: write_wav(p, np.zeros((0, 2), np.float32)), "no audio"),
        (lambda p: p.write_bytes(b"\x00\x01garbage" * 100), "not readable"),
        (lambda p: None, "no such file"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, make, needle: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "in.wav"
    make(path)
    res = run_cli("analyze", str(path))
    assert res.returncode == 2
    assert res.stdout == ""
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("talk_over:\n  min_overlap_s: -1\n", "talk_over.min_overlap_s"),
        ("dead_air:\n  min_silnce_s: 3\n", "dead_air.min_silnce_s"),
        ("vad: {type: nonsense}\n", "vad"),
        ("talk_over: [1, 2\n", "not valid YAML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    wav = write_wav(tmp_path / "x.wav", np.zeros((16000, 2), np.float32))
    res = run_cli("analyze", str(wav), "--config", str(cfg))
    assert res.returncode == 2
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and needle in err[0], res.stderr


def test_config_changes_the_analysis(real_calls: list[Path], tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[analyzer.dead_air]\nmin_silence_s = 1.0\n")
    default = [json.loads(x) for x in run_cli("analyze", str(real_calls[0])).stdout.splitlines()]
    loose = [json.loads(x) for x in run_cli("analyze", str(real_calls[0]), "--config", str(cfg)).stdout.splitlines()]
    assert loose[-1]["dead_air_count"] > default[-1]["dead_air_count"]


def test_silent_call_is_analysed_not_rejected(tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "x.wav", np.zeros((16000 * 5, 2), np.float32))
    res = run_cli("analyze", str(wav))
    assert res.returncode == 0
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert lines[-1]["type"] == "call_summary" and "one_sided" in lines[-1]["quality"]["flags"]
