"""Accuracy of the shipped emotion model through the station's runtime code, on every backend; and across corpora.

    python benchmarks/eval_emotion.py                  # the shipped model: RAVDESS held-out actors, NOIZEUS
    python benchmarks/eval_emotion.py --cross-corpus   # leave-one-corpus-out beside the speaker split
    python benchmarks/eval_emotion.py --confidence     # which sureness measure best ranks the mistakes

- RAVDESS held-out actors (never trained or tuned on), through the telephone line (8 kHz, 300-3400 Hz, G.711,
  level changes) with noise types never seen in training at 0-20 dB SNR: unweighted accuracy (mean per-class
  recall), per-class recall and the confusion matrix, per backend and precision.
- Cross-corpus: NOIZEUS (other speakers, other sentences, read calmly, 8 kHz) clean and with its real noises at
  0-15 dB. It has no emotion labels, so the figure is the share read as neutral: how often the model would
  raise a false alarm on plain speech.
- `--cross-corpus`: the shipped model (trained on RAVDESS alone) on RAVDESS's held-out actors and on all ten EmoDB
  speakers, beside three trainings of the current recipe (models.emotion.train), each evaluated on its test
  speakers through the telephone line (clean and with unseen noise) and the wideband mic, per class, with the MFCC
  baseline of the same training speakers: RAVDESS + EmoDB (emotion-v2; test: RAVDESS actors 01 09 11 12 13, EmoDB
  speakers 03 08), without EmoDB (test: all ten EmoDB speakers, and the same RAVDESS actors) and without RAVDESS
  (test: the same RAVDESS actors). The fp32 rows also give the share of clips the calibrated model abstains on and
  its UAR on the answered clips. Weights already trained (in --work) are evaluated again, not retrained. Prints a
  table, then one JSON line; `--write-card` adds the figures to the shipped card as `cross_corpus`.
- `--confidence`: on the same test sets and draw as the shipped rows of `--cross-corpus`, the UAR gain when the
  shipped model abstains on its least sure 20 % and 30 % of clips, by the calibrated top probability (what the
  station uses) and four other measures; abstaining by rank gives every measure the same number of answers.
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

from edge_agent.emotion_features import clip_windows, speech_mask  # noqa: E402
from edge_agent.emotion_model import CLASSES, DEFAULT_MODEL, EmotionModel, EmotionModelError, shipped_dir  # noqa: E402
from models.emotion.calibrate import clip_level, ece  # noqa: E402
from models.emotion.dataset import (  # noqa: E402
    CORPORA,
    Degradation,
    degrade,
    load_noises,
    ravdess_clips,
    read_mono16k,
)
from models.emotion.train import (  # noqa: E402
    EMODB_TEST_SPEAKERS,
    NAME,
    TEST_NOISES,
    TEST_SPEAKERS,
    answered,
    conditions,
    gather,
    load_corpora,
    load_noise_sets,
    report,
    train_and_evaluate,
    uar,
)

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


def shipped_model() -> None:
    xs, y = held_out()
    models = {}
    for b, p in (("onnxruntime", "int8"), ("onnxruntime", "fp32"), ("tflite", "fp32")):
        try:
            models[f"{b} {p}"] = EmotionModel(None, b, p)
        except EmotionModelError as exc:  # no TFLite export in the card, or no runtime for it here
            print(f"  {b} {p}: not evaluated ({exc})")
    print(
        f"RAVDESS held-out actors {', '.join(TEST_SPEAKERS)}: {len(y)} clips, telephone line + {'/'.join(TEST_NOISES)}"
    )
    for name, model in models.items():
        pred = np.array([int(np.argmax(model.classify_clip(x))) for x in xs])
        score, recall, cm = uar(y, pred)
        per = ", ".join(f"{c} {r:.3f}" for c, r in zip(CLASSES, recall, strict=True))
        print(f"  {name}: UAR {score:.3f} ({per}); confusion (rows true {'/'.join(CLASSES)}) {json.dumps(cm)}")
    fp32 = models["onnxruntime fp32"]
    cal = np.stack([fp32.classify_clip(x) for x in xs])
    keep = cal.max(axis=1) >= fp32.calibration.clip_min_confidence
    if keep.any():
        print(
            f"  onnxruntime fp32, calibrated: abstains on {1 - keep.mean():.1%} of clips; UAR answered "
            f"{uar(y[keep], cal[keep].argmax(1))[0]:.3f} vs all {uar(y, cal.argmax(1))[0]:.3f}"
        )
    model = models["onnxruntime int8"]
    root = SHARED / "data" / "noizeus"
    for name, files in (
        ("clean", sorted((root / "clean").glob("*.flac"))),
        ("noisy", sorted((root / "noisy").glob("*/*.flac"))),
    ):
        probs = np.stack([model.classify_clip(read_mono16k(f)) for f in files])
        pred = probs.argmax(axis=1)
        dist = np.bincount(pred, minlength=len(CLASSES)) / len(pred)
        shares = ", ".join(f"{c} {d:.2f}" for c, d in zip(CLASSES, dist, strict=True))
        # what reaches an alert: anger the calibrated model is sure of
        sure = probs.max(axis=1) >= model.calibration.clip_min_confidence
        angry = float(np.mean(sure & (pred == CLASSES.index("angry"))))
        print(f"NOIZEUS {name} ({len(files)} sentences, calm read speech): {shares}; confidently angry {angry:.2f}")


SETUPS: dict[str, tuple[tuple[str, ...], str | None]] = {
    # name: (training corpora, held-out corpus)
    "ravdess+emodb": (CORPORA, None),
    "without emodb": (CORPORA, "emodb"),
    "without ravdess": (CORPORA, "ravdess"),
}


def shipped_by_corpus(work: Path, seed: int) -> dict[str, Any]:
    """The shipped (default) model on RAVDESS's held-out actors and on every EmoDB speaker (it never saw EmoDB)."""
    clips = load_corpora(CORPORA, None, SHARED / "data")
    noises = load_noise_sets(SHARED / "data" / "noise")
    emodb = sorted({x.speaker for x in clips if x.corpus == "emodb"})
    model = EmotionModel(None, "onnxruntime", "fp32")
    out: dict[str, Any] = {"model": model.card.name}
    for test, speakers in (("ravdess", sorted(TEST_SPEAKERS)), ("emodb", emodb)):
        ev: dict[str, Any] = {"speakers": speakers}
        for cond in conditions(noises):
            mels, y, _ = gather(work, clips, speakers, cond, noises, seed)
            raw = [model.predict_raw(model.inputs(clip_windows(m))) for m in mels]
            cal = np.stack([model.clip(r) for r in raw])
            r = report(f"shipped {test} {cond}", y, cal.argmax(1))
            r["abstention"] = answered(y, cal, model.calibration.clip_min_confidence)
            r["ece"] = {"raw": ece(clip_level(raw), y), "calibrated": ece(cal, y)}
            ev["clips"] = len(y)
            ev[cond] = {"onnx_fp32": r}
        out[test] = ev
    return out


