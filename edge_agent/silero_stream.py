"""An independent "is this speech at all" opinion per channel: Silero VAD, run as a streaming gate.

Why: the two-channel speech model is good at *whose* speech a frame is (own voice against crosstalk and
echo), but on a noise it never trained on (ring tones, appliances) it hears speech where there is none,
and that is what wrecks talk-over and dead-air detection. Silero VAD (MIT, inside the `silero-vad`
wheel) was trained on far more voices, languages and noises than we can ship, so the model's speech is
only believed where Silero also hears speech nearby. The model decides who; Silero vetoes "nobody".

By default it runs Silero's network as numpy (`silero_net.py`, the weights copied from the wheel into
`models/shipped`; its LSTM through onnxruntime's kernel), all windows of both channels at once with the LSTM state
carried between blocks, so a file and the same audio fed in 10 ms pieces give the same probabilities. Given an ONNX
file (`vad.silero_onnx`), it runs that through onnxruntime instead: the wheel's *sequence* export
(`silero_vad_16k_sequence.onnx`), one call per block and channel.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from edge_agent.audio import FRAME
from edge_agent.model_files import onnx_session
from edge_agent.silero_net import SileroNet, SileroWeightsError

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]

CHUNK = 512  # Silero's 32 ms window at 16 kHz
CONTEXT = 64  # samples of the previous window it sees before each one
SEQUENCE_ONNX = "silero_vad_16k_sequence.onnx"
HEARD = 0.5
"""Silero's pooled probability from which a frame counts as speech it heard (its own default threshold): the
self-check's comparison and the talk-over detector's second witness both read it."""


class SileroError(Exception):
    """The gate's weights or ONNX file are missing or unusable."""


def silero_data_dir() -> Path:
    """The silero-vad wheel's data folder, found without importing the package (it imports torch)."""
    spec = importlib.util.find_spec("silero_vad")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "data"
        if path.is_dir():
            return path
    raise SileroError("Silero VAD's ONNX files come with its wheel: pip install --no-deps 'silero-vad>=6.2'")


