"""Station config: one YAML or TOML file, validated at start; secrets from the environment.

Every section and key is optional except `station.site` / `station.seat` / `mqtt.broker`; unknown keys are
refused with an error naming them, so a typo never silently falls back to a default. Environment overrides
(for secrets that must not sit in a world-readable file, and for systemd `Environment=` lines):
`EDGE_AGENT_MQTT_PASSWORD`, `EDGE_AGENT_MQTT_USERNAME`, `EDGE_AGENT_BROKER`, `EDGE_AGENT_SITE`,
`EDGE_AGENT_SEAT`. Remote updates (`cmd/config`) are validated here too, then written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_agent.config import AnalyzerConfig, ConfigError, first_error, parse_document
from edge_agent.update_store import write_atomically
from edge_agent.wire import DEFAULT_BATCH_S

ENV_OVERRIDES = {
    "EDGE_AGENT_SITE": ("station", "site"),
    "EDGE_AGENT_SEAT": ("station", "seat"),
    "EDGE_AGENT_BROKER": ("mqtt", "broker"),
    "EDGE_AGENT_MQTT_USERNAME": ("mqtt", "username"),
    "EDGE_AGENT_MQTT_PASSWORD": ("mqtt", "password"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StationIdentity(_Strict):
    site: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    seat: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    state_dir: str = Field("/var/lib/edge-agent", description="outbox and persisted config live here")


class MqttSection(_Strict):
    broker: str = Field(description="mqtt://HOST:PORT or mqtts://HOST:PORT")
    username: str | None = None
    password: str | None = Field(None, repr=False)
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    health_interval_s: float = Field(30.0, gt=0, le=3600)


class OutboxSection(_Strict):
    max_rows: int = Field(200_000, ge=100)
    max_mb: int = Field(256, ge=1)
    max_age_days: float | None = Field(None, gt=0)


class SourceSection(_Strict):
    """Where audio comes from: the headset (`capture`) or a file replayed at real time (demo, simulation)."""

    type: Literal["capture", "file"] = "capture"
    file: str | None = Field(None, description="for type 'file': a two-channel call file")
    loop: bool = Field(False, description="for type 'file': replay it forever")
    realtime: bool = Field(True, description="for type 'file': pace it at real time")


class LifecycleSection(_Strict):
    auto: bool = Field(True, description="start a call on customer speech while idle, end it after silence")
    start_speech_s: float = Field(0.5, gt=0, le=10, description="customer speech that starts an automatic call")
    end_silence_s: float = Field(20.0, ge=3, le=600, description="both silent this long ends an automatic call")
    preroll_s: float = Field(5.0, ge=0, le=30, description="audio kept from before the detected start (the greeting)")
    # at most a day: the hub refuses call times beyond 24 h (edge_agent/schema.py), so a longer call could not land
    max_call_s: float = Field(
        4 * 3600, ge=60, le=86400, description="a call is closed after this long whatever happens"
    )


class LocalApiSection(_Strict):
    enabled: bool = True
    host: Literal["127.0.0.1", "::1", "localhost"] = Field("127.0.0.1", description="loopback only")
    port: int = Field(8765, ge=0, le=65535)


class GpioSection(_Strict):
    led_pin: int | None = Field(None, description="BCM pin of the status LED (needs the 'pi' extra)")
    privacy_button_pin: int | None = Field(None, description="BCM pin of a privacy toggle button")


class HealthSection(_Strict):
    thermal_zone: str = "/sys/class/thermal/thermal_zone0/temp"


class UpdatesSection(_Strict):
    """Signed model/config updates from the hub (docs/updates.md). No keys: every update is refused."""

    public_keys: list[str] = Field(
        default_factory=list, description="Ed25519 public keys of the hub admin: base64 (32 bytes) or a file path"
    )
    max_bytes: int = Field(
        700_000, ge=1024, le=12 * 2**20, description="largest payload taken (the broker's max_packet_size bounds it)"
    )


class StationConfig(_Strict):
    station: StationIdentity
    mqtt: MqttSection
    analyzer: AnalyzerConfig = AnalyzerConfig()
    capture: dict[str, Any] = Field(default_factory=dict, description="firmware_py.capture.CaptureConfig")
    source: SourceSection = SourceSection()
    lifecycle: LifecycleSection = LifecycleSection()
    outbox: OutboxSection = OutboxSection()
    local_api: LocalApiSection = LocalApiSection()
    gpio: GpioSection = GpioSection()
    health: HealthSection = HealthSection()
    updates: UpdatesSection = UpdatesSection()
    activity_batch_s: float = Field(DEFAULT_BATCH_S, gt=0, le=600)
    live: bool = Field(True, description="publish talk-over / dead-air onsets on the live topic for the wall")

    @property
    def state_dir(self) -> Path:
        return Path(self.station.state_dir)


def validate(data: dict[str, Any], where: str, env: dict[str, str] | None = None) -> StationConfig:
    """The document with environment overrides applied -> StationConfig; ConfigError names the bad key."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for var, (section, key) in ENV_OVERRIDES.items():
        value = (os.environ if env is None else env).get(var)
        if value:
            sec = data.setdefault(section, {})
            if isinstance(sec, dict):
                sec[key] = value
    try:
        cfg = StationConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {first_error(exc)}") from None
    _check_capture(cfg, where)
    return cfg


def _check_capture(cfg: StationConfig, where: str) -> None:
    if cfg.source.type == "file" and not cfg.source.file:
        raise ConfigError(f"{where}: source.file: required when source.type is 'file'")
    if cfg.source.type != "capture":
        return
    try:
        from firmware_py.capture import CaptureConfig
    except ImportError:  # sounddevice missing: the runtime says so when it opens the device
        return
    try:
        CaptureConfig.model_validate(cfg.capture)
    except ValidationError as exc:
        raise ConfigError(f"{where}: capture.{first_error(exc)}") from None


def load(path: str | Path, env: dict[str, str] | None = None) -> StationConfig:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config ({exc.strerror})") from None
    return validate(parse_document(text, p.suffix, str(p)), str(p), env)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` laid on `base` key by key, into nested sections: a signed config that sets
    `analyzer.emotion.anger_alert` changes that value, not the seat's whole local `analyzer` section. A section
    whose `type` differs (`vad: {type: webrtc}` over a model VAD) replaces the base's: its other keys belong to
    another kind. Neither argument is changed."""
    out = dict(base)
    for key, value in over.items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict) and value.get("type", old.get("type")) == old.get("type"):
            out[key] = merge(old, value)
        else:
            out[key] = value
    return out


def save_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write a config document so that a crash leaves either the old file or the new one, never half."""
    write_atomically(path, yaml.safe_dump(data, sort_keys=False).encode())
