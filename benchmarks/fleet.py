"""A simulated fleet of stations: every seat a real MQTT client publishing what a real station publishes.

Event streams come from real speech: a few composed real-speech calls are analysed once by the Pipeline and
turned into wire events (`activity` batches, anger alerts, the `call_summary`, edge_agent/wire.py). Each seat
logs its agent in, then takes those calls one after another with idle gaps between them, publishing each
event when the station would (at its end time within the call), health every 30 s (retained), `online` on
connect and `offline` as its last will, all at QoS 1 like the station; a seat starts at a random point of its
timeline, so the fleet is in steady state from the first second. `speed` compresses time (1.0: real time).

Many seats share one process: paho clients driven by one selector loop (paho's external-loop callbacks), not a
thread per client; `run_fleet` spreads seats over several processes. Each process writes, per event id, the
time it was handed to the socket, so the benchmark measures end-to-end latency and loss at the hub.

    python benchmarks/fleet.py --broker mqtt://127.0.0.1:1883 --seats 100 --seconds 60   (standalone)
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import resource
import selectors
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

from benchmarks.compose import compose_calls  # noqa: E402
from edge_agent.audio import read_call  # noqa: E402
from edge_agent.mqtt_publisher import BrokerConfig  # noqa: E402
from edge_agent.pipeline import Pipeline  # noqa: E402
from edge_agent.schema import ModelRef, envelope, event_topic, status_topic  # noqa: E402
from edge_agent.wire import AgentLogin, model_refs, to_wire  # noqa: E402

log = logging.getLogger("fleet")

HEALTH_S = 30.0


@dataclass(frozen=True)
class CallTemplate:
    """One analysed real-speech call: its wire events as dicts, in emission order, with emission times."""

    duration: float
    events: list[tuple[float, dict[str, Any]]]  # (seconds into the call it is emitted, event dict)
    models: dict[str, dict[str, Any]]


def analyse_templates(workdir: Path, calls: int = 4, minutes: float = 3.0, seed: int = 11) -> list[CallTemplate]:
    """Compose and analyse real-speech calls once (cached as templates.json in `workdir`)."""
    cache = workdir / "templates.json"
    if cache.exists():
        return [
            CallTemplate(t["duration"], [(e[0], e[1]) for e in t["events"]], t["models"])
            for t in json.loads(cache.read_text())
        ]
    noise = [SHARED / "data" / "noise" / "babble.flac"]
    wavs = compose_calls(workdir / "calls", calls, minutes, seed, noise)
    out = []
    for wav in wavs:
        pipeline = Pipeline()
        wire = to_wire(pipeline.run(read_call(wav, block_seconds=2.0)))
        refs = {k: v.to_dict() for k, v in model_refs(pipeline).items()}
        events = [(float(e.end), e.to_dict()) for e in wire]
        duration = float(events[-1][1]["duration"])
        out.append(CallTemplate(duration, sorted(events, key=lambda x: x[0]), refs))
    cache.write_text(json.dumps([{"duration": t.duration, "events": t.events, "models": t.models} for t in out]))
    return out


class Seat:
    """One simulated station: its client, its timeline, its seq."""

    def __init__(self, site: str, seat: str, templates: list[CallTemplate], rng: random.Random) -> None:
        self.site, self.seat = site, seat
        self.agent = f"agent-{seat}"
        self.templates, self.rng = templates, rng
        self.seq = 0
        self.calls = 0
        self.queue: list[tuple[float, str, str, bool]] = []  # (due sim-time, topic, payload, retain)
        self.published: dict[str, float] = {}  # event id -> wall time handed to paho
        self.early: list[tuple[float, str, str, bool]] = []  # sent on connect, before the measured window
        self.early_ids: list[str] = []
        self.start_at, self.speed = 0.0, 1.0
        self.client: mqtt.Client | None = None
        self.connected = False

    def plan(self, horizon: float, offset: float, start_at: float, speed: float) -> None:
        """Lay out events from sim-time 0 to `horizon`, the seat's timeline entered `offset` seconds in."""
        self.start_at, self.speed = start_at, speed
        t = -offset
        # the shift began before the measured window: the login goes out while the fleet connects (`early`)
        self._event(0.0, AgentLogin(start=0.0, end=0.0).to_dict(), None)
        self.early = [self.queue.pop()]
        while t < horizon:
            tpl = self.rng.choice(self.templates)
            call_id = f"{self.seat}-c{self.calls}"
            self.calls += 1
            for at, ev in tpl.events:
                if t + at >= 0:
                    self._event(t + at, ev, call_id, tpl.models.get(ev["type"]))
            t += tpl.duration + self.rng.uniform(5.0, 40.0)  # wrap-up and waiting for the next call
        h = self.rng.uniform(0, HEALTH_S)
        while h < horizon:
            health = {"seat": self.seat, "outbox": 0, "state": "in_call", "cpu_percent": 4.5}
            self.queue.append((h, status_topic(self.site, self.seat) + "/health", json.dumps(health), True))
            h += HEALTH_S
        self.queue.sort(key=lambda q: q[0])
        self.queue = [q for q in self.queue if q[0] < horizon]

    def _event(self, at: float, ev: dict[str, Any], call_id: str | None, model: dict[str, Any] | None = None) -> None:
        self.seq += 1
        env = envelope(
            ev,
            seat=self.seat,
            site=self.site,
            call_id=call_id,
            agent_id=self.agent,
            model=ModelRef(**model) if model else None,
            seq=self.seq,
            ts=time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(self.start_at + max(at, 0.0) / self.speed)),
        )
        self.queue.append((max(at, 0.0), event_topic(self.site, self.seat), env.to_json(), False))


