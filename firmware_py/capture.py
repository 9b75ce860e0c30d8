"""Live capture of the headset's two sides with sounddevice (PortAudio), as 16 kHz (agent, customer) blocks.

    PortAudio callback thread --copy--> FrameRing (bounded, device rate) --read()--> soxr --> (n, 2) @ 16 kHz
    supervisor thread: find device by name, open, watch, on loss close and reopen with backoff

The audio callback only copies into the ring: no allocation-heavy work, no logging, no waiting on the
reader. When the reader falls more than `ring_s` behind, the oldest audio is overwritten and counted
(`dropped_frames`); PortAudio's own input overflows (xruns) are counted too (`overflows`). Resampling from
whatever rate the device offers happens in `read()`, on the consumer's thread.

A device that disappears (USB headset unplugged, sound server source removed), errors, or goes silent
for `STALL_S` is closed; the supervisor reports "waiting" and reopens it with exponential backoff and
jitter, re-scanning PortAudio's device list each time, so a replugged headset is picked up without
restarting the process. Nothing here raises into the consumer: `read()` returns None while waiting.

Two mono devices (agent mic on one, customer line on another) are opened at the same rate and aligned by
pulling equal frame counts from both rings, after dropping what each captured before both were running.
Limitation: two devices have two clocks. Nothing resamples one to the other, so their offset drifts
(about 0.1 s per 1000 s at 100 ppm); when one side leads by more than `MAX_SKEW_S` its oldest frames are
dropped (counted in `dropped_frames`) to realign, a small jump in that channel. One stereo device (one
clock) has no such drift and is the recommended set-up.

Audio only ever lives in memory: the ring (zeroed on `discard()` and `stop()`), the resampler's short
history and the blocks handed to the consumer.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge_agent.audio import SAMPLE_RATE, Resampler
from firmware_py import devices
from firmware_py.devices import DeviceError, InputDevice
from firmware_py.ring import FrameRing
from firmware_py.sources import SourceStats

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]

STALL_S = 5.0
"""An open stream that delivers nothing for this long counts as lost (a sound server can take ~2 s to the
first block of a new stream, so this stays well above that)."""
STABLE_S = 10.0
"""A stream that ran this long resets the backoff to `retry_min_s`."""
MAX_SKEW_S = 0.1
"""Two mono devices: how far one may lead the other before its oldest frames are dropped to realign."""
MIN_READ_S = 0.1
"""read() hands out at least this much when it can: the pipeline's per-call overhead on 20 ms blocks costs
~10 % of a core, on 100 ms blocks ~2.6 % (benchmarks/bench_capture.py)."""
WATCH_S = 0.5
"""How often the supervisor checks a running stream."""


class CaptureConfig(BaseModel):
    """Which device(s) carry the two sides, and how capture buffers and retries."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Live capture")

    device: str | None = Field(
        None, description="regex (case-insensitive) matched against PortAudio device names; None: the default input"
    )
    customer_device: str | None = Field(
        None, description="second, mono device for the customer side; None: one stereo device carries both"
    )
    agent_channel: int = Field(0, ge=0, le=63, description="agent channel within the stereo device, or of its device")
    customer_channel: int = Field(1, ge=0, le=63, description="customer channel (the other side, or of its device)")
    samplerate: int | None = Field(None, ge=8000, le=384000, description="Hz; None: the device's default rate")
    # 50 ms: half the callbacks of 20 ms for the same audio (4.3 % of a core instead of 5.4 %, emotion on);
    # analysis reads 100 ms at a time anyway, so it adds no latency that matters
    block_ms: int = Field(50, ge=5, le=500, description="audio callback block, ms")
    ring_s: float = Field(5.0, ge=0.2, le=300, description="ring buffer, s; on overflow the oldest audio is dropped")
    retry_min_s: float = Field(0.5, gt=0, le=60, description="first reopen delay after a device loss, s")
    retry_max_s: float = Field(10.0, gt=0, le=600, description="longest reopen delay (doubling with jitter), s")

    @field_validator("device", "customer_device")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return v

    @model_validator(mode="after")
    def _channels(self) -> CaptureConfig:
        if self.customer_device is None and self.agent_channel == self.customer_channel:
            raise ValueError("agent_channel and customer_channel must differ on one stereo device")
        if self.retry_max_s < self.retry_min_s:
            raise ValueError("retry_max_s must be at least retry_min_s")
        return self

    @property
    def two_mono(self) -> bool:
        return self.customer_device is not None


@dataclass
class CaptureStats(SourceStats):
    """A snapshot; `state` is running | waiting | stopped."""

    device_rate: int | None = None
    """Hz the device(s) deliver, before resampling to 16 kHz."""
    frames_captured: int = 0
    """Frames the callback received since start, at the device rate."""
    # inherited: device (name; "agent + customer" for two mono devices), overflows (PortAudio input
    # overflow flags), dropped_frames (ring overflow and two-device realignment, at the device rate),
    # reconnects (reopened after a loss), last_error (one line)


