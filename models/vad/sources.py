"""Where the speech model's training and evaluation audio comes from: named sources, each with its licence.

A *source* is one recording set (a corpus, a package, a generator), never a label or a file inside one: the
leave-one-source-out evaluation drops a whole source from training and scores calls built on it. Each source
says whether a business may train shipped weights on it (`commercial`), so the default build and the research
build differ by one flag, and the model card lists exactly what went in.

Debian packages (`asterisk-core-sounds-*-wav`, `asterisk-moh-opsound-wav`, `sound-theme-freedesktop`) are
installed by the training path (`install_packages`), never by CI.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import subprocess
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data"
ASTERISK = Path("/usr/share/asterisk")
FREEDESKTOP = Path("/usr/share/sounds/freedesktop/stereo")
# the Debian packages that carry each packaged source's audio
PACKAGES = {
    "asterisk": tuple(f"asterisk-core-sounds-{lang}-wav" for lang in ("en", "es", "fr", "it", "ru")),
    "moh": ("asterisk-moh-opsound-wav",),
    "game_music": ("hyperrogue-music",),
    "chimes": ("sound-theme-freedesktop",),
    "phone_tones": ("sound-theme-freedesktop",),
}
# a second, independent set of real music recordings (a game's soundtrack by three composers, orchestral and
# ambient, 44.1 kHz): hold music is what a caller hears most often, and one set of recordings teaches its own
# pieces, not music; debian/copyright: these files CC BY-SA 3.0 (the game's sound effects are left out).
# Measured and not in the default recipe (MODEL_CARD.md); `--add-noise game_music` adds it
GAME_MUSIC = Path("/usr/share/hyperrogue/music")
# voice talents of the Asterisk prompt packages: the English and Spanish prompts are one speaker
ASTERISK_VOICES = {
    "en_US_f_Allison": "asterisk_allison",
    "es_MX_f_Allison": "asterisk_allison",
    "fr_CA_f_June": "asterisk_june",
    "it_IT_m_Carlo": "asterisk_carlo",
    "ru_RU_f_IvrvoiceRU": "asterisk_ivr_ru",
}
# freedesktop sounds under CC BY / CC BY-SA (debian/copyright); the GPL-2 phone tones are evaluation-only
FREEDESKTOP_CC = (
    "alarm-clock-elapsed",
    "audio-volume-change",
    "bell",
    "complete",
    "trash-empty",
    "camera-shutter",
    "screen-capture",
    "device-added",
    "device-removed",
    "power-plug",
    "power-unplug",
    "network-connectivity-established",
    "network-connectivity-lost",
    "message",
    "dialog-information",
    "suspend-error",
)
FREEDESKTOP_PHONE = ("phone-incoming-call", "phone-outgoing-busy", "phone-outgoing-calling", "message-new-instant")


@dataclass(frozen=True)
class Source:
    name: str
    kind: str
    """'speech' or 'noise'."""
    licence: str
    commercial: bool
    """Whether weights trained on it may be used by a business (with attribution / share-alike as the licence says)."""
    origin: str


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source("asterisk", "speech", "CC BY-SA 3.0", True, "Debian asterisk-core-sounds-{en,es,fr,it,ru}-wav"),
        Source("fsdd", "speech", "CC BY-SA 4.0", True, "../shared/data/fsdd (Free Spoken Digit Dataset)"),
        Source("ami", "speech", "CC BY 4.0", True, "../shared/data/ami-mix train split, single-speaker turns"),
        Source("ravdess", "speech", "CC BY-NC-SA 4.0", False, "../shared/data/ravdess"),
        Source("emodb", "speech", "research use", False, "../shared/data/emodb (German)"),
        Source("typing", "noise", "MIT", True, "../shared/data/noise-typing (Keystroke-Datasets, Zoom)"),
        Source("moh", "noise", "CC BY-SA 3.0", True, "Debian asterisk-moh-opsound-wav (hold music)"),
        Source(
            "game_music",
            "noise",
            "CC BY-SA 3.0",
            True,
            "Debian hyperrogue-music, music/*.ogg (S. Parrotte, L. Domina, W. Savino)",
        ),
        Source("chimes", "noise", "CC BY 3.0 / CC BY-SA 3.0", True, "Debian sound-theme-freedesktop, CC files"),
        Source("phone_tones", "noise", "GPL-2+", False, "Debian sound-theme-freedesktop phone-* (evaluation)"),
        Source("generated", "noise", "generated here (no third-party rights)", True, "models/vad/noises.py"),
        Source("noizeus", "noise", "research use", False, "../shared/data/noise (NOIZEUS, 8 types)"),
    )
}
COMMERCIAL_SPEECH = ("asterisk", "fsdd", "ami")
COMMERCIAL_NOISE = ("typing", "moh", "chimes", "generated")
# commercial sources measured and not in the default recipe (`models.vad.train --add-noise`, MODEL_CARD.md)
OPTIONAL_NOISE = ("game_music",)


def install_packages(names: Sequence[str]) -> None:
    """Install the Debian packages that carry these sources' audio (root on Debian; the training path only)."""
    wanted = sorted({p for n in names for p in PACKAGES.get(n, ())})
    missing = [p for p in wanted if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]  # noqa: S603,S607
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise RuntimeError(f"training audio needs the Debian packages {' '.join(missing)}")
    log.info("installing %s", " ".join(missing))
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True)  # noqa: S603,S607


