"""Scale-out: a simulated fleet -> real Mosquitto -> 1 or 2 hub workers (shared subscription) -> one database.

    python benchmarks/bench_scale.py fleet    [--seats 2000] [--seconds 180] [--workers 1] [--db postgres]
    python benchmarks/bench_scale.py capacity [--seats 200] [--events-per-seat 150] [--workers 1 2]

Everything is real and on this machine: Mosquitto with the shipped config (tests/broker.py), PostgreSQL with fsync
on (its own cluster; `--db sqlite` for the embedded default), hub workers as `qa-hub serve --share hub --no-http`
processes, and the fleet (benchmarks/fleet.py: every seat a real MQTT client publishing real-speech event
streams at QoS 1).

- `fleet`: `--seats` seats at real-time rates for `--seconds`: offered and stored events/s, end-to-end latency
  (published by the seat -> row stored at the hub) p50/p95 (the shift's logins go out while the fleet
  connects, before the measured window), loss and duplicates (must be 0).
- `capacity`: what 1 and then 2 workers sustain. The workers' persistent shared sessions are subscribed, then
  stopped; the fleet publishes everything (the broker queues it, as during a hub outage); the workers start and
  drain it. Rate = events / (last stored - first stored), so neither the generator nor start-up shares the
  measured window. Loss and duplicates checked after each run. `--worker-cpu C` (root, cgroup v1 or v2) holds
  each worker, with its scoring process, to C cores: on a machine whose cores the broker, the database and one
  worker already fill, it shows what the design does when every worker has CPU of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.fleet import analyse_templates, run_fleet  # noqa: E402
from edge_agent.wire import expand_activity  # noqa: E402
from hub.storage import Store  # noqa: E402
from tests.broker import Mosquitto, mosquitto_binary  # noqa: E402
from tests.hub_support import PgServer, start_cluster  # noqa: E402

GROUP = "hub"


class CpuCap:
    """A cgroup per worker holding it (and every process it starts) to `cores` CPUs; v2 or v1 `cpu` hierarchy."""

    PERIOD_US = 100_000

    def __init__(self, cores: float) -> None:
        v2, v1 = Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/cpu")
        if (v2 / "cgroup.controllers").exists() and "cpu" in (v2 / "cgroup.controllers").read_text().split():
            self.root, self.v2 = v2, True
            (v2 / "cgroup.subtree_control").write_text("+cpu")
        elif (v1 / "cpu.cfs_quota_us").exists():
            self.root, self.v2 = v1, False
        else:
            sys.exit("--worker-cpu: no cgroup cpu controller on this machine")
        self.quota = int(cores * self.PERIOD_US)
        self.groups: list[Path] = []

    def group(self, name: str) -> Path:
        g = self.root / f"callqa-bench-{os.getpid()}-{name}"
        g.mkdir(exist_ok=True)
        if self.v2:
            (g / "cpu.max").write_text(f"{self.quota} {self.PERIOD_US}")
        else:
            (g / "cpu.cfs_period_us").write_text(str(self.PERIOD_US))
            (g / "cpu.cfs_quota_us").write_text(str(self.quota))
        if g not in self.groups:
            self.groups.append(g)
        return g

    def remove(self) -> None:
        for g in self.groups:
            try:
                g.rmdir()
            except OSError:
                pass  # a process still inside: the kernel keeps the group until it exits
        self.groups = []


class Workers:
    """`n` hub worker processes sharing ingest through `$share/hub/...`."""

    def __init__(self, n: int, db: str, broker: str, logdir: Path, cap: CpuCap | None = None) -> None:
        self.n, self.db, self.broker, self.logdir, self.cap = n, db, broker, logdir, cap
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        qa_hub = str(Path(sys.executable).parent / "qa-hub")
        for i in range(self.n):
            log = (self.logdir / f"worker{i}.log").open("ab")
            cmd = [qa_hub, "--db", self.db, "serve", "--broker", self.broker, "--share", GROUP,
                   "--client-id", f"hub-worker-{i}", "--no-http"]  # fmt: skip
            if self.cap is not None:
                # the shell joins the group before exec, so the worker and its scoring process start inside it
                procs = self.cap.group(f"w{i}") / "cgroup.procs"
                cmd = ["sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "sh", *cmd]
            self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))

    def cpu_s(self) -> float:
        """CPU seconds of the workers and of their children (each worker's scoring process, hub/scores.py)."""
        pids = {p.pid for p in self.procs}
        total = 0.0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(stat.parent.name) in pids or int(fields[1]) in pids:
                    total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except (OSError, IndexError, ValueError):
                pass
        return total

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs = []


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far (/proc/stat), to tell a saturated machine from idle cores."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def wait_subscribed(store: Store, broker: Mosquitto, workers: Workers, seconds: float = 60) -> None:
    """Until every worker's session exists: a probe message reaches the store through the group."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-probe")
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    deadline = time.time() + seconds
    while time.time() < deadline:
        logs = "".join((workers.logdir / f"worker{i}.log").read_text() for i in range(workers.n))
        if logs.count("subscribing") >= workers.n:
            break
        time.sleep(0.2)
    else:
        sys.exit(f"the hub workers did not subscribe within {seconds:g} s; their logs end:\n{logs[-2000:]}")
    time.sleep(1.0)
    c.loop_stop()
    c.disconnect()


def check(store: Store, published: dict[str, float], early: list[str], timeout: float) -> dict[str, float]:
    """Wait until every published event is stored; loss, duplicates (a seat's seq stored twice), latency (of
    the events published in the measured window)."""
    deadline = time.time() + timeout
    n = len(published) + len(early)
    while store.count() < n and time.time() < deadline:
        time.sleep(0.5)
    rows = store.db.all("SELECT id, received, type, payload FROM events")
    received = {str(i): float(r) for i, r, _, _ in rows}
    # what `edge-agent analyze` would have printed: an `activity` message carries many speech segments,
    # talk-overs and dead airs (edge_agent/wire.py); every other message is one event
    analyzer = sum(len(expand_activity(json.loads(p))) if t == "activity" else 1 for _, _, t, p in rows)
    lost = sum(1 for k in [*published, *early] if k not in received)
    dup_seq = int(
        store.db.scalar(
            "SELECT COUNT(*) FROM (SELECT site, seat, seq FROM events GROUP BY site, seat, epoch, seq"
            " HAVING COUNT(*) > 1) AS d"
        )
        or 0
    )
    lat = sorted(received[k] - t for k, t in published.items() if k in received)
    times = sorted(received[k] for k in published if k in received)
    return {
        "published": n,
        "stored": len(received),
        "analyzer_events": analyzer,
        "lost": lost,
        "duplicates": dup_seq,
        "p50_ms": 1000 * statistics.median(lat) if lat else float("nan"),
        "p95_ms": 1000 * lat[int(0.95 * (len(lat) - 1))] if lat else float("nan"),
        "first": times[0] if times else 0.0,
        "last": times[-1] if times else 0.0,
    }


def database(kind: str, tmp: Path) -> tuple[str, PgServer | None]:
    if kind == "sqlite":
        return str(tmp / "hub.sqlite"), None
    base = Path(tempfile.mkdtemp(prefix="callqa-pg-"))  # its own: the postgres user must own it
    server = start_cluster(base, fsync=True)
    return server.dsn(), server


def fresh_db(kind: str, tmp: Path, name: str, server: PgServer | None) -> str:
    if server is None:
        return str(tmp / f"{name}.sqlite")
    import psycopg

    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server.dsn(name)


def fleet_run(args: argparse.Namespace, tmp: Path, server: PgServer | None, binary: str) -> None:
    db = fresh_db(args.db, tmp, "fleet", server)
    broker = Mosquitto(tmp / "broker-fleet", binary)
    broker.start()
    store = Store(db)
    workers = Workers(args.workers[0], db, broker.url, tmp)
    try:
        workers.start()
        wait_subscribed(store, broker, workers)
        cpu0 = workers.cpu_s()
        published, early, start = run_fleet(
            broker.url, seats=args.seats, horizon=args.seconds, processes=args.processes,
            templates=tmp / "templates", workdir=tmp,
        )  # fmt: skip
        r = check(store, published, early, 120)
        took = time.time() - start
        cpu = workers.cpu_s() - cpu0
        print(f"fleet: {args.seats} seats, {args.seconds:.0f} s at real-time rates, {args.workers[0]} worker(s), "
              f"{args.db}")  # fmt: skip
        print(f"  events published {r['published']} ({r['published'] / args.seconds:,.1f}/s offered), "
              f"stored {r['stored']}, lost {r['lost']}, duplicates {r['duplicates']}")  # fmt: skip
        print(f"  latency seat publish -> hub row: p50 {r['p50_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms; "
              f"hub workers CPU {100 * cpu / took:.1f}% of one core")  # fmt: skip
    finally:
        workers.stop()
        store.close()
        broker.stop()


def capacity_run(args: argparse.Namespace, tmp: Path, server: PgServer | None, binary: str) -> None:
    results = {}
    for n in args.workers:
        db = fresh_db(args.db, tmp, f"cap{n}", server)
        broker = Mosquitto(tmp / f"broker-cap{n}", binary)
        broker.start()
        store = Store(db)
        try:
            cap = CpuCap(args.worker_cpu) if args.worker_cpu else None
        except OSError as exc:  # not root, or a cgroup tree this process may not write
            sys.exit(f"--worker-cpu: cannot create a CPU cgroup here: {exc}")
        workers = Workers(n, db, broker.url, tmp / f"w{n}", cap)
        (tmp / f"w{n}").mkdir()
        try:
            workers.start()
            wait_subscribed(store, broker, workers)
            workers.stop()  # the sessions stay: the broker queues each worker's share
            # sim horizon so each seat publishes about `events_per_seat` events, all at once (speed: huge)
            published, early, _ = run_fleet(
                broker.url, seats=args.seats, horizon=args.events_per_seat * 60.0, speed=1e6,
                processes=args.processes, templates=tmp / "templates", workdir=tmp / f"w{n}", steady=False,
            )  # fmt: skip
            workers.start()
            t0, ticks0 = time.time(), machine_ticks()
            r = check(store, published, early, 600)
            cpu = workers.cpu_s()
            ticks1 = machine_ticks()
            busy = (ticks1[0] - ticks0[0]) / max(ticks1[1] - ticks0[1], 1)
            span = max(r["last"] - r["first"], 1e-6)
            rate = r["stored"] / span
            results[n] = rate
            cores = cpu / max(time.time() - t0, 1e-6)
            held = f" held to {args.worker_cpu:g} core each" if cap else ""
            print(f"capacity: {n} worker(s){held}, {args.db}: {r['stored']} events from {args.seats} seats drained at "
                  f"{rate:,.0f} events/s = {r['analyzer_events'] / span:,.0f} analyzer events/s (workers CPU "
                  f"{cores:.2f} cores, machine {100 * busy:.0f}% busy); lost {r['lost']}, duplicates "
                  f"{r['duplicates']}")  # fmt: skip
        finally:
            workers.stop()
            if cap is not None:
                cap.remove()
            store.close()
            broker.stop()
    if len(results) > 1:
        base = results[min(results)]
        for n, rate in sorted(results.items()):
            print(f"  {n} worker(s): {rate / base:.2f}x one worker")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("fleet", "capacity"))
    ap.add_argument("--seats", type=int)
    ap.add_argument("--seconds", type=float, default=180.0)
    ap.add_argument("--events-per-seat", type=int, default=150)
    ap.add_argument("--workers", type=int, nargs="+")
    ap.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    ap.add_argument("--processes", type=int, default=4, help="fleet processes")
    ap.add_argument("--worker-cpu", type=float, help="capacity: hold each worker to this many cores (root)")
    args = ap.parse_args()
    args.seats = args.seats or (2000 if args.mode == "fleet" else 200)
    args.workers = args.workers or ([1] if args.mode == "fleet" else [1, 2])
    binary = mosquitto_binary()
    if binary is None:
        sys.exit("mosquitto is not installed")
    tmp = Path(tempfile.mkdtemp(prefix="callqa-scale-"))
    server = None
    try:
        (tmp / "templates").mkdir()
        analyse_templates(tmp / "templates")
        _, server = database(args.db, tmp)
        if args.mode == "fleet":
            fleet_run(args, tmp, server, binary)
        else:
            capacity_run(args, tmp, server, binary)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