def _onnx_session(path: Path) -> Any:
    """An onnxruntime session on a Silero sequence ONNX (the wheel's, or one named in vad.silero_onnx)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise SileroError("Silero VAD's ONNX needs onnxruntime") from exc
    if not path.exists():
        raise SileroError(f"{path}: no such file (unset vad.silero_onnx to use the shipped Silero weights)")
    return onnx_session(path, SileroError, "not a usable Silero sequence model")


class SileroStream:
    """Per-10 ms-frame speech probability of each channel from Silero, pooled over a window.

    `process` takes (k*FRAME, 2) samples and returns what it can of the per-frame probabilities (their
    count lags the input by less than one 512-sample window); `finish` flushes the last partial window,
    zero-padded as the wheel's own sequence front end does.
    """

    def __init__(self, onnx: str | None = None) -> None:
        self._net: SileroNet | None = None
        self._sess: Any = None
        if onnx is None:
            try:
                self._net = SileroNet()
            except SileroWeightsError as exc:
                raise SileroError(str(exc)) from None
        else:
            self._sess = _onnx_session(Path(onnx))
        self.reset()

    def reset(self) -> None:
        self._h, self._c = SileroNet.initial_state(2)
        self._ctx = np.zeros((CONTEXT, 2), np.float32)
        self._pending = np.zeros((0, 2), np.float32)
        self._frames_in = 0
        self._frames_out = 0
        self._chunks = np.zeros((0, 2), np.float32)  # window probabilities from window self._chunk0 on
        self._chunk0 = 0

    def process(self, samples: F32) -> F32:
        self._frames_in += len(samples) // FRAME
        self._pending = np.vstack([self._pending, samples[: len(samples) // FRAME * FRAME]])
        n = len(self._pending) // CHUNK
        if n:
            self._run(self._pending[: n * CHUNK])
            self._pending = self._pending[n * CHUNK :]
        return self._emit((self._chunk0 + len(self._chunks)) * CHUNK // FRAME - self._frames_out)

    def finish(self) -> F32:
        if len(self._pending):
            pad = np.zeros((CHUNK - len(self._pending), 2), np.float32)
            self._run(np.vstack([self._pending, pad]))
            self._pending = self._pending[:0]
        out = self._emit(self._frames_in - self._frames_out)
        self.reset()
        return out

    def _run(self, audio: F32) -> None:
        n = len(audio) // CHUNK
        frames = audio.reshape(n, CHUNK, 2).transpose(0, 2, 1)
        ctx = np.concatenate([self._ctx.T[None], frames[:-1, :, -CONTEXT:]], axis=0)
        windows = np.ascontiguousarray(np.concatenate([ctx, frames], axis=2), np.float32)  # (n, 2, CONTEXT + CHUNK)
        if self._net is not None:
            probs, self._h, self._c = self._net.run(windows, self._h, self._c)
        else:
            probs = np.zeros((n, 2), np.float32)
            for ch in (0, 1):
                p, h, c = self._sess.run(
                    None, {"input": windows[:, ch], "h": self._h[None, ch : ch + 1], "c": self._c[None, ch : ch + 1]}
                )
                probs[:, ch] = np.asarray(p, np.float32).reshape(n)
                self._h[ch], self._c[ch] = np.asarray(h).reshape(-1), np.asarray(c).reshape(-1)
        self._ctx = audio[-CONTEXT:].copy()
        self._chunks = np.vstack([self._chunks, probs])

    def _emit(self, k: int) -> F32:
        known = (self._chunk0 + len(self._chunks)) * CHUNK // FRAME  # frames wholly inside decided windows
        k = min(k, known - self._frames_out, self._frames_in - self._frames_out)
        if k <= 0:
            return np.zeros((0, 2), np.float32)
        # a 10 ms frame straddling two windows gets their sample-weighted mean
        start = (self._frames_out + np.arange(k)) * FRAME
        first = start // CHUNK
        w = (np.minimum(CHUNK - (start - first * CHUNK), FRAME) / FRAME)[:, None]
        a = self._chunks[first - self._chunk0]
        b = self._chunks[np.minimum(first + 1 - self._chunk0, len(self._chunks) - 1)]
        out: F32 = (w * a + (1.0 - w) * b).astype(np.float32)
        self._frames_out += k
        # keep the window the next frame starts in
        drop = self._frames_out * FRAME // CHUNK - self._chunk0
        if drop > 0:
            self._chunks = self._chunks[drop:]
            self._chunk0 += drop
        return out


class PooledGate:
    """Caps a party's speech probability at frame t by Silero's maximum over [t - back, t + ahead].

    Silero decides per 32 ms and lags word edges a little; the model, which sees 200 ms ahead, draws the
    edges. Pooling lets Silero vouch for a region rather than clip the model's edges; where it hears no
    speech anywhere near, the model's speech there is vetoed. Only the `channels` given are gated.
    """

    def __init__(self, channels: tuple[int, ...], back: int, ahead: int) -> None:
        self.channels = list(channels)
        self.back, self.ahead = back, ahead
        self.reset()

    def reset(self) -> None:
        self._probs = np.zeros((0, 2), np.float32)  # Silero frames from index self._first on
        self._first = 0
        self._next = 0  # the next model frame to cap

    def push(self, silero: F32) -> None:
        self._probs = np.vstack([self._probs, silero])  # `apply` drops what no window needs any more

    def apply(self, model_probs: F32) -> tuple[F32, F32, F32]:
        """(the model's next frames capped on `channels`, the same capped on both channels, the pooled Silero)."""
        m = len(model_probs)
        if m == 0:
            return model_probs, model_probs, model_probs
        have = self._first + len(self._probs)
        t0 = self._next
        lo, hi = max(t0 - self.back, self._first), min(t0 + m + self.ahead, have)
        # -1 pads the windows where the call starts or ends
        padded = np.full((m + self.back + self.ahead, 2), -1.0, np.float32)
        src = self._probs[lo - self._first : hi - self._first]
        at = lo - (t0 - self.back)
        padded[at : at + len(src)] = src
        pooled = sliding_window_view(padded, self.back + self.ahead + 1, axis=0).max(axis=2)
        # a frame with nothing known around it (cannot happen inside a call) keeps the model's value
        strict = np.where(pooled < 0, model_probs, np.minimum(model_probs, pooled)).astype(np.float32)
        out = model_probs.copy()
        out[:, self.channels] = strict[:, self.channels]
        self._next += m
        drop = max(self._next - self.back - self._first, 0)
        if drop:
            self._probs = self._probs[drop:]
            self._first += drop
        return out, strict, np.where(pooled < 0, 1.0, pooled).astype(np.float32)
