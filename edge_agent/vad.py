"""Speech activity per party: pluggable backends behind a registry, then onset/hangover smoothing.

Backends turn 10 ms frames of both channels into per-frame speech probabilities (agent, customer):
- `model` (default): the two-channel speech model, which also rejects crosstalk and echo;
- `webrtc`: webrtcvad per channel, gated by the leakage estimate (see `crosstalk.py`);
- `silero`: Silero VAD's ONNX file through onnxruntime, gated the same way.
Each reports how many frames late its output runs (`delay`), so the pipeline can keep audio-derived
data in step with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from edge_agent.audio import FRAME, SAMPLE_RATE
from edge_agent.config import (
    AnalyzerConfig,
    ModelVadConfig,
    SileroVadConfig,
    SmoothingConfig,
    VadConfig,
    WebrtcVadConfig,
)
from edge_agent.events import PARTIES
from edge_agent.features import N_FEATURES
from edge_agent.model_files import onnx_session
from edge_agent.silero_stream import CHUNK, PooledGate, SileroError, SileroStream, silero_data_dir
from edge_agent.speech_model import LOOKAHEAD, ContextStack, SpeechModel, narrowband_model_path

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
BOOL = npt.NDArray[np.bool_]


class VadBackend(Protocol):
    delay: int
    """Frames between a frame entering `process` and its probability coming out."""
    name: str
    uses_excess: bool
    """Whether `process` reads the leakage excess (else the pipeline computes it only for `talk_over.own_voice`)."""
    dead_air_view: bool
    """Whether columns 2-3 of `process`'s output are a view of their own for dead air (else dead air reads 0-1)."""

    def process(self, samples: F32, features: F32, excess_db: F32) -> F32:
        """samples (k*FRAME, 2), features (k, N_FEATURES), broadband excess over leakage (k, 2) -> probs (m, 2).

        A backend may return (m, 6): columns 2-3 the speech dead air should count (read where `dead_air_view`),
        columns 4-5 an independent detector's probability, which the self-check compares with the activity.
        """
        ...

    def finish(self) -> F32: ...

    def reset(self) -> None: ...