def _duration(path: Path) -> float:
    info = sf.info(str(path))
    return float(info.frames) / float(info.samplerate)


def _pick(paths: Sequence[Path], limit: int, rng: np.random.Generator, min_s: float) -> list[Path]:
    ok = [p for p in paths if _duration(p) >= min_s]
    if len(ok) > limit:
        ok = [ok[i] for i in sorted(rng.choice(len(ok), limit, replace=False))]
    return ok


def asterisk_speakers(rng: np.random.Generator, per_speaker: int = 160) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for folder, spk in ASTERISK_VOICES.items():
        root = ASTERISK / "sounds" / folder
        paths = sorted(p for p in root.rglob("*.wav") if "silence" not in p.parts)
        out.setdefault(spk, []).extend(paths)
    return {k: _pick(v, per_speaker, rng, 0.7) for k, v in out.items() if v}


def fsdd_speakers(rng: np.random.Generator, work: Path, per_speaker: int = 40) -> dict[str, list[Path]]:
    """FSDD's single digits strung into numbers (3-7 digits, 0.1-0.5 s apart), as a caller reads one out.

    Lone digits are shorter than most turns; strung together they make utterances of 2-5 s.
    """
    root = DATA / "fsdd"
    by_speaker: dict[str, list[Path]] = {}
    with (root / "labels.csv").open() as f:
        for row in csv.DictReader(f):
            by_speaker.setdefault(f"fsdd_{row['speaker']}", []).append(root / row["file"])
    out: dict[str, list[Path]] = {}
    for spk, paths in sorted(by_speaker.items()):
        dest = work / "fsdd_numbers" / spk
        dest.mkdir(parents=True, exist_ok=True)
        for i in range(per_speaker):
            path = dest / f"{i:03d}.flac"
            picks = rng.choice(len(paths), int(rng.integers(3, 8)), replace=False)
            gaps = rng.uniform(0.1, 0.5, len(picks))
            if not path.exists():
                parts = []
                for j, g in zip(picks, gaps, strict=True):
                    x, sr = sf.read(str(paths[int(j)]), dtype="float32", always_2d=True)
                    parts += [x.mean(axis=1), np.zeros(int(g * sr), np.float32)]
                sf.write(path, np.concatenate(parts), sr)
            out.setdefault(spk, []).append(path)
    return out


