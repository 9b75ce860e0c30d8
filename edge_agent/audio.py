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
    """Streaming resampler of (n, channels) float32 blocks to 16 kHz; identity at 16 kHz."""

    def __init__(self, in_rate: int, channels: int) -> None:
        self.in_rate = in_rate
        self._stream = (
            None if in_rate == SAMPLE_RATE else soxr.ResampleStream(in_rate, SAMPLE_RATE, channels, dtype="float32")
        )

    def process(self, block: F32, last: bool = False) -> F32:
        if self._stream is None:
            return block
        out: F32 = self._stream.resample_chunk(np.ascontiguousarray(block), last=last)
        return out


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