def cross_corpus(work: Path, seed: int, band_mean: bool = False, full: Path | None = None) -> dict[str, Any]:
    """Each setup's card evaluation (trained here unless its weights are already there)."""
    data, noises = SHARED / "data", load_noise_sets(SHARED / "data" / "noise")
    out: dict[str, Any] = {f"shipped {DEFAULT_MODEL}": shipped_by_corpus(work / "speakers", seed)}
    for setup, (corpora, hold) in SETUPS.items():
        clips = load_corpora(corpora, None, data)
        if hold is None:
            wanted = {*TEST_SPEAKERS, *EMODB_TEST_SPEAKERS}
            tests = {c: sorted({x.speaker for x in clips if x.corpus == c and x.speaker in wanted}) for c in corpora}
            where = full or work / (setup + ("-band-mean" if band_mean else ""))
            name = NAME
        else:
            # the held-out corpus: every EmoDB speaker, or RAVDESS's held-out actors (its others never train here)
            held = {x.speaker for x in clips if x.corpus == hold and (hold != "ravdess" or x.speaker in TEST_SPEAKERS)}
            clips = [x for x in clips if x.corpus != hold or x.speaker in held]
            tests = {hold: sorted(held)}
            if hold != "ravdess":
                tests["ravdess"] = sorted(TEST_SPEAKERS)
            tag = setup.replace(" ", "-") + ("-band-mean" if band_mean else "")
            where, name = work / tag, f"emotion-{tag}"
        card = train_and_evaluate(
            clips,
            tests,
            noises,
            where,
            name,
            work / "speakers",
            seed,
            corpus=setup,
            reuse=True,
            band_mean=band_mean,
        )
        out[setup] = {
            "band_mean": band_mean,
            "training_speakers": len(card["training"]["speakers"]),
            "calibration": {k: card["calibration"][k] for k in ("clip_temperature", "clip_min_confidence")},
            **{k: v for k, v in card["evaluation"].items() if k != "noises"},
        }
    return out