class FleetProcess:
    """Many seats' clients on one selector loop."""

    def __init__(self, broker: BrokerConfig, seats: list[Seat]) -> None:
        self.broker, self.seats = broker, seats
        self.sel = selectors.DefaultSelector()
        self.unacked: dict[int, int] = {}  # client index -> messages published and not yet PUBACKed

    def _client(self, i: int, seat: Seat) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{seat.site}-{seat.seat}", clean_session=True)
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(0)
        if self.broker.username:
            c.username_pw_set(self.broker.username, self.broker.password)
        c.will_set(status_topic(seat.site, seat.seat), "offline", qos=1, retain=True)
        c.on_socket_open = self._opened
        c.on_socket_close = self._closed
        c.on_socket_register_write = self._want_write
        c.on_socket_unregister_write = self._wrote

        def on_connect(cl: mqtt.Client, ud: object, flags: object, rc: Any, props: object) -> None:
            seat.connected = not rc.is_failure
            if seat.connected:
                cl.publish(status_topic(seat.site, seat.seat), "online", qos=1, retain=True)
                for _, topic, payload, retain in seat.early:
                    cl.publish(topic, payload, qos=1, retain=retain)
                    seat.early_ids.append(json.loads(payload)["id"])
                seat.early = []

        def on_publish(cl: mqtt.Client, ud: object, mid: int, rc: Any, props: object) -> None:
            self.unacked[i] -= 1

        c.on_connect = on_connect
        c.on_publish = on_publish
        return c

    # paho's external-loop callbacks: the selector watches each client's socket for what paho needs
    def _opened(self, client: mqtt.Client, userdata: object, sock: Any) -> None:
        self.sel.register(sock, selectors.EVENT_READ, client)

    def _closed(self, client: mqtt.Client, userdata: object, sock: Any) -> None:
        try:
            self.sel.unregister(sock)
        except (KeyError, ValueError):
            pass

    def _want_write(self, client: mqtt.Client, userdata: object, sock: Any) -> None:
        self.sel.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, client)

    def _wrote(self, client: mqtt.Client, userdata: object, sock: Any) -> None:
        self.sel.modify(sock, selectors.EVENT_READ, client)

    def run(self, start_at: float, speed: float, horizon: float) -> None:
        for i, seat in enumerate(self.seats):
            seat.client = self._client(i, seat)
            self.unacked[i] = 0
            seat.client.connect(self.broker.host, self.broker.port, keepalive=60)
            self._pump(0.0)
        while any(not s.connected for s in self.seats):
            self._pump(0.05)
        while time.time() < start_at:
            self._pump(min(0.05, max(0.0, start_at - time.time())))
        heads = [0] * len(self.seats)
        last_misc = time.monotonic()
        while True:
            sim = (time.time() - start_at) * speed
            pending = False
            for i, seat in enumerate(self.seats):
                q, h = seat.queue, heads[i]
                # bounded in flight per client: a real station waits for its outbox like this
                while h < len(q) and q[h][0] <= sim and self.unacked[i] < 100:
                    _, topic, payload, retain = q[h]
                    assert seat.client is not None  # noqa: S101
                    seat.client.publish(topic, payload, qos=1, retain=retain)
                    self.unacked[i] += 1
                    if not retain:
                        seat.published[json.loads(payload)["id"]] = time.time()
                    h += 1
                heads[i] = h
                pending = pending or h < len(q) or self.unacked[i] > 0
            if not pending and sim >= horizon:
                break
            self._pump(0.005)
            if time.monotonic() - last_misc > 1.0:
                for seat in self.seats:
                    assert seat.client is not None  # noqa: S101
                    seat.client.loop_misc()
                last_misc = time.monotonic()
        for seat in self.seats:
            assert seat.client is not None  # noqa: S101
            seat.client.disconnect()
        self._pump(0.2)

    def _pump(self, timeout: float) -> None:
        for key, mask in self.sel.select(timeout):
            client: mqtt.Client = key.data
            if mask & selectors.EVENT_READ:
                client.loop_read()
            if mask & selectors.EVENT_WRITE:
                client.loop_write()


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def worker_main(args: argparse.Namespace) -> int:
    """One fleet process: seats [first, first+count), results as JSON to args.out."""
    _raise_nofile()
    templates = analyse_templates(Path(args.templates))
    rng = random.Random(args.seed * 100_003 + args.first)  # noqa: S311 - a simulation, not a secret
    seats = []
    for n in range(args.first, args.first + args.count):
        seat = Seat(args.site, f"s{n:05d}", templates, rng)
        # the whole timeline is squeezed into `horizon` sim-seconds; `offset` places the seat mid-cycle
        seat.plan(args.horizon, rng.uniform(0, 300.0) if args.steady else 0.0, args.start_at, args.speed)
        seats.append(seat)
    FleetProcess(BrokerConfig.from_url(args.broker), seats).run(args.start_at, args.speed, args.horizon)
    published = {k: v for s in seats for k, v in s.published.items()}
    early = [k for s in seats for k in s.early_ids]
    Path(args.out).write_text(
        json.dumps({"published": published, "early": early, "calls": sum(s.calls for s in seats)})
    )
    return 0


