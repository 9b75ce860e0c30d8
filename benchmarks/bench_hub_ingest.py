"""Hub ingest throughput into SQLite: a load generator -> real Mosquitto -> hub Ingest (group commit, scoring).

    python benchmarks/bench_hub_ingest.py [--events 60000] [--seats 50] [--no-score] [--mode live|backlog]

A Mosquitto with the shipped config (tests/broker.py) and the hub's Ingest + Scorer (what `qa-hub serve` runs)
in this process, SQLite with synchronous=FULL; the load generator is a separate process on the same machine
(its own interpreter, so it does not share the hub's GIL) publishing QoS 1 envelopes for `--seats` seats as
fast as the broker takes them: calls of 8 events (two `activity` batches, five `emotion` events, the
`call_summary`), each seat logging in first. Prints the offered rate, the sustained ingest rate, and the loss
check: events stored, seq gaps, rejections, calls scored.

- `live`: the hub ingests while the generator publishes (rate = first publish to last commit). On a small
  machine this is capped by the Python load generator itself, which shares the cores.
- `backlog`: the hub's persistent session is subscribed, the hub is stopped, the generator publishes
  everything (the broker queues it, as during a hub restart), then the hub starts and drains it (rate =
  hub start to last commit): the hub's own capacity with the broker on the same machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_agent.mqtt_publisher import BrokerConfig  # noqa: E402
from edge_agent.schema import event_topic  # noqa: E402
from hub.ingest import Ingest  # noqa: E402
from hub.scorecard import DEFAULT_SCORECARD, load  # noqa: E402
from hub.scores import Scorer, import_scorecard  # noqa: E402
from hub.storage import Store  # noqa: E402
from tests.broker import Mosquitto, mosquitto_binary  # noqa: E402

SITE = "bench"
EVENTS_PER_CALL = 8


def payloads(seats: int, events: int) -> list[tuple[str, str]]:
    """(topic, payload) in per-seat order, seats interleaved call by call."""
    from tests.hub_support import Station

    per_seat = events // seats
    out: list[list[tuple[str, str]]] = []
    for s in range(seats):
        seat = f"s{s:03d}"
        st = Station(SITE, seat, stamp=False)
        envs = [st.login(f"agent{s:03d}", "2026-01-05T00:00:00.000Z")]
        k = 0
        while len(envs) + EVENTS_PER_CALL <= per_seat:
            call = f"{seat}-c{k}"
            batch = st.call(call, f"2026-01-05T{1 + k // 60 % 20:02d}:{k % 60:02d}:00.000Z")
            emo = [
                st.env({"type": "emotion", "start": 10.0 * i, "end": 10.0 * i + 3, "party": "customer",
                        "label": "angry" if i == 2 else "neutral"}, call, "2026-01-05T01:00:00.000Z")
                for i in range(5)
            ]  # fmt: skip
            envs += [*batch[:-1], *emo, batch[-1]]
            k += 1
        # stamped in publication order, as a station's outbox does
        out.append([(event_topic(SITE, seat), e.with_seq(n + 1).to_json()) for n, e in enumerate(envs)])
    interleaved: list[tuple[str, str]] = []
    for i in range(max(len(x) for x in out)):
        interleaved += [x[i] for x in out if i < len(x)]
    return interleaved


def generate(url: str, path: Path) -> None:
    """The load generator process: publish every line of `path` at QoS 1, print the time taken."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    msgs = [json.loads(line) for line in path.read_text().splitlines()]
    cfg = BrokerConfig.from_url(url)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-load")
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect(cfg.host, cfg.port)
    c.loop_start()
    t0 = time.time()
    infos = [c.publish(topic, payload, qos=1) for topic, payload in msgs]
    for info in infos:
        info.wait_for_publish(120)
    print(json.dumps({"start": t0, "end": time.time()}))
    c.loop_stop()
    c.disconnect()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=60000)
    ap.add_argument("--seats", type=int, default=50)
    ap.add_argument("--no-score", action="store_true", help="ingest only, no scoring of completed calls")
    ap.add_argument("--mode", choices=("live", "backlog"), default="live")
    ap.add_argument("--generate", nargs=2, metavar=("URL", "FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.generate:
        generate(args.generate[0], Path(args.generate[1]))
        return 0
    binary = mosquitto_binary()
    if binary is None:
        sys.exit("mosquitto is not installed")
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        msgs = payloads(args.seats, args.events)
        (tmp / "load.jsonl").write_text("\n".join(json.dumps(m) for m in msgs))
        broker = Mosquitto(tmp / "broker", binary)
        broker.start()
        store = Store(tmp / "hub.sqlite")
        import_scorecard(store, load(DEFAULT_SCORECARD)[1])
        scorer = None if args.no_score else Scorer(store)
        cfg = BrokerConfig.from_url(broker.url)
        ingest = Ingest(store, cfg, client_id="bench-hub", scorer=scorer)
        ingest.start()
        try:
            if not ingest.wait_subscribed(10):
                sys.exit("the hub did not subscribe")
            if args.mode == "backlog":
                ingest.stop()  # the persistent session stays subscribed: the broker queues for it
            gen = subprocess.run(
                [sys.executable, __file__, "--generate", broker.url, str(tmp / "load.jsonl")],
                capture_output=True,
                text=True,
                check=True,
            )
            times = json.loads(gen.stdout.strip().splitlines()[-1])
            n = len(msgs)
            if args.mode == "backlog":
                ingest = Ingest(store, cfg, client_id="bench-hub", scorer=scorer)
                times["hub_start"] = time.time()
                ingest.start()
            deadline = time.time() + 300
            while store.count() < n and time.time() < deadline:
                time.sleep(0.02)
            done = time.time()
            # the scorer runs after each commit; let it finish the last calls
            calls = int(store.db.scalar("SELECT COUNT(*) FROM calls WHERE summary_id IS NOT NULL"))
            while time.time() < deadline:
                scored = int(store.db.scalar("SELECT COUNT(*) FROM calls WHERE score IS NOT NULL"))
                if args.no_score or scored >= calls:
                    break
                time.sleep(0.05)
            scored_at = time.time()
            stored = store.count()
            print(f"events published: {n} from {args.seats} seats in {times['end'] - times['start']:.2f} s "
                  f"(offered {n / (times['end'] - times['start']):,.0f} events/s)")  # fmt: skip
            t0 = times.get("hub_start", times["start"])
            took = done - t0
            span = "hub start to last commit" if args.mode == "backlog" else "first publish to last commit"
            print(f"[{args.mode}] ingest into SQLite (synchronous=FULL, group commit): {stored / took:,.0f} events/s "
                  f"sustained ({stored} events in {took:.2f} s, {span})")  # fmt: skip
            print(f"stored {stored}/{n}  lost {n - stored}  seq gaps {len(store.gaps())}  "
                  f"rejected {sum(store.rejected().values())}")  # fmt: skip
            if not args.no_score:
                scored = int(store.db.scalar("SELECT COUNT(*) FROM calls WHERE score IS NOT NULL"))
                print(f"calls scored {scored}/{calls}, all by {scored_at - t0:.2f} s")
        finally:
            ingest.stop()
            store.close()
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
