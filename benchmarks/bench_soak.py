"""Soak: honest seats and junk seats on one site while the broker and the hub are each killed once.

    python benchmarks/bench_soak.py [--seats 200] [--junk 0.1] [--junk-factor 10] [--minutes 5] [--speed 4]
                                    [--db sqlite|postgres]

Everything is real and on this machine: Mosquitto with the shipped production config (TLS, a password per seat,
the site ACL: deploy/mosquitto/provision_site.py), the hub as a `qa-hub serve --no-http` process (SQLite, or
PostgreSQL with fsync on in its own cluster), and every honest seat the station's own transport: its durable
outbox (edge_agent/outbox.py) and hub-confirmed publisher (edge_agent/mqtt_publisher.py), publishing real-speech
calls analysed once by the Pipeline (benchmarks/fleet.py templates), time compressed by `--speed`.

- `--junk` of the seats send junk at `--junk-factor` times an honest seat's event rate, on their own topics with
  their own credentials (what a compromised or broken station can do): the payloads issue 19 measured (seq 2^63,
  start 1e400, duration 1e15, ts year 0001 and 9999, 30,000-deep nesting, a lone surrogate, schema 1.0, NaN,
  bad JSON, oversized), events and summaries for honest seats' call ids, and fabricated calls naming honest
  agents.
- At a third of the run the broker is SIGKILLed and restarted 5 s later; at two thirds the hub likewise.
- Then the honest seats stop producing and drain: every outbox must empty (the hub confirmed every row).

Prints, and exits 1 unless all hold: honest events emitted / stored / lost / stored twice / stored but never
emitted (forged onto an honest seat); completed honest calls / scored / attributed to their seat's agent with
all their events (no foreign event merged in); junk messages sent and the hub's rejections by reason.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.fleet import CallTemplate, analyse_templates  # noqa: E402
from edge_agent.mqtt_publisher import Publisher  # noqa: E402
from edge_agent.outbox import Outbox  # noqa: E402
from edge_agent.schema import MAX_PAYLOAD_BYTES, ModelRef, envelope, event_topic, new_id  # noqa: E402
from edge_agent.wire import AgentLogin  # noqa: E402
from hub.local_broker import PRODUCTION_CONF, Mosquitto, mosquitto_binary, site_broker, site_password  # noqa: E402
from hub.storage import HubStore, Store, scoped_call_id  # noqa: E402

log = logging.getLogger("soak")

SITE = "soak"
HONEST_ROLE, JUNK_ROLE = "honest", "junk"


def seat_name(i: int) -> str:
    return f"desk-{i:03d}"


def agent_of(seat: str) -> str:
    return f"agent-{seat}"


def call_id_of(seat: str, n: int) -> str:
    # predictable on purpose: an attacker who guesses another seat's call ids is the case to hold against
    return f"{seat}-c{n}"


# --- honest seats: the station's transport -------------------------------------------------------------------


def honest_main(args: argparse.Namespace) -> int:
    """One process of honest seats: each an outbox and a publisher, fed on the seat's timeline."""
    site_dir, out = Path(args.site_dir), Path(args.out)
    templates = [
        CallTemplate(t["duration"], [(e[0], e[1]) for e in t["events"]], t["models"])
        for t in json.loads(Path(args.templates).read_text())
    ]
    seats = args.seat_names.split(",")
    rng = random.Random(args.index)  # noqa: S311 - a workload, not crypto
    start_at, speed, horizon = args.start_at, args.speed, args.seconds * args.speed
    plan: list[tuple[float, str, dict[str, Any], str | None, dict[str, Any] | None]] = []
    for seat in seats:
        plan.append((0.0, seat, AgentLogin(start=0.0, end=0.0).to_dict(), None, None))
        t, n = rng.uniform(0, 30.0), 0
        while True:
            tpl = rng.choice(templates)
            if t + tpl.duration > horizon:
                break  # only whole calls: every call the seat starts completes within the run
            for at, ev in tpl.events:
                plan.append((t + at, seat, ev, call_id_of(seat, n), tpl.models.get(ev["type"])))
            n += 1
            t += tpl.duration + rng.uniform(5.0, 30.0)
    plan.sort(key=lambda p: p[0])
    outboxes = {s: Outbox(out / f"{s}.outbox.sqlite") for s in seats}
    pubs = {
        s: Publisher(outboxes[s], site=SITE, seat=s, broker=site_broker(site_dir, args.port, s), resend_s=15.0)
        for s in seats
    }
    for p in pubs.values():
        p.start()
    emitted = (out / f"emitted-{args.index}.jsonl").open("a")
    for at, seat, ev, call_id, model in plan:
        delay = start_at + at / speed - time.time()
        if delay > 0:
            time.sleep(delay)
        env = envelope(
            ev,
            seat=seat,
            site=SITE,
            call_id=call_id,
            agent_id=agent_of(seat),
            model=ModelRef(**model) if model else None,
            # the shift's login dated an hour back: a call starts at its summary's time less its duration, which
            # is call time, and `--speed` compresses the wall clock, so the first calls would predate a login
            # sent now and the hub would rightly attribute them to nobody
            ts=time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(start_at - 3600)) if call_id is None else None,
        )
        stamped = outboxes[seat].put(env)
        pubs[seat].notify()
        emitted.write(json.dumps({"id": stamped.id, "seat": seat, "call": call_id, "type": stamped.type}) + "\n")
    emitted.close()
    (out / f"produced-{args.index}").touch()
    # drain: until the coordinator says stop (it waits for every process's outboxes to empty)
    stop = out / "stop"
    while not stop.exists():
        left = sum(len(o) for o in outboxes.values())
        (out / f"left-{args.index}.json").write_text(
            json.dumps({"left": left, "dropped": sum(o.dropped for o in outboxes.values())})
        )
        time.sleep(1.0)
    for p in pubs.values():
        p.stop()
    for o in outboxes.values():
        o.close()
    return 0


