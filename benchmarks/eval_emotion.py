"""Accuracy of the shipped emotion model through the station's runtime code, on every backend.

    python benchmarks/eval_emotion.py

- RAVDESS held-out actors (never trained or tuned on), through the telephone line (8 kHz, 300-3400 Hz, G.711,
  level changes) with noise types never seen in training at 0-20 dB SNR: unweighted accuracy (mean per-class
  recall), per-class recall and the confusion matrix, per backend and precision.
- Cross-corpus: NOIZEUS (other speakers, other sentences, read calmly, 8 kHz) clean and with its real noises at
  0-15 dB. It has no emotion labels, so the figure is the share read as neutral: how often the model would
  raise a false alarm on plain speech.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

from edge_agent.emotion_features import speech_mask  # noqa: E402
from edge_agent.emotion_model import CLASSES, EmotionModel  # noqa: E402
from models.emotion.dataset import Degradation, degrade, load_noises, ravdess_clips, read_mono16k  # noqa: E402
from models.emotion.train import TEST_NOISES, TEST_SPEAKERS, uar  # noqa: E402

SEED = 20261124


def held_out() -> tuple[list[np.ndarray], np.ndarray]:
    noises = load_noises([SHARED / "data" / "noise" / f"{n}.flac" for n in TEST_NOISES])
    rng = np.random.default_rng(SEED)
    xs, ys = [], []
    for c in ravdess_clips(SHARED / "data" / "ravdess", aux=False):
        if c.speaker in TEST_SPEAKERS:
            clean = read_mono16k(c.path)
            xs.append(degrade(clean, speech_mask(clean), noises, rng, Degradation(clean_share=0.0, line_share=1.0)))
            ys.append(CLASSES.index(c.label))
    return xs, np.array(ys)


def main() -> None:
    xs, y = held_out()
    models = {
        f"{b} {p}": EmotionModel(None, b, p)
        for b, p in (("onnxruntime", "int8"), ("onnxruntime", "fp32"), ("tflite", "fp32"))
    }
    print(
        f"RAVDESS held-out actors {', '.join(TEST_SPEAKERS)}: {len(y)} clips, telephone line + {'/'.join(TEST_NOISES)}"
    )
    for name, model in models.items():
        pred = np.array([int(np.argmax(model.classify_clip(x))) for x in xs])
        score, recall, cm = uar(y, pred)
        per = ", ".join(f"{c} {r:.3f}" for c, r in zip(CLASSES, recall, strict=True))
        print(f"  {name}: UAR {score:.3f} ({per}); confusion (rows true {'/'.join(CLASSES)}) {json.dumps(cm)}")
    model = models["onnxruntime int8"]
    root = SHARED / "data" / "noizeus"
    for name, files in (
        ("clean", sorted((root / "clean").glob("*.flac"))),
        ("noisy", sorted((root / "noisy").glob("*/*.flac"))),
    ):
        pred = np.array([int(np.argmax(model.classify_clip(read_mono16k(f)))) for f in files])
        dist = np.bincount(pred, minlength=len(CLASSES)) / len(pred)
        shares = ", ".join(f"{c} {d:.2f}" for c, d in zip(CLASSES, dist, strict=True))
        print(f"NOIZEUS {name} ({len(files)} sentences, calm read speech): {shares}")


if __name__ == "__main__":
    main()
