"""Analyzer configuration: validated models with documented defaults, loaded once from YAML or TOML."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelVadConfig(_Strict):
    type: Literal["model"] = "model"
    weights: str | None = Field(None, description="path to .npz weights; default: the shipped speech model")


class WebrtcVadConfig(_Strict):
    type: Literal["webrtc"]
    mode: int = Field(3, ge=0, le=3, description="webrtcvad aggressiveness")
    crosstalk_gate_db: float = Field(0.0, description="dB a channel must exceed the other side's leakage by")


class SileroVadConfig(_Strict):
    type: Literal["silero"]
    onnx: str | None = Field(None, description="silero_vad.onnx; default: the file inside the silero-vad wheel")
    crosstalk_gate_db: float = Field(0.0, description="dB a channel must exceed the other side's leakage by")


VadConfig = Annotated[ModelVadConfig | WebrtcVadConfig | SileroVadConfig, Field(discriminator="type")]


class SmoothingConfig(_Strict):
    on: float = Field(0.5, gt=0, lt=1, description="probability that turns a channel on")
    off: float = Field(0.4, gt=0, lt=1, description="probability under which a channel may turn off")
    min_speech_ms: int = Field(120, ge=10, le=1000, description="shortest speech run kept (onset)")
    hangover_ms: int = Field(100, ge=0, le=2000, description="pauses up to this long are bridged")


class TalkOverConfig(_Strict):
    min_overlap_s: float = Field(0.3, gt=0, le=5, description="both parties speaking at least this long")
    backchannel_max_s: float = Field(
        1.0, gt=0, le=5, description="newcomer speech this short that yields is a backchannel"
    )
    merge_gap_s: float = Field(0.3, ge=0, le=1, description="overlap pauses up to this long join one talk-over")
    turn_gap_s: float = Field(0.35, ge=0, le=2, description="a party's pauses up to this long do not end its turn")


class DeadAirConfig(_Strict):
    min_silence_s: float = Field(3.0, gt=0, le=120, description="both silent at least this long, inside a call")


class MetricsConfig(_Strict):
    shout_dbfs: float = Field(-10.0, le=0, description="speech louder than this (dBFS) counts as shouting")
    shout_rise_db: float = Field(15.0, gt=0, description="or this far above the party's own median speech level")
    shout_min_s: float = Field(2.0, gt=0, description="seconds of such speech that raise the shouting flag")
    monologue_yield_s: float = Field(
        1.0, gt=0, description="customer speech shorter than this does not end a monologue"
    )
    low_snr_db: float = Field(6.0, description="calls under this speech SNR are flagged low confidence")
    high_leakage_db: float = Field(-6.0, description="leakage above this (dB) flags the call low confidence")
    max_clipping: float = Field(0.01, ge=0, le=1, description="share of clipped samples that flags the call")


class EmotionConfig(_Strict):
    on: bool = Field(True, description="score each party's tone on its own speech (emotion events, summary)")
    backend: Literal["onnxruntime", "tflite"] = Field("onnxruntime", description="inference runtime")
    precision: Literal["fp32", "int8"] = Field(
        "fp32", description="onnxruntime model file; int8 is 3x smaller but less accurate (see the card)"
    )
    card: str | None = Field(None, description="model card JSON; default: the shipped emotion-v1")
    threads: int = Field(1, ge=1, le=8, description="inference threads")
    hop_s: float = Field(
        2.0, ge=0.1, le=10, description="seconds of a party's speech from one scored window to the next"
    )
    min_speech_s: float = Field(
        3.0, ge=1, le=60, description="a party's own speech before its first state is announced"
    )
    smoothing: float = Field(0.6, ge=0, lt=1, description="weight of the previous smoothed scores per window")
    switch_margin: float = Field(0.1, ge=0, le=1, description="score lead a new state needs over the current one")
    anger_alert: float = Field(0.6, gt=0, le=1, description="customer anger score that raises an alert event")


class AnalyzerConfig(_Strict):
    vad: VadConfig = ModelVadConfig()
    smoothing: SmoothingConfig = SmoothingConfig()
    talk_over: TalkOverConfig = TalkOverConfig()
    dead_air: DeadAirConfig = DeadAirConfig()
    metrics: MetricsConfig = MetricsConfig()
    emotion: EmotionConfig = EmotionConfig()


class ConfigError(Exception):
    """A config file that cannot be used; the message names the file and the bad key."""


def parse_document(text: str, suffix: str, where: str) -> dict[str, Any]:
    """A YAML (or, by suffix, TOML) config document as a mapping; ConfigError in one line otherwise."""
    try:
        data = tomllib.loads(text) if suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        kind = "TOML" if suffix == ".toml" else "YAML"
        raise ConfigError(f"{where}: not valid {kind} ({str(exc).splitlines()[0]})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: top level must be a mapping of sections")
    return data


def first_error(exc: ValidationError, top: str = "(top level)") -> str:
    """`key.path: message` of a pydantic error's first problem: what a one-line error names."""
    err = exc.errors()[0]
    return f"{'.'.join(str(x) for x in err['loc']) or top}: {err['msg']}"


def load_config(path: str | Path | None) -> AnalyzerConfig:
    if path is None:
        return AnalyzerConfig()
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config ({exc.strerror})") from None
    data = parse_document(text, p.suffix, str(p))
    # the station's config file holds other sections too; the analyzer reads its own
    section = data.get("analyzer", data)
    try:
        return AnalyzerConfig.model_validate(section)
    except ValidationError as exc:
        raise ConfigError(f"{p}: {first_error(exc)}") from None