# --- junk seats -------------------------------------------------------------------------------------------


def junk_payloads(seat: str, seq: int, rng: random.Random, honest: list[str]) -> tuple[str, bytes]:
    """One junk message (its kind, its payload) from `seat`, cycling through what issue 19 measured."""

    def env(ev: dict[str, Any], call_id: str | None = None, agent_id: str | None = None, **bad: Any) -> dict[str, Any]:
        # a valid envelope first (the station's own constructor checks it), then the junk written over it
        e = envelope(ev, seat=seat, site=SITE, call_id=call_id, agent_id=agent_id)
        return {**e.to_dict(), "seq": seq, **bad}

    speech = {"type": "speech", "speaker": "agent", "start": 1.0, "end": 2.0}
    summary = {"type": "call_summary", "start": 0.0, "end": 60.0, "duration": 60.0}
    victim = rng.choice(honest)
    victim_call = call_id_of(victim, rng.randrange(0, 6))
    kinds: list[tuple[str, Any]] = [
        ("seq_2^63", env(speech, new_id(), seq=2**63)),
        ("start_1e400", json.dumps(env(speech, new_id())).replace('"start": 1.0', '"start": 1e400')),
        ("duration_1e15", env(summary, new_id(), duration=1e15, end=1e15)),
        ("ts_0001", env(speech, new_id(), ts="0001-01-01T00:00:00.000Z")),
        ("ts_9999", env(summary, new_id(), ts="9999-12-31T23:59:59.000Z")),
        ("nesting_30000", "[" * 30000 + "]" * 30000),
        ("lone_surrogate", json.dumps(env(speech, new_id(), speaker="\ud800"))),
        ("schema_1.0", env(speech, new_id(), schema=1.0)),
        ("nan", json.dumps(env(speech, new_id(), end=float("nan")))),
        ("bad_json", "{not json"),
        ("oversized", "x" * (MAX_PAYLOAD_BYTES + 1)),
        ("foreign_call_event", env(speech, victim_call)),
        ("foreign_call_summary", env(summary, victim_call, agent_of(seat))),
        ("fabricated_call", env(summary, new_id(), agent_of(victim))),
    ]
    kind, body = kinds[seq % len(kinds)]
    text = body if isinstance(body, str) else json.dumps(body)
    return kind, text.encode("utf-8", "surrogatepass")


