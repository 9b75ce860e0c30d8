"""Speed and memory of the whole analysis pipeline on one core.

    python benchmarks/bench_pipeline.py [--hours 1] [--long-hours 4]

Speed: one composed real-speech call is looped to `--hours` of stereo 16 kHz audio and fed through
the Pipeline in 1 s blocks (what a file or live capture gives); prints x real time.
Memory: `edge-agent analyze` runs as a child on a 1 h and a `--long-hours` file (8 kHz mu-law WAV, the
line's own format, so the long file stays small on disk); prints the peak RSS of each.
"""

from __future__ import annotations

import os

# one core: pin the maths libraries before numpy loads them
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import argparse  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import soxr  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

from benchmarks.compose import compose_calls  # noqa: E402
from edge_agent.config import AnalyzerConfig, EmotionConfig  # noqa: E402
from edge_agent.pipeline import Pipeline  # noqa: E402


def one_call(tmp: Path) -> np.ndarray:
    compose_calls(tmp, 1, 3, 3, sorted((SHARED / "data" / "noise").glob("*.flac"))[:2])
    x, _ = sf.read(tmp / "call00.wav", dtype="float32")
    return np.asarray(x, np.float32)


def speed(call: np.ndarray, hours: float, emotion: bool = True) -> None:
    total = int(hours * 3600 * 16000)
    pipe = Pipeline(AnalyzerConfig(emotion=EmotionConfig(enabled=emotion)))
    block = 16000
    n_events = 0
    t0 = time.process_time()
    pos = 0
    while pos < total:
        i = pos % len(call)
        chunk = call[i : i + min(block, total - pos)]
        n_events += len(pipe.process(chunk))
        pos += len(chunk)
    n_events += len(pipe.finish())
    cpu = time.process_time() - t0
    audio_s = total / 16000
    print(
        f"speed: {audio_s / 3600:.2f} h of stereo audio in {cpu:.1f} s CPU = {audio_s / cpu:.0f}x real time "
        f"on one core ({n_events} events, emotion {'on' if emotion else 'off'})"
    )


def write_long(call: np.ndarray, path: Path, hours: float) -> None:
    narrow = soxr.resample(call, 16000, 8000).astype(np.float32)
    reps = int(np.ceil(hours * 3600 * 8000 / len(narrow)))
    with sf.SoundFile(path, "w", 8000, 2, subtype="ULAW", format="WAV") as f:
        for _ in range(reps):
            f.write(narrow)


def peak_rss(path: Path) -> tuple[float, float]:
    """Peak RSS (MB) of `edge-agent analyze` on the file, and its wall time."""
    code = (
        "import resource,subprocess,sys;"
        "subprocess.run([sys.executable,'-m','edge_agent.cli','analyze',sys.argv[1]],stdout=subprocess.DEVNULL,check=True);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True, cwd=ROOT)
    return int(out.stdout.strip()) / 1024, time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--long-hours", type=float, default=4.0)
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        call = one_call(tmp)
        speed(call, args.hours)
        speed(call, args.hours, emotion=False)
        if args.skip_memory:
            return
        for hours in (1.0, args.long_hours):
            path = tmp / f"long_{hours:g}h.wav"
            write_long(call, path, hours)
            rss, wall = peak_rss(path)
            print(
                f"memory: {hours:g} h file ({path.stat().st_size / 1e6:.0f} MB, 8 kHz mu-law): peak RSS {rss:.0f} MB, "
                f"{hours * 3600 / wall:.0f}x real time wall"
            )
            path.unlink()
    print(f"self peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
