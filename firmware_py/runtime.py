"""`edge-agent run --config PATH`: the station service at an agent's seat.

    audio source (headset capture | file) --read--> analysis thread: commands, lifecycle, pipeline
        --events--> outbox (SQLite, durable) --> publisher (paho) --> broker --> hub
    MQTT cmd/* and the local HTTP endpoint --> command queue --> analysis thread (one place changes state)

Threads: the audio callback (only copies), the analysis loop (everything that changes state, so there are no
races between a privacy request and a block in flight), paho's network thread, the outbox pump, the local
endpoint. systemd: Type=notify; READY once listening, WATCHDOG pings from the analysis loop only (a hung
pipeline stops them, systemd restarts the service), STOPPING on SIGTERM, after which the running call is
closed (its summary goes into the outbox) and the outbox is given a few seconds to drain. Audio never touches
the disk: it lives in the capture ring, the pre-roll and the pipeline's frame queue, all in memory. Between calls
the pipeline follows the rate the headset captures at (narrowband speech weights below 16 kHz, as `analyze`
picks them for a file), and a signed config is taken only once the pipelines it makes have loaded.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import signal
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.audio import SAMPLE_RATE, AudioError, probe
from edge_agent.commands import CallEnd, CallStart, Command, ConfigUpdate, Login, Logout, Privacy, UpdateCommand
from edge_agent.config import AnalyzerConfig, ConfigError, parse_document
from edge_agent.emotion import EmotionTracker
from edge_agent.emotion_model import EmotionModel, EmotionModelError
from edge_agent.mqtt_publisher import BrokerConfig, Publisher
from edge_agent.outbox import Outbox
from edge_agent.schema import envelope
from edge_agent.silero_stream import SileroError
from edge_agent.speech_model import ModelError
from edge_agent.vad import WIDEBAND_HZ, config_for_rate
from edge_agent.wire import model_refs
from firmware_py import config as station_config
from firmware_py.capture import CaptureStats
from firmware_py.config import StationConfig
from firmware_py.health import os_snapshot
from firmware_py.indicators import Indication, Indicators
from firmware_py.lifecycle import CallLifecycle, Emitted, LifecycleError, State
from firmware_py.local_api import LocalApi
from firmware_py.remote_updates import StationUpdates
from firmware_py.sdnotify import Notifier
from firmware_py.sources import AudioSource, FileSource

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]

REMOTE_SECTIONS = ("analyzer", "lifecycle", "activity_batch_s", "live")
"""What a signed config update may change. Broker, identity, credentials and update keys stay local: a bad remote
value there would cut the seat off from the very hub that could fix it."""
REMOTE_FILE = "remote-config.yaml"
UNSIGNED_CONFIG_ERROR = (
    "config: refused, unsigned: configuration changes analysis, so it is taken only signed, as a config update"
    " (cmd/update kind config: qa-hub update publish --kind config --name station, docs/updates.md)"
)
ANALYSIS_BLOCK = SAMPLE_RATE // 10
"""Samples (100 ms at 16 kHz) gathered before each pipeline step."""
NARROWBAND_HZ = 8000
"""A telephone line's rate: the rate a config's narrowband analysis is checked at (`_check_loads`)."""
LOAD_ERRORS = (ModelError, SileroError, OSError)
"""What building a pipeline raises for weights that are missing or unusable (EmotionModelError is a ModelError)."""


class Station:
    def __init__(
        self,
        cfg: StationConfig,
        *,
        base_doc: dict[str, Any] | None = None,
        source: AudioSource | None = None,
        notifier: Notifier | None = None,
        pin_factory: Any = None,
    ) -> None:
        self.cfg = cfg
        self.base_doc = base_doc or {}
        remote = cfg.state_dir / REMOTE_FILE
        self.remote_doc: dict[str, Any] = (
            parse_document(remote.read_text(), ".yaml", str(remote)) if remote.exists() else {}
        )
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(
            cfg.state_dir / "outbox.sqlite",
            max_rows=cfg.outbox.max_rows,
            max_bytes=cfg.outbox.max_mb * 2**20,
            max_age_s=cfg.outbox.max_age_days * 86400 if cfg.outbox.max_age_days else None,
        )
        m = cfg.mqtt
        broker = BrokerConfig.from_url(m.broker, ca_certs=m.ca_certs, certfile=m.certfile, keyfile=m.keyfile)
        if m.username:
            broker = dataclasses.replace(broker, username=m.username, password=m.password)
        self.publisher = Publisher(
            self.outbox,
            site=cfg.station.site,
            seat=cfg.station.seat,
            broker=broker,
            health_interval_s=m.health_interval_s,
        )
        self.publisher.on_command = self._mqtt_command
        self.publisher.health_extra = self.health
        self.source = source or make_source(cfg)
        self._file_rate = file_rate(self.source)  # a file's rate does not change: read once, not every block
        self.updates = StationUpdates(cfg.updates, cfg.state_dir)
        self.rate: int | None = None
        """Hz the source captured at when last seen between calls, which the pipeline follows (None: not known yet)."""
        try:
            self.lifecycle = self._new_lifecycle(cfg, None)
        except LOAD_ERRORS as exc:
            if not self.remote_doc or not self.base_doc:
                raise
            # a remote config saved before configs were load-checked (or whose weights have gone since) would stop
            # the station at every restart: fall back to the config file, which the hub can then fix remotely
            log.error("the persisted remote config does not load (%s): starting on the config file alone", exc)
            self.cfg = cfg = station_config.validate(self.base_doc, "config")
            self.remote_doc = {}
            self.lifecycle = self._new_lifecycle(cfg, None)
        self.models = model_refs(self.lifecycle.pipeline)
        self.notifier = notifier or Notifier()
        self.indicators = Indicators(
            cfg.gpio.led_pin, cfg.gpio.privacy_button_pin, self._button_pressed, pin_factory=pin_factory
        )
        self.local_api: LocalApi | None = None
        if cfg.local_api.enabled:
            self.local_api = LocalApi(cfg.local_api.host, cfg.local_api.port, self.submit, self.health)
        self._commands: queue.Queue[tuple[Command, str, Future[str | None]]] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending_cfg: StationConfig | None = None
        self._pending_model: EmotionModel | None = None
        self._last_ping = 0.0
        self.blocks = 0
        self.discarded_blocks = 0
        self.events_out = 0

    # --- lifecycle of the service --------------------------------------------------------------------------

    def start(self) -> None:
        self.publisher.start()
        self.source.start()
        if self.local_api is not None:
            self.local_api.start()
        # READY before the analysis thread exists: its first WATCHDOG ping must not beat READY to systemd
        self.notifier.ready()
        self._thread = threading.Thread(target=self._loop, name="analysis", daemon=True)
        self._thread.start()
        log.info("station %s/%s listening", self.cfg.station.site, self.cfg.station.seat)

    def stop(self, drain_s: float = 5.0) -> None:
        """Clean shutdown: close the running call, give the outbox `drain_s` to empty, keep the rest on disk."""
        self.notifier.stopping()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.lifecycle.close()
        self.source.stop()
        if self.local_api is not None:
            self.local_api.stop()
        self.publisher.drain(drain_s)
        self.publisher.stop()
        self.indicators.close()
        self.outbox.close()
        self.notifier.close()

    def submit(self, cmd: Command, origin: str) -> Future[str | None]:
        """Queue a command for the analysis thread (from paho's thread, the local endpoint or a button)."""
        fut: Future[str | None] = Future()
        if isinstance(cmd, Privacy) and cmd.on:
            self.source.discard()  # at once, not after the block in flight: buffered audio must not be heard
        self._commands.put((cmd, origin, fut))
        return fut

    # --- the analysis thread -------------------------------------------------------------------------------

    def _loop(self) -> None:
        pending: list[F32] = []
        n_pending = 0
        while not self._stop.is_set():
            self._run_commands()
            block = self.source.read(0.1)
            if self.lifecycle.state is State.PRIVACY:
                pending, n_pending = [], 0  # read and thrown away, never analysed
                if block is not None:
                    self.discarded_blocks += 1
            elif block is not None:
                pending.append(block)
                n_pending += len(block)
            # the pipeline costs per call as well as per sample: 100 ms at a time keeps it a fraction of a core
            # (20 ms blocks cost ~5x more) for 0.1 s of latency
            if n_pending >= ANALYSIS_BLOCK or (block is None and pending):
                self._analyse(np.concatenate(pending) if len(pending) > 1 else pending[0])
                pending, n_pending = [], 0
            self._heartbeat()

    def _analyse(self, block: F32) -> None:
        if self.lifecycle.state is State.IDLE:
            self._follow_rate()  # before feeding: this block was captured at the rate in force now
        state_before = self.lifecycle.state
        self.lifecycle.feed(block)
        self.blocks += 1
        if self.lifecycle.state is not state_before:
            self.publisher.request_health()
        if self._pending_cfg is not None and self.lifecycle.state is State.IDLE:
            self._apply_config(self._pending_cfg)
        if self._pending_model is not None and self.lifecycle.state is State.IDLE:
            self._switch_model()

    def _heartbeat(self) -> None:
        now = time.monotonic()
        if self.notifier.watchdog_s is not None and now - self._last_ping >= self.notifier.watchdog_s / 2:
            self.notifier.watchdog()
            self._last_ping = now
        fault = self.source.stats.state == "waiting"
        self.indicators.show(
            Indication.FAULT
            if fault
            else Indication.PRIVACY
            if self.lifecycle.state is State.PRIVACY
            else Indication.LISTENING
        )

    def _run_commands(self) -> None:
        while True:
            try:
                cmd, origin, fut = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                error = self._execute(cmd, origin)
            except LifecycleError as exc:
                error = str(exc)
            except ConfigError as exc:
                error = str(exc)
            fut.set_result(error)
            if origin == "mqtt":
                self.publisher.reply(cmd, cmd.cmd, error)
            self.publisher.request_health()
            if error:
                log.warning("%s command %s refused: %s", origin, cmd.cmd, error)

    def _execute(self, cmd: Command, origin: str) -> str | None:
        lc = self.lifecycle
        by = "command" if origin == "mqtt" else origin
        if isinstance(cmd, CallStart):
            lc.start_call(cmd.call_id, by=by, agent_id=cmd.agent_id)
        elif isinstance(cmd, CallEnd):
            if not lc.end_call("command", cmd.call_id):
                return "no such call running" if lc.call is not None else "no call running"
        elif isinstance(cmd, Login):
            lc.login(cmd.agent_id)
        elif isinstance(cmd, Logout):
            lc.logout()
        elif isinstance(cmd, Privacy):
            if cmd.on:
                self.source.discard()
            lc.set_privacy(cmd.on)
        elif isinstance(cmd, ConfigUpdate):
            return self._config_update(cmd)
        elif isinstance(cmd, UpdateCommand):
            return self._update(cmd)
        return None

    def _mqtt_command(self, cmd: Command) -> None:
        self.submit(cmd, "mqtt")  # answered on cmd_result once the analysis thread has acted

    def _button_pressed(self) -> None:
        self.submit(Privacy(on=self.lifecycle.state is not State.PRIVACY), "button")

    # --- remote config -------------------------------------------------------------------------------------

    def _config_update(self, cmd: ConfigUpdate) -> str | None:
        """An unsigned `cmd/config` (MQTT or the local endpoint): refused, whoever sent it. Every section it may
        change (REMOTE_SECTIONS) changes what the station measures (emotion off, dead air at 120 s, no automatic
        calls), and the broker credentials that could send it (the CTI's, the hub's, a stolen seat's via the local
        endpoint) are not what a station trusts: the update signing key is (docs/trust.md). The same document
        comes signed as a config update (`cmd/update`, kind `config`: `_update`)."""
        self.updates.unsigned_config_refused += 1
        return UNSIGNED_CONFIG_ERROR

    def _check_remote(self, config: dict[str, Any]) -> tuple[StationConfig, dict[str, Any]]:
        """A remote config document -> (the config it makes, the remote document to persist); ConfigError."""
        bad = sorted(set(config) - set(REMOTE_SECTIONS))
        if bad:
            raise ConfigError(
                f"config: {', '.join(bad)} cannot be changed remotely (only {', '.join(REMOTE_SECTIONS)})"
            )
        remote = station_config.merge(self.remote_doc, config)
        new = station_config.validate(station_config.merge(self.base_doc, remote), "remote config")
        # a config that names weights which do not load must be refused here, before it is saved: applied, it
        # would stop the analysis thread, and persisted, stop the station at every restart
        self._check_loads(new)
        return new, remote

    def _accept_remote(self, new: StationConfig, remote: dict[str, Any], version: str | None) -> None:
        station_config.save_atomically(self.cfg.state_dir / REMOTE_FILE, remote)  # survives a restart
        self.remote_doc = remote
        self._pending_cfg = new
        if self.lifecycle.state is State.IDLE:
            self._apply_config(new)
        log.info(
            "remote config %s accepted (%s)",
            version or "-",
            "applied" if self._pending_cfg is None else "next call",
        )

    def _apply_config(self, new: StationConfig) -> None:
        self._install(self._new_lifecycle(new, self.lifecycle.agent_id))
        self.cfg = new
        self._pending_cfg = None
        self._pending_model = None  # the new pipeline loaded the update in use

    def _follow_rate(self) -> None:
        """Between calls: analyse with the weights for the rate the source captures at now (narrowband below
        16 kHz, `vad.config_for_rate`). The rate is known only once the device is open, and a reconnect may bring a
        headset with another one; a call keeps the weights it started with."""
        stats = self.source.stats
        rate = stats.device_rate if isinstance(stats, CaptureStats) else self._file_rate
        if rate is None or rate == self.rate:
            return
        base = self.updates.analyzer(self.cfg.analyzer)
        same = config_for_rate(base, rate) == (base if self.rate is None else config_for_rate(base, self.rate))
        before, self.rate = self.rate, rate
        if same:
            return  # 44.1 -> 48 kHz, say: the same weights, nothing to rebuild
        try:
            lifecycle = self._new_lifecycle(self.cfg, self.lifecycle.agent_id)
        except LOAD_ERRORS as exc:
            # the config's weights for this rate do not load (a local config: remote ones are checked for every
            # rate before they are taken): keep analysing with those in use rather than stop the analysis thread
            log.error("the speech weights for %d Hz do not load (%s): keeping those for %s Hz", rate, exc, before)
            return
        self._install(lifecycle)

    def _install(self, lifecycle: CallLifecycle) -> None:
        """Switch to a lifecycle built between calls; say so when the speech weights changed."""
        lifecycle.calls_started = self.lifecycle.calls_started  # health counts calls since start, not since then
        old = self.models.get("activity")
        self.lifecycle = lifecycle
        self.models = model_refs(lifecycle.pipeline)
        new = self.models.get("activity")
        if new is not None and old is not None and new.name != old.name:
            log.info("speech weights %s for %s Hz capture (were %s)", new.name, self.rate or "-", old.name)

    def _new_lifecycle(self, cfg: StationConfig, agent: str | None, rate: int | None = None) -> CallLifecycle:
        """The lifecycle and pipeline `cfg` makes for a source at `rate` Hz (default: the rate in force)."""
        rate = rate or self.rate

        def make(analyzer: AnalyzerConfig) -> CallLifecycle:
            live = self.publisher.publish_live if cfg.live else None
            if rate is not None:
                analyzer = config_for_rate(analyzer, rate)
            return CallLifecycle(
                cfg.lifecycle, analyzer, self._put, batch_s=cfg.activity_batch_s, agent_id=agent, live=live
            )

        updated = self.updates.analyzer(cfg.analyzer)
        try:
            return make(updated)
        except EmotionModelError as exc:
            if updated is cfg.analyzer:
                raise
            log.error("the emotion model update in use does not load (%s): using the configured model", exc)
            return make(cfg.analyzer)

    def _check_loads(self, cfg: StationConfig) -> None:
        """Build the pipeline `cfg` makes at every rate a headset may bring, as `_new_lifecycle` will, and drop
        it: raises (ModelError, SileroError, OSError, ...) if weights it names are missing or unusable."""
        base = self.updates.analyzer(cfg.analyzer)
        for rate in (WIDEBAND_HZ, NARROWBAND_HZ):
            if rate == WIDEBAND_HZ or config_for_rate(base, rate) != base:  # each set of weights once
                self._new_lifecycle(cfg, None, rate)

    # --- signed updates (docs/updates.md) ------------------------------------------------------------------

    def _update(self, cmd: UpdateCommand) -> str | None:
        out = self.updates.apply(cmd, self.cfg.analyzer.emotion, self._check_remote)
        if out.config is not None:
            self._accept_remote(*out.config, cmd.manifest.version)
        if out.model is not None:
            self._pending_model = out.model
            if self.lifecycle.state is not State.IN_CALL:
                self._switch_model()
        return out.error

    def _switch_model(self) -> None:
        """Between calls: the pipeline scores emotion with the update's model (loaded and checked already)."""
        model, self._pending_model = self._pending_model, None
        pipe = self.lifecycle.pipeline
        if model is not None and pipe.emotion is not None:
            pipe.emotion = EmotionTracker(pipe.emotion.cfg, model)
            self.models = model_refs(pipe)
            log.info("emotion model switched to %s (sha256 %s)", model.card.name, model.card.sha256[:12])

    # --- events out ----------------------------------------------------------------------------------------

    def _put(self, out: Emitted) -> None:
        site, seat = self.cfg.station.site, self.cfg.station.seat
        envs = [
            envelope(
                e,
                seat=seat,
                site=site,
                call_id=out.call_id,
                agent_id=out.agent_id,
                model=self.models.get(e.type),
            )
            for e in out.events
        ]
        self.outbox.put_many(envs)  # committed before anything is sent
        self.events_out += len(envs)
        self.publisher.notify()

    # --- health --------------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        lc, st = self.lifecycle, self.source.stats
        snap = os_snapshot(self.cfg.health.thermal_zone, self.cfg.state_dir)
        snap.update(
            state=str(lc.state),
            call_id=lc.call.call_id if lc.call else None,
            agent_id=lc.agent_id,
            device=st.device,
            device_state=st.state,
            overflows=st.overflows,
            dropped_frames=st.dropped_frames,
            reconnects=st.reconnects,
            outbox_pending=len(self.outbox),
            outbox_dropped=self.outbox.dropped,
            outbox_evicted_unconfirmed=self.outbox.evicted_unconfirmed,
            models={t: m.to_dict() for t, m in self.models.items() if t in ("activity", "emotion")},
            analysis_rate=self.rate,
            calls=lc.calls_started,
            updates=self.updates.health(),
        )
        return snap


def file_rate(source: AudioSource) -> int | None:
    """A file source's rate, as `edge-agent replay` would analyse the file; None for other sources."""
    if not isinstance(source, FileSource):
        return None
    try:
        return probe(source.path).sample_rate
    except AudioError:
        return None  # the source itself reports an unreadable file when it reads it


def make_source(cfg: StationConfig) -> AudioSource:
    if cfg.source.type == "file":
        assert cfg.source.file is not None  # noqa: S101 - validated in config
        return FileSource(cfg.source.file, loop=cfg.source.loop, realtime=cfg.source.realtime)
    from firmware_py.capture import Capture, CaptureConfig

    src: AudioSource = Capture(CaptureConfig.model_validate(cfg.capture))
    return src


def load_with_remote(path: str | Path) -> tuple[StationConfig, dict[str, Any]]:
    """The config file, with the last accepted remote update (persisted in state_dir) over it."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config ({exc.strerror})") from None
    doc = parse_document(text, p.suffix, str(p))
    cfg = station_config.validate(doc, str(p))
    remote = cfg.state_dir / REMOTE_FILE
    if remote.exists():
        update = parse_document(remote.read_text(), ".yaml", str(remote))
        try:
            cfg = station_config.validate(station_config.merge(doc, update), str(remote))
        except ConfigError as exc:
            log.error("ignoring the persisted remote config: %s", exc)
    return cfg, doc


def run(config_path: str) -> int:
    """The service's main: runs until SIGTERM/SIGINT."""
    cfg, doc = load_with_remote(config_path)
    station = Station(cfg, base_doc=doc)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    station.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        station.stop()
    return 0