def junk_main(args: argparse.Namespace) -> int:
    site_dir = Path(args.site_dir)
    seats = args.seat_names.split(",")
    honest = args.honest.split(",")
    rng = random.Random(99)  # noqa: S311 - a workload, not crypto
    clients = []
    for s in seats:
        cfg = site_broker(site_dir, args.port, s)
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"junk-{s}")
        c.username_pw_set(cfg.username, cfg.password)
        c.tls_set(ca_certs=cfg.ca_certs)
        c.reconnect_delay_set(1, 5)
        c.max_queued_messages_set(10000)  # a broker outage must not grow the junk sender without bound
        c.connect_async("127.0.0.1", args.port)
        c.loop_start()
        clients.append((s, c))
    sent: Counter[str] = Counter()
    seq = 0
    interval = 1.0 / args.rate  # per seat
    end = args.start_at + args.seconds
    t = max(time.time(), args.start_at)
    while t < end:
        for s, c in clients:
            seq += 1
            kind, payload = junk_payloads(s, seq, rng, honest)
            if c.publish(event_topic(SITE, s), payload, qos=1).rc == mqtt.MQTT_ERR_SUCCESS:
                sent[kind] += 1
        t += interval
        time.sleep(max(0.0, t - time.time()))
    time.sleep(2.0)
    for _, c in clients:
        c.disconnect()
        c.loop_stop()
    Path(args.out, "junk-sent.json").write_text(json.dumps(sent))
    return 0


# --- the coordinator -------------------------------------------------------------------------------------