def ami_speakers(work: Path, split: str = "train", min_s: float = 0.8) -> dict[str, list[Path]]:
    """Single-speaker stretches of the AMI mixes: each RTTM turn minus every other speaker's turns, cut to FLAC."""
    folder = DATA / "ami-mix"
    rttm = [line.split() for line in (folder / f"debug.{split}.rttm").read_text().splitlines()]
    out: dict[str, list[Path]] = {}
    dest = work / f"ami_{split}"
    dest.mkdir(parents=True, exist_ok=True)
    for uri in (folder / f"debug.{split}.lst").read_text().split():
        x, sr = sf.read(folder / f"{uri}.flac", dtype="float32")
        turns = [(f[7], float(f[3]), float(f[3]) + float(f[4])) for f in rttm if len(f) > 7 and f[1] == uri]
        n = len(x) // (sr // 100)
        for i, (spk, s, e) in enumerate(turns):
            own = np.zeros(n, bool)
            own[round(s * 100) : round(e * 100)] = True
            for j, (_, s2, e2) in enumerate(turns):
                if j != i:
                    own[round(s2 * 100) : round(e2 * 100)] = False
            for a, b in _runs(own):
                if (b - a) / 100 < min_s:
                    continue
                name = "".join(c if c.isascii() and c.isalnum() else "_" for c in spk)
                path = dest / f"{uri}_{name}_{i}_{a}.flac"
                if not path.exists():
                    sf.write(path, x[a * sr // 100 : b * sr // 100], sr)
                out.setdefault(f"ami_{name}", []).append(path)
    return out


def ravdess_speakers() -> dict[str, list[Path]]:
    manifest = SHARED / "tools" / "dev_speakers.json"
    data = json.loads(manifest.read_text())["speakers"]
    return {k: [(manifest.parent / p).resolve() for p in v] for k, v in data.items()}


def emodb_speakers() -> dict[str, list[Path]]:
    root = DATA / "emodb"
    out: dict[str, list[Path]] = {}
    with (root / "labels.csv").open() as f:
        for row in csv.DictReader(f):
            out.setdefault(row["speaker"], []).append(root / row["file"])
    return out


def speech(name: str, work: Path, rng: np.random.Generator) -> dict[str, list[Path]]:
    """Speakers of one speech source, {speaker id: clip paths}."""
    makers: dict[str, Callable[[], dict[str, list[Path]]]] = {
        "asterisk": lambda: asterisk_speakers(rng),
        "fsdd": lambda: fsdd_speakers(rng, work),
        "ami": lambda: ami_speakers(work),
        "ravdess": ravdess_speakers,
        "emodb": emodb_speakers,
    }
    if name not in makers:
        raise ValueError(f"unknown speech source {name!r} (one of {', '.join(makers)})")
    return makers[name]()


def noise_files(name: str, work: Path, seed: int = 0) -> list[Path]:
    """Noise recordings of one noise source (generated ones are written into `work` once, deterministically)."""
    if name == "typing":
        return sorted((DATA / "noise-typing").glob("*.flac"))
    if name == "moh":
        return sorted((ASTERISK / "moh").glob("*.wav"))
    if name == "game_music":
        return sorted(GAME_MUSIC.glob("*.ogg"))
    if name == "chimes":
        return [FREEDESKTOP / f"{n}.oga" for n in FREEDESKTOP_CC if (FREEDESKTOP / f"{n}.oga").exists()]
    if name == "phone_tones":
        return [FREEDESKTOP / f"{n}.oga" for n in FREEDESKTOP_PHONE if (FREEDESKTOP / f"{n}.oga").exists()]
    if name == "noizeus":
        return sorted((DATA / "noise").glob("*.flac"))
    if name == "generated":
        from models.vad.noises import write_generated

        return write_generated(work / "generated_noise", seed)
    raise ValueError(f"unknown noise source {name!r}")


def perturbed(
    speakers: dict[str, list[Path]],
    factors: Sequence[float],
    work: Path,
    level_spread_db: tuple[float, float] | None = None,
    seed: int = 0,
) -> dict[str, list[Path]]:
    """Each speaker again at other speeds (pitch and tempo together, as Kaldi's speed perturbation): new voices.

    With a handful of voice talents, a speed factor of 0.9 or 1.1 moves pitch and formants by about 10 %, which
    widens the voices the model meets more than any one more clip of the same talent.

    `level_spread_db` also gives each copied clip its own gain, drawn uniformly from that range: voice talents and
    read digits keep one level from clip to clip, while a caller who turns away, drops their voice or sighs a
    short answer is 10-20 dB under their own loud turns. The composer sets a call's SNR on the speaker's average
    power, so such a clip sits at a much lower SNR of its own; without it the model never meets soft speech in noise.
    Its truth does not change: the composer marks speech relative to each clip's own peak.
    """
    import soxr

    out: dict[str, list[Path]] = {}
    folder = work / "perturbed"
    if level_spread_db is not None:
        folder = work / f"perturbed_levels_{level_spread_db[0]:g}_{level_spread_db[1]:g}"
    for factor in factors:
        for spk, paths in speakers.items():
            dest = folder / f"{spk}@{factor:g}"
            dest.mkdir(parents=True, exist_ok=True)
            # one draw per speaker and factor, independent of the others, so a cached folder stays valid
            rng = np.random.default_rng([seed, zlib.crc32(dest.name.encode())])
            gains = rng.uniform(*level_spread_db, len(paths)) if level_spread_db is not None else np.zeros(len(paths))
            for i, (p, gain) in enumerate(zip(paths, gains, strict=True)):
                path = dest / f"{i:04d}.flac"
                if not path.exists():
                    x, sr = sf.read(str(p), dtype="float32", always_2d=True)
                    y = soxr.resample(x.mean(axis=1), sr, round(sr / factor)) * np.float32(10 ** (gain / 20))
                    sf.write(path, np.clip(y, -1.0, 1.0), sr)
                out.setdefault(f"{spk}@{factor:g}", []).append(path)
    return out


def write_manifest(speakers: dict[str, list[Path]], out: Path) -> Path:
    """A composer manifest (absolute paths) for `../shared/tools/compose_calls.py`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"speakers": {k: [str(p.resolve()) for p in v] for k, v in speakers.items()}}))
    return out


def _runs(act: np.ndarray) -> list[tuple[int, int]]:
    d = np.diff(np.concatenate([[0], act.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))
