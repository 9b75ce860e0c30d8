"""A bounded ring of multichannel float32 frames between the audio callback and the analysis thread.

The callback is the only writer and must never wait for the reader: when the ring is full the OLDEST frames
are overwritten and counted, so capture keeps the newest audio and a stalled consumer costs history, not a
blocked audio thread. Memory is allocated once; `clear()` zeroes it so discarded audio does not linger.
"""

from __future__ import annotations

import threading

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


class FrameRing:
    def __init__(self, capacity: int, channels: int) -> None:
        if capacity < 1 or channels < 1:
            raise ValueError("ring capacity and channels must be positive")
        self.capacity = capacity
        self.channels = channels
        self._buf = np.zeros((capacity, channels), np.float32)
        # the lock guards only index arithmetic and two slice copies: held for microseconds on either side
        self._lock = threading.Lock()
        self._start = 0  # index of the oldest unread frame
        self._size = 0  # unread frames
        self.written = 0
        """Frames ever written."""
        self.dropped = 0
        """Frames overwritten before they were read (the reader fell more than `capacity` behind)."""

    @property
    def available(self) -> int:
        return self._size

    def write(self, block: F32) -> None:
        """Append (n, channels) frames; safe to call from the audio callback (no allocation, no waiting on I/O)."""
        n = len(block)
        with self._lock:
            self.written += n
            if n >= self.capacity:
                self.dropped += self._size + n - self.capacity
                self._buf[:] = block[n - self.capacity :]
                self._start, self._size = 0, self.capacity
                return
            overflow = self._size + n - self.capacity
            if overflow > 0:
                self.dropped += overflow
                self._start = (self._start + overflow) % self.capacity
                self._size -= overflow
            end = (self._start + self._size) % self.capacity
            first = min(n, self.capacity - end)
            self._buf[end : end + first] = block[:first]
            if first < n:
                self._buf[: n - first] = block[first:]
            self._size += n

    def read(self, max_frames: int | None = None) -> F32:
        """Remove and return up to `max_frames` (default: all) of the oldest unread frames, as a copy."""
        with self._lock:
            n = self._size if max_frames is None else min(max_frames, self._size)
            first = min(n, self.capacity - self._start)
            out = np.empty((n, self.channels), np.float32)
            out[:first] = self._buf[self._start : self._start + first]
            if first < n:
                out[first:] = self._buf[: n - first]
            self._start = (self._start + n) % self.capacity
            self._size -= n
            return out

    def skip(self, frames: int) -> int:
        """Drop up to `frames` of the oldest unread frames (counted as dropped); returns how many."""
        with self._lock:
            n = min(frames, self._size)
            self._start = (self._start + n) % self.capacity
            self._size -= n
            self.dropped += n
            return n

    def clear(self) -> int:
        """Forget and zero everything buffered (privacy); returns the unread frames dropped (not counted as loss)."""
        with self._lock:
            n = self._size
            self._buf.fill(0.0)
            self._start = self._size = 0
            return n