class Hub:
    def __init__(self, db: str, port: int, site_dir: Path, logdir: Path) -> None:
        self.db, self.port, self.site_dir, self.logdir = db, port, site_dir, logdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        qa_hub = str(Path(sys.executable).parent / "qa-hub")
        url = f"mqtts://hub:{site_password(self.site_dir, 'hub')}@127.0.0.1:{self.port}"
        # the site CA through OpenSSL's own variable: the hub's TLS context loads the default verify paths
        env = {**os.environ, "SSL_CERT_FILE": str(self.site_dir / "ca.crt")}
        logf = (self.logdir / f"hub{self.starts}.log").open("ab")
        self.starts += 1
        cmd = [qa_hub, "--db", self.db, "serve", "--broker", url, "--no-http", "--client-id", "hub"]
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def provision(out: Path, seats: list[str]) -> None:
    script = ROOT / "deploy" / "mosquitto" / "provision_site.py"
    cmd = [sys.executable, str(script), "--site", SITE, "--seats", *seats, "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)


def database(kind: str, tmp: Path) -> tuple[str, Any]:
    if kind == "sqlite":
        return str(tmp / "hub.sqlite"), None
    from tests.hub_support import start_cluster

    base = Path(tempfile.mkdtemp(prefix="callqa-pg-"))  # its own: the postgres user must own it (as bench_scale)
    server = start_cluster(base, fsync=True)
    return server.dsn(), server


def verify(store: Store, out: Path, honest: list[str]) -> dict[str, Any]:
    emitted: dict[str, dict[str, Any]] = {}
    for f in sorted(out.glob("emitted-*.jsonl")):
        for line in f.read_text().splitlines():
            row = json.loads(line)
            emitted[row["id"]] = row
    db = store.db
    marks = ", ".join("?" * len(honest))  # placeholders only; the names are parameters
    sql = f"SELECT id, seat, seq, call_id FROM events WHERE site = ? AND seat IN ({marks})"  # noqa: S608
    rows = db.all(sql, [SITE, *honest])
    stored = {str(r[0]) for r in rows}
    per_seq = Counter((r[1], r[2]) for r in rows)
    calls_done = {r["call"]: r["seat"] for r in emitted.values() if r["type"] == "call_summary"}
    per_call = Counter(r["call"] for r in emitted.values() if r["call"] is not None)
    scored = {str(r[0]) for r in db.all("SELECT DISTINCT call_id FROM scores WHERE current = 1")}
    calls = {str(r[0]): (r[1], r[2], int(r[3])) for r in db.all("SELECT call_id, seat, agent_id, n_events FROM calls")}

    def row_of(call: str, seat: str) -> str:
        # a junk seat that named this call id first holds the plain id; the seat's own call is kept apart
        return call if calls.get(call, (seat,))[0] == seat else scoped_call_id(call, SITE, seat)

    where = {c: row_of(c, seat) for c, seat in calls_done.items()}
    wrong = [
        c
        for c, seat in calls_done.items()
        if where[c] not in calls or calls[where[c]][1] != agent_of(seat) or calls[where[c]][2] != per_call[c]
    ]
    return {
        "emitted": len(emitted),
        "stored": len(stored & emitted.keys()),
        "lost": len(emitted.keys() - stored),
        "stored_twice": sum(1 for n in per_seq.values() if n > 1),
        "stored_not_emitted": len(stored - emitted.keys()),
        "calls_completed": len(calls_done),
        "calls_scored": sum(1 for c in calls_done if where[c] in scored),
        "calls_kept_apart": sum(1 for c in calls_done if where[c] != c),
        "calls_wrong": len(wrong),
        "rejected": store.rejected(),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--role", choices=(HONEST_ROLE, JUNK_ROLE), help=argparse.SUPPRESS)
    for hidden in ("--site-dir", "--out", "--templates", "--seat-names", "--honest"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    p.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--rate", type=float, default=1.0, help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--seats", type=int, default=200)
    p.add_argument("--junk", type=float, default=0.1, help="share of seats sending junk")
    p.add_argument("--junk-factor", type=float, default=10.0, help="junk rate over an honest seat's event rate")
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--speed", type=float, default=4.0, help="call time compressed this much (1: real time)")
    p.add_argument("--procs", type=int, default=4, help="processes the honest seats are spread over")
    p.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--drain-s", type=float, default=240.0, help="how long the outboxes may take to empty")
    p.add_argument("--work", type=Path, help="keep files here (default: a temporary directory)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.role == HONEST_ROLE:
        return honest_main(args)
    if args.role == JUNK_ROLE:
        return junk_main(args)
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
        return soak(args, args.work)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        return soak(args, Path(tmp))


def soak(args: argparse.Namespace, tmp: Path) -> int:
    binary = mosquitto_binary()
    if binary is None:
        print("mosquitto is not installed (apt-get install mosquitto)", file=sys.stderr)
        return 2
    seats = [seat_name(i) for i in range(args.seats)]
    n_junk = max(1, round(args.seats * args.junk))
    junk, honest = seats[:n_junk], seats[n_junk:]
    site_dir, out = tmp / "site", tmp / "out"
    out.mkdir(parents=True, exist_ok=True)
    for f in out.glob("*"):
        f.unlink()
    log.info("provisioning %d seats", len(seats))
    provision(site_dir, seats)
    templates = analyse_templates(tmp / "templates")
    tpl_path = tmp / "templates" / "templates.json"
    events_per_s = sum(len(t.events) for t in templates) / sum(t.duration + 17.5 for t in templates) * args.speed
    junk_rate = events_per_s * args.junk_factor
    db, server = database(args.db, tmp)
    store = HubStore(db)
    for s in honest:
        store.put_agent(agent_of(s), agent_of(s), None)  # the hub's roster: who may be logged in at a seat
    store.close()
    broker = Mosquitto(tmp / "broker", binary, PRODUCTION_CONF, site_dir=site_dir)
    broker.start()
    hub = Hub(db, broker.port, site_dir, tmp)
    hub.start()
    seconds = args.minutes * 60
    start_at = time.time() + 10.0  # every process up and connected first
    me = [sys.executable, str(Path(__file__).resolve())]
    common = ["--site-dir", str(site_dir), "--out", str(out), "--port", str(broker.port)]
    common += ["--start-at", str(start_at), "--speed", str(args.speed)]
    procs = []
    chunk = -(-len(honest) // args.procs)
    for i in range(args.procs):
        names = honest[i * chunk : (i + 1) * chunk]
        if names:
            cmd = [*me, "--role", HONEST_ROLE, "--index", str(i), "--templates", str(tpl_path)]
            cmd += ["--seat-names", ",".join(names), *common, "--seconds", str(seconds)]
            procs.append(subprocess.Popen(cmd))
    jcmd = [*me, "--role", JUNK_ROLE, "--seat-names", ",".join(junk), "--honest", ",".join(honest), *common]
    jcmd += ["--rate", str(junk_rate), "--seconds", str(seconds)]
    junk_proc = subprocess.Popen(jcmd)
    log.info(
        "%d honest seats (%.2f events/s each), %d junk seats at %.1f messages/s each, %.0f s, speed %.0fx",
        len(honest),
        events_per_s,
        len(junk),
        junk_rate,
        seconds,
        args.speed,
    )
    chaos = [(seconds / 3, "broker"), (2 * seconds / 3, "hub")]
    for at, what in chaos:
        time.sleep(max(0.0, start_at + at - time.time()))
        log.info("SIGKILL %s", what)
        if what == "broker":
            broker.kill()
            time.sleep(5.0)
            broker.start()
        else:
            hub.kill()
            time.sleep(5.0)
            hub.start()
    junk_proc.wait()
    deadline = time.time() + seconds + 60
    while len(list(out.glob("produced-*"))) < len(procs) and time.time() < deadline:
        time.sleep(1.0)
    drained_at = time.time() + args.drain_s
    left = -1
    while time.time() < drained_at:
        states = [json.loads(f.read_text()) for f in out.glob("left-*.json")]
        left = sum(s["left"] for s in states) if len(states) == len(procs) else -1
        if left == 0:
            break
        time.sleep(2.0)
    drain_s = args.drain_s - (drained_at - time.time())
    dropped = sum(json.loads(f.read_text())["dropped"] for f in out.glob("left-*.json"))
    (out / "stop").touch()
    for pr in procs:
        pr.wait(60)
    check = HubStore(db)
    try:  # the last summaries scored: the hub's durable work list empties (failed calls stay, and count below)
        until = time.time() + 120
        while check.db.scalar("SELECT COUNT(*) FROM score_queue WHERE failed = 0") and time.time() < until:
            time.sleep(1.0)
    finally:
        check.close()
    hub.kill(signal.SIGTERM)
    broker.stop()
    store = HubStore(db)
    try:
        r = verify(store, out, honest)
    finally:
        store.close()
        if server is not None:
            server.stop()
    sent = json.loads((out / "junk-sent.json").read_text()) if (out / "junk-sent.json").exists() else {}
    print(
        f"\nsoak: {len(honest)} honest seats, {len(junk)} junk seats, {seconds:.0f} s at {args.speed:.0f}x, {args.db}"
    )
    print("  broker SIGKILLed at 1/3, hub SIGKILLed at 2/3, each restarted after 5 s")
    print(f"  outboxes left after drain: {left} (drain took {drain_s:.0f} s), outbox drops: {dropped}")
    print(f"  honest events emitted {r['emitted']}, stored {r['stored']}, lost {r['lost']},")
    print(f"    stored twice {r['stored_twice']}, stored on honest seats but never emitted {r['stored_not_emitted']}")
    print(
        f"  honest calls completed {r['calls_completed']}, scored {r['calls_scored']}, altered {r['calls_wrong']}"
        f" (kept apart from a junk seat that named their id first: {r['calls_kept_apart']})"
    )
    print(f"  junk sent {sum(sent.values())}: " + ", ".join(f"{k} {v}" for k, v in sorted(sent.items())))
    print("  hub rejections by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(r["rejected"].items())))
    ok = (
        left == 0
        and r["lost"] == 0
        and r["stored_twice"] == 0
        and r["stored_not_emitted"] == 0
        and r["calls_scored"] == r["calls_completed"] > 0
        and r["calls_wrong"] == 0
        and dropped == 0
    )
    ok = ok and junk_proc.returncode == 0 and sum(sent.values()) > 0
    print("  PASS" if ok else "  FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
