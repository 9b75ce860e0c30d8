"""Spectral features per 10 ms frame: log-mel energies, noise floors and leakage-corrected excess.

Everything here is streaming: each class keeps the little history it needs between blocks, so a
file analysed in one go and the same audio fed in 10 ms pieces give the same numbers.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.fft as sfft
from numpy.lib.stride_tricks import sliding_window_view

from edge_agent.audio import FRAME, SAMPLE_RATE
from edge_agent.crosstalk import LeakageEstimator

F32 = npt.NDArray[np.float32]

WINDOW = 400  # 25 ms analysis window, hop of one 10 ms frame
NFFT = 512
N_MELS = 24
# the speech model sees only the band that every capture path carries (a wideband headset, an 8 kHz
# capture, the G.711 line), so a station's sample rate or a narrowband source does not change its input
FMIN, FMAX = 80.0, 7600.0
LOG_FLOOR = 1e-10


def mel_filterbank(n_mels: int = N_MELS, fmin: float = FMIN, fmax: float = FMAX) -> F32:
    """Triangular mel filters, shape (NFFT // 2 + 1, n_mels), each normalised to unit area."""

    def hz_to_mel(f: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    edges_mel = np.linspace(hz_to_mel(np.array(fmin)), hz_to_mel(np.array(fmax)), n_mels + 2)
    edges = 700.0 * (10 ** (edges_mel / 2595.0) - 1.0)
    freqs = np.fft.rfftfreq(NFFT, 1.0 / SAMPLE_RATE)
    fb = np.zeros((len(freqs), n_mels), np.float64)
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        rise = (freqs - lo) / (mid - lo)
        fall = (hi - freqs) / (hi - mid)
        fb[:, m] = np.clip(np.minimum(rise, fall), 0.0, None)
        fb[:, m] /= max(fb[:, m].sum(), 1e-9)
    return fb.astype(np.float32)


class LogMel:
    """One channel's log-mel energies (dB) per 10 ms frame, with the window's tail kept across blocks."""

    def __init__(self) -> None:
        self._fb = mel_filterbank()
        self._win = np.hanning(WINDOW).astype(np.float32)
        freqs = np.fft.rfftfreq(NFFT, 1.0 / SAMPLE_RATE)
        band = (freqs >= FMIN) & (freqs <= FMAX)
        # a bin's mean power over the band, divided by the window's energy, reads as dBFS for white noise
        band_scale = 1.0 / (float(np.sum(self._win.astype(np.float64) ** 2)) * float(band.sum()))
        # the in-band level is one more column of the filterbank: one matrix product and one log for both
        self._bank = np.hstack([self._fb, (band * band_scale)[:, None]]).astype(np.float32)
        self._tail = np.zeros(WINDOW - FRAME, np.float32)

    def reset(self) -> None:
        self._tail[:] = 0.0

    def process(self, samples: F32) -> tuple[F32, F32, F32]:
        """samples: a whole number of frames at 16 kHz.

        Returns (mel dB (n, N_MELS), frame dB (n,), in-band frame dB (n,)): the frame level is the whole
        hop's (what loudness and clipping report), the in-band level is FMIN..FMAX only (what the model reads).
        """
        n = len(samples) // FRAME
        buf = np.concatenate([self._tail, samples[: n * FRAME]])
        self._tail = buf[len(buf) - (WINDOW - FRAME) :].copy()
        frames = sliding_window_view(buf, WINDOW)[::FRAME][:n] * self._win
        spec = sfft.rfft(frames, NFFT, axis=1)
        power = spec.real**2 + spec.imag**2
        db = 10.0 * np.log10(power @ self._bank + LOG_FLOOR)
        mel, band = db[:, :N_MELS], db[:, N_MELS]
        # frame level over the hop itself (not the window) so it follows onsets sharply
        hop = samples[: n * FRAME].reshape(n, FRAME)
        level = 10.0 * np.log10(np.mean(hop * hop, axis=1) + LOG_FLOOR)
        return mel.astype(np.float32), level.astype(np.float32), band.astype(np.float32)


_SMOOTH_POLE = 0.7
_SMOOTH_CHUNK = 32
_k = np.arange(_SMOOTH_CHUNK)
# y[t] = a*y[t-1] + (1-a)*x[t], unrolled over a chunk as a lower-triangular matrix: exact, and no
# scipy.signal on the station (it costs ~50 MB of RSS for one first-order filter)
_SMOOTH_M = np.tril((1 - _SMOOTH_POLE) * _SMOOTH_POLE ** (_k[:, None] - _k[None, :]).clip(0)).astype(np.float32)
_SMOOTH_P = (_SMOOTH_POLE ** (_k + 1)).astype(np.float32)[:, None]


def _smooth(x: F32, y_prev: F32) -> F32:
    """First-order recursive smoothing along frames, continuing from the previous output y_prev."""
    out = np.empty_like(x)
    for i in range(0, len(x), _SMOOTH_CHUNK):
        xs = x[i : i + _SMOOTH_CHUNK]
        n = len(xs)
        out[i : i + n] = _SMOOTH_M[:n, :n] @ xs + _SMOOTH_P[:n] * y_prev
        y_prev = out[i + n - 1]
    return out


class NoiseFloor:
    """Per-band noise floor by minimum statistics: the minimum of smoothed energy over ~3 s.

    Each run of SUB frames contributes its minimum; the floor is the minimum over the last KEEP
    runs and the current one, so it follows a rising noise within ~3 s and speech shorter than
    that cannot pull it up. Vectorised per run, not per frame.
    """

    SUB = 25
    KEEP = 12

    def __init__(self, n_bands: int) -> None:
        self._n_bands = n_bands
        self.reset()

    def reset(self) -> None:
        self._mins = np.full((self.KEEP, self._n_bands), np.inf, np.float32)
        self._past = self._mins.min(axis=0)
        self._cur = np.full(self._n_bands, np.inf, np.float32)
        self._count = 0
        self._slot = 0
        self._smooth: F32 | None = None
        self._last: F32 | None = None

    def process(self, mel_db: F32, skip: npt.NDArray[np.bool_] | None = None) -> F32:
        """Returns the floor (dB) in force at each frame, shape like mel_db.

        Frames in `skip` (digital silence: a dropout, an underrun, a mute) neither lower the floor nor
        count towards its memory: a line that comes back after 50 ms of zeros has the noise it had
        before, and taking the zeros for its floor would make that noise read as speech for ~3 s.
        They get the floor in force before them (their own level when there is none yet).
        """
        if skip is None or not skip.any():
            out = self._track(mel_db)
        else:
            out = np.empty_like(mel_db)
            keep = ~skip
            if keep.any():
                out[keep] = self._track(mel_db[keep])
            before = np.maximum.accumulate(np.where(keep, np.arange(len(mel_db)), -1))
            held = skip & (before >= 0)
            out[held] = out[before[held]]
            fresh = skip & (before < 0)
            out[fresh] = mel_db[fresh] if self._last is None else self._last
        if len(out):
            self._last = out[-1].copy()
        return out

    def _track(self, mel_db: F32) -> F32:
        n = len(mel_db)
        if n == 0:
            return mel_db.copy()
        # a short recursive smoothing keeps single low frames from dragging the floor down
        sm = _smooth(mel_db, mel_db[0] if self._smooth is None else self._smooth)
        self._smooth = sm[-1].copy()
        out = np.empty_like(mel_db)
        i = 0
        while i < n:
            k = min(self.SUB - self._count, n - i)
            run = np.minimum.accumulate(sm[i : i + k], axis=0)
            np.minimum(run, self._cur, out=run)
            np.minimum(run, self._past, out=out[i : i + k])
            self._cur = run[-1].copy()
            self._count += k
            i += k
            if self._count == self.SUB:
                self._mins[self._slot] = self._cur
                self._slot = (self._slot + 1) % self.KEEP
                self._past = self._mins.min(axis=0)  # changes only here, so kept rather than recomputed per run
                self._cur[:] = np.inf
                self._count = 0
        return out


SNR_CLIP = (-10.0, 60.0)
EXCESS_CLIP = (-30.0, 40.0)
N_CHANNEL_FEATURES = 2 * N_MELS + 2
LEVEL_OFFSET_DB = 50.0  # centres the absolute frame level (dBFS) near zero before the /10 scaling
# in-band level (dBFS) below which a frame is digital silence, not a quiet line: under what a 16-bit
# converter represents above its own quantisation, so only zeros (a dropout, an underrun, a mute) fall here
SILENT_DB = -90.0
# a channel with more digital silence than this (frames, over the call) is gated: a headset's noise gate or
# a line's silence suppression (DTX without comfort noise) sends zeros between words, so zero is its floor
GATED_AFTER = 300
N_FEATURES = 2 * N_CHANNEL_FEATURES  # agent block then customer block


class CallFeatures:
    """Both channels' per-frame features for the speech model, plus what the metrics reuse.

    Per channel: band SNR over the noise floor, band excess over the other side's leakage,
    in-band level over its floor and the absolute in-band level (so continuous speech, which lifts
    a minimum-statistics floor, still reads as speech), all in dB / 10 so they sit near unit scale.
    """

    def __init__(self, skip_dropouts: bool = True) -> None:
        self.skip_dropouts = skip_dropouts
        self.mel = (LogMel(), LogMel())
        # per channel: the mel bands' floors and, in the last column, the in-band level's (one tracker, same frames)
        self.floor = (NoiseFloor(N_MELS + 1), NoiseFloor(N_MELS + 1))
        self.leak = (LeakageEstimator(N_MELS), LeakageEstimator(N_MELS))
        self._silent = [0, 0]

    def reset(self) -> None:
        for group in (self.mel, self.floor, self.leak):
            for stage in group:
                stage.reset()
        self._silent = [0, 0]

    def _dropouts(self, ch: int, band: F32) -> npt.NDArray[np.bool_] | None:
        """Frames of digital silence that are dropouts (skipped by the floor and leakage estimates): all of
        them until the channel has had GATED_AFTER such frames, none after (it is gated: zero is its floor).
        None when this instance does not skip them (training)."""
        if not self.skip_dropouts:
            return None
        silent = band < SILENT_DB
        seen = self._silent[ch] + np.cumsum(silent)
        self._silent[ch] = int(seen[-1]) if len(seen) else self._silent[ch]
        return silent & (seen <= GATED_AFTER)

    def process(self, samples: F32) -> tuple[F32, F32, F32]:
        """samples: (k * FRAME, 2) at 16 kHz, agent then customer.

        Returns (features (k, N_FEATURES), frame level dB (k, 2), band SNR dB (k, 2, N_MELS)).
        """
        mels, levels, bands, snrs, lsnrs, silents = [], [], [], [], [], []
        for ch in (0, 1):
            mel, level, band = self.mel[ch].process(np.ascontiguousarray(samples[:, ch]))
            silent = self._dropouts(ch, band)
            floors = self.floor[ch].process(np.hstack([mel, band[:, None]]), silent)
            floor, lfloor = floors[:, :N_MELS], floors[:, N_MELS]
            silents.append(silent)
            mels.append(mel)
            levels.append(level)
            bands.append(band)
            snrs.append(mel - floor)
            lsnrs.append(band - lfloor)
        blocks = []
        for ch in (0, 1):
            other = 1 - ch
            excess = self.leak[ch].process(mels[ch], mels[other], snrs[other], silents[ch])
            blocks.append(np.clip(snrs[ch], *SNR_CLIP))
            blocks.append(np.clip(excess, *EXCESS_CLIP))
            blocks.append(np.clip(lsnrs[ch], *SNR_CLIP)[:, None])
            blocks.append(np.clip(bands[ch] + LEVEL_OFFSET_DB, -50.0, 50.0)[:, None])
        feats = np.concatenate(blocks, axis=1) / 10.0
        return feats.astype(np.float32), np.stack(levels, axis=1), np.stack(snrs, axis=1)
