"""Where the station's audio comes from: the `AudioSource` shape, and a file replayed as if live.

The runtime only needs `read(timeout)` -> (n, 2) float32 blocks at 16 kHz (agent, customer) or None, and
`discard()` for privacy. `firmware_py.capture.Capture` gives that from the headset; `FileSource` gives it from a
recorded call, paced at real time, for demos, simulated fleets and lifecycle tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from edge_agent.audio import SAMPLE_RATE, read_call

F32 = npt.NDArray[np.float32]


@dataclass
class SourceStats:
    state: str = "running"
    """running | waiting (no device yet, or it went away) | stopped | finished"""
    device: str | None = None
    overflows: int = 0
    dropped_frames: int = 0
    reconnects: int = 0
    last_error: str | None = None


class AudioSource(Protocol):
    def start(self) -> None: ...

    def read(self, timeout: float) -> F32 | None: ...

    def discard(self) -> int: ...

    def stop(self) -> None: ...

    @property
    def stats(self) -> SourceStats: ...


class FileSource:
    """A two-channel call file as a live source: 20 ms blocks, paced at real time unless `realtime=False`."""

    def __init__(self, path: str | Path, *, loop: bool = False, realtime: bool = True, block_ms: int = 20) -> None:
        self.path = Path(path)
        self.loop, self.realtime = loop, realtime
        self.block = SAMPLE_RATE * block_ms // 1000
        self._stats = SourceStats(device=f"file:{self.path.name}")
        self._blocks: Iterator[F32] = iter(())
        self._t0 = 0.0
        self._sent = 0
        self._stopped = threading.Event()

    def start(self) -> None:
        self._blocks = self._iterate()
        self._t0 = time.monotonic()
        self._sent = 0

    def _iterate(self) -> Iterator[F32]:
        while True:
            for chunk in read_call(self.path, block_seconds=1.0):
                for i in range(0, len(chunk), self.block):
                    yield chunk[i : i + self.block]
            if not self.loop:
                return

    def read(self, timeout: float) -> F32 | None:
        if self._stopped.is_set():
            return None
        if self.realtime:
            due = self._t0 + self._sent / SAMPLE_RATE - time.monotonic()
            if due > timeout:
                self._stopped.wait(timeout)
                return None
            if due > 0:
                self._stopped.wait(due)
        block = next(self._blocks, None)
        if block is None:
            self._stats.state = "finished"
            self._stopped.wait(timeout)
            return None
        self._sent += len(block)
        return block

    def discard(self) -> int:
        """Nothing is buffered ahead of real time: what was not read yet simply passes unheard."""
        return 0

    def stop(self) -> None:
        self._stopped.set()
        self._stats.state = "stopped"

    @property
    def stats(self) -> SourceStats:
        return self._stats
