"""Train the two-channel speech model and export it for the station.

    python -m models.vad.train [--build commercial|research] [--exclude-noise SOURCE ...] [--out DIR]

One command, fixed seeds: composes calls per noise source from real speech of sources a business may train on
(Asterisk voice talents in five languages, FSDD, AMI meetings; `models/vad/sources.py`), over real noise
recordings (typing, hold music, chimes) and generated noise families, adds a second generated noise and capture
gain, extracts features with the station's own streaming code, trains a small MLP with torch, reports frame F1
on held-out speakers, and writes the .npz weights with a JSON card listing every source and its licence.
`--exclude-noise` trains the leave-one-source-out models that `benchmarks/eval_calls.py --weights` scores.

The shipped default (`speech-mlp-v4`) is two such models averaged, joined by `models/vad/ensemble.py`:

    python -m models.vad.train --out DIR
    python -m models.vad.train --level-spread -15 3 --work .cache/vad-lv --out DIR --name speech-mlp-v3-level-spread
    python -m models.vad.ensemble --name speech-mlp-v4 --out DIR DIR/speech-mlp-v3.npz \\
        DIR/speech-mlp-v3-level-spread.npz
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
import soundfile as sf
import soxr

from edge_agent.speech_model import N_INPUTS, N_MODEL_FEATURES, POOLS
from models.vad import sources
from models.vad.dataset import compose_into, frame_features, load_meetings, overlay, stack_inputs, truth_frames
from models.vad.noises import write_generated

log = logging.getLogger("models.vad.train")

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
HIDDEN = (96, 48)
# names how cached per-call features were computed (models.vad.dataset.frame_features); change it with them
FEATURES_TAG = "callfeatures-v3-floor-takes-zeros"


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
    wt = torch.from_numpy(1.0 + 4.0 * (y[:, 0] & y[:, 1]).astype(np.float32))[:, None]
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


BUILDS = {
    # what a business may ship: every source's licence allows commercial use (see sources.SOURCES)
    "commercial": (sources.COMMERCIAL_SPEECH, sources.COMMERCIAL_NOISE),
    # adds the non-commercial / research-only corpora; weights inherit CC BY-NC-SA and research terms
    "research": ((*sources.COMMERCIAL_SPEECH, "ravdess"), (*sources.COMMERCIAL_NOISE, "noizeus")),
}
# calls composed per noise source (three minutes each); generated noise spans six families
CALLS_PER_SOURCE = {"typing": 20, "moh": 16, "game_music": 16, "chimes": 16, "generated": 44, "noizeus": 24}
VAL_SPEAKERS = ("fsdd_theo", "fsdd_nicolas", "asterisk_carlo")


def call_set(
    composer: Path, speakers: dict[str, list[Path]], noise: list[Path], outdir: Path, calls: int, seed: int
) -> list[Path]:
    manifest = sources.write_manifest(speakers, outdir / "speakers.json")
    return compose_into(composer, manifest, outdir, calls, seed, 3.0, noise)


def cached_features(
    wav: Path, rng: np.random.Generator, overlays: list[npt.NDArray[np.float32]], band_limit: bool = False
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Per-frame features and truth of one composed call, with capture gain and a second noise on most calls."""
    cache = wav.with_suffix(".feats.npz")
    # draw the augmentation whether or not the cache holds it, so every call sees the same draws either way
    common = rng.uniform(-30.0, 10.0)
    gain = (common + rng.uniform(-3, 3), common + rng.uniform(-3, 3))
    pick, use = int(rng.integers(0, len(overlays))), rng.random() < 0.5
    sub = np.random.default_rng(int(rng.integers(0, 2**31)))
    # a real line reaches the station from an 8 kHz codec, its upper band empty (the composer's G.711 at 16 kHz
    # leaves quantisation noise there), and some headsets or captures run at 8 kHz: with band_limit, half the
    # lines and a quarter of the mics go through 8 kHz (drawn only then, so the default recipe's draws stand)
    narrow = (rng.random() < 0.25, rng.random() < 0.5) if band_limit else (False, False)
    if cache.exists():
        with np.load(cache) as z:
            # a cache from an older feature set, or from features computed another way, is recomputed
            if z["x"].shape[1] == N_MODEL_FEATURES and "tag" in z and str(z["tag"]) == FEATURES_TAG:
                return z["x"], z["y"]
    truth = json.loads(wav.with_suffix(".json").read_text())
    x, _ = sf.read(wav, dtype="float32")
    x = np.asarray(x, np.float32)
    if use:
        x = overlay(x, truth, overlays[pick], sub, (5.0, 30.0))
    for ch in (0, 1):
        if narrow[ch]:
            x[:, ch] = soxr.resample(soxr.resample(x[:, ch], 16000, 8000), 8000, 16000)[: len(x)]
    f = frame_features([x], gain)
    y = truth_frames(truth, len(f))
    np.savez(cache, x=f, y=y, tag=FEATURES_TAG)
    return f, y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", choices=sorted(BUILDS), default="commercial", help="which licences may go in")
    ap.add_argument("--exclude-noise", nargs="*", default=[], metavar="SOURCE", help="leave these noise sources out")
    ap.add_argument(
        "--add-noise",
        nargs="*",
        default=[],
        choices=sources.OPTIONAL_NOISE,
        metavar="SOURCE",
        help=f"add these commercial noise sources to the build ({', '.join(sources.OPTIONAL_NOISE)})",
    )
    # one MLP of the recipe; the shipped default joins two (see the module docstring)
    ap.add_argument("--name", default="speech-mlp-v3")
    ap.add_argument("--out", type=Path, default=ROOT / "models" / "shipped")
    ap.add_argument("--work", type=Path, default=ROOT / ".cache" / "vad")
    ap.add_argument("--composer", type=Path, default=SHARED / "tools" / "compose_calls.py")
    ap.add_argument("--meetings", type=Path, default=SHARED / "data" / "ami-mix", help="AMI mixes + RTTM (train split)")
    ap.add_argument(
        "--perturb", type=float, nargs="*", default=[0.9, 1.1], help="speed factors that add each speaker again"
    )
    ap.add_argument(
        "--level-spread",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOW_DB", "HIGH_DB"),
        help="give each speed-perturbed clip its own gain in this range (soft and loud utterances of one speaker)",
    )
    ap.add_argument(
        "--band-limit",
        action="store_true",
        help="pass half the lines and a quarter of the mics through 8 kHz (use a fresh --work: features are cached)",
    )
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the calls per source")
    ap.add_argument("--val-calls", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=20261204)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    t0 = time.time()
    speech_names, noise_names = BUILDS[args.build]
    noise_names = (*noise_names, *(n for n in args.add_noise if n not in noise_names))
    unknown = [n for n in args.exclude_noise if n not in noise_names]
    if unknown:
        ap.error(f"--exclude-noise: {', '.join(unknown)} not in the {args.build} build ({', '.join(noise_names)})")
    noise_names = tuple(n for n in noise_names if n not in args.exclude_noise)
    sources.install_packages((*speech_names, *noise_names))
    work = args.work
    speakers: dict[str, list[Path]] = {}
    for name in speech_names:
        speakers.update(sources.speech(name, work, np.random.default_rng(args.seed)))
    val_spk = {k: v for k, v in speakers.items() if k in VAL_SPEAKERS}
    train_spk = {k: v for k, v in speakers.items() if k not in VAL_SPEAKERS}
    if args.perturb:
        spread = (args.level_spread[0], args.level_spread[1]) if args.level_spread else None
        train_spk.update(sources.perturbed(train_spk, args.perturb, work, spread, args.seed))
    # babble of training talkers (never the validation ones) is composed in as noise, never overlaid: a second
    # noise at 5 dB SNR made of speech would teach the model to ignore speech
    babble_clips = [p for k, v in sorted(train_spk.items()) if "@" not in k for p in v]
    generated = write_generated(work / "generated", args.seed, babble_clips)
    overlays = [
        np.asarray(sf.read(p, dtype="float32")[0], np.float32) for p in generated if not p.name.startswith("babble")
    ]
    xs, ys = [], []
    tag = args.build
    for name in noise_names:
        noise = generated if name == "generated" else sources.noise_files(name, work, args.seed)
        n_calls = max(1, round(CALLS_PER_SOURCE[name] * args.scale))
        wavs = call_set(args.composer, train_spk, noise, work / tag / name, n_calls, args.seed + len(name))
        crng = np.random.default_rng(args.seed + 7 * len(name))
        for wav in wavs:
            f, y = cached_features(wav, crng, overlays, args.band_limit)
            xs.append(stack_inputs(f))
            ys.append(y)
        log.info("%s: %d calls (%.0f s so far)", name, len(wavs), time.time() - t0)
    if args.meetings.exists():
        # the AMI train split only: its development and test splits stay for evaluation
        xm, ym = load_meetings(args.meetings, "train", np.random.default_rng(args.seed + 2))
        xs.append(xm)
        ys.append(ym)
    x, y = np.concatenate(xs), np.concatenate(ys)
    del xs, ys
    # validation: speakers never in training, over generated noise drawn with another seed
    val_noise = write_generated(work / "generated_val", args.seed + 1)
    va_wavs = call_set(args.composer, val_spk, val_noise, work / tag / "val", args.val_calls, args.seed + 1)
    vrng = np.random.default_rng(args.seed + 3)
    vx, vy = zip(*(cached_features(w, vrng, overlays, args.band_limit) for w in va_wavs), strict=True)
    xv, yv = np.concatenate([stack_inputs(f) for f in vx]), np.concatenate(vy)
    log.info("train %d frames, val %d frames (%.0f s so far)", len(x), len(xv), time.time() - t0)
    weights = train(x, y, xv, yv, args.epochs, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.name}.npz"
    np.savez(path, **weights)  # type: ignore[arg-type]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    from edge_agent.speech_model import SpeechModel  # loads what we just wrote, through the station's code

    f1 = frame_f1(SpeechModel(path).predict(xv), yv)
    used = [sources.SOURCES[n] for n in (*speech_names, *noise_names)]
    commercial = all(s.commercial for s in used)
    card = {
        "name": args.name,
        "sha256": digest,
        "outputs": ["agent", "customer"],
        "input": {
            "sample_rate": 16000,
            "frame_ms": 10,
            "features": "edge_agent.features.CallFeatures + edge_agent.silero_stream.SileroStream (2 columns)",
            "silero": "Silero VAD v5 16 kHz (MIT; silero-vad-v5-16k.npz, copied from the wheel), every frame",
            "context_pools": [list(p) for p in POOLS],
            "inputs": N_INPUTS,
        },
        "hidden": list(HIDDEN),
        "training": {
            "build": args.build,
            "sources": [
                {"name": s.name, "kind": s.kind, "licence": s.licence, "commercial": s.commercial, "origin": s.origin}
                for s in used
            ],
            "excluded_noise": sorted(args.exclude_noise),
            "meetings": "AMI headset mixes, train split, on either side" if args.meetings.exists() else None,
            "augmentation": (
                "capture gain -30..+10 dB per call, +-3 dB per channel; a second generated noise at 5-30 dB SNR"
                " on half the calls;"
                + (" half the lines and a quarter of the mics band-limited through 8 kHz;" if args.band_limit else "")
                + " frames where both talk weigh 5x"
            ),
            "speakers": sorted(train_spk),
            "speed_perturbation": args.perturb,
            "clip_level_spread_db": args.level_spread,
            "frames": len(x),
            "epochs": args.epochs,
            "seed": args.seed,
        },
        "validation": {
            "speakers": sorted(val_spk),
            "noises": "generated, another seed",
            "calls": len(va_wavs),
            "frame_f1_agent": round(f1[0], 4),
            "frame_f1_customer": round(f1[1], 4),
        },
        "licence": (
            "trained only on sources whose licences allow commercial use (CC BY 4.0, CC BY-SA 3.0/4.0, MIT,"
            " generated): the weights may be used commercially; as CC BY-SA material went in, share adapted weights"
            " under CC BY-SA and keep the attributions of the model card"
            if commercial
            else "trained on non-commercial or research-only material (RAVDESS CC BY-NC-SA 4.0, NOIZEUS research"
            " use): non-commercial research use only"
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