class Capture:
    """The headset as an `AudioSource` (firmware_py.sources): start(), read(), discard(), stop(), stats."""

    def __init__(self, cfg: CaptureConfig) -> None:
        self.cfg = cfg
        self._stop = threading.Event()
        self._lost = threading.Event()  # set when a stream ends by itself
        self._consumer_lock = threading.Lock()  # read() / discard() / ring swaps
        self._streams_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._streams: list[Any] = []
        self._rings: list[FrameRing] = []
        self._last_data = [0.0, 0.0]
        self._got_data = [False, False]
        self._overflows = [0, 0]  # one counter per callback thread, so neither races the other
        self._aligned = True
        self._rate: int | None = None
        self._resampler: Resampler | None = None
        self._cols = [cfg.agent_channel, cfg.customer_channel]
        self._retired_dropped = 0
        self._retired_written = 0
        self._state = "stopped"
        self._device: str | None = None
        self._reconnects = 0
        self._last_error: str | None = None

    # ---- consumer side -------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the device(s) in the background, retrying with backoff until found; returns at once."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._state = "waiting"
        self._thread = threading.Thread(target=self._supervise, name="capture-supervisor", daemon=True)
        self._thread.start()

    def read(self, timeout: float) -> F32 | None:
        """Next (n, 2) float32 block at 16 kHz (agent, customer): all audio captured since the last read,
        once at least MIN_READ_S is buffered, or whatever there is when `timeout` s pass; None when nothing
        arrived (no device, device lost, stopped)."""
        deadline = time.monotonic() + timeout
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            buffered = self._buffered_s()
            if buffered >= MIN_READ_S or remaining <= 0:
                with self._consumer_lock:
                    out = self._pull()
                if out is not None and len(out):
                    return out
                if remaining <= 0:
                    return None
                wait = min(remaining, self.cfg.block_ms / 1000)  # resampler warm-up, two devices aligning
            else:
                wait = min(remaining, MIN_READ_S - buffered)
            self._stop.wait(wait)
        return None

    def _buffered_s(self) -> float:
        rings, rate = self._rings, self._rate
        if not rings or not rate:
            return 0.0
        return min(r.available for r in rings) / rate

    def discard(self) -> int:
        """Drop (and zero) everything buffered, including the resampler's history, for privacy.
        Returns the frames dropped, counted at 16 kHz like read()'s output."""
        with self._consumer_lock:
            n = max((r.clear() for r in self._rings), default=0)
            if self._rate is not None:
                self._resampler = Resampler(self._rate, 2)
                return round(n * SAMPLE_RATE / self._rate)
            return 0

    def stop(self) -> None:
        """Close the device(s) and forget buffered audio; read() returns None from now on."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
            self._thread = None
        self._close()
        with self._consumer_lock:
            for r in self._rings:
                r.clear()
            self._resampler = None if self._rate is None else Resampler(self._rate, 2)
        self._state = "stopped"

    @property
    def stats(self) -> CaptureStats:
        rings = self._rings
        return CaptureStats(
            state=self._state,
            device=self._device,
            overflows=sum(self._overflows),
            dropped_frames=self._retired_dropped + sum(r.dropped for r in rings),
            reconnects=self._reconnects,
            last_error=self._last_error,
            device_rate=self._rate,
            frames_captured=self._retired_written + (rings[0].written if rings else 0),
        )

    def _pull(self) -> F32 | None:
        """Everything buffered, as 16 kHz (agent, customer); called with the consumer lock held."""
        rings, resampler = self._rings, self._resampler
        if not rings or resampler is None:
            return None
        if len(rings) == 1:
            raw = rings[0].read()
            if not len(raw):
                return None
            block = raw[:, self._cols]
        else:
            agent, customer = rings
            if not self._aligned:
                if not all(self._got_data):
                    return None
                # both running now: start both sides from the same moment (to within one callback block)
                agent.clear()
                customer.clear()
                self._aligned = True
                return None
            self._realign(agent, customer)
            n = min(agent.available, customer.available)
            if n == 0:
                return None
            block = np.hstack(
                [
                    agent.read(n)[:, self._cols[0] : self._cols[0] + 1],
                    customer.read(n)[:, self._cols[1] : self._cols[1] + 1],
                ]
            )
        return resampler.process(block)

    def _realign(self, agent: FrameRing, customer: FrameRing) -> None:
        """Two clocks drift apart: drop the oldest frames of the side that leads by more than MAX_SKEW_S."""
        rate = self._rate or SAMPLE_RATE
        lead = agent.available - customer.available
        block = rate * self.cfg.block_ms // 1000
        if abs(lead) > MAX_SKEW_S * rate:
            # keep one block of lead: that much is only callback timing, not drift
            (agent if lead > 0 else customer).skip(abs(lead) - block)

    # ---- supervisor ----------------------------------------------------------------------------------

    def _supervise(self) -> None:
        cfg = self.cfg
        delay = cfg.retry_min_s
        attempt = 0
        ever_open = False
        while not self._stop.is_set():
            opened_at: float | None = None
            error: str | None = None
            try:
                if attempt:
                    devices.rescan()  # a headset plugged in since is invisible to PortAudio until then
                attempt += 1
                self._open()
                opened_at = time.monotonic()
                if ever_open:
                    self._reconnects += 1
                    log.info("capture: reconnected to %s after %d attempt(s)", self._device, attempt - 1)
                elif attempt > 1:
                    log.info("capture: found %s after %d attempt(s)", self._device, attempt - 1)
                ever_open = True
                attempt = 1
                error = self._watch()
            except DeviceError as exc:
                error = str(exc)
            except Exception as exc:  # a bug or an unexpected PortAudio state: log it fully, close, retry
                log.exception("capture: unexpected error")
                error = f"{type(exc).__name__}: {exc}"
            finally:
                self._close()
            if self._stop.is_set() or error is None:
                break
            self._state = "waiting"
            if error != self._last_error or opened_at is not None:
                log.warning("capture: %s; retrying", error)
            self._last_error = error
            if opened_at is not None and time.monotonic() - opened_at >= STABLE_S:
                delay = cfg.retry_min_s
            # jitter: stations that lost the same server do not all come back in lockstep
            self._stop.wait(random.uniform(delay / 2, delay))  # noqa: S311 - timing jitter, not security
            delay = min(delay * 2, cfg.retry_max_s)
        self._state = "stopped"

    def _open(self) -> None:
        cfg = self.cfg
        if cfg.two_mono:
            wanted = [(cfg.device, cfg.agent_channel + 1), (cfg.customer_device, cfg.customer_channel + 1)]
        else:
            wanted = [(cfg.device, max(cfg.agent_channel, cfg.customer_channel) + 1)]
        found = [devices.find_input(pattern, channels) for pattern, channels in wanted]
        rate = cfg.samplerate or found[0].default_rate
        self._prepare_rings(rate, [channels for _, channels in wanted])
        sd = devices.sounddevice()
        self._lost.clear()
        now = time.monotonic()
        for i, (dev, (_, channels)) in enumerate(zip(found, wanted, strict=True)):
            self._last_data[i] = now
            self._got_data[i] = False
            try:
                stream = sd.InputStream(
                    device=dev.index,
                    channels=channels,
                    samplerate=rate,
                    blocksize=max(1, rate * cfg.block_ms // 1000),
                    dtype="float32",
                    latency="high",  # nothing here needs low latency; larger host buffers ride out scheduling hiccups
                    callback=self._callback(i),
                    finished_callback=self._finished,
                )
            except sd.PortAudioError as exc:
                raise DeviceError(f"cannot open {dev.name!r} at {rate} Hz: {_one_line(exc)}") from None
            with self._streams_lock:
                self._streams.append(stream)
                devices.stream_opened()
            try:
                stream.start()
            except sd.PortAudioError as exc:
                raise DeviceError(f"cannot start {dev.name!r}: {_one_line(exc)}") from None
        self._device = " + ".join(d.name for d in found)
        self._state = "running"
        log.info("capture: %s at %d Hz (%s)", self._device, rate, _describe(found))

    def _prepare_rings(self, rate: int, channels: list[int]) -> None:
        """Keep the rings (and unread audio) across a reconnect at the same rate; new ones otherwise."""
        with self._consumer_lock:
            same = self._rate == rate and [r.channels for r in self._rings] == channels
            if not same:
                for r in self._rings:
                    self._retired_dropped += r.dropped + r.available
                    self._retired_written += r.written
                    r.clear()
                self._rings = [FrameRing(max(1, round(self.cfg.ring_s * rate)), ch) for ch in channels]
                self._rate = rate
                self._resampler = Resampler(rate, 2)
            self._aligned = len(channels) == 1

    def _callback(self, i: int) -> Callable[[F32, int, Any, Any], None]:
        ring = self._rings[i]
        last_data, got_data, overflows = self._last_data, self._got_data, self._overflows
        clock = time.monotonic

        def callback(indata: F32, frames: int, time_info: Any, status: Any) -> None:
            # runs on PortAudio's thread: copy and note the time; nothing that can block or log
            if status and status.input_overflow:
                overflows[i] += 1
            ring.write(indata)
            last_data[i] = clock()
            got_data[i] = True

        return callback

    def _finished(self) -> None:
        self._lost.set()

    def _watch(self) -> str | None:
        """Block while the stream(s) run; the reason they stopped, or None when stop() was called."""
        while not self._stop.wait(WATCH_S):
            if self._lost.is_set():
                return f"{self._device}: stream ended (device removed or failed)"
            now = time.monotonic()
            if any(now - t > STALL_S for t in self._last_data[: len(self._rings)]):
                return f"{self._device}: no audio for {STALL_S:g} s"
        return None

    def _close(self) -> None:
        with self._streams_lock:
            streams, self._streams = self._streams, []
            for stream in streams:
                try:
                    stream.abort(ignore_errors=True)
                    stream.close(ignore_errors=True)
                except Exception:  # closing a stream whose device vanished may fail; it is gone either way
                    log.debug("capture: closing %s failed", self._device, exc_info=True)
                devices.stream_closed()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _describe(found: list[InputDevice]) -> str:
    return ", ".join(f"{d.name}: {d.channels} ch, default {d.default_rate} Hz" for d in found)
