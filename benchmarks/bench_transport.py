"""End-to-end transport: station outbox -> real Mosquitto -> hub store, confirmed by the hub's acks.

    python benchmarks/bench_transport.py [--events 20000] [--paced-events 2000]

One real-speech call (3 min, composed by ../shared/tools/compose_calls.py, seed 3, babble noise) is analysed
by the Pipeline; its events are wrapped in v1 envelopes again and again (a fresh call id and event ids per
repetition; the outbox stamps seq) and committed to the outbox one call per transaction, as `edge-agent
replay` does. A Mosquitto with the shipped config (tests/broker.py), the hub Ingest and a hub-confirmed
Publisher run in this process. Prints:

- burst: every call put as fast as the outbox commits them; events/s from the first put until the outbox is
  empty (every event confirmed by the hub's retained ack), and put -> hub-commit latency, which here is
  mostly queueing behind the backlog;
- paced: the same at half the burst rate, so the latency is the transport's own;
- loss and duplicates stored at the hub (must both be 0), duplicate deliveries the hub absorbed by id;
- bytes: wire payloads (turn-taking batched as `activity`, edge_agent/wire.py) of real-speech calls of 3 and
  6 minutes (several each), per minute of call audio, zlib as sent to a hub that reads it and plain JSON, and
  the largest call summary (payloads only; MQTT framing adds about 40 bytes per message for topic and header).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

from benchmarks.compose import compose_calls  # noqa: E402
from edge_agent.audio import read_call  # noqa: E402
from edge_agent.cli import model_ref  # noqa: E402
from edge_agent.events import Event  # noqa: E402
from edge_agent.mqtt_publisher import BrokerConfig, Publisher  # noqa: E402
from edge_agent.outbox import Outbox  # noqa: E402
from edge_agent.pipeline import Pipeline  # noqa: E402
from edge_agent.schema import ZLIB, Envelope, ModelRef, encode_payload, envelope  # noqa: E402
from edge_agent.wire import to_wire  # noqa: E402
from hub.ingest import HubStore, Ingest, Outcome  # noqa: E402
from tests.broker import Mosquitto, mosquitto_binary  # noqa: E402

SITE, SEAT, AGENT = "bench", "s01", "a1"


class TimedStore(HubStore):
    """A HubStore that notes when each event id was committed."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.committed: dict[str, float] = {}

    def add(self, env: Envelope, payload: str) -> Outcome:
        outcome = super().add(env, payload)  # returns after COMMIT
        if outcome is Outcome.STORED:
            self.committed[env.id] = time.time()
        return outcome


def analyse_one_call(tmp: Path) -> tuple[list[Event], float, ModelRef | None]:
    compose_calls(tmp, 1, 3, 3, [SHARED / "data" / "noise" / "babble.flac"])
    pipeline = Pipeline()
    events = to_wire(pipeline.run(read_call(tmp / "call00.wav", block_seconds=2.0)))
    summary = events[-1].to_dict()
    return events, float(summary["duration"]), model_ref(pipeline)


def traffic(tmp: Path, calls: int) -> list[str]:
    """Wire bytes per minute of call audio on `calls` real-speech calls of each length."""
    lines = []
    pipeline = Pipeline()
    model = model_ref(pipeline)
    noises = [SHARED / "data" / "noise" / n for n in ("babble.flac", "street.flac", "car.flac")]
    noises = [n for n in noises if n.exists()] or [SHARED / "data" / "noise" / "babble.flac"]
    for minutes in (3, 6):
        out = tmp / f"traffic-{minutes}"
        out.mkdir()
        total_bytes, total_zlib, total_s, biggest_summary, n_events = 0, 0, 0.0, 0, 0
        for wav in compose_calls(out, calls, minutes, 100 + minutes, noises):
            events = to_wire(pipeline.run(read_call(wav, block_seconds=2.0)))
            for i, e in enumerate(events, 1):
                env = envelope(
                    e,
                    seat="seat-0001",
                    site="site-a",
                    call_id=f"CTI-{wav.stem}-000001",
                    agent_id="agent-0042",
                    model=model,
                )
                text = env.with_seq(100_000 + i, "0123456789abcdef").to_json()
                size = len(encode_payload(text, None))
                total_bytes += size
                total_zlib += len(encode_payload(text, ZLIB))
                if e.type == "call_summary":
                    biggest_summary = max(biggest_summary, size)
                    total_s += float(e.to_dict()["duration"])
            n_events += len(events)
        per_min = 60 / total_s
        lines.append(
            f"traffic, {calls} calls of {minutes} min: {total_zlib * per_min:.0f} B per minute of call audio as sent "
            f"to this hub (zlib), {total_bytes * per_min:.0f} B as plain JSON (to a hub without `enc`), "
            f"{n_events / calls:.1f} events per call, largest call summary {biggest_summary} B (JSON)"
        )
    return lines


