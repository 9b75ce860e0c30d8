"""`edge-agent emotion FILE [FILE ...]`: one JSON line per file with the speaker's emotion.

Contract (other tools depend on it): for a mono clip of one speaker at any sample rate,
`{"file": PATH, "label": "neutral"|"happy"|"angry"|"sad", "scores": {"neutral": p, "happy": p, "angry": p,
"sad": p}, "confident": true|false}`: `label` is the most likely class, `scores` are calibrated probabilities
(the model card's temperature scaling) and `confident` says whether the top one clears the card's abstention
threshold (chosen on validation speakers; below it, treat the label as a guess); a file that cannot be read
gives `{"file": PATH, "error": "..."}` and the run goes on. Exit status
0 when every file was scored, 2 when any was not.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import soundfile as sf
import soxr

from edge_agent.audio import SAMPLE_RATE, AudioError
from edge_agent.emotion_model import CLASSES, EmotionModel

log = logging.getLogger(__name__)

MAX_SECONDS = 600.0  # one speaker's clip; longer input is scored on its first ten minutes


def read_clip(path: str) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Mono float32 at 16 kHz; several channels are averaged. Raises AudioError with a one-line reason."""
    p = Path(path)
    if not p.is_file():
        raise AudioError("no such file" if not p.exists() else "not a file")
    try:
        info = sf.info(str(p))
        if info.samplerate < 8000:
            raise AudioError(f"sample rate {info.samplerate} Hz is below the 8 kHz minimum")
        frames = min(info.frames, int(MAX_SECONDS * info.samplerate))
        data, rate = sf.read(str(p), frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(
            f"not readable audio ({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})"
        ) from None
    if len(data) == 0:
        raise AudioError("contains no audio")
    x = data.mean(axis=1)
    if not np.isfinite(x).all():
        raise AudioError("contains NaN or infinite samples")
    if rate != SAMPLE_RATE:
        x = soxr.resample(x, rate, SAMPLE_RATE)
    return np.asarray(x, np.float32)


def score_file(model: EmotionModel, path: str) -> dict[str, Any]:
    try:
        x = read_clip(path)
    except AudioError as exc:
        return {"file": path, "error": str(exc)}
    if len(x) < SAMPLE_RATE // 10:
        return {"file": path, "error": "shorter than 0.1 s"}
    p = model.classify_clip(x)
    return {
        "file": path,
        "label": CLASSES[int(np.argmax(p))],
        "scores": {c: round(float(v), 4) for c, v in zip(CLASSES, p, strict=True)},
        "confident": model.confident(p),
    }


def run(files: list[str], out: TextIO | None = None, backend: str = "onnxruntime", precision: str = "fp32") -> int:
    out = out or sys.stdout
    model = EmotionModel(None, backend, precision)
    failed = 0
    for path in files:
        line = score_file(model, path)
        failed += "error" in line
        out.write(json.dumps(line, separators=(",", ":")) + "\n")
        out.flush()
    return 2 if failed else 0
