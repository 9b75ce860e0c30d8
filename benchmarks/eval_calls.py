"""Accuracy harness: our analyzer beside plain webrtcvad and Silero VAD on real-speech calls, and VAD on AMI.

    python benchmarks/eval_calls.py [--calls 10] [--minutes 3] [--seed 7] [--speakers heldout|all]

Composes two-channel calls from the real speech in ../shared/data with ../shared/tools/compose_calls.py,
scores every system with ../shared/tools/score_calls.py (both called, never copied), then scores speech
activity on the real AMI meeting excerpts against their RTTM. By default the calls use the speakers and
noise types the shipped model never trained on (from its card), so the figures are held-out figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.compose import compose_calls  # noqa: E402
from edge_agent.config import AnalyzerConfig  # noqa: E402
from edge_agent.pipeline import Pipeline  # noqa: E402
from edge_agent.speech_model import default_model_path  # noqa: E402
from edge_agent.vad import silero_onnx_path  # noqa: E402
from models.vad.dataset import speaker_manifest  # noqa: E402

SHARED = ROOT.parent / "shared"
TOOLS = SHARED / "tools"
OURS = f"cmd:{sys.executable} -m edge_agent.cli analyze"
COLUMNS = (
    "activity_f1_agent",
    "activity_f1_customer",
    "talkover_precision",
    "talkover_recall",
    "talkover_f1",
    "kind_accuracy",
    "dead_air_precision",
    "dead_air_recall",
    "x_realtime",
)


def compose_calls_into(outdir: Path, calls: int, minutes: float, seed: int, heldout: bool) -> None:
    manifest = TOOLS / "dev_speakers.json"
    noises = sorted((SHARED / "data" / "noise").glob("*.flac"))
    if heldout:
        card = json.loads(default_model_path().with_suffix(".json").read_text())["validation"]
        manifest = speaker_manifest(manifest, card["speakers"], outdir / "speakers.json")
        noises = [p for p in noises if p.stem in card["noises"]]
    compose_calls(outdir, calls, minutes, seed, noises, manifest)


def score(calldir: Path, system: str) -> dict[str, float]:
    env = dict(os.environ, SILERO_ONNX=str(silero_onnx_path()), PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, str(TOOLS / "score_calls.py"), str(calldir), system],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def rttm_frames(rttm: Path, uri: str, n: int) -> np.ndarray:
    ref = np.zeros(n, bool)
    for line in rttm.read_text().splitlines():
        f = line.split()
        if len(f) > 4 and f[0] == "SPEAKER" and f[1] == uri:
            s, d = float(f[3]), float(f[4])
            ref[round(s * 100) : round((s + d) * 100)] = True
    return ref


def ami_vad() -> dict[str, float]:
    """Speech frame F1 on AMI headset mixes (dev + test): the mix as the agent mic, a quiet line beside it."""
    data = SHARED / "data" / "ami-mix"
    sys.path.insert(0, str(TOOLS))
    import score_calls  # the shared tool's own baselines, called, not copied

    f1s: dict[str, list[float]] = {"ours": [], "webrtc": [], "silero": []}
    os.environ.setdefault("SILERO_ONNX", str(silero_onnx_path()))
    rng = np.random.default_rng(0)
    # the train split teaches the speech model; only development and test are scored
    for split in ("development", "test"):
        rttm = data / f"debug.{split}.rttm"
        for uri in (data / f"debug.{split}.lst").read_text().split():
            x, sr = sf.read(data / f"{uri}.flac", dtype="float32")
            n = len(x) // 160
            ref = rttm_frames(rttm, uri, n)
            line = (rng.standard_normal(len(x)) * 10 ** (-70 / 20)).astype(np.float32)
            stereo = np.stack([x, line], axis=1)
            pipe = Pipeline(AnalyzerConfig())
            events = list(pipe.run([stereo]))
            with tempfile.TemporaryDirectory() as tmp:
                wav = Path(tmp) / "ami.wav"
                sf.write(wav, stereo, sr, subtype="PCM_16")
                base = {"webrtc": score_calls.webrtc(str(wav)), "silero": score_calls.silero(str(wav))}
            for name, evs in (("ours", [e.to_dict() for e in events]), *base.items()):
                hyp = np.zeros(n, bool)
                for e in evs:
                    if e.get("type") == "speech" and e.get("speaker") == "agent":
                        hyp[round(e["start"] * 100) : round(e["end"] * 100)] = True
                tp = float((hyp & ref).sum())
                f1s[name].append(2 * tp / max(float(hyp.sum() + ref.sum()), 1.0))
    return {k: round(float(np.mean(v)), 3) for k, v in f1s.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--speakers", choices=("heldout", "all"), default="heldout")
    ap.add_argument("--calldir", type=Path, help="score calls already composed here instead")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        calldir = args.calldir or Path(tmp)
        if args.calldir is None:
            compose_calls_into(calldir, args.calls, args.minutes, args.seed, args.speakers == "heldout")
        rows = {
            "webrtc": score(calldir, "webrtc"),
            "silero": score(calldir, "silero"),
            "edge-agent": score(calldir, OURS),
        }
    print(f"calls: {args.calls} x {args.minutes} min, seed {args.seed}, speakers {args.speakers}")
    print(f"{'system':<12}" + "".join(f"{c:>22}" for c in COLUMNS))
    for name, r in rows.items():
        print(f"{name:<12}" + "".join(f"{r[c]:>22}" for c in COLUMNS))
    ami = ami_vad()
    print("AMI headset mixes, speech-activity frame F1 vs RTTM: " + "  ".join(f"{k}={v}" for k, v in ami.items()))
    print(json.dumps({"calls": rows, "ami_vad_f1": ami}))


if __name__ == "__main__":
    main()