def run_phase(
    workdir: Path,
    broker: Mosquitto,
    events: list[Event],
    model: ModelRef | None,
    n: int,
    rate: float | None,
    tag: str,
) -> dict[str, object]:
    """Push n events (whole calls, the last one cut short) and wait until the hub has confirmed them all."""
    cfg = BrokerConfig.from_url(broker.url)
    store = TimedStore(workdir / f"hub-{tag}.sqlite")
    ingest = Ingest(store, cfg, client_id=f"bench-hub-{tag}")
    ingest.start()
    put_at: dict[str, float] = {}
    seat = f"{SEAT}-{tag}"
    try:
        if not ingest.wait_subscribed(10):
            raise RuntimeError(broker.log_tail())
        with Outbox(workdir / f"outbox-{tag}.sqlite") as ob:
            pub = Publisher(ob, site=SITE, seat=seat, broker=cfg, client_id=f"bench-station-{tag}")
            pub.start()
            try:
                t0 = time.time()
                call, sent = 0, 0
                while sent < n:
                    batch = [
                        envelope(e, seat=seat, site=SITE, call_id=f"{tag}-call{call:05d}", agent_id=AGENT, model=model)
                        for e in events[: n - sent]
                    ]
                    if rate is not None:  # pace: this batch may start once the previous ones are due
                        delay = t0 + sent / rate - time.time()
                        if delay > 0:
                            time.sleep(delay)
                    stamped = ob.put_many(batch)
                    now = time.time()
                    put_at.update((e.id, now) for e in stamped)
                    pub.notify()
                    sent += len(stamped)
                    call += 1
                if not pub.drain(600):
                    raise RuntimeError(f"not confirmed in time: {ob.count(seat)} left\n{broker.log_tail()}")
                t_done = time.time()
                dropped = ob.dropped
            finally:
                pub.stop()
        time.sleep(0.5)  # a late duplicate would land now
        seqs = store.seqs(SITE, seat)
        stored = store.count()
        lat = sorted(store.committed[i] - put_at[i] for i in put_at if i in store.committed)
        payloads = store.payloads()
        sizes = [len(json.dumps(p, separators=(",", ":"), ensure_ascii=False).encode()) for p in payloads]
        summary_sizes = [s for s, p in zip(sizes, payloads, strict=True) if p["type"] == "call_summary"]
        return {
            "events": n,
            "seconds": t_done - t0,
            "rate": n / (t_done - t0),
            "p50_ms": 1000 * statistics.median(lat),
            "p95_ms": 1000 * lat[int(0.95 * (len(lat) - 1))],
            "max_ms": 1000 * lat[-1],
            "lost": n - len(set(seqs) & set(range(1, n + 1))),
            "dup_stored": stored - len(set(seqs)),
            "dup_absorbed": ingest.outcomes[Outcome.DUPLICATE],
            "rejected": sum(store.rejected().values()),
            "gaps": len(store.gaps()),
            "dropped": dropped,
            "resent": pub.resent,
            "acks": ingest.acks_sent,
            "sizes": sizes,
            "summary_sizes": summary_sizes,
            "calls": call,
        }
    finally:
        ingest.stop()
        store.close()


def report(name: str, r: dict[str, object]) -> None:
    print(
        f"{name}: {r['events']} events ({r['calls']} calls) confirmed in {r['seconds']:.2f} s = "
        f"{r['rate']:.0f} events/s end to end; put->hub commit p50 {r['p50_ms']:.1f} ms, "
        f"p95 {r['p95_ms']:.1f} ms, max {r['max_ms']:.1f} ms"
    )
    print(
        f"  lost {r['lost']}, duplicates stored {r['dup_stored']}, duplicate deliveries absorbed by id "
        f"{r['dup_absorbed']}, re-sent {r['resent']}, gaps {r['gaps']}, rejected {r['rejected']}, "
        f"budget drops {r['dropped']}, hub acks {r['acks']}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=20000, help="events in the burst")
    ap.add_argument("--paced-events", type=int, default=2000, help="events at half the burst rate (0: skip)")
    ap.add_argument("--traffic-calls", type=int, default=4, help="calls of each length for the bytes figures")
    args = ap.parse_args()
    binary = mosquitto_binary()
    if binary is None:
        print("mosquitto is not installed (apt-get install mosquitto)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-transport-") as d:
        tmp = Path(d)
        (tmp / "call").mkdir()
        events, duration_s, model = analyse_one_call(tmp / "call")
        print(
            f"call: {duration_s / 60:.2f} min, {len(events)} events per call "
            f"({', '.join(sorted({e.type for e in events}))}), model {model.name if model else None}"
        )
        broker = Mosquitto(tmp / "broker", binary)
        broker.start()
        failed = False
        try:
            burst = run_phase(tmp, broker, events, model, args.events, None, "burst")
            report("burst", burst)
            failed |= bool(burst["lost"] or burst["dup_stored"])
            if args.paced_events:
                paced = run_phase(tmp, broker, events, model, args.paced_events, 0.5 * float(burst["rate"]), "paced")  # type: ignore[arg-type]
                report(f"paced at {0.5 * float(burst['rate']):.0f} events/s", paced)  # type: ignore[arg-type]
                failed |= bool(paced["lost"] or paced["dup_stored"])
        finally:
            broker.stop()
        sizes: list[int] = burst["sizes"]  # type: ignore[assignment]
        mean = statistics.fmean(sizes)
        summary_bytes = max(burst["summary_sizes"])  # type: ignore[call-overload]
        print(f"bytes: mean payload {mean:.0f} B (min {min(sizes)}, max {max(sizes)}), call summary {summary_bytes} B")
        for line in traffic(tmp, args.traffic_calls):
            print(line)
    if failed:
        print("FAIL: events lost or stored twice", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
