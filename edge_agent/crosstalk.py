"""Crosstalk and echo: how much louder a channel is than the leakage of the other side predicts.

The agent mic hears the customer (sidetone, acoustic leak) and the line carries an echo of the agent,
each a scaled copy of the other channel delayed by up to a few tens of ms. Per mel band we compare a
channel with the loudest recent frame of the other channel (so a delayed leak is covered) and track the
leakage gain as a low percentile of that difference over frames where the other side is clearly
talking: leakage is the floor of the difference, a party's own speech rises above it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]

MAX_LAG = 4  # frames (40 ms): the longest leak/echo delay we cover
UPDATE = 100  # frames between leakage-gain updates (1 s), counted in frames so block size never matters
ACTIVE_SNR_DB = 12.0  # the reference band must stand this far above its floor to teach the estimate
QUANTILE = 20.0  # percentile of the level difference taken as the leakage gain
PRIOR_GAIN_DB = -25.0  # leakage assumed before any evidence (typical headset sidetone / line echo)
SMOOTHING = 0.2  # weight of each new 1 s estimate
MIN_SAMPLES = 30  # qualifying (frame, band) cells needed in a window for an update


class LeakageEstimator:
    """Leakage gain (dB per band) from a reference channel into a target channel, and the excess over it."""

    def __init__(self, n_bands: int) -> None:
        self._n_bands = n_bands
        self.reset()

    def reset(self) -> None:
        self.gain_db = np.full(self._n_bands, PRIOR_GAIN_DB, np.float32)
        self._ref_hist = np.full((MAX_LAG, self._n_bands), -100.0, np.float32)
        self._acc: list[F32] = []
        self._acc_mask: list[npt.NDArray[np.bool_]] = []
        self._count = 0
        self.updates = 0

    def process(
        self, target_db: F32, ref_db: F32, ref_snr_db: F32, target_silent: npt.NDArray[np.bool_] | None = None
    ) -> F32:
        """Per frame and band: target level minus (reference level + leakage gain), in dB.

        Values near 0 or below mean the target is explained by leakage (or noise); clearly positive
        values mean the target party is producing sound of its own. Frames where the target is digital
        silence (a dropout) teach nothing: nothing leaked because nothing was captured, and taking them
        for a leak 100 dB down would make the other side's crosstalk read as this party's speech.
        """
        n = len(target_db)
        padded = np.vstack([self._ref_hist, ref_db])
        ref_max = padded[MAX_LAG:].copy()
        for k in range(1, MAX_LAG + 1):
            np.maximum(ref_max, padded[MAX_LAG - k : MAX_LAG - k + n], out=ref_max)
        self._ref_hist = padded[len(padded) - MAX_LAG :].copy()
        diff = target_db - ref_max
        out = np.empty_like(diff)
        i = 0
        while i < n:
            k = min(UPDATE - self._count, n - i)
            out[i : i + k] = diff[i : i + k] - self.gain_db
            self._acc.append(diff[i : i + k])
            active = ref_snr_db[i : i + k] > ACTIVE_SNR_DB
            if target_silent is not None:
                active &= ~target_silent[i : i + k, None]
            self._acc_mask.append(active)
            self._count += k
            i += k
            if self._count == UPDATE:
                self._update()
        return out

    def _update(self) -> None:
        d = np.concatenate(self._acc)
        m = np.concatenate(self._acc_mask)
        self._acc, self._acc_mask, self._count = [], [], 0
        counts = m.sum(axis=0)
        if counts.sum() < MIN_SAMPLES:
            return
        # percentile over the qualifying cells of each band: sort with the others pushed to the end
        ranked = np.sort(np.where(m, d, np.inf), axis=0)
        idx = np.minimum((counts * QUANTILE / 100.0).astype(np.intp), np.maximum(counts - 1, 0))
        est = ranked[idx, np.arange(self._n_bands)]
        ok = counts >= 5
        self.gain_db[ok] = (1 - SMOOTHING) * self.gain_db[ok] + SMOOTHING * est[ok]
        self.updates += 1