def run_fleet(
    broker_url: str,
    *,
    seats: int,
    horizon: float,
    speed: float = 1.0,
    processes: int = 4,
    site: str = "fleet",
    templates: Path,
    workdir: Path,
    seed: int = 1,
    steady: bool = True,
) -> tuple[dict[str, float], list[str], float]:
    """Run `seats` simulated stations for `horizon` seconds of sim time; returns (event id -> publish time within
    the window, ids of the logins sent before it, start).

    The processes connect first and then start together, so connection set-up is not part of the run."""
    analyse_templates(templates)  # once, before the processes read the cache
    start_at = time.time() + 5.0 + seats / 400.0
    procs = []
    per = -(-seats // processes)
    for p in range(processes):
        first, count = p * per, min(per, seats - p * per)
        if count <= 0:
            break
        out = workdir / f"fleet-{p}.json"
        cmd = [sys.executable, __file__, "--worker", "--broker", broker_url, "--site", site, "--first", str(first),
               "--count", str(count), "--horizon", str(horizon), "--speed", str(speed), "--start-at", str(start_at),
               "--templates", str(templates), "--seed", str(seed), "--out", str(out)]  # fmt: skip
        if steady:
            cmd.append("--steady")
        procs.append((subprocess.Popen(cmd), out))
    published: dict[str, float] = {}
    early: list[str] = []
    for proc, out in procs:
        if proc.wait() != 0:
            raise RuntimeError(f"a fleet process failed (exit {proc.returncode})")
        result = json.loads(out.read_text())
        published.update(result["published"])
        early += result["early"]
    return published, early, start_at


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    ap.add_argument("--site", default="fleet")
    ap.add_argument("--seats", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=60.0, help="sim seconds to run")
    ap.add_argument("--speed", type=float, default=1.0)
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("--first", "--count", "--seed"):
        ap.add_argument(name, type=int, default=1, help=argparse.SUPPRESS)
    for name in ("--horizon", "--start-at"):
        ap.add_argument(name, type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--templates", default="", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    ap.add_argument("--steady", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.worker:
        return worker_main(args)
    with tempfile.TemporaryDirectory() as tmp:
        published, early, _ = run_fleet(
            args.broker,
            seats=args.seats,
            horizon=args.seconds,
            speed=args.speed,
            processes=args.processes,
            site=args.site,
            templates=Path(tmp),
            workdir=Path(tmp),
        )
    print(f"{len(published) + len(early)} events published by {args.seats} seats")
    return 0


if __name__ == "__main__":
    sys.exit(main())
