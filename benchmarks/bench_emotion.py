"""Speed and size of the emotion model on one core.

    python benchmarks/bench_emotion.py [--seconds 120]

One speaker's stream: real RAVDESS speech of a held-out actor, back to back, fed to one party of the
EmotionTracker in 1 s blocks as continuous own speech (the worst case: every frame is speech), with a window
scored every 2 s of speech (the default hop) and every second. Prints x real time per backend and precision
(features + inference), the per-window inference latency, and the size of every shipped model file.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

from edge_agent.config import EmotionConfig  # noqa: E402
from edge_agent.emotion import EmotionTracker  # noqa: E402
from edge_agent.emotion_features import N_INPUTS, WINDOW_FRAMES  # noqa: E402
from edge_agent.emotion_model import DEFAULT_MODEL, EmotionModel, EmotionModelError, shipped_dir  # noqa: E402
from models.emotion.dataset import ravdess_clips, read_mono16k  # noqa: E402


def stream(seconds: float) -> np.ndarray:
    clips = [c for c in ravdess_clips(SHARED / "data" / "ravdess", aux=False) if c.speaker == "ravdess_01"]
    x = np.concatenate([read_mono16k(c.path) for c in clips])
    return np.resize(x, int(seconds * 16000)).astype(np.float32)


def one_stream(model: EmotionModel, x: np.ndarray, hop_s: float) -> tuple[float, int]:
    """CPU seconds to track one party over x (the other party silent), and windows scored."""
    tracker = EmotionTracker(EmotionConfig(hop_s=hop_s), model)
    stereo = np.stack([x, np.zeros_like(x)], axis=1)
    windows = 0
    t0 = time.process_time()
    for i in range(0, len(x), 16000):
        block = stereo[i : i + 16000]
        act = np.zeros((len(block) // 160, 2), bool)
        act[:, 0] = True
        tracker.process(act, block[: len(act) * 160])
    cpu = time.process_time() - t0
    windows = len(tracker.parties["agent"].history)
    return cpu, windows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=120.0)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    x = stream(args.seconds)
    card = json.loads((shipped_dir() / f"{DEFAULT_MODEL}.json").read_text())
    for key, entry in card["files"].items():
        print(f"size: {key:10s} {entry['file']:22s} {entry['bytes'] / 1024:7.1f} KB")
    one = np.zeros((1, WINDOW_FRAMES, N_INPUTS), np.float32)
    for backend, precision in (("onnxruntime", "int8"), ("onnxruntime", "fp32"), ("tflite", "fp32")):
        try:
            model = EmotionModel(None, backend, precision, threads=1)
        except EmotionModelError as exc:  # no TFLite export in the card, or no runtime for it here
            print(f"speed: {backend} {precision}: not measured ({exc})")
            continue
        t0 = time.perf_counter()
        for _ in range(200):
            model.predict(one)
        ms = (time.perf_counter() - t0) / 200 * 1000
        # the default hop (2 s: a 1 s window every 2 s of speech) and every frame scored (hop 1 s)
        for hop_s in (EmotionConfig().hop_s, 1.0):
            cpu, windows = one_stream(model, x, hop_s)
            print(
                f"speed: {backend} {precision}, hop {hop_s:g} s: {args.seconds:.0f} s of one speaker's speech, "
                f"{windows} windows, {cpu:.2f} s CPU = {args.seconds / cpu:.0f}x real time on one core; "
                f"{ms:.2f} ms per window (inference alone)"
            )


if __name__ == "__main__":
    main()
