"""Accuracy harness, honest about novelty: leave-one-noise-source-out calls beside webrtcvad and Silero, and AMI.

    python benchmarks/eval_calls.py [--sources noizeus typing moh phone_tones] [--speech ravdess emodb]
                                    [--calls 6] [--minutes 2] [--weights SOURCE=PATH ...] [--seed 7]

For each noise *source* (a recording set, never a label inside one) it composes two-channel calls with
../shared/tools/compose_calls.py from speech corpora the shipped model never trained on (RAVDESS, English,
and EmoDB, German, by default) and that source's noise, then scores, per call and in the same run, our
analyzer, plain webrtcvad and Silero VAD with the definitions of ../shared/tools/score_calls.py (imported,
never copied). `--weights SOURCE=PATH` scores that source with weights trained without it (the
leave-one-source-out models of `python -m models.vad.train --exclude-noise SOURCE`); a source absent from the
shipped model's training needs none. Prints per source, the mean and the worst source, the calls where we fall
below webrtcvad, the self-check's flags against each call's real quality, how well each talk-over's `confidence`
separates true from false ones (AUC, and what a scorecard rule's `min_confidence` would keep), why the missed
talk-overs were missed (the newcomer or the holder unheard by us, or both heard and no event), then speech frame
F1 on the AMI development and test mixes. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.compose import compose_calls  # noqa: E402
from edge_agent.audio import read_call  # noqa: E402
from edge_agent.config import AnalyzerConfig  # noqa: E402
from edge_agent.pipeline import Pipeline  # noqa: E402
from edge_agent.vad import silero_onnx_path  # noqa: E402
from models.vad import sources  # noqa: E402

SHARED = ROOT.parent / "shared"
TOOLS = SHARED / "tools"
sys.path.insert(0, str(TOOLS))
os.environ.setdefault("SILERO_ONNX", str(silero_onnx_path()))
import score_calls  # noqa: E402  - the shared scorer's own definitions and baselines

SYSTEMS = ("ours", "webrtc", "silero")
METRICS = (
    "activity_f1_agent",
    "activity_f1_customer",
    "talkover_precision",
    "talkover_recall",
    "talkover_f1",
    "kind_accuracy",
    "dead_air_precision",
    "dead_air_recall",
)
"""The figures `totals` gives, in the order the tables print them."""
GOOD_F1 = 0.8  # a call whose activity F1 for a party is below this is a badly analysed call


def compose_source(source: str, speech: list[str], outdir: Path, calls: int, minutes: float, seed: int) -> list[Path]:
    wavs = sorted(outdir.glob("call*.wav"))
    if len(wavs) >= calls:
        return wavs[:calls]
    rng = np.random.default_rng(seed)
    speakers: dict[str, list[Path]] = {}
    for name in speech:
        speakers.update(sources.speech(name, outdir, rng))
    manifest = sources.write_manifest(speakers, outdir / "speakers.json")
    noise = sources.noise_files(source, outdir, seed)
    return compose_calls(outdir, calls, minutes, seed, noise, manifest)


def ours(weights: str | None) -> Pipeline:
    # emotion off: the harness measures turn-taking, and the 300x target is with emotion off
    cfg = AnalyzerConfig.model_validate({"vad": {"type": "model", "weights": weights}, "emotion": {"enabled": False}})
    return Pipeline(cfg)


def analyse(pipe: Pipeline, wav: Path, rate: int = 16000) -> list[dict[str, Any]]:
    """Our events for a call; at another `rate` the call is first captured at that rate, as a station might."""
    if rate == 16000:
        x, _ = sf.read(wav, dtype="float32")
        return [e.to_dict() for e in pipe.run([np.asarray(x, np.float32)])]
    x, sr = sf.read(wav, dtype="float32")
    low = wav.with_name(f"{wav.stem}.{rate}.wav")
    sf.write(low, soxr.resample(x, sr, rate), rate, subtype="PCM_16")
    try:
        return [e.to_dict() for e in pipe.run(read_call(low))]
    finally:
        low.unlink()


def score_call(events: list[dict[str, Any]], truth: dict[str, Any]) -> dict[str, Any]:
    """Raw counts for one call with score_calls' definitions (frames, match and its tolerances)."""
    n = int(truth["duration"] * 100) + 1
    f1, heard = {}, {}
    for k in score_calls.SPK:
        ref = score_calls.frames(truth["activity"][k], n)
        segs = [(e["start"], e["end"]) for e in events if e.get("type") == "speech" and e.get("speaker") == k]
        heard[k] = hyp = score_calls.frames(segs, n)
        f1[k] = float(2 * (ref & hyp).sum() / max(ref.sum() + hyp.sum(), 1))
    det = [e for e in events if e.get("type") == "talk_over"]
    tp, kind = score_calls.match(det, truth["talk_over"], 0.5)
    # each talk-over's and each dead air's confidence beside whether it is a true one
    judged = [
        (e.get("confidence"), ok, e.get("by"), e.get("kind"))
        for e, ok in zip(det, true_ones(det, truth["talk_over"], 0.5, tp), strict=True)
    ]
    missed = missed_causes(heard, truth, det, tp)
    dead = [e for e in events if e.get("type") == "dead_air"]
    dtp, _ = score_calls.match(dead, truth["dead_air"], 1.0, key=False)
    dead_judged = [
        (e.get("confidence"), ok, float(e["end"]) - float(e["start"]))
        for e, ok in zip(dead, true_ones(dead, truth["dead_air"], 1.0, dtp, key=False), strict=True)
    ]
    summary = next((e for e in events if e.get("type") == "call_summary"), {})
    quality = summary.get("metrics", summary).get("quality", {}) if summary else {}
    return {
        "f1": f1,
        "tp": tp,
        "kind": kind,
        "nd": len(det),
        "nt": len(truth["talk_over"]),
        "dtp": dtp,
        "dnd": len(dead),
        "dnt": len(truth["dead_air"]),
        "judged": judged,
        "dead_judged": dead_judged,
        "missed": missed,
        "flagged": bool(quality.get("low_confidence")),
        "reasons": quality.get("flags", []),
    }


