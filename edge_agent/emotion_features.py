"""Emotion model input: telephone-band log-mel and pitch of one party's own speech, the same code in training and
on the station.

Only 300-3400 Hz is analysed, so the agent's wideband mic and the customer's G.711 line give the same kind of
input. Frames are 10 ms at 16 kHz: log-mel on a 25 ms Hann window, pitch by normalised autocorrelation on 40 ms
(the line has no fundamental, but its harmonics keep the period). Only frames the caller marks as speech are
kept, so silence and crosstalk never reach the model. A model window is `WINDOW_FRAMES` such frames; its
log-mel is shifted by the window's own mean level, which makes the input independent of capture gain (level
changes, AGC), and its pitch is given both relative to the window's median (speaker-independent contour) and
absolute.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.fft as sfft
from numpy.lib.stride_tricks import sliding_window_view

from edge_agent.audio import FRAME
from edge_agent.features import NFFT, WINDOW, mel_filterbank

F32 = npt.NDArray[np.float32]
BOOL = npt.NDArray[np.bool_]

N_BANDS = 32
FMIN, FMAX = 300.0, 3400.0
WINDOW_FRAMES = 100  # 1 s of speech per model window
HOP_FRAMES = 50  # clip-level scoring slides windows by 0.5 s
LOG_FLOOR = 1e-10
INPUT_SCALE = 0.1  # dB -> roughly unit scale
INPUT_CLIP = 6.0  # a window's bands more than 60 dB from its mean carry no more information
SPEECH_RANGE_DB = 35.0  # speech_mask: frames within this of the clip's loud frames
SPEECH_OVER_FLOOR_DB = 6.0  # ... and this far above its quiet frames
PITCH_WIN = 640  # 40 ms: two periods at 50 Hz
LAG_MIN, LAG_MAX = 40, 228  # 400 .. 70 Hz at 16 kHz
PITCH_FFT = 1024
VOICED_R = 0.45
N_PITCH = 3  # relative pitch, absolute pitch, voicing
N_INPUTS = N_BANDS + N_PITCH
ROW = N_BANDS + 2  # a frontend row: log-mel dB, pitch (semitones re 55 Hz, 0 when unvoiced), voicing

_FB = mel_filterbank(N_BANDS, FMIN, FMAX)
_HANN = np.hanning(WINDOW).astype(np.float32)
_LAGS = np.arange(LAG_MIN, LAG_MAX + 1)
# a slight preference for short lags keeps the period's multiples (octave errors) from winning ties
_LAG_BIAS = (0.08 * (_LAGS - LAG_MIN) / (LAG_MAX - LAG_MIN)).astype(np.float32)


class EmotionFrontend:
    """One party's rows (log-mel dB, pitch, voicing) for the frames it is told to keep; streaming across blocks."""

    def __init__(self) -> None:
        self._tail = np.zeros(PITCH_WIN - FRAME, np.float32)

    def reset(self) -> None:
        self._tail[:] = 0.0

    def process(self, samples: F32, keep: BOOL | None = None) -> F32:
        """samples: mono 16 kHz, a whole number of 10 ms frames; keep: (n_frames,) or None for all.

        Returns (n_kept, ROW) float32 rows in frame order.
        """
        n = len(samples) // FRAME
        buf = np.concatenate([self._tail, samples[: n * FRAME].astype(np.float32, copy=False)])
        self._tail = buf[len(buf) - (PITCH_WIN - FRAME) :].copy()
        idx = np.arange(n) if keep is None else np.flatnonzero(keep[:n])
        if len(idx) == 0:
            return np.zeros((0, ROW), np.float32)
        # every window ends at the end of its frame (as in edge_agent.features.LogMel); strided views, then
        # one copy of the kept rows
        wins = sliding_window_view(buf, PITCH_WIN)[::FRAME][idx]
        spec = sfft.rfft(wins[:, PITCH_WIN - WINDOW :] * _HANN, NFFT, axis=1)  # float32 in: half numpy's cost
        power = spec.real**2 + spec.imag**2
        mel = 10.0 * np.log10(power @ _FB + LOG_FLOOR)
        st, r = _pitch(wins)
        return np.concatenate([mel, st[:, None], r[:, None]], axis=1).astype(np.float32)


