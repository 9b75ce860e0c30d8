"""Audio input: read two-channel call audio from files or live blocks, resample to 16 kHz, cut 10 ms frames.

The analysis runs at 16 kHz mono per party in 10 ms frames. Files may be 8, 16, 44.1 or 48 kHz (any
rate libsndfile reads), int16, float or mu-law/A-law WAV; soxr resamples as a stream so memory stays
flat however long the file is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FRAME = 160  # 10 ms at 16 kHz
F32 = npt.NDArray[np.float32]


class AudioError(Exception):
    """Input audio that cannot be analysed; the message is one line meant for a person."""


@dataclass(frozen=True)
class CallAudioInfo:
    path: str
    sample_rate: int
    """Hz, as stored in the file."""
    channels: int
    frames: int
    """Samples per channel as stored in the file."""
    subtype: str

    @property
    def duration(self) -> float:
        """Seconds."""
        return self.frames / self.sample_rate


def probe(path: str | Path) -> CallAudioInfo:
    """Check a call file is readable two-channel audio; raises AudioError saying what is wrong."""
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: no such file")
    if p.is_dir():
        raise AudioError(f"{p}: is a directory, not an audio file")
    try:
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"{p}: not readable audio ({_short(exc)})") from None
    if info.channels != 2:
        raise AudioError(f"{p}: has {info.channels} channel(s); a call needs 2 (agent mic and customer line)")
    if info.frames <= 0:
        raise AudioError(f"{p}: contains no audio")
    if info.samplerate < 8000:
        raise AudioError(f"{p}: sample rate {info.samplerate} Hz is below the 8 kHz minimum")
    return CallAudioInfo(str(p), int(info.samplerate), int(info.channels), int(info.frames), str(info.subtype))


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class Resampler:
    """Streaming resampler of (n, channels) float32 blocks to 16 kHz; identity at 16 kHz.

    Broken samples (NaN or Inf from a failing driver) never reach soxr: its filter would spread one of
    them over dozens of output samples, and its state would carry NaN on through the rest of the call.
    They go in as zeros, and the output samples covering the same instants come out as NaN again, so
    the pipeline, the one place that zeroes and counts dropouts, sees them where they were, at 16 kHz.
    """

    def __init__(self, in_rate: int, channels: int) -> None:
        self.in_rate = in_rate
        self._stream = (
            None if in_rate == SAMPLE_RATE else soxr.ResampleStream(in_rate, SAMPLE_RATE, channels, dtype="float32")
        )
        self._in = 0  # input samples so far, per channel
        self._out = 0  # output samples so far
        # dropout marks (output sample index, channel) not yet reached by the output, which soxr delays
        self._marks = np.zeros((0, 2), np.int64)

    def process(self, block: F32, last: bool = False) -> F32:
        if self._stream is None:
            return block
        bad = ~np.isfinite(block)
        if bad.any():
            block = np.where(bad, np.float32(0), block)
            self._mark(*np.nonzero(bad))
        out: F32 = self._stream.resample_chunk(np.ascontiguousarray(block), last=last)
        self._in += len(block)
        start, self._out = self._out, self._out + len(out)
        if len(self._marks):
            due = self._marks[:, 0] < self._out
            rows, cols = self._marks[due].T
            keep = rows >= start  # output already handed out cannot be marked any more
            out[rows[keep] - start, cols[keep]] = np.nan
            self._marks = self._marks[~due]
        return out

    def _mark(self, rows: npt.NDArray[np.intp], cols: npt.NDArray[np.intp]) -> None:
        """Output samples whose instant falls within a broken input sample, and at least the nearest one."""
        i = rows.astype(np.int64) + self._in
        rate = self.in_rate
        first = -(-i * SAMPLE_RATE // rate)  # ceil: first output instant at or after the input sample's
        end = -(-(i + 1) * SAMPLE_RATE // rate)
        nearest = (2 * i * SAMPLE_RATE + rate) // (2 * rate)
        lo = np.minimum(first, nearest)
        hi = np.maximum(end, nearest + 1)
        span = hi - lo
        out_rows = np.repeat(lo, span) + _ramp(span)
        marks = np.stack([out_rows, np.repeat(cols.astype(np.int64), span)], axis=1)
        # neighbouring broken input samples (downsampling) share an output sample: count it once
        self._marks = np.unique(np.concatenate([self._marks, marks]), axis=0)


def _ramp(lengths: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """0..n-1 for each n in lengths, concatenated."""
    total = int(lengths.sum())
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.arange(total, dtype=np.int64) - starts


class Framer:
    """Collects arbitrary-sized (n, 2) sample blocks and hands out whole 10 ms frames."""

    def __init__(self) -> None:
        self._pending = np.zeros((0, 2), np.float32)

    def reset(self) -> None:
        self._pending = np.zeros((0, 2), np.float32)

    def process(self, block: F32) -> F32:
        """Returns a (k * FRAME, 2) array of the whole frames now available."""
        buf = np.concatenate([self._pending, block]) if len(self._pending) else block
        k = len(buf) // FRAME
        self._pending = buf[k * FRAME :].copy()
        return buf[: k * FRAME]


def read_call(path: str | Path, agent_channel: int = 0, block_seconds: float = 10.0) -> Iterator[F32]:
    """Yield (n, 2) float32 blocks at 16 kHz, column 0 agent and column 1 customer.

    Raises AudioError for unreadable input, also when the file turns out corrupt part-way.
    """
    if agent_channel not in (0, 1):
        raise AudioError(f"agent channel must be 0 or 1, got {agent_channel}")
    info = probe(path)
    order = [agent_channel, 1 - agent_channel]
    resampler = Resampler(info.sample_rate, 2)
    blocksize = max(int(block_seconds * info.sample_rate), 1)
    try:
        with sf.SoundFile(info.path) as f:
            while True:
                raw = f.read(blocksize, dtype="float32", always_2d=True)
                last = len(raw) < blocksize
                out = resampler.process(raw[:, order], last=last)
                if len(out):
                    yield out
                if last:
                    break
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"{info.path}: audio is corrupt part-way ({_short(exc)})") from None