class ModelVad:
    """The two-channel speech model over CallFeatures and Silero VAD's per-channel probability.

    Silero (`silero_stream.py`) runs beside the features and lags them by under one 32 ms window; feature
    frames wait here for their Silero columns before entering the context stack. On the parties named in
    `silero_gate`, Silero then also caps the model's output (`PooledGate`).
    """

    _feats: F32
    """CallFeatures rows still waiting for their Silero columns."""

    def __init__(self, cfg: ModelVadConfig) -> None:
        self.model = SpeechModel(Path(cfg.weights) if cfg.weights else None)
        self.silero = SileroStream(cfg.silero_onnx)
        channels = tuple(PARTIES.index(p) for p in cfg.silero_gate)
        # the model runs LOOKAHEAD frames late, so Silero's frames up to that far ahead are always known
        reach = min(round(cfg.silero_gate_ms / 10), LOOKAHEAD)
        self.gate = PooledGate(channels, reach, reach)
        self.dead_air_view = cfg.silero_dead_air
        self.stack = ContextStack()
        # the model's lookahead, plus up to one Silero window (512 samples) that features wait for
        self.delay = LOOKAHEAD + -(-CHUNK // FRAME)
        self.uses_excess = False
        self.name = f"model:{self.model.card.name}"
        self.reset()

    def process(self, samples: F32, features: F32, excess_db: F32) -> F32:
        self._feats = np.vstack([self._feats, features])
        sil = self.silero.process(samples)
        self.gate.push(sil)
        rows = np.hstack([self._feats[: len(sil)], sil])
        self._feats = self._feats[len(sil) :]
        return self._gated(self.model.predict(self.stack.process(rows)))

    def finish(self) -> F32:
        sil = self.silero.finish()
        self.gate.push(sil)
        rows = np.hstack([self._feats[: len(sil)], sil])
        probs = self.model.predict(np.vstack([self.stack.process(rows), self.stack.finish()]))
        out = self._gated(probs)
        self.reset()
        return out

    def _gated(self, probs: F32) -> F32:
        gated, strict, silero = self.gate.apply(probs)
        # dead air: silence is where nobody speaks that *both* detectors hear, so a noise the model takes
        # for speech (typing, ring tones) cannot break up a silence Silero hears as one
        return np.hstack([gated, strict if self.dead_air_view else gated, silero])

    def reset(self) -> None:
        self.stack.reset()
        self.silero.reset()
        self.gate.reset()
        self._feats = np.zeros((0, N_FEATURES), np.float32)


class _GatedVad:
    """Common part of the single-channel VADs: a crosstalk gate on the leakage excess."""

    gate_db: float
    uses_excess = True
    dead_air_view = False

    def _gate(self, probs: F32, excess_db: F32) -> F32:
        return np.where(excess_db >= self.gate_db, probs, 0.0).astype(np.float32)


class WebrtcVad(_GatedVad):
    def __init__(self, cfg: WebrtcVadConfig) -> None:
        try:
            import webrtcvad
        except ImportError as exc:  # pragma: no cover - it is a core dependency
            raise RuntimeError("the webrtc VAD backend needs the webrtcvad-wheels package") from exc
        self._vads = [webrtcvad.Vad(cfg.mode), webrtcvad.Vad(cfg.mode)]
        self.gate_db = cfg.crosstalk_gate_db
        self.delay = 0
        self.name = f"webrtc:{cfg.mode}"

    def process(self, samples: F32, features: F32, excess_db: F32) -> F32:
        k = len(samples) // FRAME
        pcm = (np.clip(samples[: k * FRAME], -1.0, 1.0) * 32767).astype("<i2")
        out = np.zeros((k, 2), np.float32)
        for ch in (0, 1):
            col = np.ascontiguousarray(pcm[:, ch]).tobytes()
            vad = self._vads[ch]
            out[:, ch] = [vad.is_speech(col[i * 2 * FRAME : (i + 1) * 2 * FRAME], SAMPLE_RATE) for i in range(k)]
        return self._gate(out, excess_db)

    def finish(self) -> F32:
        return np.zeros((0, 2), np.float32)

    def reset(self) -> None:
        pass


class SileroVad(_GatedVad):
    """Silero VAD v5 ONNX (512-sample windows at 16 kHz with 64 samples of context)."""

    CHUNK = 512
    CONTEXT = 64

    def __init__(self, cfg: SileroVadConfig) -> None:
        path = Path(cfg.onnx) if cfg.onnx else silero_onnx_path()
        if not path.exists():
            raise SileroError(f"{path}: no such file (unset vad.onnx to use the wheel's Silero VAD)")
        # a damaged or foreign file is one line naming it, as for the model backend's Silero
        self._sess = onnx_session(path, SileroError, "not a usable Silero VAD ONNX")
        self.gate_db = cfg.crosstalk_gate_db
        self.delay = 0
        self.name = "silero"
        self.reset()

    def reset(self) -> None:
        self._state = [np.zeros((2, 1, 128), np.float32) for _ in range(2)]
        self._ctx = [np.zeros((1, self.CONTEXT), np.float32) for _ in range(2)]
        self._pending = np.zeros((0, 2), np.float32)
        self._prob = np.zeros(2, np.float32)
        self._queued = np.zeros((0, 2), np.float32)
        self._excess = np.zeros((0, 2), np.float32)

    def process(self, samples: F32, features: F32, excess_db: F32) -> F32:
        self._pending = np.vstack([self._pending, samples])
        self._excess = np.vstack([self._excess, excess_db])
        n_chunks = len(self._pending) // self.CHUNK
        per_frame = []
        for i in range(n_chunks):
            chunk = self._pending[i * self.CHUNK : (i + 1) * self.CHUNK]
            for ch in (0, 1):
                x = np.concatenate([self._ctx[ch], chunk[None, :, ch]], axis=1)
                out, self._state[ch] = self._sess.run(
                    None, {"input": x, "state": self._state[ch], "sr": np.array(SAMPLE_RATE, np.int64)}
                )
                self._ctx[ch] = chunk[None, -self.CONTEXT :, ch].copy()
                self._prob[ch] = float(out[0, 0])
            per_frame.append(np.repeat(self._prob[None, :], self.CHUNK, axis=0))
        self._pending = self._pending[n_chunks * self.CHUNK :]
        if per_frame:
            self._queued = np.vstack([self._queued, *per_frame])
        # hand out whole 10 ms frames of the per-sample probability track
        k = min(len(self._queued) // FRAME, len(self._excess))
        probs = self._queued[: k * FRAME].reshape(k, FRAME, 2).mean(axis=1)
        self._queued = self._queued[k * FRAME :]
        gated = self._gate(probs, self._excess[:k])
        self._excess = self._excess[k:]
        return gated

    def finish(self) -> F32:
        # the last partial chunk keeps the last probability
        k = len(self._excess)
        probs = np.repeat(self._prob[None, :], k, axis=0)
        out = self._gate(probs, self._excess)
        self.reset()
        return out


def silero_onnx_path() -> Path:
    """The silero-vad wheel's per-window ONNX file: the `silero` backend's (the model reads the sequence one)."""
    path = silero_data_dir() / "silero_vad.onnx"
    if not path.exists():
        raise SileroError(f"{path}: no such file (pip install --no-deps 'silero-vad>=6.2', or set vad.onnx)")
    return path


BACKENDS: dict[str, Callable[..., VadBackend]] = {"model": ModelVad, "webrtc": WebrtcVad, "silero": SileroVad}


WIDEBAND_HZ = 16000


def config_for_rate(cfg: AnalyzerConfig, rate: int) -> AnalyzerConfig:
    """The analyzer config for a source captured at `rate` Hz.

    Below 16 kHz the model backend takes the narrowband weights (`vad.narrowband: auto`), unless the user chose
    weights of their own and no narrowband ones beside them.
    """
    vad = cfg.vad
    if not isinstance(vad, ModelVadConfig) or vad.narrowband == "never" or rate >= WIDEBAND_HZ:
        return cfg
    if vad.weights is not None and vad.narrowband_weights is None:
        return cfg
    weights = vad.narrowband_weights or str(narrowband_model_path())
    return cfg.model_copy(update={"vad": vad.model_copy(update={"weights": weights})})


def make_backend(cfg: VadConfig) -> VadBackend:
    backend: VadBackend = BACKENDS[cfg.type](cfg)
    return backend


class Smoother:
    """Hysteresis on probabilities with a minimum speech run and a hangover, per channel.

    A channel turns on once its probability has stayed at or above `threshold_on` for `min_speech_ms`
    (the onset is dated back to the first such frame) and off once it has stayed below `threshold_off` for
    longer than `hangover_ms` (the offset is dated back to the first low frame). Exactly streaming:
    output runs `delay` frames behind input whatever the block size.
    """

    def __init__(self, cfg: SmoothingConfig) -> None:
        self.cfg = cfg
        self.min_speech = max(round(cfg.min_speech_ms / 10), 1)
        self.hangover = max(round(cfg.hangover_ms / 10), 0)
        self.delay = max(self.min_speech, self.hangover + 1)
        self.reset()

    def reset(self) -> None:
        self._on = [False, False]
        self._run = [0, 0]  # frames of the pending change (high while off, low while on)
        self._buf: list[list[bool]] = [[], []]

    def process(self, probs: F32) -> BOOL:
        for ch in (0, 1):
            on, run, buf = self._on[ch], self._run[ch], self._buf[ch]
            hi, lo = self.cfg.threshold_on, self.cfg.threshold_off
            for p in probs[:, ch].tolist():
                if not on:
                    run = run + 1 if p >= hi else 0
                    buf.append(False)
                    if run >= self.min_speech:
                        on, run = True, 0
                        buf[len(buf) - self.min_speech :] = [True] * self.min_speech
                else:
                    run = run + 1 if p < lo else 0
                    buf.append(True)
                    if run > self.hangover:
                        on, run = False, 0
                        buf[len(buf) - self.hangover - 1 :] = [False] * (self.hangover + 1)
            self._on[ch], self._run[ch] = on, run
        return self._emit(len(self._buf[0]) - self.delay)

    def finish(self) -> BOOL:
        # a pending onset shorter than min_speech stays off; a pending offset is taken as real
        for ch in (0, 1):
            if self._on[ch] and self._run[ch]:
                k = self._run[ch]
                self._buf[ch][len(self._buf[ch]) - k :] = [False] * k
        out = self._emit(len(self._buf[0]))
        self.reset()
        return out

    def _emit(self, ready: int) -> BOOL:
        if ready <= 0:
            return np.zeros((0, 2), bool)
        out = np.array([self._buf[0][:ready], self._buf[1][:ready]], bool).T
        for ch in (0, 1):
            del self._buf[ch][:ready]
        return out