def true_ones(
    det: list[dict[str, Any]], truths: list[dict[str, Any]], tol: float, tp: int, key: bool = True
) -> list[bool]:
    """Whether each detection is a true one, by the shared matcher itself: the match without it finds one true event
    fewer (one that another detection within `tol` could stand in for counts as false: rare, events are seconds
    apart)."""
    return [score_calls.match(det[:i] + det[i + 1 :], truths, tol, key=key)[0] < tp for i in range(len(det))]


MISSED_CAUSES = ("newcomer unheard", "holder unheard", "both heard, no event")
"""Why a real talk-over was missed, judged on our speech segments over its first 0.5 s."""


def missed_causes(
    heard: dict[str, np.ndarray], truth: dict[str, Any], det: list[dict[str, Any]], tp: int
) -> dict[str, int]:
    """Counts per cause of the truth's talk-overs no event matched (by the shared matcher: one is unmatched when
    the match without it finds as many true talk-overs). `heard`: our speech frames per party (score_calls.frames).
    Unheard: our segments cover under half of the party's
    first 0.5 s of the overlap; else both were heard and no event of the right party started within 0.5 s."""
    out = dict.fromkeys(MISSED_CAUSES, 0)
    truths = truth["talk_over"]
    for i, t in enumerate(truths):
        if score_calls.match(det, truths[:i] + truths[i + 1 :], 0.5)[0] < tp:
            continue  # matched
        s = int(t["start"] * 100)
        holder = "customer" if t["by"] == "agent" else "agent"
        if heard[t["by"]][s : s + 50].mean() < 0.5:
            out["newcomer unheard"] += 1
        elif heard[holder][s : s + 50].mean() < 0.5:
            out["holder unheard"] += 1
        else:
            out["both heard, no event"] += 1
    return out


def totals(rows: list[dict[str, Any]]) -> dict[str, float]:
    s = {k: sum(r[k] for r in rows) for k in ("tp", "kind", "nd", "nt", "dtp", "dnd", "dnt")}
    p, r = s["tp"] / max(s["nd"], 1), s["tp"] / max(s["nt"], 1)
    return {
        "activity_f1_agent": round(float(np.mean([x["f1"]["agent"] for x in rows])), 3),
        "activity_f1_customer": round(float(np.mean([x["f1"]["customer"] for x in rows])), 3),
        "talkover_precision": round(p, 3),
        "talkover_recall": round(r, 3),
        "talkover_f1": round(2 * p * r / max(p + r, 1e-9), 3),
        "kind_accuracy": round(s["kind"] / max(s["tp"], 1), 3),
        "dead_air_precision": round(s["dtp"] / max(s["dnd"], 1), 3),
        "dead_air_recall": round(s["dtp"] / max(s["dnt"], 1), 3),
    }


def auc(pos: list[float], neg: list[float]) -> float:
    """Probability that a true talk-over's confidence ranks above a false one's (ties count half)."""
    if not pos or not neg:
        return float("nan")
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float((p > n).mean() + 0.5 * (p == n).mean())


CONFIDENCE_STEPS = (0.0, 0.7, 0.8, 0.85, 0.9, 0.95)
"""`min_confidence` values of a scorecard rule the harness shows the effect of."""


