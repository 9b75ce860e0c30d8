"""Training material for the speech model: composed two-channel calls from real speech, with truth.

Calls are composed by `../shared/tools/compose_calls.py` (called, never copied) from a speaker
manifest (`sources.write_manifest`), so any corpus of single-speaker clips a center holds rights to can be
used. Speakers are split before composing, never clips, so validation speakers are never heard in training.
"""

from __future__ import annotations

import importlib
import io
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

from edge_agent.audio import FRAME
from edge_agent.features import CallFeatures
from edge_agent.silero_stream import SileroStream
from edge_agent.speech_model import ContextStack
from models.vad.sources import SHARED

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]


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
    for attempt in range(3):
        try:
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)  # noqa: S603 - our own argv, no shell
            break
        except subprocess.CalledProcessError:
            # the composer fails on rare draws (a clip placed past the end of its track): another seed, logged
            if attempt == 2:
                raise
            cmd[cmd.index("--seed") + 1] = str(seed + 1000 * (attempt + 1))
            log.warning(
                "composer failed for %s with seed %d; trying seed %s", outdir, seed, cmd[cmd.index("--seed") + 1]
            )
    return sorted(outdir.glob("call*.wav"))[:calls]


def truth_frames(truth: dict[str, Any], n: int) -> npt.NDArray[np.bool_]:
    """(n, 2) frame truth, agent then customer, from the composer's activity segments, framed by the shared
    scorer's own `frames` (../shared/tools/score_calls.py, called, never copied): the model trains on the very
    labels the harness scores it against."""
    frames = shared_scorer().frames
    return np.stack([frames(truth["activity"][who], n) for who in ("agent", "customer")], axis=1)


def shared_scorer() -> Any:
    """../shared/tools/score_calls.py as a module (the composer's folder holds it)."""
    tools = SHARED / "tools"
    if not (tools / "score_calls.py").exists():
        raise FileNotFoundError(f"{tools / 'score_calls.py'}: the shared scorer is not there (../shared beside)")
    if str(tools) not in sys.path:
        sys.path.insert(0, str(tools))
    return importlib.import_module("score_calls")


def inputs_for(blocks: Iterable[F32], gain_db: tuple[float, float] = (0.0, 0.0)) -> F32:
    """Model inputs for every frame, through the same streaming code the station runs.

    gain_db scales each channel first: capture gain differs from desk to desk.
    """
    return stack_inputs(frame_features(blocks, gain_db))


def frame_features(blocks: Iterable[F32], gain_db: tuple[float, float] = (0.0, 0.0)) -> F32:
    """Per-frame CallFeatures and Silero columns (k, N_MODEL_FEATURES): 7x smaller to cache than the model inputs."""
    g = np.array([10 ** (gain_db[0] / 20), 10 ** (gain_db[1] / 20)], np.float32)
    # the training material's own digital silence is its recordings' gating (the typing and chime sets hold
    # stretches of zeros), not a capture dropout: trained on floors that take it in, as v3 was; the station skips
    # dropouts so that its features around one look like the continuous noise this model learned on. Weights
    # trained with the skip measured lower on three draws (model card), within a retrain's spread.
    feats, silero, rows, sil = CallFeatures(skip_dropouts=False), SileroStream(), [], []
    for block in blocks:
        k = len(block) // FRAME
        x = np.clip(block[: k * FRAME] * g, -1.0, 1.0)
        f, _, _ = feats.process(x)
        rows.append(f)
        sil.append(silero.process(x))
    sil.append(silero.finish())
    return np.hstack([np.concatenate(rows), np.concatenate(sil)])


def stack_inputs(feats: F32) -> F32:
    stack = ContextStack()
    return np.concatenate([stack.process(feats), stack.finish()])


def overlay(x: F32, truth: dict[str, Any], noise: F32, rng: np.random.Generator, snr_db: tuple[float, float]) -> F32:
    """Add a second noise to one channel at an SNR drawn from snr_db, relative to that party's speech power.

    The composer's own noise covers 3-20 dB on the mic; a second, different noise widens both the level range
    and the mixtures a station meets (typing over hold music, a fan over babble).
    """
    ch = int(rng.integers(0, 2)) if rng.random() < 0.3 else 0  # mostly the mic: the room is on the agent's side
    act = truth_frames(truth, len(x) // FRAME)[:, ch]
    if not act.any():
        return x
    speech = x[: len(act) * FRAME, ch].reshape(-1, FRAME)[act]
    p_s = float(np.mean(speech**2))
    reps = len(x) // max(len(noise), 1) + 2
    off = int(rng.integers(0, max(len(noise), 1)))
    nz = np.tile(noise, reps)[off : off + len(x)]
    p_n = float(np.mean(nz**2)) + 1e-12
    snr = rng.uniform(*snr_db)
    out = x.copy()
    out[:, ch] += (nz * np.sqrt(p_s / p_n / 10 ** (snr / 10))).astype(np.float32)
    return out


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
