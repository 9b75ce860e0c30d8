"""Training material for the emotion model: labelled single-speaker clips, degraded like the station's input.

A corpus is a CSV manifest `path,speaker,label` (labels among CLASSES; paths relative to the manifest), so a
center can retrain on speech it holds rights to. RAVDESS is read from its own labels.csv (neutral and calm are
one class), Berlin EmoDB from its own (EMODB_MAP: boredom is left out). Each clip's speech frames are found on
the clean audio (standing in for the station's VAD), then the clip goes through the line the station hears:
telephone band, 8 kHz, G.711, real noise at 0-20 dB SNR, level changes; features come from the station's own
code (edge_agent.emotion_features).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr
from scipy.signal import butter, sosfilt

from edge_agent.audio import SAMPLE_RATE
from edge_agent.emotion_features import frame_levels, log_mel, speech_mask
from edge_agent.emotion_model import CLASSES

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
LINE_RATE = 8000
RAVDESS_MAP = {"neutral": "neutral", "calm": "neutral", "happy": "happy", "angry": "angry", "sad": "sad"}
AUX_CLASSES = ("fearful", "surprised", "disgust")
"""Extra emotions trained on as auxiliary outputs (more speech per speaker); the shipped head keeps CLASSES."""
TRAIN_CLASSES = (*CLASSES, *AUX_CLASSES)
# EmoDB's fear and disgust train the same auxiliary outputs as RAVDESS's fearful and disgust. Boredom is dropped:
# it is neither RAVDESS's neutral read nor sadness (mapping it to either blurs that class), and an output only one
# corpus has would be learnt as "this is the German corpus", a corpus cue rather than a tone.
EMODB_MAP = {
    "neutral": "neutral",
    "happy": "happy",
    "angry": "angry",
    "sad": "sad",
    "fear": "fearful",
    "disgust": "disgust",
}
CORPORA = ("ravdess", "emodb")
_BAND = butter(6, [300.0, 3400.0], btype="bandpass", fs=LINE_RATE, output="sos")


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file and row."""


@dataclass(frozen=True)
class Clip:
    path: Path
    speaker: str
    label: str
    corpus: str = "manifest"
    """Which corpus the clip comes from (leave-one-corpus-out evaluation, per-corpus figures)."""


def read_manifest(path: Path) -> list[Clip]:
    """CSV with columns path, speaker, label (header required); other columns are ignored."""
    clips = []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"path", "speaker", "label"} - set(reader.fieldnames or ())
        if missing:
            raise ManifestError(f"{path}: missing column(s) {sorted(missing)}")
        for i, row in enumerate(reader, start=2):
            if row["label"] not in TRAIN_CLASSES:
                raise ManifestError(f"{path}:{i}: label {row['label']!r} is not one of {list(TRAIN_CLASSES)}")
            clips.append(Clip((path.parent / row["path"]).resolve(), row["speaker"], row["label"]))
    return clips


def ravdess_clips(root: Path, aux: bool = True) -> list[Clip]:
    """RAVDESS clips of the four classes from its labels.csv, and of AUX_CLASSES if `aux`."""
    keep = {**RAVDESS_MAP, **({a: a for a in AUX_CLASSES} if aux else {})}
    with (root / "labels.csv").open(newline="") as f:
        return [
            Clip(root / r["file"], r["speaker"], keep[r["emotion"]], "ravdess")
            for r in csv.DictReader(f)
            if r["emotion"] in keep
        ]


def emodb_clips(root: Path, aux: bool = True) -> list[Clip]:
    """Berlin EmoDB clips of the four classes from its labels.csv, and fear/disgust as auxiliaries if `aux`."""
    keep = {k: v for k, v in EMODB_MAP.items() if aux or v in CLASSES}
    with (root / "labels.csv").open(newline="") as f:
        return [
            Clip(root / r["file"], r["speaker"], keep[r["emotion"]], "emodb")
            for r in csv.DictReader(f)
            if r["emotion"] in keep
        ]


def corpus_clips(name: str, root: Path, aux: bool = True) -> list[Clip]:
    """The clips of one of CORPORA under `root` (its folder in ../shared/data)."""
    if name == "ravdess":
        return ravdess_clips(root, aux)
    if name == "emodb":
        return emodb_clips(root, aux)
    raise ValueError(f"unknown corpus {name!r}; one of {CORPORA}")


