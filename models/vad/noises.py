"""Generated noise families that widen training beyond any one set of recordings (never used to evaluate).

Each family spans a wide range of parameters so the speech model meets stationary and non-stationary,
broadband and tonal, steady and impulsive noise: coloured noise of any spectral slope, amplitude-modulated
noise, transients (knocks, clicks, clatter), mains hum and fan tones, music-like harmonic sequences, and
babble of other talkers built from training speech. Written once as FLAC, deterministic per seed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr
from scipy.signal import butter, sosfilt

log = logging.getLogger(__name__)

SR = 16000
SECONDS = 40.0
PER_FAMILY = 4
F64 = npt.NDArray[np.float64]


def coloured(rng: np.random.Generator, n: int) -> F64:
    """Gaussian noise with a random spectral slope (-9..+3 dB/octave) and a random band."""
    spec = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    f = np.fft.rfftfreq(n, 1 / SR)
    slope = rng.uniform(-9.0, 3.0)
    gain = (np.maximum(f, 20.0) / 1000.0) ** (slope / 6.02)
    lo, hi = rng.uniform(20, 400), rng.uniform(2500, 8000)
    gain *= 1.0 / (1 + (lo / np.maximum(f, 1.0)) ** 4) / (1 + (f / hi) ** 4)
    return np.fft.irfft(spec * gain, n)


def modulated(rng: np.random.Generator, n: int) -> F64:
    """Coloured noise under a slow envelope: a sine at 0.2-8 Hz or a smoothed random walk (traffic, fans, wind)."""
    x = coloured(rng, n)
    t = np.arange(n) / SR
    if rng.random() < 0.5:
        env = 1.0 + rng.uniform(0.3, 0.95) * np.sin(2 * np.pi * rng.uniform(0.2, 8.0) * t + rng.uniform(0, 6.3))
    else:
        steps = rng.standard_normal(n // 800 + 2).cumsum()
        steps = (steps - steps.min()) / (np.ptp(steps) + 1e-9)
        env = np.interp(np.arange(n), np.arange(len(steps)) * 800, 0.1 + steps)
    return x * env


def transients(rng: np.random.Generator, n: int) -> F64:
    """Decaying filtered bursts at random times and levels: knocks, clicks, dishes, doors, clatter."""
    out = rng.standard_normal(n) * 10 ** (rng.uniform(-60, -35) / 20)
    rate = rng.uniform(0.3, 6.0)
    for _ in range(int(rate * n / SR)):
        at = int(rng.integers(0, n))
        length = int(SR * rng.uniform(0.003, 0.3))
        burst = rng.standard_normal(length) * np.exp(-np.arange(length) / (length * rng.uniform(0.05, 0.4)))
        lo = rng.uniform(50, 2000)
        sos = butter(2, [lo, min(lo * rng.uniform(2, 20), 7800)], btype="band", fs=SR, output="sos")
        burst = sosfilt(sos, burst) * 10 ** (rng.uniform(-25, 0) / 20)
        end = min(at + length, n)
        out[at:end] += burst[: end - at]
    return out


def hum(rng: np.random.Generator, n: int) -> F64:
    """Mains hum (50/60 Hz and harmonics) or fan/motor tones with drift, over a little broadband noise."""
    t = np.arange(n) / SR
    out = coloured(rng, n) * 10 ** (rng.uniform(-40, -10) / 20)
    base = rng.choice([50.0, 60.0]) if rng.random() < 0.5 else rng.uniform(80, 900)
    drift = 1 + 0.02 * np.sin(2 * np.pi * rng.uniform(0.01, 0.3) * t)
    phase = 2 * np.pi * base * np.cumsum(drift) / SR
    for k in range(1, int(rng.integers(2, 12))):
        if base * k < 7800:
            out += rng.uniform(0.05, 1.0) / k ** rng.uniform(0.3, 1.5) * np.sin(k * phase + rng.uniform(0, 6.3))
    return out


def music(rng: np.random.Generator, n: int) -> F64:
    """Music-like sequences: harmonic notes and chords with envelopes, some with a beat."""
    out = np.zeros(n)
    t_note = 0
    beat = rng.uniform(0.2, 0.8)
    while t_note < n:
        dur = int(SR * beat * rng.choice([0.5, 1, 1, 2]))
        seg = np.arange(min(dur, n - t_note)) / SR
        env = np.minimum(seg / 0.01, 1.0) * np.exp(-seg / rng.uniform(0.1, 1.5))
        for _ in range(int(rng.integers(1, 4))):
            f0 = 110 * 2 ** (rng.integers(0, 36) / 12)
            for k in range(1, 8):
                if f0 * k < 7800:
                    out[t_note : t_note + len(seg)] += env * np.sin(2 * np.pi * f0 * k * seg) / k ** rng.uniform(0.8, 2)
        if rng.random() < 0.4:  # a drum hit
            length = min(int(0.08 * SR), n - t_note)
            out[t_note : t_note + length] += rng.standard_normal(length) * np.exp(-np.arange(length) / 300) * 0.5
        t_note += dur
    return out


def babble(rng: np.random.Generator, n: int, clips: Sequence[Path]) -> F64:
    """5-10 other talkers at once, each a chain of random clips: the room's other voices, a texture rather than
    one voice to follow (a single loud neighbour is the one case the model cannot tell from the agent)."""
    out = np.zeros(n)
    for _ in range(int(rng.integers(5, 11))):
        pos = int(rng.integers(0, SR))
        track = np.zeros(n)
        while pos < n:
            x, sr = sf.read(str(clips[int(rng.integers(0, len(clips)))]), dtype="float32", always_2d=True)
            y = x.mean(axis=1)
            if sr != SR:
                y = soxr.resample(y, sr, SR)
            y = y / (np.sqrt(np.mean(y**2)) + 1e-9)
            end = min(pos + len(y), n)
            track[pos:end] += y[: end - pos]
            pos = end + int(rng.integers(0, SR // 3))
        out += track * 10 ** (rng.uniform(-8, 0) / 20)
    return out


FAMILIES = ("coloured", "modulated", "transients", "hum", "music")


def write_generated(outdir: Path, seed: int, babble_clips: Sequence[Path] = ()) -> list[Path]:
    """PER_FAMILY files per family (and babble when clips are given), written once; returns the paths.

    Babble goes last, so the other families' files and draws do not depend on whether it is there.
    """
    outdir.mkdir(parents=True, exist_ok=True)
    families = (*FAMILIES, *(("babble",) if babble_clips else ()))
    wanted = [outdir / f"{fam}_{seed}_{i}.flac" for fam in families for i in range(PER_FAMILY)]
    if all(p.exists() for p in wanted):
        return wanted  # written together, from one seed: nothing to draw again
    rng = np.random.default_rng(seed)
    n = int(SECONDS * SR)
    paths = []
    makers = {"coloured": coloured, "modulated": modulated, "transients": transients, "hum": hum, "music": music}
    for fam in families:
        for i in range(PER_FAMILY):
            path = outdir / f"{fam}_{seed}_{i}.flac"
            x = babble(rng, n, babble_clips) if fam == "babble" else makers[fam](rng, n)
            if not path.exists():
                x = 0.5 * x / (np.abs(x).max() + 1e-9)
                sf.write(path, x.astype(np.float32), SR)
            paths.append(path)
    log.info("generated noise: %d files in %s", len(paths), outdir)
    return paths