def separation(rows: list[tuple[Any, bool]]) -> dict[str, Any]:
    """How well events' `confidence` separates true from false ones, and what a rule's `min_confidence` would keep."""
    rated = [(float(c), ok) for c, ok in rows if c is not None]
    keep = {
        f"{t:g}": {"true": sum(ok for c, ok in rated if c >= t), "false": sum(not ok for c, ok in rated if c >= t)}
        for t in CONFIDENCE_STEPS
    }
    return {
        "auc": round(auc([c for c, ok in rated if ok], [c for c, ok in rated if not ok]), 3),
        "kept_at_min_confidence": keep,
    }


def confidence_report(judged: list[tuple[Any, bool, Any, Any]]) -> dict[str, Any]:
    """Talk-overs' confidence for all and for agent interruptions (the shipped scorecard's deduction)."""
    agent = [(c, ok) for c, ok, by, kind in judged if by == "agent" and kind == "interruption"]
    return {"all": separation([(c, ok) for c, ok, *_ in judged]), "agent_interruptions": separation(agent)}


def dead_air_report(judged: list[tuple[Any, bool, float]]) -> dict[str, Any]:
    """Dead airs' confidence for all and for those of 5 s or more (the shipped scorecard's deduction)."""
    return {
        "all": separation([(c, ok) for c, ok, _ in judged]),
        "5s_or_more": separation([(c, ok) for c, ok, d in judged if d >= 5.0 - 1e-9]),
    }


def call_f1(row: dict[str, Any]) -> float:
    """One call's talk-over F1 (1.0 when neither side has any)."""
    if row["nd"] == 0 and row["nt"] == 0:
        return 1.0
    return 2 * row["tp"] / max(row["nd"] + row["nt"], 1)


def evaluate_source(
    source: str, wavs: list[Path], weights: str | None, rate: int = 16000
) -> tuple[dict[str, list[dict[str, Any]]], float]:
    pipe = ours(weights)
    rows: dict[str, list[dict[str, Any]]] = {s: [] for s in SYSTEMS}
    audio = wall = 0.0
    for wav in wavs:
        truth = json.loads(wav.with_suffix(".json").read_text())
        t0 = time.process_time()
        ev = analyse(pipe, wav, rate)
        wall += time.process_time() - t0
        audio += truth["duration"]
        rows["ours"].append(score_call(ev, truth))
        rows["webrtc"].append(score_call(score_calls.webrtc(str(wav)), truth))
        rows["silero"].append(score_call(score_calls.silero(str(wav)), truth))
    return rows, audio / max(wall, 1e-9)


