"""Train the speech-emotion model on real speech and export it for the station.

    python -m models.emotion.train                      # RAVDESS from ../shared, writes models/shipped/emotion-v1.*
    python -m models.emotion.train --manifest mine.csv --test-speakers A B   # any corpus: path,speaker,label

One command, fixed seeds, speaker-independent: test speakers are never trained or tuned on, validation speakers
(drawn from the rest) choose the epoch. Every clip is degraded like the station's input (telephone band, 8 kHz,
G.711, real noise at 0-20 dB, level changes); test uses noise types never seen in training. Reports unweighted
accuracy (mean per-class recall), per-class recall and the confusion matrix on the test speakers for the
exported ONNX fp32 and int8 models, beside a logistic-regression baseline on MFCC statistics.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.fft import dct

from edge_agent.emotion_features import N_BANDS, WINDOW_FRAMES, clip_windows, model_input
from edge_agent.emotion_model import CLASSES, EmotionModel, clip_probs
from models.emotion.dataset import (
    TRAIN_CLASSES,
    Clip,
    Degradation,
    features,
    load_noises,
    ravdess_clips,
    read_manifest,
)
from models.emotion.export import architecture, export_int8, export_onnx, write_card
from models.emotion.net import MEMBERS, build, folded_weights, gradient_reversal
from models.emotion.reference import F32, HIDDEN, forward, load_weights

log = logging.getLogger("models.emotion.train")

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
NAME = "emotion-v1"
TEST_SPEAKERS = ("ravdess_01", "ravdess_09", "ravdess_11", "ravdess_12", "ravdess_13")  # as the VAD's
TRAIN_NOISES = ("babble", "car", "restaurant", "station", "street", "train")
TEST_NOISES = ("airport", "exhibition")
I64 = npt.NDArray[np.int64]


def cached_features(
    work: Path, tag: str, clips: Sequence[Clip], noises: dict[str, F32], variants: int, seed: int, d: Degradation
) -> tuple[list[F32], I64, list[str]]:
    key = hashlib.sha256(json.dumps([tag, [str(c) for c in clips], sorted(noises), variants, seed, repr(d)]).encode())
    path = work / f"{tag}-{key.hexdigest()[:12]}.npz"
    if path.exists():
        with np.load(path) as z:
            rows, lens = z["rows"], z["lens"]
            cuts = np.cumsum(lens)[:-1]
            return list(np.split(rows, cuts)), z["y"], [str(s) for s in z["spk"]]
    mels, y, spk = features(clips, noises, variants, seed, d)
    work.mkdir(parents=True, exist_ok=True)
    np.savez(path, rows=np.concatenate(mels), lens=np.array([len(m) for m in mels]), y=y, spk=np.array(spk))
    return mels, y, spk


def uar(y: I64, pred: I64) -> tuple[float, list[float], list[list[int]]]:
    """Unweighted accuracy (mean per-class recall), per-class recall, confusion matrix (rows true, cols predicted)."""
    k = len(CLASSES)
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (y, pred), 1)
    recall = [float(cm[i, i] / max(cm[i].sum(), 1)) for i in range(k)]
    return float(np.mean(recall)), recall, cm.tolist()


def crops(mels: Sequence[F32], rng: np.random.Generator, length: int = WINDOW_FRAMES) -> F32:
    """One random `length` crop of every clip's speech rows (a short clip is repeated)."""
    out = np.empty((len(mels), length, mels[0].shape[1]), np.float32)
    for i, m in enumerate(mels):
        if len(m) < length:
            m = np.tile(m, (-(-length // len(m)), 1))
        s = int(rng.integers(0, len(m) - length + 1))
        out[i] = m[s : s + length]
    return model_input(out)


def spec_augment(x: F32, rng: np.random.Generator) -> F32:
    """Mask a few bands and a stretch of time per window (to the window mean, i.e. zero)."""
    n, t, b = x.shape
    f0, fw = rng.integers(0, N_BANDS, size=(n, 1)), rng.integers(0, 5, size=(n, 1))
    t0, tw = rng.integers(0, t, size=(n, 1)), rng.integers(0, 25, size=(n, 1))
    bands, frames = np.arange(b)[None, :], np.arange(t)[None, :]
    band_mask = (bands >= f0) & (bands < f0 + fw) & (bands < N_BANDS)
    time_mask = (frames >= t0) & (frames < t0 + tw)
    keep = ~(band_mask[:, None, :] | time_mask[:, :, None])
    return np.asarray(x * keep, np.float32)


def predict_clips(predict: Any, mels: Sequence[F32], length: int = WINDOW_FRAMES) -> F32:
    return np.stack([clip_probs(predict(model_input(clip_windows(m, length, length // 2)))) for m in mels])


def train_net(
    mels: list[F32],
    y: I64,
    val: tuple[list[F32], I64] | None,
    epochs: int,
    seed: int,
    length: int = WINDOW_FRAMES,
    mixup: float = 0.0,
    speakers: Sequence[str] | None = None,
    adversary: float = 0.0,
    member: str = "temporal",
) -> tuple[dict[str, F32], int, float]:
    """Train one member of the network (net.MEMBERS); `val` chooses the epoch (None: the last); `mixup` > 0 mixes
    window pairs (Beta(mixup, mixup));
    `adversary` > 0 (with each row's `speakers`) trains a speaker classifier on the hidden layer through a reversed
    gradient of up to that weight, pushing the representation to forget who speaks (training only: the head is
    not exported)."""
    if adversary > 0 and (speakers is None or mixup > 0):
        raise ValueError("the speaker adversary needs each row's speaker, and no mixup")
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    rng = np.random.default_rng(seed)
    n_out = int(y.max()) + 1
    net = build(n_out, member=member)
    counts = np.maximum(np.bincount(y, minlength=n_out).astype(np.float32), 1.0)
    weight = torch.from_numpy(counts.sum() / (n_out * counts))
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=0.05)
    yt = torch.from_numpy(y)
    params = list(net.parameters())
    spk: tuple[Any, Any] | None = None  # the adversary's head and each row's speaker index
    if adversary > 0 and speakers is not None:
        index = {name: n for n, name in enumerate(sorted(set(speakers)))}
        head = torch.nn.Sequential(
            torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, len(index))
        )
        spk = (head, torch.tensor([index[s] for s in speakers]))
        params += list(head.parameters())
    steps = epochs * (-(-len(mels) // 64))
    opt = torch.optim.AdamW(params, lr=3e-3, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    best: tuple[float, int, dict[str, F32]] = (-1.0, -1, {})
    for epoch in range(epochs):
        net.train()
        x = torch.from_numpy(spec_augment(crops(mels, rng, length), rng))
        perm = torch.from_numpy(rng.permutation(len(mels)))
        total = 0.0
        for i in range(0, len(perm), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            if mixup > 0:
                # mix each window with another of the batch (its own speaker or not): smoother class boundaries
                lam = float(rng.beta(mixup, mixup))
                other = idx[torch.from_numpy(rng.permutation(len(idx)))]
                out = net(lam * x[idx] + (1 - lam) * x[other])
                loss = lam * loss_fn(out, yt[idx]) + (1 - lam) * loss_fn(out, yt[other])
            elif spk is not None:
                spk_head, spk_t = spk
                hid = net.hidden(x[idx])
                # the adversary's weight ramps up (DANN's schedule): first learn the classes, then forget speakers
                p = (epoch + i / len(perm)) / epochs
                scale = adversary * (2.0 / (1.0 + np.exp(-10.0 * p)) - 1.0)
                spk_loss = torch.nn.functional.cross_entropy(spk_head(gradient_reversal(hid, scale)), spk_t[idx])
                loss = loss_fn(net.dense1(hid), yt[idx]) + spk_loss
            else:
                loss = loss_fn(net(x[idx]), yt[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        net.eval()
        w = folded_weights(net, len(CLASSES))
        if val is None:
            log.info("epoch %2d loss %.3f", epoch, total / len(mels))
            best = (-1.0, epoch, w)
            continue
        score, _, _ = uar(val[1], predict_clips(lambda b, w=w: forward(w, b), val[0], length).argmax(axis=1))
        log.info("epoch %2d loss %.3f val UAR %.3f", epoch, total / len(mels), score)
        if score > best[0]:
            best = (score, epoch, w)
    return best[2], best[1], best[0]


def mfcc_stats(mels: Sequence[F32]) -> F32:
    """Baseline features: mean and std of 13 MFCCs (and their deltas) over a clip's speech, gain-normalised."""
    out = []
    for m in mels:
        c = dct(model_input(m[None])[0, :, :N_BANDS], type=2, norm="ortho", axis=1)[:, :13]
        d = np.diff(c, axis=0) if len(c) > 1 else np.zeros_like(c)
        out.append(np.concatenate([c.mean(0), c.std(0), d.mean(0), d.std(0)]))
    return np.array(out, np.float32)


def baseline(train: tuple[F32, I64], val: tuple[F32, I64], seed: int) -> Any:
    """Logistic regression (L2 chosen on validation speakers), full-batch L-BFGS; returns a predict function."""
    import torch

    mean, std = train[0].mean(0), train[0].std(0) + 1e-6
    xt, yt = torch.from_numpy((train[0] - mean) / std), torch.from_numpy(train[1])
    counts = np.bincount(train[1], minlength=len(CLASSES)).astype(np.float32)
    weight = torch.from_numpy(counts.sum() / (len(CLASSES) * counts))
    best: tuple[float, Any] = (-1.0, None)
    for l2 in (1e-4, 1e-3, 1e-2, 1e-1):
        torch.manual_seed(seed)
        lin = torch.nn.Linear(xt.shape[1], len(CLASSES))
        opt = torch.optim.LBFGS(lin.parameters(), max_iter=300)

        def closure(lin: Any = lin, opt: Any = opt, l2: float = l2) -> Any:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(lin(xt), yt, weight=weight) + l2 * (lin.weight**2).sum()
            loss.backward()
            return loss

        opt.step(closure)  # type: ignore[no-untyped-call]

        def predict(x: F32, lin: Any = lin) -> I64:
            with torch.no_grad():
                return np.asarray(lin(torch.from_numpy((x - mean) / std)).argmax(1).numpy(), np.int64)

        score = uar(val[1], predict(val[0]))[0]
        log.info("baseline l2 %g val UAR %.3f", l2, score)
        if score > best[0]:
            best = (score, predict)
    return best[1]


def report(name: str, y: I64, pred: I64) -> dict[str, Any]:
    score, recall, cm = uar(y, pred)
    log.info("%s: UAR %.3f recall %s", name, score, dict(zip(CLASSES, np.round(recall, 3), strict=True)))
    return {
        "uar": round(score, 4),
        "recall": {c: round(r, 4) for c, r in zip(CLASSES, recall, strict=True)},
        "confusion": cm,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, help="CSV path,speaker,label (default: RAVDESS from ../shared)")
    ap.add_argument("--ravdess", type=Path, default=SHARED / "data" / "ravdess")
    ap.add_argument("--noise-dir", type=Path, default=SHARED / "data" / "noise")
    ap.add_argument("--test-speakers", nargs="+", default=list(TEST_SPEAKERS))
    ap.add_argument("--val-speakers", type=int, default=3, help="training speakers held out to choose the epoch")
    ap.add_argument("--variants", type=int, default=8, help="degraded copies of each training clip")
    ap.add_argument("--speed", type=float, default=0.1, help="speed perturbation range, +-")
    ap.add_argument("--no-aux", action="store_true", help="train on the four shipped classes only")
    ap.add_argument("--export-only", action="store_true", help="export and evaluate the weights already in --out")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument(
        "--members",
        nargs="+",
        choices=MEMBERS,
        default=["temporal"],
        help="networks trained and averaged (the shipped weights: temporal; see the card for both)",
    )
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--out", type=Path, default=ROOT / "models" / "shipped")
    ap.add_argument("--work", type=Path, default=ROOT / ".cache" / "emotion")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    t0 = time.time()
    clips = read_manifest(args.manifest) if args.manifest else ravdess_clips(args.ravdess, aux=not args.no_aux)
    if args.no_aux:
        clips = [c for c in clips if c.label in CLASSES]
    speakers = sorted({c.speaker for c in clips})
    test_spk = [s for s in speakers if s in set(args.test_speakers)]
    rest = [s for s in speakers if s not in set(test_spk)]
    rng = np.random.default_rng(args.seed)
    val_spk = sorted(rng.permutation(rest)[: args.val_speakers].tolist())
    train_spk = [s for s in rest if s not in val_spk]
    log.info("train %s, validation %s, test %s", train_spk, val_spk, test_spk)

    def pick(spk: Sequence[str], aux: bool = False) -> list[Clip]:
        return [c for c in clips if c.speaker in spk and (aux or c.label in CLASSES)]

    all_noise = load_noises(sorted(args.noise_dir.glob("*.flac")))
    train_noise = {k: v for k, v in all_noise.items() if k in TRAIN_NOISES}
    test_noise = {k: v for k, v in all_noise.items() if k in TEST_NOISES}
    aug = Degradation(speed=args.speed)
    work = args.work
    tr = cached_features(work, "train", pick(train_spk, aux=True), train_noise, args.variants, args.seed, aug)
    va = cached_features(work, "val", pick(val_spk), train_noise, 2, args.seed + 1, Degradation())
    line = Degradation(clean_share=0.0, line_share=1.0)
    tests = {
        "line_noisy": cached_features(work, "test", pick(test_spk), test_noise, 1, args.seed + 2, line),
        "line_clean": cached_features(work, "test", pick(test_spk), {}, 1, args.seed + 3, Degradation(line_share=1.0)),
        "mic_noisy": cached_features(
            work, "test", pick(test_spk), test_noise, 1, args.seed + 4, Degradation(clean_share=0.0, line_share=0.0)
        ),
    }
    log.info("features: %d train, %d val copies (%.0f s)", len(tr[0]), len(va[0]), time.time() - t0)

    main4 = tr[1] < len(CLASSES)  # the baseline learns the shipped classes only
    bl = baseline(
        (mfcc_stats([m for m, k in zip(tr[0], main4, strict=True) if k]), tr[1][main4]),
        (mfcc_stats(va[0]), va[1]),
        args.seed,
    )
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    npz = out / f"{NAME}.npz"
    licence = (
        "weights trained on RAVDESS (CC BY-NC-SA 4.0): non-commercial use only, attribution, share-alike;"
        " retrain on speech you hold rights to for commercial use (--manifest)"
    )
    if args.export_only:
        # re-export and re-evaluate the weights of an earlier run, whose card keeps its training record
        w = load_weights(npz)
        training = json.loads((out / f"{NAME}.json").read_text())["training"]
    else:
        w, chosen = {}, {}
        for member in args.members:
            wm, epoch, val_uar = train_net(tr[0], tr[1], (va[0], va[1]), args.epochs, args.seed, member=member)
            log.info("%s: best epoch %d, val UAR %.3f (%.0f s)", member, epoch, val_uar, time.time() - t0)
            w.update(wm)
            chosen[member] = {"best_epoch": epoch, "validation_uar": round(val_uar, 4)}
        if len(args.members) > 1:  # one member's own validation score is already the network's
            val_uar = uar(va[1], predict_clips(lambda b: forward(w, b), va[0]).argmax(1))[0]
            log.info("the members together: val UAR %.3f", val_uar)
        np.savez(npz, **w)  # type: ignore[arg-type]
        training = {
            "corpus": str(args.manifest) if args.manifest else "RAVDESS speech, actors 01-20 (../shared/data/ravdess)",
            "speakers": train_spk,
            "validation_speakers": val_spk,
            "validation_uar": round(val_uar, 4),
            "members": chosen,
            "epochs": args.epochs,
            "variants": args.variants,
            "classes_trained": list(TRAIN_CLASSES[: int(tr[1].max()) + 1]),
            "noises": sorted(train_noise),
            "augmentation": repr(aug),
            "seed": args.seed,
            "seconds": round(time.time() - t0),
        }
        extra = {"training": training, "licence": licence, "architecture": architecture(args.members)}
        write_card(out, NAME, {"weights": npz}, extra)
    calib = model_input(np.concatenate([clip_windows(m)[:1] for m in tr[0][:: max(len(tr[0]) // 400, 1)]]))
    onnx_fp32, onnx_int8 = out / f"{NAME}.onnx", out / f"{NAME}.int8.onnx"
    export_onnx(w, onnx_fp32, calib[:16])
    export_int8(onnx_fp32, onnx_int8, calib)
    card_path = write_card(out, NAME, {"weights": npz, "onnx": onnx_fp32, "onnx_int8": onnx_int8}, {})

    evaluation: dict[str, Any] = {
        "speakers": test_spk,
        "noises": sorted(test_noise),
        "clips": len(tests["line_noisy"][1]),
    }
    for cond, (mels, y, _) in tests.items():
        evaluation[cond] = {"baseline_mfcc_logreg": report(f"{cond} baseline", y, bl(mfcc_stats(mels)))}
        for precision in ("fp32", "int8"):
            model = EmotionModel(card_path, "onnxruntime", precision)
            evaluation[cond][f"onnx_{precision}"] = report(
                f"{cond} onnx {precision}", y, predict_clips(model.predict, mels).argmax(1)
            )
    write_card(out, NAME, {}, {"training": training, "evaluation": evaluation, "licence": licence})
    if importlib.util.find_spec("tensorflow") is not None:
        from models.emotion.export_tflite import export as export_tflite

        export_tflite(out, NAME)
    else:
        log.info("TFLite: no TensorFlow here; pip install -e '.[export]' && python -m models.emotion.export_tflite")
    log.info("wrote %s, %.0f s in all", card_path, time.time() - t0)


if __name__ == "__main__":
    main()
