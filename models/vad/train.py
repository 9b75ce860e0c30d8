"""Train the two-channel speech model and export it for the station.

    python -m models.vad.train --out models/shipped

One command, fixed seeds: composes calls from real speech (RAVDESS speakers, real noise) with a
speaker-independent split, extracts features with the station's own streaming code, trains a small
MLP with torch, reports frame F1 on held-out speakers and noise types, and writes the .npz weights
with a JSON card (input spec, sha256, measured figures).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_agent.speech_model import DEFAULT_MODEL, N_INPUTS, POOLS
from models.vad.dataset import compose_into, load_calls, load_meetings, speaker_manifest

log = logging.getLogger("models.vad.train")

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
HIDDEN = (96, 48)


def frame_f1(p: npt.NDArray[np.float32], y: npt.NDArray[np.bool_], threshold: float = 0.5) -> list[float]:
    out = []
    for c in range(y.shape[1]):
        h = p[:, c] >= threshold
        tp = float((h & y[:, c]).sum())
        out.append(2 * tp / max(float(h.sum() + y[:, c].sum()), 1.0))
    return out


def train(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.bool_],
    xv: npt.NDArray[np.float32],
    yv: npt.NDArray[np.bool_],
    epochs: int,
    seed: int,
) -> dict[str, npt.NDArray[np.float32]]:
    import torch  # training-only dependency

    torch.manual_seed(seed)
    mean = x.mean(axis=0)
    scale = 1.0 / (x.std(axis=0) + 1e-3)
    dims = (N_INPUTS, *HIDDEN, 2)
    layers: list[torch.nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(torch.nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers += [torch.nn.ReLU(), torch.nn.Dropout(0.1)]
    net = torch.nn.Sequential(*layers)
    xt = torch.from_numpy((x - mean) * scale)
    yt = torch.from_numpy(y.astype(np.float32))
    xvt = torch.from_numpy((xv - mean) * scale)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    # frames where both talk decide talk-overs: weigh them up
    wt = torch.from_numpy(1.0 + 2.0 * (y[:, 0] & y[:, 1]).astype(np.float32))[:, None]
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="none")
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(perm), 1024):  # minibatches
            idx = perm[i : i + 1024]
            opt.zero_grad()
            loss = (loss_fn(net(xt[idx]), yt[idx]) * wt[idx]).mean()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        sched.step()
        net.eval()
        with torch.no_grad():
            pv = torch.sigmoid(net(xvt)).numpy()
        log.info("epoch %d loss %.4f val frame F1 %s", epoch, total / len(xt), np.round(frame_f1(pv, yv), 3))
    weights: dict[str, npt.NDArray[np.float32]] = {"mean": mean.astype(np.float32), "scale": scale.astype(np.float32)}
    linear = [m for m in net if isinstance(m, torch.nn.Linear)]
    for i, lin in enumerate(linear):
        weights[f"w{i}"] = lin.weight.detach().numpy().T.copy()
        weights[f"b{i}"] = lin.bias.detach().numpy().copy()
    return weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "models" / "shipped")
    ap.add_argument("--work", type=Path, default=ROOT / ".cache" / "vad")
    ap.add_argument("--manifest", type=Path, default=SHARED / "tools" / "dev_speakers.json")
    ap.add_argument("--noise-dir", type=Path, default=SHARED / "data" / "noise")
    ap.add_argument("--composer", type=Path, default=SHARED / "tools" / "compose_calls.py")
    ap.add_argument("--meetings", type=Path, default=SHARED / "data" / "ami-mix", help="AMI mixes + RTTM (train split)")
    ap.add_argument("--calls", type=int, default=96)
    ap.add_argument("--val-calls", type=int, default=12)
    ap.add_argument("--val-speakers", type=int, default=5, help="speakers held out for validation")
    ap.add_argument("--val-noises", type=int, default=2, help="noise types held out for validation")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=20261122)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    t0 = time.time()
    speakers = sorted(json.loads(args.manifest.read_text())["speakers"])
    rng = np.random.default_rng(args.seed)
    order = list(rng.permutation(speakers))
    val_spk, train_spk = order[: args.val_speakers], order[args.val_speakers :]
    noises = sorted(args.noise_dir.glob("*.flac"))
    norder = list(rng.permutation(noises))
    val_noise, train_noise = norder[: args.val_noises], norder[args.val_noises :]
    log.info("validation speakers %s, noises %s", val_spk, [p.stem for p in val_noise])
    work = args.work
    tr_man = speaker_manifest(args.manifest, train_spk, work / "train_speakers.json")
    va_man = speaker_manifest(args.manifest, val_spk, work / "val_speakers.json")
    tr_wavs = compose_into(args.composer, tr_man, work / "train", args.calls, args.seed, 3.0, train_noise)
    va_wavs = compose_into(args.composer, va_man, work / "val", args.val_calls, args.seed + 1, 3.0, val_noise)
    x, y = load_calls(tr_wavs, np.random.default_rng(args.seed))
    if args.meetings.exists():
        # the AMI train split only: its development and test splits stay for evaluation
        xm, ym = load_meetings(args.meetings, "train", np.random.default_rng(args.seed + 2))
        x, y = np.concatenate([x, xm]), np.concatenate([y, ym])
    xv, yv = load_calls(va_wavs)
    log.info("train %d frames, val %d frames (%.0f s so far)", len(x), len(xv), time.time() - t0)
    weights = train(x, y, xv, yv, args.epochs, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{DEFAULT_MODEL}.npz"
    np.savez(path, **weights)  # type: ignore[arg-type]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    from edge_agent.speech_model import ContextStack, SpeechModel  # noqa: F401 - loads what we just wrote

    pv = SpeechModel(path).predict(xv)
    f1 = frame_f1(pv, yv)
    card = {
        "name": DEFAULT_MODEL,
        "sha256": digest,
        "outputs": ["agent", "customer"],
        "input": {
            "sample_rate": 16000,
            "frame_ms": 10,
            "features": "edge_agent.features.CallFeatures",
            "context_pools": [list(p) for p in POOLS],
            "inputs": N_INPUTS,
        },
        "hidden": list(HIDDEN),
        "training": {
            "meetings": "AMI headset mixes, train split, on either side" if args.meetings.exists() else None,
            "augmentation": "capture gain -14..+8 dB per call, +-3 dB per channel",
            "speakers": train_spk,
            "noises": [p.stem for p in train_noise],
            "calls": len(tr_wavs),
            "frames": len(x),
            "epochs": args.epochs,
            "seed": args.seed,
        },
        "validation": {
            "speakers": val_spk,
            "noises": [p.stem for p in val_noise],
            "calls": len(va_wavs),
            "frame_f1_agent": round(f1[0], 4),
            "frame_f1_customer": round(f1[1], 4),
        },
        "licence": (
            "weights trained on RAVDESS (CC BY-NC-SA 4.0): non-commercial use only;"
            " retrain on your own data for commercial use"
        ),
    }
    path.with_suffix(".json").write_text(json.dumps(card, indent=1) + "\n")
    log.info(
        "wrote %s (%d bytes, sha256 %s), val frame F1 %s, %.0f s",
        path,
        path.stat().st_size,
        digest[:12],
        np.round(f1, 3),
        time.time() - t0,
    )


if __name__ == "__main__":
    main()
