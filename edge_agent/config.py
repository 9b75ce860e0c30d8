"""Analyzer configuration: validated models with documented defaults, loaded once from YAML or TOML."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelVadConfig(_Strict):
    type: Literal["model"] = "model"
    weights: str | None = Field(
        None, description="path to .npz weights (one MLP or several, averaged); default: the shipped speech model"
    )
    silero_onnx: str | None = Field(
        None,
        description="run Silero VAD, an input of the model, from this sequence ONNX through onnxruntime; "
        "default: its shipped weights, run as numpy",
    )
    silero_gate: tuple[Literal["agent", "customer"], ...] = Field(
        ("customer",),
        description="parties whose speech Silero must also hear nearby (the line: Silero's home ground)",
    )
    silero_gate_ms: int = Field(100, ge=0, le=200, description="how near: Silero's speech vouches this far either side")
    silero_dead_air: bool = Field(True, description="dead air counts only speech Silero also hears, on either side")
    narrowband: Literal["auto", "never"] = Field(
        "auto", description="a source captured below 16 kHz is analysed with the narrowband weights (auto)"
    )
    narrowband_weights: str | None = Field(
        None, description="weights for such sources; default: the shipped speech-mlp-v3-narrowband"
    )


class WebrtcVadConfig(_Strict):
    type: Literal["webrtc"]
    mode: int = Field(3, ge=0, le=3, description="webrtcvad aggressiveness")
    crosstalk_gate_db: float = Field(0.0, description="dB a channel must exceed the other side's leakage by")


class SileroVadConfig(_Strict):
    type: Literal["silero"]
    onnx: str | None = Field(None, description="silero_vad.onnx; default: the file inside the silero-vad wheel")
    crosstalk_gate_db: float = Field(0.0, description="dB a channel must exceed the other side's leakage by")


VadConfig = Annotated[ModelVadConfig | WebrtcVadConfig | SileroVadConfig, Field(discriminator="type")]
VAD_TYPES: dict[str, type[_Strict]] = {"model": ModelVadConfig, "webrtc": WebrtcVadConfig, "silero": SileroVadConfig}


def _renamed(data: Any, names: dict[str, str]) -> Any:
    """A section with its old key spellings (`on`, `off`) replaced by the new names.

    YAML 1.1 (PyYAML) reads a bare `on`/`off` key as the boolean true/false, which no string key matches,
    and TOML or JSON keep it as the string: both map to the new name, so older files keep working.
    """
    if not isinstance(data, dict):
        return data
    out: dict[Any, Any] = {}
    old: dict[str, str] = {}
    for key, value in data.items():
        if type(key) is bool:  # not 1/0, which compare equal to True/False
            key = "on" if key else "off"
        new = names.get(key, key) if isinstance(key, str) else key
        if new in out:
            raise ValueError(f"{old.get(new, key)!r} is the old name of {new!r}; give only {new!r}")
        if new != key:
            old[new] = key
        out[new] = value
    return out


class SmoothingConfig(_Strict):
    threshold_on: float = Field(0.5, gt=0, lt=1, description="probability that turns a channel on")
    threshold_off: float = Field(0.35, gt=0, lt=1, description="probability under which a channel may turn off")
    min_speech_ms: int = Field(120, ge=10, le=1000, description="shortest speech run kept (onset)")
    hangover_ms: int = Field(200, ge=0, le=2000, description="pauses up to this long are bridged")

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        return _renamed(data, {"on": "threshold_on", "off": "threshold_off"})


class TalkOverConfig(_Strict):
    min_overlap_s: float = Field(0.3, gt=0, le=5, description="both parties speaking at least this long")
    backchannel_max_s: float = Field(
        1.0, gt=0, le=5, description="newcomer speech this short that yields is a backchannel"
    )
    merge_gap_s: float = Field(0.3, ge=0, le=1, description="overlap pauses up to this long join one talk-over")
    turn_gap_s: float = Field(0.35, ge=0, le=2, description="a party's pauses up to this long do not end its turn")
    confirm_min_s: float = Field(
        0.05,
        ge=0,
        le=5,
        description="newcomer speech in the overlap that Silero VAD must also hear (model backend); 0: no check",
    )
    own_voice: tuple[Literal["agent", "customer"], ...] = Field(
        ("agent",),
        description=(
            "a newcomer of these parties must be louder on their own channel than the other side's leakage explains"
            " for at least half of the overlap; []: no check"
        ),
    )


class DeadAirConfig(_Strict):
    min_silence_s: float = Field(3.0, gt=0, le=120, description="both silent at least this long, inside a call")
    model_speech_s: float = Field(
        0.8,
        ge=0,
        le=5,
        description="a segment of a party's own activity this long, sure enough (model_speech_min_prob), breaks a"
        " silence even where Silero hears nothing (it is deaf to speech under music); 0: only speech both hear",
    )
    model_speech_min_prob: float = Field(
        0.7, ge=0, le=1, description="the mean speech probability over such a segment's first model_speech_s"
    )


class MetricsConfig(_Strict):
    shout_dbfs: float = Field(-10.0, le=0, description="speech louder than this (dBFS) counts as shouting")
    shout_rise_db: float = Field(15.0, gt=0, description="or this far above the party's own median speech level")
    shout_min_s: float = Field(2.0, gt=0, description="seconds of such speech that raise the shouting flag")
    monologue_yield_s: float = Field(
        1.0, gt=0, description="customer speech shorter than this does not end a monologue"
    )
    low_snr_db: float = Field(4.5, description="calls under this speech SNR are flagged low confidence")
    high_leakage_db: float = Field(-3.0, description="leakage above this (dB) flags the call low confidence")
    max_clipping: float = Field(0.01, ge=0, le=1, description="share of clipped samples that flags the call")
    max_dropout: float = Field(
        0.01, ge=0, le=1, description="share of a channel's samples broken (NaN/Inf, zeroed) that flags the call"
    )


Share = Annotated[float, Field(gt=0, le=1)]


class SelfCheckConfig(_Strict):
    """Limits past which the analyzer distrusts its own activity (quality.flags, edge_agent/selfcheck.py)."""

    max_segments_per_min: float = Field(
        30.0, gt=0, description="a party's speech segments per minute above this, mostly short, is noise chopped up"
    )
    max_short_share: float = Field(
        0.4, ge=0, le=1, description="share of a party's segments under 0.3 s that makes many segments suspect"
    )
    max_talk_share: float = Field(
        0.65, gt=0, le=1, description="a party 'speaking' for more of the call than this is implausible"
    )
    min_talk_share: float = Field(
        0.1, ge=0, lt=1, description="a party heard for less of the call than this (but not silent) is suspect"
    )
    max_overlap_share: float = Field(
        0.15, gt=0, le=1, description="both parties at once for more than this share of the talk is implausible"
    )
    max_uncertain: float = Field(
        0.2, gt=0, le=1, description="share of frames the speech model leaves between 0.2 and 0.8"
    )
    max_silero_missed: tuple[Share, Share] = Field(
        (0.25, 0.6),
        description="agent, customer: share of what Silero hears as speech that the model calls silence (the line"
        " carries an echo of the agent that Silero rightly hears and the model rightly refuses, hence more there)",
    )
    max_unconfirmed: float = Field(
        0.5, gt=0, le=1, description="share of a party's speech that Silero hears nothing of within 100 ms"
    )
    min_independent_s: float = Field(
        20.0, ge=0, description="seconds of speech Silero (or the model) must hear before the two are compared"
    )
    min_call_s: float = Field(60.0, ge=0, description="calls shorter than this are too short to judge")


class EmotionConfig(_Strict):
    enabled: bool = Field(True, description="score each party's tone on its own speech (emotion events, summary)")
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
    min_confidence: float | None = Field(
        None,
        ge=0,
        le=1,
        description="calibrated probability a smoothed state needs to be confident (an angry state and an anger"
        " alert need it); default: the model card's threshold, chosen on validation speakers",
    )

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        return _renamed(data, {"on": "enabled"})


class AnalyzerConfig(_Strict):
    vad: VadConfig = ModelVadConfig()
    smoothing: SmoothingConfig = SmoothingConfig()
    talk_over: TalkOverConfig = TalkOverConfig()
    dead_air: DeadAirConfig = DeadAirConfig()
    metrics: MetricsConfig = MetricsConfig()
    self_check: SelfCheckConfig = SelfCheckConfig()
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
    loc = [str(x) for x in err["loc"]]
    msg = err["msg"]
    kind = err["type"]
    # pydantic puts the matched `vad.type` into the path (vad.webrtc.mode); the file has no such level
    for i in range(len(loc) - 1):
        if loc[i] == "vad" and loc[i + 1] in VAD_TYPES:
            del loc[i + 1]
            break
    types = ", ".join(VAD_TYPES)
    if kind == "union_tag_not_found":
        # no `type` in a vad section: a misspelt key is the likelier mistake, so name that first
        data = err["input"] if isinstance(err["input"], dict) else {}
        known = {k for m in VAD_TYPES.values() for k in m.model_fields}
        unknown = [str(k) for k in data if k not in known]
        loc, msg = ([*loc, unknown[0]], "unknown key") if unknown else ([*loc, "type"], f"missing (one of {types})")
    elif kind == "union_tag_invalid":
        loc, msg = [*loc, "type"], f"{err['ctx']['tag']!r} is not one of {types}"
    elif kind == "extra_forbidden":
        msg = "unknown key"
    elif kind == "value_error":
        msg = msg.removeprefix("Value error, ")
    return f"{'.'.join(loc) or top}: {msg}"


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