def ami_vad(weights: str | None) -> dict[str, float]:
    """Speech frame F1 on AMI headset mixes (dev + test): the mix as the agent mic, a quiet line beside it."""
    data = SHARED / "data" / "ami-mix"
    f1s: dict[str, list[float]] = {s: [] for s in SYSTEMS}
    rng = np.random.default_rng(0)
    pipe = ours(weights)
    # the train split may teach the speech model; only development and test are scored
    for split in ("development", "test"):
        rttm = (data / f"debug.{split}.rttm").read_text().splitlines()
        for uri in (data / f"debug.{split}.lst").read_text().split():
            x, sr = sf.read(data / f"{uri}.flac", dtype="float32")
            n = len(x) // 160
            turns = [(float(f[3]), float(f[3]) + float(f[4])) for f in map(str.split, rttm) if f[1] == uri]
            ref = score_calls.frames(turns, n)
            line = (rng.standard_normal(len(x)) * 10 ** (-70 / 20)).astype(np.float32)
            stereo = np.stack([x, line], axis=1)
            wav = ROOT / ".cache" / "eval" / "ami" / f"{uri}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            sf.write(wav, stereo, sr, subtype="PCM_16")
            evs = {
                "ours": [e.to_dict() for e in pipe.run([stereo])],
                "webrtc": score_calls.webrtc(str(wav)),
                "silero": score_calls.silero(str(wav)),
            }
            for name, ev in evs.items():
                segs = [(e["start"], e["end"]) for e in ev if e.get("type") == "speech" and e.get("speaker") == "agent"]
                hyp = score_calls.frames(segs, n)
                f1s[name].append(float(2 * (hyp & ref).sum() / max(hyp.sum() + ref.sum(), 1)))
    return {k: round(float(np.mean(v)), 3) for k, v in f1s.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", nargs="+", default=["noizeus", "typing", "moh", "phone_tones"])
    ap.add_argument("--speech", nargs="+", default=["ravdess", "emodb"])
    ap.add_argument("--calls", type=int, default=6)
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--weights", nargs="*", default=[], metavar="SOURCE=PATH", help="weights trained without SOURCE")
    ap.add_argument("--default-weights", help="weights for sources not named in --weights (default: shipped)")
    ap.add_argument("--work", type=Path, default=ROOT / ".cache" / "eval")
    ap.add_argument("--no-ami", action="store_true")
    ap.add_argument(
        "--rate", type=int, default=16000, help="capture rate our analyzer gets the calls at (8000: narrowband)"
    )
    args = ap.parse_args()
    per_source = dict(w.split("=", 1) for w in args.weights)
    report: dict[str, Any] = {"sources": {}, "weights": {}}
    below, flags = [], {"bad": 0, "bad_flagged": 0, "good": 0, "good_flagged": 0}
    judged: list[tuple[Any, bool, Any, Any]] = []
    dead_judged: list[tuple[Any, bool, float]] = []
    print(f"{'source':<12}{'system':<8}" + "".join(f"{c[:18]:>19}" for c in METRICS))
    for source in args.sources:
        # the composed calls are cached per draw: another seed or length is another set of calls
        work = args.work / f"{source}_{'-'.join(args.speech)}_seed{args.seed}_{args.minutes:g}min"
        wavs = compose_source(source, args.speech, work, args.calls, args.minutes, args.seed)
        weights = per_source.get(source, args.default_weights)
        rows, speed = evaluate_source(source, wavs, weights, args.rate)
        report["weights"][source] = weights or "shipped"
        report["sources"][source] = {s: totals(r) for s, r in rows.items()}
        report["sources"][source]["ours"]["x_realtime"] = round(speed, 1)
        for s in SYSTEMS:
            vals = report["sources"][source][s]
            print(f"{source:<12}{s:<8}" + "".join(f"{vals[c]:>19}" for c in METRICS))
        causes = {c: sum(r["missed"][c] for r in rows["ours"]) for c in MISSED_CAUSES}
        report["sources"][source]["ours"]["talk_overs_missed"] = causes
        print(f"{source:<12}ours    missed talk-overs: " + ", ".join(f"{c} {k}" for c, k in causes.items()))
        source_dead = [j for r in rows["ours"] for j in r["dead_judged"]]
        report["sources"][source]["ours"]["dead_air_confidence_auc"] = separation(
            [(c, ok) for c, ok, _ in source_dead]
        )["auc"]
        dead_judged += source_dead
        for wav, o, w in zip(wavs, rows["ours"], rows["webrtc"], strict=True):
            worse = [k for k in score_calls.SPK if o["f1"][k] < w["f1"][k] - 0.01]
            if worse or call_f1(o) < call_f1(w) - 0.01:
                below.append(
                    f"{source}/{wav.stem}: ours {o['f1']} to-F1 {call_f1(o):.2f} vs webrtc {w['f1']} {call_f1(w):.2f}"
                )
            bad = min(o["f1"].values()) < GOOD_F1
            key = "bad" if bad else "good"
            flags[key] += 1
            flags[f"{key}_flagged"] += int(o["flagged"])
            judged += o["judged"]
    metrics = list(METRICS)
    for s in SYSTEMS:
        vals = [report["sources"][src][s] for src in args.sources]
        report[f"mean_{s}"] = {m: round(float(np.mean([v[m] for v in vals])), 3) for m in metrics}
        report[f"worst_{s}"] = {m: round(float(np.min([v[m] for v in vals])), 3) for m in metrics}
        print(f"{'mean':<12}{s:<8}" + "".join(f"{report[f'mean_{s}'][c]:>19}" for c in metrics))
        print(f"{'worst':<12}{s:<8}" + "".join(f"{report[f'worst_{s}'][c]:>19}" for c in metrics))
    report["calls_below_webrtc"] = below
    report["self_check"] = flags
    report["talk_over_confidence"] = confidence_report(judged)
    report["dead_air_confidence"] = dead_air_report(dead_judged)
    for what in ("talk_over", "dead_air"):
        for name, r in report[f"{what}_confidence"].items():
            steps = r["kept_at_min_confidence"].items()
            kept = ", ".join(f">= {t}: {k['true']} true / {k['false']} false" for t, k in steps)
            print(f"{what.replace('_', '-')} confidence, {name}: AUC {r['auc']}; kept {kept}")
    print(
        "dead-air confidence AUC per source: "
        + ", ".join(f"{src} {report['sources'][src]['ours']['dead_air_confidence_auc']}" for src in args.sources)
    )
    print(f"calls below plain webrtcvad: {len(below)}")
    for line in below:
        print("  " + line)
    print(
        f"self-check: {flags['bad_flagged']}/{flags['bad']} badly analysed calls flagged (party F1 < {GOOD_F1}),"
        f" {flags['good_flagged']}/{flags['good']} good calls flagged"
    )
    if not args.no_ami:
        report["ami_vad_f1"] = ami_vad(args.default_weights)
        print(
            "AMI dev+test mixes, speech frame F1 vs RTTM: "
            + "  ".join(f"{k}={v}" for k, v in report["ami_vad_f1"].items())
        )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
