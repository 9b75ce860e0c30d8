"""Config keys a YAML file can hold: no `on`/`off` keys (YAML 1.1 booleans), old spellings still read, and a bad
`vad` key named in the one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_agent.audio import read_call
from edge_agent.config import AnalyzerConfig, ConfigError, load_config
from edge_agent.pipeline import Pipeline
from firmware_py import config as station_config
from tests.conftest import run_cli, write_wav

STATION = {"station": {"site": "lab", "seat": "s01"}, "mqtt": {"broker": "mqtt://127.0.0.1:1883"}}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("old.yaml", "emotion: {on: false}\n"),  # YAML 1.1: the key is the boolean true
        ("quoted.yaml", 'emotion:\n  "on": false\n'),
        ("new.yaml", "emotion: {enabled: false}\n"),
        ("section.yaml", "analyzer:\n  emotion:\n    on: no\n"),
        ("old.toml", "[emotion]\non = false\n"),  # TOML: the string "on"
        ("new.toml", "[analyzer.emotion]\nenabled = false\n"),
    ],
)
def test_emotion_is_switched_off_in_either_spelling(tmp_path: Path, name: str, text: str) -> None:
    cfg = load_config(write(tmp_path, name, text))
    assert cfg.emotion.enabled is False
    assert cfg.model_dump()["emotion"]["enabled"] is False and "on" not in cfg.model_dump()["emotion"]
    assert Pipeline(cfg).emotion is None


def test_old_emotion_spelling_switches_the_analysis_off(real_calls: list[Path], tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "emotion: {on: false}\n")
    res = run_cli("analyze", str(real_calls[0]), "--config", str(path))
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert not [e for e in lines if e["type"] == "emotion"] and "emotion" not in lines[-1]
    assert len([e for e in lines if e["type"] == "speech"]) >= 10


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("old.yaml", "smoothing: {on: 0.6, off: 0.3}\n"),
        ("new.yaml", "smoothing: {threshold_on: 0.6, threshold_off: 0.3}\n"),
        ("old.toml", "[smoothing]\non = 0.6\noff = 0.3\n"),
        ("new.toml", "[smoothing]\nthreshold_on = 0.6\nthreshold_off = 0.3\n"),
    ],
)
def test_smoothing_thresholds_in_either_spelling(tmp_path: Path, name: str, text: str) -> None:
    cfg = load_config(write(tmp_path, name, text))
    assert (cfg.smoothing.threshold_on, cfg.smoothing.threshold_off) == (0.6, 0.3)
    assert cfg.emotion.enabled is True  # untouched sections keep their defaults


def test_smoothing_thresholds_change_the_analysis(real_calls: list[Path], tmp_path: Path) -> None:
    strict = load_config(write(tmp_path, "c.yaml", "smoothing: {on: 0.95, off: 0.9}\nemotion: {on: false}\n"))
    default = AnalyzerConfig.model_validate({"emotion": {"enabled": False}})
    talk = [Pipeline(c).run(read_call(real_calls[1])) for c in (default, strict)]
    summaries = [list(events)[-1].to_dict() for events in talk]
    assert summaries[1]["agent"]["talk_time"] < summaries[0]["agent"]["talk_time"]


def test_both_spellings_of_one_key_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"smoothing: 'on' is the old name of 'threshold_on'"):
        load_config(write(tmp_path, "c.yaml", "smoothing: {on: 0.6, threshold_on: 0.7}\n"))
    with pytest.raises(ConfigError, match=r"emotion\.off: unknown key"):
        load_config(write(tmp_path, "d.yaml", "emotion: {off: true}\n"))


def test_station_and_remote_configs_take_the_old_spelling_too() -> None:
    """The station file (YAML: boolean key) and a remote `cmd/config` (JSON: string key) embed the analyzer."""
    yaml_doc = STATION | {"analyzer": {"emotion": {True: False}, "smoothing": {True: 0.7, False: 0.2}}}
    cfg = station_config.validate(yaml_doc, "station.yaml", env={})
    assert cfg.analyzer.emotion.enabled is False
    assert (cfg.analyzer.smoothing.threshold_on, cfg.analyzer.smoothing.threshold_off) == (0.7, 0.2)
    json_doc = json.loads(json.dumps(STATION | {"analyzer": {"emotion": {"on": False}}}))
    assert station_config.validate(json_doc, "remote config", env={}).analyzer.emotion.enabled is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vad: {typ: webrtc}\n", "vad.typ: unknown key"),
        ("vad: {mode: 2}\n", "vad.type: missing (one of model, webrtc, silero)"),
        ("vad: {type: webrtc, mdoe: 2}\n", "vad.mdoe: unknown key"),
        ("vad: {type: webrtc, mode: 9}\n", "vad.mode: Input should be less than or equal to 3"),
        ("vad: {type: nonsense}\n", "vad.type: 'nonsense' is not one of model, webrtc, silero"),
        ("analyzer:\n  vad: {type: silero, weights: x.npz}\n", "vad.weights: unknown key"),
    ],
)
def test_bad_vad_key_is_named_in_one_line(tmp_path: Path, text: str, message: str) -> None:
    cfg = write(tmp_path, "c.yaml", text)
    wav = write_wav(tmp_path / "x.wav", np.zeros((16000, 2), np.float32))
    res = run_cli("analyze", str(wav), "--config", str(cfg))
    assert res.returncode == 2 and res.stdout == ""
    err = res.stderr.strip().splitlines()
    assert err == [f"edge-agent: {cfg}: {message}"], res.stderr
    assert "discriminator" not in res.stderr
