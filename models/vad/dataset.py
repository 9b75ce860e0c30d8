"""Training material for the speech model: composed two-channel calls from real speech, with truth.

Calls are composed by `../shared/tools/compose_calls.py` (called, never copied) from a speaker
manifest, so any corpus of single-speaker clips a center holds rights to can be used. Speakers are
split before composing, never clips, so validation speakers are never heard in training.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile as sf
from scipy.signal import butter, sosfilt

from edge_agent.audio import FRAME, read_call
from edge_agent.features import CallFeatures
from edge_agent.speech_model import ContextStack

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]


def speaker_manifest(manifest: Path, speakers: Sequence[str], out: Path) -> Path:
    """Write a composer manifest holding only `speakers`, with absolute clip paths."""
    data = json.loads(manifest.read_text())["speakers"]
    root = manifest.resolve().parent
    chosen = {k: [str((root / p).resolve()) for p in data[k]] for k in speakers}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"speakers": chosen}))
    return out


def compose_into(
    composer: Path, manifest: Path, outdir: Path, calls: int, seed: int, minutes: float, noise: Sequence[Path]
) -> list[Path]:
    """Compose calls unless the folder already holds them (the composer is deterministic per seed)."""
    wavs = sorted(outdir.glob("call*.wav"))
    if len(wavs) >= calls:
        return wavs[:calls]
    cmd = [
        sys.executable,
        str(composer),
        str(manifest),
        str(outdir),
        "--calls",
        str(calls),
        "--seed",
        str(seed),
        "--minutes",
        str(minutes),
        "--noise",
        *map(str, noise),
    ]
    log.info("composing %d calls into %s", calls, outdir)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)  # noqa: S603 - our own argv, no shell
    return sorted(outdir.glob("call*.wav"))[:calls]


def truth_frames(truth: dict[str, Any], n: int) -> npt.NDArray[np.bool_]:
    """(n, 2) frame truth, agent then customer, from the composer's activity segments."""
    act = truth["activity"]
    y = np.zeros((n, 2), bool)
    for col, who in enumerate(("agent", "customer")):
        for s, e in act[who]:
            y[round(s * 100) : round(e * 100), col] = True
    return y


def inputs_for(blocks: Iterable[F32], gain_db: tuple[float, float] = (0.0, 0.0)) -> F32:
    """Model inputs for every frame, through the same streaming code the station runs.

    gain_db scales each channel first: capture gain differs from desk to desk.
    """
    g = np.array([10 ** (gain_db[0] / 20), 10 ** (gain_db[1] / 20)], np.float32)
    feats, stack, rows = CallFeatures(), ContextStack(), []
    for block in blocks:
        k = len(block) // FRAME
        f, _, _ = feats.process(np.clip(block[: k * FRAME] * g, -1.0, 1.0))
        rows.append(stack.process(f))
    rows.append(stack.finish())
    return np.concatenate(rows)


def load_calls(wavs: Sequence[Path], rng: np.random.Generator | None = None) -> tuple[F32, npt.NDArray[np.bool_]]:
    """Inputs and frame truth of composed calls; with rng, each call gets a random capture gain."""
    xs, ys = [], []
    for wav in wavs:
        gain = (0.0, 0.0)
        if rng is not None:
            common = rng.uniform(-14.0, 8.0)
            gain = (common + rng.uniform(-3, 3), common + rng.uniform(-3, 3))
        x = inputs_for(read_call(wav), gain)
        truth = json.loads(wav.with_suffix(".json").read_text())
        ys.append(truth_frames(truth, len(x)))
        xs.append(x)
    return np.concatenate(xs), np.concatenate(ys)


def load_meetings(folder: Path, split: str, rng: np.random.Generator) -> tuple[F32, npt.NDArray[np.bool_]]:
    """Real meeting speech (AMI headset mixes with RTTM turns) as extra material, on either side.

    Each mix is used twice: as an agent mic beside a quiet line, and band-limited and mu-law coded as
    the line beside a quiet mic. Truth is the union of the RTTM turns.
    """
    band = butter(4, [300, 3400], btype="band", fs=16000, output="sos")
    xs, ys = [], []
    rttm = (folder / f"debug.{split}.rttm").read_text().splitlines()
    for uri in (folder / f"debug.{split}.lst").read_text().split():
        x, sr = sf.read(folder / f"{uri}.flac", dtype="float32")
        if sr != 16000:
            continue
        n = len(x) // FRAME
        ref = np.zeros(n, bool)
        for line in rttm:
            f = line.split()
            if len(f) > 4 and f[0] == "SPEAKER" and f[1] == uri:
                s, d = float(f[3]), float(f[4])
                ref[round(s * 100) : round((s + d) * 100)] = True
        quiet = (rng.standard_normal(len(x)) * 10 ** (rng.uniform(-75, -55) / 20)).astype(np.float32)
        coded = mulaw(sosfilt(band, x).astype(np.float32))
        for col, stereo in ((0, np.stack([x, quiet], 1)), (1, np.stack([quiet, coded], 1))):
            gain = rng.uniform(-6.0, 14.0)
            inp = inputs_for([stereo], (gain, gain))
            y = np.zeros((len(inp), 2), bool)
            y[: min(n, len(inp)), col] = ref[: len(inp)]
            xs.append(inp)
            ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def mulaw(x: F32) -> F32:
    """G.711 mu-law round trip through libsndfile's own codec, what the customer's line does to speech."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(x, -1.0, 1.0), 16000, format="WAV", subtype="ULAW")
    buf.seek(0)
    out, _ = sf.read(buf, dtype="float32")
    return np.asarray(out, np.float32)
