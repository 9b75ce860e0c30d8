"""CPU cost of live capture + analysis: a 2-channel 48 kHz stream through a real audio stack, >= 60 s.

    python benchmarks/bench_capture.py [--seconds 60]

A private PulseAudio server (tests/audio_stack.py) plays a composed real-speech call in a loop into a
stereo null sink; firmware_py.capture.Capture captures its monitor at 48 kHz through PortAudio (ALSA host
API, pulse plugin) and the full edge_agent Pipeline analyses the blocks on a consumer thread, as the
station does. Prints the CPU used by this process (every thread: PortAudio's, ALSA's, libpulse's, the
consumer's) as % of one core over the wall time, input overflows, dropped frames, and the analysis lag.
The sound server and the player are separate processes and not counted (on the Pi, PortAudio reads the
USB headset's ALSA device directly, without them). Target: < 5 % of one core.
"""

from __future__ import annotations

import os

# one core for the maths, as on the station
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import argparse  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import soxr  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

from benchmarks.compose import compose_calls  # noqa: E402
from edge_agent.audio import SAMPLE_RATE  # noqa: E402
from edge_agent.config import AnalyzerConfig, EmotionConfig  # noqa: E402
from edge_agent.pipeline import Pipeline  # noqa: E402
from edge_agent.speech_model import ModelError  # noqa: E402
from firmware_py import devices  # noqa: E402
from firmware_py.capture import Capture, CaptureConfig  # noqa: E402
from tests.audio_stack import PulseStack  # noqa: E402


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def make_pipeline() -> tuple[Pipeline, str]:
    try:
        return Pipeline(AnalyzerConfig()), "default analyzer config"
    except ModelError as exc:  # the emotion model may not be shipped in this checkout yet
        cfg = AnalyzerConfig(emotion=EmotionConfig(enabled=False))
        return Pipeline(cfg), f"emotion off ({exc})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="capture this long (default 60)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="callqa-bench-") as tmp_name:
        tmp = Path(tmp_name)
        wav = compose_calls(tmp / "calls", 1, 1, 5, [SHARED / "data" / "noise" / "babble.flac"])[0]
        audio, rate = sf.read(wav, dtype="float32", always_2d=True)
        play = tmp / "play48k.wav"
        sf.write(play, soxr.resample(audio, rate, 48000).astype(np.float32), 48000, subtype="FLOAT")
        pipeline, note = make_pipeline()
        with PulseStack(Path(tempfile.mkdtemp(prefix="callqa-pa-", dir="/tmp"))) as stack:
            os.environ.update(stack.client_env)
            devices.rescan()
            return run(stack, play, pipeline, note, args.seconds)


def run(stack: PulseStack, play: Path, pipeline: Pipeline, note: str, seconds: float) -> int:
    cap = Capture(CaptureConfig(device="^callqa_headset$", samplerate=48000))
    cap.start()
    stop = threading.Event()

    def player() -> None:  # the call, looped
        while not stop.is_set():
            p = stack.play(play)
            while p.poll() is None and not stop.wait(0.2):
                pass
            if p.poll() is None:
                p.terminate()
            stack.players.remove(p)
            p.wait()

    while cap.read(1.0) is None:
        pass
    threading.Thread(target=player, daemon=True).start()
    processed = 0
    events = 0
    worst_block_s = 0.0
    max_lag_s = 0.0
    wall0, cpu0 = time.monotonic(), cpu_s()
    captured0 = cap.stats.frames_captured
    while time.monotonic() - wall0 < seconds:
        block = cap.read(0.5)
        if block is None:
            continue
        t = time.monotonic()
        events += len(pipeline.process(block))
        worst_block_s = max(worst_block_s, time.monotonic() - t)
        processed += len(block)
        # audio captured but not yet analysed: what is still in the ring plus what this block took
        st = cap.stats
        lag = (st.frames_captured - captured0) / 48000 - processed / SAMPLE_RATE
        max_lag_s = max(max_lag_s, lag)
    wall, cpu = time.monotonic() - wall0, cpu_s() - cpu0
    events += len(pipeline.finish())
    st = cap.stats
    stop.set()
    cap.stop()
    latency = pipeline.latency_frames * 0.010 if hasattr(pipeline, "latency_frames") else float("nan")
    print(f"pipeline: {note}")
    print(f"captured {processed / SAMPLE_RATE:.1f} s of 2-channel audio at {st.device_rate} Hz in {wall:.1f} s wall")
    print(f"CPU: {cpu:.2f} s = {100 * cpu / wall:.2f} % of one core (target < 5 %)")
    print(f"input overflows: {st.overflows}, dropped frames: {st.dropped_frames}, reconnects: {st.reconnects}")
    print(
        f"analysis lag: capture-to-analysis backlog max {1000 * max_lag_s:.0f} ms (blocks are read as they come),"
        f" slowest block {1000 * worst_block_s:.1f} ms, plus the pipeline's decision delay {1000 * latency:.0f} ms"
    )
    print(f"events: {events}")
    return 0 if st.overflows == 0 and st.dropped_frames == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