def _pitch(win: F32) -> tuple[F32, F32]:
    """Per window: pitch in semitones re 55 Hz (0 when unvoiced) and voicing (peak normalised autocorrelation)."""
    win = win - win.mean(axis=1, keepdims=True)
    # 1024 points hold every lag up to LAG_MAX + 1 without wrap-around (640 + 229 < 1024)
    spec = sfft.rfft(win, PITCH_FFT, axis=1, overwrite_x=True)
    power = spec.real * spec.real
    power += spec.imag * spec.imag
    acf = sfft.irfft(power, PITCH_FFT, axis=1, overwrite_x=True)
    full = acf[:, LAG_MIN - 1 : LAG_MAX + 2] / np.maximum(acf[:, :1], 1e-9)
    r = full[:, 1:-1]
    # only local maxima are periods; the slope down from lag 0 is not
    peak_ok = (r >= full[:, :-2]) & (r >= full[:, 2:])
    best = np.argmax(np.where(peak_ok, r - _LAG_BIAS, -np.inf), axis=1)
    peak = np.clip(r[np.arange(len(best)), best], 0.0, 1.0).astype(np.float32)
    st = 12.0 * np.log2(16000.0 / _LAGS[best] / 55.0)
    return np.where(peak >= VOICED_R, st, 0.0).astype(np.float32), peak


def log_mel(samples: F32, keep: BOOL | None = None) -> F32:
    """Whole-clip convenience: a fresh EmotionFrontend over mono 16 kHz samples (rows as its `process`)."""
    return EmotionFrontend().process(samples, keep)


def frame_levels(samples: F32) -> F32:
    """dBFS of each 10 ms frame of mono 16 kHz samples."""
    n = len(samples) // FRAME
    hop = samples[: n * FRAME].reshape(n, FRAME).astype(np.float64)
    return np.asarray(10.0 * np.log10(np.mean(hop * hop, axis=1) + LOG_FLOOR), np.float32)


def speech_mask(samples: F32) -> BOOL:
    """Speech frames of a single-speaker clip by level: near its loud frames and clear of its quiet ones.

    For clips without a VAD (the `emotion` command, training clips); the station uses its VAD instead.
    """
    lv = frame_levels(samples)
    if len(lv) == 0:
        return np.zeros(0, bool)
    # a 50 ms moving average keeps consonant gaps inside words from splitting speech
    sm = np.convolve(np.pad(lv, 2, mode="edge"), np.ones(5, np.float32) / 5, mode="valid")
    loud, quiet = np.percentile(sm, 95), np.percentile(sm, 10)
    thr = max(loud - SPEECH_RANGE_DB, quiet + SPEECH_OVER_FLOOR_DB)
    mask: BOOL = sm > thr
    if not mask.any():  # a flat clip (constant noise or one long vowel): take all of it
        mask[:] = True
    return mask


def model_input(rows: F32, band_mean: bool = False) -> F32:
    """(n, WINDOW_FRAMES, ROW) frontend rows -> (n, WINDOW_FRAMES, N_INPUTS) model input.

    Log-mel minus each window's mean level, scaled and clipped; pitch relative to the window's median voiced pitch
    (half-octave units) and absolute (octaves re 220 Hz), both 0 on unvoiced frames; voicing as is.
    `band_mean` (a model card's `input.band_mean`): each band minus its own mean over the window instead, which
    also takes out the window's average spectral shape (the microphone, the room, the line, the speaker's vocal
    tract: what differs most between corpora), from this window alone.
    """
    mel, st, r = rows[..., :N_BANDS], rows[..., N_BANDS], rows[..., N_BANDS + 1]
    centred = mel - mel.mean(axis=(-2,) if band_mean else (-2, -1), keepdims=True)
    voiced = st > 0
    # median of the voiced frames per window (unvoiced sort last); 36 (220 Hz) when none is voiced
    srt = np.sort(np.where(voiced, st, np.inf), axis=-1)
    cnt = voiced.sum(axis=-1, keepdims=True)
    lo = np.take_along_axis(srt, np.maximum(cnt - 1, 0) // 2, axis=-1)
    hi = np.take_along_axis(srt, np.minimum(cnt // 2, srt.shape[-1] - 1), axis=-1)
    med = np.where(cnt > 0, (lo + hi) / 2, 36.0)
    rel = np.where(voiced, np.clip((st - med) / 6.0, -3.0, 3.0), 0.0)
    ab = np.where(voiced, (st - 36.0) / 12.0, 0.0)
    out = np.concatenate(
        [np.clip(centred * INPUT_SCALE, -INPUT_CLIP, INPUT_CLIP), rel[..., None], ab[..., None], r[..., None]], axis=-1
    )
    return out.astype(np.float32)


def clip_windows(mel_db: F32, length: int = WINDOW_FRAMES, hop: int = HOP_FRAMES) -> F32:
    """Cut a clip's speech rows into model windows (n, length, N_BANDS); a short clip is repeated to fill one."""
    if len(mel_db) == 0:
        return np.zeros((0, length, mel_db.shape[1]), np.float32)
    if len(mel_db) < length:
        reps = -(-length // len(mel_db))
        mel_db = np.tile(mel_db, (reps, 1))[:length]
    starts = list(range(0, len(mel_db) - length + 1, hop))
    if starts[-1] != len(mel_db) - length:
        starts.append(len(mel_db) - length)  # the tail gets a window too
    return np.stack([mel_db[s : s + length] for s in starts]).astype(np.float32)
