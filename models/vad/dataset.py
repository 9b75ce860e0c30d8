"""Training material for the speech model: composed two-channel calls from real speech, with truth.

Calls are composed by `../shared/tools/compose_calls.py` (called, never copied) from a speaker
manifest, so any corpus of single-speaker clips a center holds rights to can be used. Speakers are
split before composing, never clips, so validation speakers are never heard in training.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

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


def compose(
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


def call_inputs(wav: Path) -> F32:
    """Model inputs for every frame of a call, through the same streaming code the station runs."""
    feats, stack, rows = CallFeatures(), ContextStack(), []
    for block in read_call(wav):
        k = len(block) // FRAME
        f, _, _ = feats.process(block[: k * FRAME])
        rows.append(stack.process(f))
    rows.append(stack.finish())
    return np.concatenate(rows)


def load_calls(wavs: Sequence[Path]) -> tuple[F32, npt.NDArray[np.bool_]]:
    xs, ys = [], []
    for wav in wavs:
        x = call_inputs(wav)
        truth = json.loads(wav.with_suffix(".json").read_text())
        ys.append(truth_frames(truth, len(x)))
        xs.append(x)
    return np.concatenate(xs), np.concatenate(ys)
