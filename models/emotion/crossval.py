"""Speaker cross-validation of the emotion recipe: how well it does on speakers it never saw, fold by fold.

    python -m models.emotion.crossval                 # 4 folds of 5 RAVDESS actors, the shipped recipe
    python -m models.emotion.crossval --members temporal spectral   # the two-member network (model card)
    python -m models.emotion.crossval --folds 0       # only the shipped test split (actors 01 09 11 12 13)
    python -m models.emotion.crossval --window 200 --adversary 0.5   # a recipe change: 2 s windows, speaker adversary

One test split of five actors moves a UAR by several points from one draw to the next (the model card), so a
change to the recipe is judged here: every fold holds five actors out (fold 0 is the shipped test split), three
of the rest choose the epoch, the other twelve train. Each actor's degraded copies are computed once and cached
per actor (`.cache/emotion/actors/`), so folds share them. Prints one line per fold and condition, then the mean
and spread; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from edge_agent.emotion_features import WINDOW_FRAMES
from edge_agent.emotion_model import CLASSES
from models.emotion.dataset import Clip, Degradation, load_noises, ravdess_clips
from models.emotion.net import MEMBERS
from models.emotion.reference import F32, forward
from models.emotion.train import (
    I64,
    SHARED,
    TEST_NOISES,
    TEST_SPEAKERS,
    TRAIN_NOISES,
    cached_features,
    predict_clips,
    train_net,
    uar,
)

log = logging.getLogger("models.emotion.crossval")

ROOT = Path(__file__).resolve().parents[2]
# five actors a fold; fold 0 is the shipped test split, the others two men (odd) and three women (even) each
FOLDS: tuple[tuple[str, ...], ...] = (
    TEST_SPEAKERS,
    tuple(f"ravdess_{a:02d}" for a in (3, 5, 2, 4, 6)),
    tuple(f"ravdess_{a:02d}" for a in (7, 15, 8, 10, 14)),
    tuple(f"ravdess_{a:02d}" for a in (17, 19, 16, 18, 20)),
)
Features = tuple[list[F32], I64, list[str]]


def actor_features(
    work: Path, clips: Sequence[Clip], noises: dict[str, dict[str, F32]], variants: int, seed: int, workers: int = 2
) -> dict[str, dict[str, Features]]:
    """Per actor: 'train' (its clips as training sees them, auxiliaries included), 'val', 'line_clean', 'line_noisy'."""
    speakers = sorted({c.speaker for c in clips})
    jobs = [
        (work, [c for c in clips if c.speaker == spk], noises, variants, seed + 1000 * n)
        for n, spk in enumerate(speakers)
    ]
    with ProcessPoolExecutor(workers) as pool:
        return dict(zip(speakers, pool.map(_one_actor, *zip(*jobs, strict=True)), strict=True))


def _one_actor(
    work: Path, own: list[Clip], noises: dict[str, dict[str, F32]], variants: int, s: int
) -> dict[str, Features]:
    main = [c for c in own if c.label in CLASSES]
    return {
        "train": cached_features(work, "a-train", own, noises["train"], variants, s, Degradation(speed=0.1)),
        "val": cached_features(work, "a-val", main, noises["train"], 2, s + 1, Degradation()),
        "line_clean": cached_features(work, "a-clean", main, {}, 1, s + 3, Degradation(line_share=1.0)),
        "line_noisy": cached_features(
            work, "a-noisy", main, noises["test"], 1, s + 2, Degradation(clean_share=0.0, line_share=1.0)
        ),
    }


def join(parts: Sequence[Features]) -> Features:
    mels = [m for p in parts for m in p[0]]
    return mels, np.concatenate([p[1] for p in parts]), [s for p in parts for s in p[2]]


def held_out_uar(w: dict[str, F32], held: Features, window: int) -> float:
    """UAR of the network `w` on held-out clips (each clip's windows averaged)."""
    return uar(held[1], predict_clips(lambda b: forward(w, b), held[0], window).argmax(1))[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ravdess", type=Path, default=SHARED / "data" / "ravdess")
    ap.add_argument("--noise-dir", type=Path, default=SHARED / "data" / "noise")
    ap.add_argument("--folds", type=int, nargs="+", choices=range(len(FOLDS)), default=list(range(len(FOLDS))))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--members", nargs="+", choices=MEMBERS, default=["temporal"], help="networks averaged")
    ap.add_argument("--variants", type=int, default=8)
    ap.add_argument("--seed", type=int, default=20261123, help="draws the degraded copies, the split and training")
    ap.add_argument("--train-seed", type=int, help="training's own seed, inputs unchanged (default: --seed)")
    ap.add_argument("--window", type=int, default=WINDOW_FRAMES, help="frames per training crop and model window")
    ap.add_argument("--mixup", type=float, default=0.0, help="mixup Beta(a, a); 0 is off")
    ap.add_argument("--adversary", type=float, default=0.0, help="speaker-adversarial weight; 0 is off")
    ap.add_argument("--val-speakers", type=int, default=3, help="0: train on all 15, keep the last epoch")
    ap.add_argument("--work", type=Path, default=ROOT / ".cache" / "emotion" / "actors")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    t0 = time.time()
    if args.adversary > 0 and args.mixup > 0:
        ap.error("--adversary and --mixup do not combine (mixed windows have no one speaker)")
    if not (args.ravdess / "labels.csv").is_file():
        ap.error(f"{args.ravdess}: no RAVDESS labels.csv there (see ../shared/data/README.md)")
    if not any(args.noise_dir.glob("*.flac")):
        ap.error(f"{args.noise_dir}: no noise .flac files there")
    clips = ravdess_clips(args.ravdess)
    all_noise = load_noises(sorted(args.noise_dir.glob("*.flac")))
    noises = {
        "train": {k: v for k, v in all_noise.items() if k in TRAIN_NOISES},
        "test": {k: v for k, v in all_noise.items() if k in TEST_NOISES},
    }
    feats = actor_features(args.work, clips, noises, args.variants, args.seed)
    log.info("features ready (%.0f s)", time.time() - t0)
    results: dict[str, list[float]] = {"line_clean": [], "line_noisy": []}
    for f in args.folds:
        test = list(FOLDS[f])
        rest = sorted(s for s in feats if s not in test)
        rng = np.random.default_rng(args.seed + f)
        val = sorted(rng.permutation(rest)[: args.val_speakers].tolist())
        train = [s for s in rest if s not in val]
        tr = join([feats[s]["train"] for s in train])
        va = join([feats[s]["val"] for s in val]) if val else None
        held = {cond: join([feats[s][cond] for s in test]) for cond in results}
        w: dict[str, F32] = {}
        for member in args.members:
            wm, epoch, val_uar = train_net(
                tr[0],
                tr[1],
                (va[0], va[1]) if va else None,
                args.epochs,
                args.seed if args.train_seed is None else args.train_seed,
                args.window,
                args.mixup,
                tr[2],
                args.adversary,
                member,
            )
            w.update(wm)
            for cond in results if len(args.members) > 1 else ():
                u = held_out_uar(wm, held[cond], args.window)
                log.info("fold %d %s, %s alone: UAR %.3f (val %.3f, epoch %d)", f, cond, member, u, val_uar, epoch)
        for cond in results:
            results[cond].append(held_out_uar(w, held[cond], args.window))
            log.info("fold %d %s: UAR %.3f", f, cond, results[cond][-1])
    summary = {
        cond: {"mean": round(float(np.mean(v)), 4), "sd": round(float(np.std(v)), 4), "folds": [round(x, 4) for x in v]}
        for cond, v in results.items()
    }
    log.info("done in %.0f s", time.time() - t0)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