def read_mono16k(path: Path) -> F32:
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    x = data.mean(axis=1)
    return x if rate == SAMPLE_RATE else np.asarray(soxr.resample(x, rate, SAMPLE_RATE), np.float32)


def load_noises(paths: Sequence[Path]) -> dict[str, F32]:
    out = {}
    for p in paths:
        x, rate = sf.read(str(p), dtype="float32")
        out[p.stem] = x if rate == LINE_RATE else np.asarray(soxr.resample(x, rate, LINE_RATE), np.float32)
    return out


def g711(x: F32, rate: int, law: str) -> F32:
    """G.711 round trip through libsndfile's codec ('ULAW' or 'ALAW')."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1.0, 1.0), rate, format="WAV", subtype=law)
    buf.seek(0)
    out, _ = sf.read(buf, dtype="float32")
    return np.asarray(out, np.float32)


@dataclass(frozen=True)
class Degradation:
    snr_db: tuple[float, float] = (0.0, 20.0)
    clean_share: float = 0.1
    """Share of clips with no added noise."""
    line_share: float = 0.8
    """Share through the telephone line (8 kHz, band, G.711); the rest are the agent's wideband mic."""
    speed: float = 0.0
    """Speed perturbation range (+-): tempo, pitch and formants move together, as if another speaker."""
    level_dbfs: tuple[float, float] = (-42.0, -14.0)
    """Speech level after the capture gain."""
    ramp_db: float = 6.0
    """Largest gain drift across one clip (AGC, head movement)."""


def degrade(
    clean: F32, speech: npt.NDArray[np.bool_], noises: dict[str, F32], rng: np.random.Generator, d: Degradation
) -> F32:
    """Clean 16 kHz clip -> what the station hears, back at 16 kHz."""
    line = rng.random() < d.line_share
    x = np.asarray(soxr.resample(clean, SAMPLE_RATE, LINE_RATE), np.float32) if line else clean.copy()
    rate = LINE_RATE if line else SAMPLE_RATE
    lv = frame_levels(clean)[: len(speech)]
    speech_db = 10 * np.log10(np.mean(10 ** (lv[speech[: len(lv)]] / 10)) + 1e-12) if speech.any() else -30.0
    if noises and rng.random() >= d.clean_share:
        noise = noises[sorted(noises)[rng.integers(len(noises))]]
        if rate != LINE_RATE:
            noise = np.asarray(soxr.resample(noise, LINE_RATE, rate), np.float32)
        need = len(x)
        start = int(rng.integers(0, max(len(noise) - need, 1)))
        seg = np.resize(noise[start : start + need], need)
        noise_db = 10 * np.log10(np.mean(seg.astype(np.float64) ** 2) + 1e-12)
        snr = rng.uniform(*d.snr_db)
        x = x + seg * np.float32(10 ** ((speech_db - snr - noise_db) / 20))
    gain_db = rng.uniform(*d.level_dbfs) - speech_db
    ramp = np.linspace(0.0, rng.uniform(-d.ramp_db, d.ramp_db), len(x))
    x = (x * 10 ** ((gain_db + ramp) / 20)).astype(np.float32)
    if line:
        x = g711(sosfilt(_BAND, x).astype(np.float32), rate, "ULAW" if rng.random() < 0.5 else "ALAW")
        x = np.asarray(soxr.resample(x, LINE_RATE, SAMPLE_RATE), np.float32)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def features(
    clips: Sequence[Clip], noises: dict[str, F32], variants: int, seed: int, d: Degradation
) -> tuple[list[F32], npt.NDArray[np.int64], list[str]]:
    """Log-mel speech rows of `variants` degraded copies of every clip: (rows per copy, class index, speaker)."""
    rng = np.random.default_rng(seed)
    mels: list[F32] = []
    ys: list[int] = []
    spk: list[str] = []
    for i, c in enumerate(clips):
        original = read_mono16k(c.path)
        for _ in range(variants):
            clean = original
            if d.speed > 0:
                factor = rng.uniform(1.0 - d.speed, 1.0 + d.speed)
                clean = np.asarray(soxr.resample(original, SAMPLE_RATE, round(SAMPLE_RATE / factor)), np.float32)
            mask = speech_mask(clean)
            x = degrade(clean, mask, noises, rng, d)
            mels.append(log_mel(x, mask))
            ys.append(TRAIN_CLASSES.index(c.label))
            spk.append(c.speaker)
        if (i + 1) % 200 == 0:
            log.info("features: %d / %d clips", i + 1, len(clips))
    return mels, np.array(ys, np.int64), spk
