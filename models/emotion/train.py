"""Train the speech-emotion model on real speech and export it for the station.

    python -m models.emotion.train          # RAVDESS + EmoDB from ../shared, writes models/shipped/emotion-v2.*
    python -m models.emotion.train --manifest mine.csv --test-speakers A B   # any corpus: path,speaker,label
    python -m models.emotion.train --corpora ravdess emodb --manifest more.csv   # the shared corpora and yours
    python -m models.emotion.train --hold-out-corpus emodb --out DIR --name N   # leave one corpus out

One command, fixed seeds, speaker-independent: test speakers are never trained or tuned on; validation speakers
(drawn per corpus from the rest) choose the epoch and fit the calibration (temperature scaling, calibrate.py) and
the abstention threshold. Every clip is degraded like the station's input (telephone band, 8 kHz, G.711, real
noise at 0-20 dB, level changes); test uses noise types never seen in training. Reports, per corpus of the test
speakers, unweighted accuracy (mean per-class recall), per-class recall and the confusion matrix for the exported
ONNX fp32 and int8 models beside a logistic-regression baseline on MFCC statistics, and for fp32 the share of
clips it abstains on and its UAR on the clips it answers.

Normalisation that needs nothing of the test speaker: each window's log-mel is taken relative to the window's own
mean level and its pitch relative to the window's own median (edge_agent.emotion_features), so capture gain,
corpus recording level and a speaker's register drop out within one second of speech.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import time
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.fft import dct

from edge_agent.emotion_features import N_BANDS, WINDOW_FRAMES, clip_windows, model_input
from edge_agent.emotion_model import CLASSES, EmotionModel, calibrate, clip_probs
from models.emotion.calibrate import abstain_threshold, clip_level, ece, fit_temperature
from models.emotion.dataset import (
    CORPORA,
    TRAIN_CLASSES,
    Clip,
    Degradation,
    corpus_clips,
    features,
    load_noises,
    read_manifest,
)
from models.emotion.export import architecture, export_int8, export_onnx, input_spec, write_card
from models.emotion.net import MEMBERS, build, folded_weights, gradient_reversal
from models.emotion.reference import F32, HIDDEN, forward, load_weights

log = logging.getLogger("models.emotion.train")

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
NAME = "emotion-v2"
TEST_SPEAKERS = ("ravdess_01", "ravdess_09", "ravdess_11", "ravdess_12", "ravdess_13")  # as the VAD's
EMODB_TEST_SPEAKERS = ("emodb_03", "emodb_08")  # one man, one woman: EmoDB's own held-out figure
VAL_SHARE = 0.2
"""Share of each corpus's non-test speakers that validate (3 of RAVDESS's 15, 2 of EmoDB's 8)."""
LICENCE = (
    "research and evaluation only: trained on RAVDESS (CC BY-NC-SA 4.0: non-commercial, attribution, share-alike)"
    " and Berlin EmoDB (no explicit licence, provided for research); retrain on speech you hold rights to for"
    " any other use (--manifest)"
)
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
    return inputs(out)


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
    return np.stack([clip_probs(predict(inputs(clip_windows(m, length, length // 2)))) for m in mels])


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


Features = tuple[list[F32], I64, list[str]]
BAND_MEAN = [False]
"""The run's input normalisation (edge_agent.emotion_features.model_input's band_mean), set once per run."""


def inputs(rows: F32) -> F32:
    return model_input(rows, BAND_MEAN[0])


def speaker_seed(seed: int, speaker: str) -> int:
    """Each speaker's degraded copies are drawn from its own seed, so every setup that uses a speaker in the same
    role reads the same cached copies (leave-one-corpus-out runs share them with the shipped run)."""
    return seed + zlib.crc32(speaker.encode()) % 1_000_000


def conditions(noises: dict[str, dict[str, F32]]) -> dict[str, tuple[dict[str, F32], int, Degradation]]:
    """Test conditions: (noises, seed offset, degradation)."""
    return {
        "line_noisy": (noises["test"], 2, Degradation(clean_share=0.0, line_share=1.0)),
        "line_clean": ({}, 3, Degradation(line_share=1.0)),
        "mic_noisy": (noises["test"], 4, Degradation(clean_share=0.0, line_share=0.0)),
    }


def _role(job: tuple[Path, list[Clip], str, dict[str, dict[str, F32]], int, float]) -> Features:
    work, own, role, noises, s, speed = job
    main = [c for c in own if c.label in CLASSES]
    if role == "train":
        return cached_features(work, "s-train", own, noises["train"], 8, s, Degradation(speed=speed))
    if role == "val":
        return cached_features(work, "s-val", main, noises["train"], 2, s + 1, Degradation())
    nz, off, d = conditions(noises)[role]
    return cached_features(work, f"s-{role}", main, nz, 1, s + off, d)


def gather(
    work: Path,
    clips: Sequence[Clip],
    speakers: Sequence[str],
    role: str,
    noises: dict[str, dict[str, F32]],
    seed: int,
    speed: float = 0.1,
    workers: int = 2,
) -> Features:
    """The role's features ('train', 'val' or a test condition) of every speaker, cached per speaker and role."""
    jobs = [
        (work, [c for c in clips if c.speaker == spk], role, noises, speaker_seed(seed, spk), speed) for spk in speakers
    ]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_role, jobs))
    else:
        parts = [_role(j) for j in jobs]
    mels = [m for p in parts for m in p[0]]
    y = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
    return mels, y, [s for p in parts for s in p[2]]


def split_speakers(
    clips: Sequence[Clip], test: Sequence[str], seed: int, val_share: float = VAL_SHARE
) -> tuple[list[str], list[str]]:
    """(train, validation) speakers among those not in `test`: validation drawn per corpus from its own seed, so a
    corpus's split is the same whichever other corpora train beside it."""
    train, val = [], []
    for corpus in sorted({c.corpus for c in clips}):
        rest = sorted({c.speaker for c in clips if c.corpus == corpus} - set(test))
        rng = np.random.default_rng([seed, zlib.crc32(corpus.encode())])
        k = round(val_share * len(rest)) if len(rest) >= 3 else 0
        v = sorted(rng.permutation(rest)[:k].tolist())
        val += v
        train += [s for s in rest if s not in v]
    return train, val


def answered(y: I64, probs: F32, threshold: float) -> dict[str, Any]:
    """Abstention at a calibrated top-probability threshold: share abstained, UAR on the answered and all clips."""
    keep = probs.max(axis=1) >= threshold
    pred = probs.argmax(axis=1)
    score_all = uar(y, pred)[0]
    score, recall, _ = uar(y[keep], pred[keep]) if keep.any() else (0.0, [0.0] * len(CLASSES), [])
    return {
        "threshold": round(threshold, 4),
        "abstained": round(float(1 - keep.mean()), 4),
        "uar_all": round(score_all, 4),
        "uar_answered": round(score, 4),
        "recall_answered": {c: round(r, 4) for c, r in zip(CLASSES, recall, strict=True)},
    }


def fit_calibration(w: dict[str, F32], val: Features, length: int = WINDOW_FRAMES) -> dict[str, Any]:
    """Temperature (windows and clips) and abstention thresholds from the validation speakers' copies."""
    per_clip = [forward(w, inputs(clip_windows(m, length, length // 2))) for m in val[0]]
    win_y = np.concatenate([np.full(len(p), k) for p, k in zip(per_clip, val[1], strict=True)])
    win = np.concatenate(per_clip)
    clips = clip_level(per_clip)
    t_win, t_clip = fit_temperature(win, win_y), fit_temperature(clips, val[1])
    cal_win, cal_clip = calibrate(win, t_win), calibrate(clips, t_clip)
    out: dict[str, Any] = {
        "method": "temperature scaling (softmax of log-probabilities / T), least NLL on a fixed grid",
        "fitted_on": "validation speakers' degraded copies (never test speakers)",
        "fitted_on_speakers": sorted(set(val[2])),
        "window_temperature": t_win,
        "clip_temperature": t_clip,
        "window_min_confidence": abstain_threshold(cal_win),
        "clip_min_confidence": abstain_threshold(cal_clip),
        "validation_clips": len(val[1]),
        "validation_ece_clip": {"raw": ece(clips, val[1]), "calibrated": ece(cal_clip, val[1])},
    }
    out["validation"] = answered(val[1], cal_clip, out["clip_min_confidence"])
    log.info("calibration %s", out)
    return out


def train_and_evaluate(
    clips: Sequence[Clip],
    tests: Mapping[str, Sequence[str]],
    noises: dict[str, dict[str, F32]],
    out: Path,
    name: str,
    work: Path,
    seed: int,
    *,
    corpus: str,
    epochs: int = 30,
    members: Sequence[str] = ("temporal",),
    speed: float = 0.1,
    reuse: bool = False,
    val_share: float = VAL_SHARE,
    band_mean: bool = False,
) -> dict[str, Any]:
    """Train on every speaker of `clips` not in a test set, export, calibrate and evaluate; returns the card.

    tests: test set name (e.g. a corpus) -> its speakers. With `reuse`, weights already in `out` (and their
    exports) are evaluated again rather than trained.
    """
    t0 = time.time()
    if reuse and (out / f"{name}.json").exists():  # the weights' own input normalisation
        band_mean = bool(json.loads((out / f"{name}.json").read_text())["input"].get("band_mean", False))
    BAND_MEAN[0] = band_mean
    test_spk = sorted({s for v in tests.values() for s in v})
    train_spk, val_spk = split_speakers(clips, test_spk, seed, val_share)
    log.info("%s: train %s, validation %s, test %s", name, train_spk, val_spk, tests)
    tr = gather(work, clips, train_spk, "train", noises, seed, speed)
    va = gather(work, clips, val_spk, "val", noises, seed)
    log.info("features: %d train, %d val copies (%.0f s)", len(tr[0]), len(va[0]), time.time() - t0)
    main4 = tr[1] < len(CLASSES)  # the baseline learns the shipped classes only
    bl = baseline(
        (mfcc_stats([m for m, k in zip(tr[0], main4, strict=True) if k]), tr[1][main4]),
        (mfcc_stats(va[0]), va[1]),
        seed,
    )
    out.mkdir(parents=True, exist_ok=True)
    npz, card_path = out / f"{name}.npz", out / f"{name}.json"
    onnx_fp32, onnx_int8 = out / f"{name}.onnx", out / f"{name}.int8.onnx"
    if reuse and npz.exists() and card_path.exists():
        w = load_weights(npz)
        training = json.loads(card_path.read_text())["training"]
    else:
        w, chosen = {}, {}
        for member in members:
            wm, epoch, val_uar = train_net(tr[0], tr[1], (va[0], va[1]), epochs, seed, member=member)
            log.info("%s: best epoch %d, val UAR %.3f (%.0f s)", member, epoch, val_uar, time.time() - t0)
            w.update(wm)
            chosen[member] = {"best_epoch": epoch, "validation_uar": round(val_uar, 4)}
        if len(members) > 1:  # one member's own validation score is already the network's
            val_uar = uar(va[1], predict_clips(lambda b: forward(w, b), va[0]).argmax(1))[0]
            log.info("the members together: val UAR %.3f", val_uar)
        np.savez(npz, **w)  # type: ignore[arg-type]
        training = {
            "corpus": corpus,
            "speakers": train_spk,
            "validation_speakers": val_spk,
            "validation_uar": round(val_uar, 4),
            "members": chosen,
            "epochs": epochs,
            "variants": 8,
            "classes_trained": list(TRAIN_CLASSES[: int(tr[1].max()) + 1]),
            "noises": sorted(noises["train"]),
            "augmentation": repr(Degradation(speed=speed)),
            "seed": seed,
            "seconds": round(time.time() - t0),
        }
        # the training record goes in with the weights, so --export-only can pick them up after a failed export
        write_card(
            out,
            name,
            {"weights": npz},
            {"architecture": architecture(members), "training": training, "input": input_spec(band_mean)},
        )
    if not (reuse and onnx_fp32.exists() and onnx_int8.exists()):
        calib = inputs(np.concatenate([clip_windows(m)[:1] for m in tr[0][:: max(len(tr[0]) // 400, 1)]]))
        export_onnx(w, onnx_fp32, calib[:16])
        export_int8(onnx_fp32, onnx_int8, calib)
    calibration = fit_calibration(w, va)
    write_card(
        out,
        name,
        {"weights": npz, "onnx": onnx_fp32, "onnx_int8": onnx_int8},
        {"training": training, "calibration": calibration, "licence": LICENCE},
    )
    evaluation: dict[str, Any] = {"noises": sorted(noises["test"])}
    models = {p: EmotionModel(card_path, "onnxruntime", p) for p in ("fp32", "int8")}
    for set_name, speakers in tests.items():
        ev: dict[str, Any] = {"speakers": list(speakers)}
        for cond in conditions(noises):
            mels, y, _ = gather(work, clips, speakers, cond, noises, seed)
            ev["clips"] = len(y)
            res = {"baseline_mfcc_logreg": report(f"{set_name} {cond} baseline", y, bl(mfcc_stats(mels)))}
            for precision, model in models.items():
                raw = [model.predict_raw(model.inputs(clip_windows(m))) for m in mels]
                cal = np.stack([model.clip(r) for r in raw])
                r = report(f"{set_name} {cond} onnx {precision}", y, cal.argmax(1))
                if precision == "fp32":
                    r["abstention"] = answered(y, cal, model.calibration.clip_min_confidence)
                    r["ece"] = {"raw": ece(clip_level(raw), y), "calibrated": ece(cal, y)}
                    log.info("%s %s abstention %s ece %s", set_name, cond, r["abstention"], r["ece"])
                res[f"onnx_{precision}"] = r
            ev[cond] = res
        evaluation[set_name] = ev
    card = {"training": training, "calibration": calibration, "evaluation": evaluation, "licence": LICENCE}
    write_card(out, name, {}, card)
    if importlib.util.find_spec("tensorflow") is not None:
        from models.emotion.export_tflite import export as export_tflite

        export_tflite(out, name)
    else:
        log.info("TFLite: no TensorFlow here; pip install -e '.[export]' && python -m models.emotion.export_tflite")
    log.info("wrote %s, %.0f s in all", card_path, time.time() - t0)
    return dict(json.loads(card_path.read_text()))


def load_corpora(names: Sequence[str], manifest: Path | None, data: Path, aux: bool = True) -> list[Clip]:
    clips = [c for n in names for c in corpus_clips(n, data / n, aux)]
    if manifest is not None:
        clips += read_manifest(manifest)
    if not aux:
        clips = [c for c in clips if c.label in CLASSES]
    return clips


def load_noise_sets(noise_dir: Path) -> dict[str, dict[str, F32]]:
    every = load_noises(sorted(noise_dir.glob("*.flac")))
    return {
        "train": {k: v for k, v in every.items() if k in TRAIN_NOISES},
        "test": {k: v for k, v in every.items() if k in TEST_NOISES},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, help="CSV path,speaker,label: a corpus of your own")
    ap.add_argument(
        "--corpora",
        nargs="*",
        choices=CORPORA,
        help="shared corpora from --data (default: ravdess emodb; none when --manifest is given)",
    )
    ap.add_argument("--data", type=Path, default=SHARED / "data", help="folder holding ravdess/ and emodb/")
    ap.add_argument("--noise-dir", type=Path, default=SHARED / "data" / "noise")
    ap.add_argument("--test-speakers", nargs="+", help="default: RAVDESS 01 09 11 12 13 and EmoDB 03 08")
    ap.add_argument("--hold-out-corpus", help="test on every speaker of this corpus, train on the others")
    ap.add_argument("--val-share", type=float, default=VAL_SHARE, help="share of each corpus's speakers validating")
    ap.add_argument("--speed", type=float, default=0.1, help="speed perturbation range, +-")
    ap.add_argument("--no-aux", action="store_true", help="train on the four shipped classes only")
    ap.add_argument(
        "--band-mean", action="store_true", help="input: each band minus its window mean (model_input's band_mean)"
    )
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
    ap.add_argument("--name", default=NAME)
    ap.add_argument("--out", type=Path, default=ROOT / "models" / "shipped")
    ap.add_argument("--work", type=Path, default=ROOT / ".cache" / "emotion" / "speakers")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    corpora = args.corpora if args.corpora is not None else ([] if args.manifest else list(CORPORA))
    clips = load_corpora(corpora, args.manifest, args.data, aux=not args.no_aux)
    if not clips:
        ap.error("no training clips: name --corpora or a --manifest")
    tests: dict[str, list[str]] = {}
    for c in clips:
        tests.setdefault(c.corpus, [])
    wanted = set(args.test_speakers or (*TEST_SPEAKERS, *EMODB_TEST_SPEAKERS))
    hold = args.hold_out_corpus
    if hold:
        if hold not in tests:
            ap.error(f"--hold-out-corpus {hold}: not among the corpora {sorted(tests)}")
        # none of its speakers trains or validates; all of them are tested unless --test-speakers names some
        held = {c.speaker for c in clips if c.corpus == hold and (not args.test_speakers or c.speaker in wanted)}
        clips = [c for c in clips if c.corpus != hold or c.speaker in held]
        for c in clips:
            if (c.speaker in held or c.speaker in wanted) and c.speaker not in tests[c.corpus]:
                tests[c.corpus].append(c.speaker)
    else:
        for c in clips:
            if c.speaker in wanted and c.speaker not in tests[c.corpus]:
                tests[c.corpus].append(c.speaker)
    tests = {k: sorted(v) for k, v in tests.items() if v}
    desc = ", ".join(corpora + ([str(args.manifest)] if args.manifest else []))
    if args.hold_out_corpus:
        desc += f" (without {args.hold_out_corpus}'s speakers)"
    train_and_evaluate(
        clips,
        tests,
        load_noise_sets(args.noise_dir),
        args.out,
        args.name,
        args.work,
        args.seed,
        corpus=desc,
        epochs=args.epochs,
        members=args.members,
        speed=args.speed,
        reuse=args.export_only,
        val_share=args.val_share,
        band_mean=args.band_mean,
    )


if __name__ == "__main__":
    main()