def table(results: dict[str, Any]) -> dict[str, Any]:
    """Prints one row per setup, test corpus, condition and model; returns the compact summary."""
    head = f"{'trained on':20s} {'test':8s} {'condition':11s} {'model':9s} {'UAR':>6s} " + " ".join(
        f"{c[:7]:>7s}" for c in CLASSES
    )
    print(head + f" {'abstain':>8s} {'UAR ans.':>8s}")
    summary: dict[str, Any] = {}
    for setup, res in results.items():
        for test, ev in res.items():
            if not isinstance(ev, dict) or "line_noisy" not in ev:
                continue
            for cond in ("line_clean", "line_noisy", "mic_noisy"):
                for model in ("baseline_mfcc_logreg", "onnx_fp32", "onnx_int8"):
                    if model not in ev[cond]:
                        continue
                    r = ev[cond][model]
                    recall = " ".join(f"{r['recall'][c]:7.3f}" for c in CLASSES)
                    ab = r.get("abstention")
                    tail = f" {ab['abstained']:8.1%} {ab['uar_answered']:8.3f}" if ab else ""
                    short = {"baseline_mfcc_logreg": "MFCC-LR", "onnx_fp32": "fp32", "onnx_int8": "int8"}[model]
                    print(f"{setup:20s} {test:8s} {cond:11s} {short:9s} {r['uar']:6.3f} {recall}{tail}")
                    key = f"{setup}/{test}/{cond}/{short}"
                    summary[key] = {"uar": r["uar"], "angry": r["recall"]["angry"]}
                    if ab:
                        summary[key] |= {"abstained": ab["abstained"], "uar_answered": ab["uar_answered"]}
    return summary


CONFIDENCE_MEASURES = ("top probability", "top minus second", "negative entropy", "windows agreeing", "mean window top")


def confidence_measures(cal: np.ndarray, raw: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per clip, the calibrated top probability (what the station abstains on) beside other rankings of sureness."""
    top2 = np.sort(cal, axis=1)[:, -2:]
    pred = cal.argmax(axis=1)
    return dict(
        zip(
            CONFIDENCE_MEASURES,
            (
                top2[:, 1],
                top2[:, 1] - top2[:, 0],
                (cal * np.log(cal + 1e-9)).sum(axis=1),
                np.array([float((r.argmax(axis=1) == k).mean()) for r, k in zip(raw, pred, strict=True)]),
                np.array([float(r.max(axis=1).mean()) for r in raw]),
            ),
            strict=True,
        )
    )


def compare_confidence(work: Path, seed: int, shares: tuple[float, ...] = (0.2, 0.3)) -> dict[str, Any]:
    """How well each confidence measure ranks the shipped model's mistakes: UAR gain over all clips when the least
    sure `shares` of each test set are abstained on (by rank, so every measure abstains on as many clips)."""
    clips = load_corpora(CORPORA, None, SHARED / "data")
    noises = load_noise_sets(SHARED / "data" / "noise")
    emodb = sorted({x.speaker for x in clips if x.corpus == "emodb"})
    model = EmotionModel(None, "onnxruntime", "fp32")
    out: dict[str, Any] = {}
    for test, speakers in (("ravdess", sorted(TEST_SPEAKERS)), ("emodb", emodb)):
        for cond in conditions(noises):
            mels, y, _ = gather(work, clips, speakers, cond, noises, seed)
            raw = [model.predict_raw(model.inputs(clip_windows(m))) for m in mels]
            cal = np.stack([model.clip(r) for r in raw])
            pred = cal.argmax(axis=1)
            everything = uar(y, pred)[0]
            row: dict[str, Any] = {"clips": len(y), "uar": round(everything, 4)}
            for name, conf in confidence_measures(cal, raw).items():
                order = np.argsort(conf, kind="stable")  # least sure first
                gains = []
                for share in shares:
                    keep = np.ones(len(y), bool)
                    keep[order[: round(share * len(y))]] = False
                    gains.append(round(uar(y[keep], pred[keep])[0] - everything, 4))
                row[name] = gains
            out[f"{test} {cond}"] = row
            print(
                f"{test:8s} {cond:11s} UAR {everything:.3f}  "
                + "  ".join(f"{n}: " + " / ".join(f"{g:+.3f}" for g in row[n]) for n in CONFIDENCE_MEASURES)
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cross-corpus", action="store_true", help="leave-one-corpus-out beside the speaker split")
    ap.add_argument("--work", type=Path, default=ROOT / ".cache" / "emotion")
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--write-card", action="store_true", help="store the figures in the shipped card")
    ap.add_argument("--full", type=Path, help="folder of the all-corpora weights (default: WORK/ravdess+emodb)")
    ap.add_argument("--band-mean", action="store_true", help="train the held-out setups with band-mean input")
    ap.add_argument(
        "--confidence", action="store_true", help="rank the shipped model's mistakes by several confidence measures"
    )
    args = ap.parse_args()
    if args.confidence:
        print(json.dumps(compare_confidence(args.work / "speakers", args.seed), separators=(",", ":")))
        return
    if not args.cross_corpus:
        shipped_model()
        return
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    results = cross_corpus(args.work, args.seed, args.band_mean, args.full)
    summary = table(results)
    if args.write_card:
        path = shipped_dir() / f"{DEFAULT_MODEL}.json"
        card = json.loads(path.read_text())
        card["cross_corpus"] = results
        path.write_text(json.dumps(card, indent=1) + "\n")
    print(json.dumps(summary, separators=(",", ":")))


if __name__ == "__main__":
    main()
