"""Hub ingest throughput into SQLite: a load generator -> real Mosquitto -> hub Ingest (group commit, scoring).

    python benchmarks/bench_hub_ingest.py [--events 60000] [--seats 50] [--no-score] [--mode live|backlog]
        [--publishers 1]

A Mosquitto with the shipped config (tests/broker.py) and the hub's Ingest + Scorer (what `qa-hub serve` runs)
in this process, SQLite with synchronous=FULL; the load generator is a separate process on the same machine
(its own interpreter, so it does not share the hub's GIL) publishing QoS 1 envelopes for `--seats` seats as
fast as the broker takes them: calls of 8 events (two `activity` batches, five `emotion` events, the
`call_summary`), each seat logging in first. Prints the offered rate, the sustained ingest rate, and the loss
check: events stored, seq gaps, rejections, calls scored; and the CPU seconds each party used meanwhile (hub,
Mosquitto, generator), which is what decides the rate on a machine whose cores they share.

- `live`: the hub ingests while the generator publishes (rate = first publish to last commit). The generator
  is kept cheap so that it leaves the cores to the hub: payloads serialised before the clock starts, one
  thread per process driving paho's loop itself (no loop thread to hand every publish to), an inflight window
  of 1,000; `--publishers N` splits the seats over N processes.
- `backlog`: the hub's persistent session is subscribed, the hub is stopped, the generator publishes
  everything (the broker queues it, as during a hub restart), then the hub starts and drains it (rate =
  hub start to last commit): the hub's own capacity with the broker on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
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
    """The load generator process: publish every line of `path` at QoS 1, print the time taken.

    One thread: publish() writes each packet itself (paho's loop thread would be woken through a socket pair for
    every one), PUBACKs are read in between, and paho holds back what exceeds the inflight window until they
    free it. Payloads are bytes prepared before the clock starts."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    msgs = [
        (topic, payload.encode()) for topic, payload in (json.loads(line) for line in path.read_text().splitlines())
    ]
    cfg = BrokerConfig.from_url(url)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-load-{path.stem}")
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect(cfg.host, cfg.port)
    while not c.is_connected():
        c.loop(0.1)
    cpu0, t0 = time.process_time(), time.time()
    infos = []
    for i, (topic, payload) in enumerate(msgs):
        infos.append(c.publish(topic, payload, qos=1))
        if i % 64 == 63:
            c.loop_read()  # PUBACKs: they free the window, which sends what paho held back
    deadline = time.time() + 120
    while not all(info.is_published() for info in infos[-1000:]) and time.time() < deadline:
        c.loop(0.01)
    if not all(info.is_published() for info in infos):
        sys.exit("the broker did not acknowledge every message")
    print(json.dumps({"start": t0, "end": time.time(), "cpu": time.process_time() - cpu0}))
    c.disconnect()


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu(skip: int) -> float:
    """CPU seconds this process's running children other than `skip` (the broker) have used: the scoring
    processes, all started after the clock."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid() and int(stat.parent.name) != skip:
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError):
            continue  # it ended meanwhile
    return total


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=60000)
    ap.add_argument("--seats", type=int, default=50)
    ap.add_argument("--no-score", action="store_true", help="ingest only, no scoring of completed calls")
    ap.add_argument("--mode", choices=("live", "backlog"), default="live")
    ap.add_argument("--publishers", type=int, default=1, help="generator processes (the seats split between them)")
    ap.add_argument(
        "--score-processes", type=int, default=1, help="scoring processes, as qa-hub serve runs (0: in the hub process)"
    )
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
        # each seat in one publisher, so its events keep their order
        shards: list[list[tuple[str, str]]] = [[] for _ in range(args.publishers)]
        for topic, payload in msgs:
            shards[int(topic.split("/")[3][1:]) % args.publishers].append((topic, payload))
        for i, shard in enumerate(shards):
            (tmp / f"load{i}.jsonl").write_text("\n".join(json.dumps(m) for m in shard))
        broker = Mosquitto(tmp / "broker", binary)
        broker.start()
        assert broker.proc is not None  # noqa: S101 - started above
        store = Store(tmp / "hub.sqlite")
        import_scorecard(store, load(DEFAULT_SCORECARD)[1])
        scorer = None if args.no_score else Scorer(store, processes=args.score_processes)
        cfg = BrokerConfig.from_url(broker.url)
        ingest = Ingest(store, cfg, client_id="bench-hub", scorer=scorer)
        ingest.start()
        try:
            if not ingest.wait_subscribed(10):
                sys.exit("the hub did not subscribe")
            if args.mode == "backlog":
                ingest.stop()  # the persistent session stays subscribed: the broker queues for it
            hub_cpu0, broker_cpu0 = sum(os.times()[:2]), proc_cpu(broker.proc.pid)
            gens = [
                subprocess.Popen(
                    [sys.executable, __file__, "--generate", broker.url, str(tmp / f"load{i}.jsonl")],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for i in range(args.publishers)
            ]
            outs = [json.loads(g.communicate()[0].strip().splitlines()[-1]) for g in gens]
            if any(g.returncode for g in gens):
                sys.exit("a load generator failed")
            times = {"start": min(o["start"] for o in outs), "end": max(o["end"] for o in outs)}
            gen_cpu = sum(o["cpu"] for o in outs)
            n = len(msgs)
            if args.mode == "backlog":
                ingest = Ingest(store, cfg, client_id="bench-hub", scorer=scorer)
                hub_cpu0, broker_cpu0 = sum(os.times()[:2]), proc_cpu(broker.proc.pid)
                times["hub_start"] = time.time()
                ingest.start()
            deadline = time.time() + 300
            # MAX(rowid) (= rows, nothing is deleted) is an index seek; COUNT(*) every 20 ms would scan the table
            while (store.db.scalar("SELECT MAX(rowid) FROM events") or 0) < n and time.time() < deadline:
                time.sleep(0.02)
            done = time.time()
            hub_cpu, broker_cpu = sum(os.times()[:2]) - hub_cpu0, proc_cpu(broker.proc.pid) - broker_cpu0
            scoring_cpu = children_cpu(skip=broker.proc.pid)
            # the scorer runs after each commit; let it finish the last calls
            calls = int(store.db.scalar("SELECT COUNT(*) FROM calls WHERE summary_id IS NOT NULL"))
            while time.time() < deadline:
                scored = int(store.db.scalar("SELECT COUNT(*) FROM calls WHERE score IS NOT NULL"))
                if args.no_score or scored >= calls:
                    break
                time.sleep(0.05)
            scored_at = time.time()
            stored = store.count()
            pub_s = times["end"] - times["start"]
            print(f"events published: {n} from {args.seats} seats by {args.publishers} process(es) in {pub_s:.2f} s "
                  f"(offered {n / pub_s:,.0f} events/s, generator {gen_cpu:.2f} CPU s)")  # fmt: skip
            t0 = times.get("hub_start", times["start"])
            took = done - t0
            span = "hub start to last commit" if args.mode == "backlog" else "first publish to last commit"
            print(f"[{args.mode}] ingest into SQLite (synchronous=FULL, group commit): {stored / took:,.0f} events/s "
                  f"sustained ({stored} events in {took:.2f} s, {span})")  # fmt: skip
            print(f"CPU meanwhile: hub {hub_cpu:.2f} s ({1e6 * hub_cpu / n:.0f} us an event), scoring process(es) "
                  f"{scoring_cpu:.2f} s, Mosquitto {broker_cpu:.2f} s; load average "
                  f"{os.getloadavg()[0]:.1f}")  # fmt: skip
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
