"""Station runtime end to end: talk-over onset -> live signal on the broker, and the runtime's CPU share.

    python benchmarks/bench_station.py [--minutes 2] [--calls 2]

Real-speech calls (composed by ../shared/tools/compose_calls.py, held-out speakers' noise types aside) are
played into a `Station` as a real-time file source (the capture path itself is measured by
benchmarks/bench_capture.py through a real audio stack); a CTI `call_start` is queued before the first block,
so call time = file time. A plain MQTT client on the same Mosquitto records when each `live` talk-over signal
arrives. For every talk-over in the composer's ground truth that the station signalled (start within 1 s),
the latency is arrival - (the moment the overlap began in the audio stream); the definition itself needs
0.3 s of overlap, so the figure includes that. Also printed: CPU seconds per second of audio for the whole
process (decode, analysis, outbox, MQTT), and the share of one core.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from benchmarks.compose import compose_calls  # noqa: E402
from edge_agent.commands import CallEnd, CallStart  # noqa: E402
from edge_agent.schema import live_topic  # noqa: E402
from firmware_py import config as station_config  # noqa: E402
from firmware_py.runtime import Station  # noqa: E402
from firmware_py.sources import FileSource  # noqa: E402
from tests.broker import Mosquitto, mosquitto_binary  # noqa: E402

SITE, SEAT = "bench", "desk1"


def run_call(tmp: Path, broker: Mosquitto, wav: Path, i: int) -> tuple[list[float], int, int, float, float]:
    doc = {
        "station": {"site": SITE, "seat": SEAT, "state_dir": str(tmp / f"state{i}")},
        "mqtt": {"broker": broker.url},
        "lifecycle": {"auto": False},
        "local_api": {"enabled": False},
        "source": {"type": "file", "file": str(wav)},
    }
    arrivals: list[tuple[float, dict[str, object]]] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"wall-{i}")
    sub.on_message = lambda c, u, m: arrivals.append((time.monotonic(), json.loads(m.payload)))
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe(live_topic(SITE, SEAT), qos=0)
    sub.loop_start()
    source = FileSource(wav, realtime=True)
    station = Station(station_config.validate(doc, "bench"), base_doc=doc, source=source)
    station.submit(CallStart(call_id=f"bench-{i}"), "bench")
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    station.start()
    while station.source.stats.state != "finished":
        time.sleep(0.2)
    station.submit(CallEnd(), "bench").result(10)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    station.stop()
    sub.loop_stop()
    sub.disconnect()
    truth = json.loads(wav.with_suffix(".json").read_text())
    duration = float(truth["duration"])
    signals = [(t, p) for t, p in arrivals if p.get("type") == "talk_over"]
    latencies = []
    for to in truth["talk_over"]:
        match = [t for t, p in signals if abs(float(p["start"]) - to["start"]) < 1.0]  # type: ignore[arg-type]
        if match:
            latencies.append(match[0] - (source._t0 + to["start"]))
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    return latencies, len(truth["talk_over"]), len(signals), cpu, duration


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--calls", type=int, default=2)
    args = ap.parse_args()
    binary = mosquitto_binary()
    if binary is None:
        print("mosquitto is not installed (apt-get install mosquitto)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-station-") as d:
        tmp = Path(d)
        noises = [SHARED / "data" / "noise" / n for n in ("airport.flac", "exhibition.flac")]
        wavs = compose_calls(tmp / "calls", args.calls, args.minutes, 21, noises)
        broker = Mosquitto(tmp / "broker", binary)
        broker.start()
        lat: list[float] = []
        truth_n = signalled = 0
        cpu = audio = 0.0
        try:
            for i, wav in enumerate(wavs):
                ls, n, s, c, a = run_call(tmp, broker, wav, i)
                lat += ls
                truth_n, signalled, cpu, audio = truth_n + n, signalled + s, cpu + c, audio + a
        finally:
            broker.stop()
    lat.sort()
    print(f"{len(wavs)} calls, {audio / 60:.1f} min of audio in real time")
    if lat:
        p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
        print(
            f"talk-over onset -> live signal on the broker: p50 {1000 * statistics.median(lat):.0f} ms, "
            f"p95 {1000 * p95:.0f} ms, max {1000 * lat[-1]:.0f} ms "
            f"({len(lat)} of {truth_n} true talk-overs signalled; {signalled} signals in all)"
        )
    else:
        print(f"no true talk-over was signalled ({truth_n} in truth, {signalled} signals)")
    print(f"station process CPU: {cpu / audio:.4f} s per s of audio = {100 * cpu / audio:.2f} % of one core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
