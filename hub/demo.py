"""`callqa-demo`: a whole site on one machine, no root, no network.

    callqa-demo [--stations 4] [--minutes 2] [--http 127.0.0.1:8080] [--dir demo] [--broker auto|mosquitto|embedded]
                [--seconds N]

1. Composes one real-speech call per station from ../shared/data (../shared/tools/compose_calls.py: real
   speakers, telephone band, line noise), once; later runs reuse them.
2. Starts a broker on a free loopback port: Mosquitto with the shipped config when it is installed, otherwise
   the embedded one (hub/local_broker.py).
3. Starts the hub on SQLite (`DIR/hub.sqlite`): ingest, scoring with the shipped scorecard, the API and the
   dashboard; creates a site, two teams (stations alternate between them), their agents and the demo users
   (printed): an admin, a lead per team, two QA reviewers, an agent per team.
4. Backfills `--history-days` of past calls (`HISTORY`: 32 or more other real-speech calls of four lengths, speakers and
   line noises, so scores spread and different rules fire together; analysed only while a station still has to
   send its past, one process per core) through each station's outbox, so the dashboard opens on trends, not on
   an empty page. Once they are scored, gives every scored call simulated outcomes with planted rules, labelled
   as simulated (`seed_outcomes`, hub/simulated_outcomes.py: what /validity should recover), and puts disputes
   (open, rejected, upheld), an override and two reviewers' calibrations in flight (`seed_reviews`), each once
   per demo directory.
5. Starts N stations, each the real station runtime (firmware_py/runtime.py: outbox, hub-confirmed MQTT
   delivery, health, live signals) analysing its call file at real time over and over, one call per pass, the
   way a CTI integration would start and end calls.
6. Prints the dashboard URL, then runs until Ctrl-C (or `--seconds`), and says what the hub stored.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import secrets
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("callqa-demo")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CALLQA_SHARED", ROOT.parent / "shared"))
SITE = "demo"
TEAMS = (("team-a", "Team A"), ("team-b", "Team B"))
NOISES = ("babble", "car", "restaurant", "street", "train", "station", "airport", "exhibition")
# past calls in batches of different lengths (x --minutes), seeds and line noises, so their scores spread
HISTORY = ((0.5, 9, NOISES[:3]), (1.0, 10, NOISES[2:5]), (1.5, 11, NOISES[3:6]), (3.0, 13, NOISES[5:]))
HISTORY_CALLS = 8
"""Distinct past calls per batch (at least; one per station where there are more): the simulated outcomes'
validity report separates rules only across calls where different rules fire, and every backfilled day
repeats these calls, so their number, not the days', is what varies which rules fire together."""
HISTORY_DAYS = 28
"""`--history-days`: 4 weeks, about 350 past calls with 4 stations, enough for the validity report to recover
every planted rule of the simulated outcomes (with 3 weeks, 260 calls, it misses a planted one for about 1 seed
in 20; tests/test_demo_outcomes.py)."""


class DemoError(RuntimeError):
    pass


def compose(calls_dir: Path, n: int, minutes: float, seed: int = 5, noises: Sequence[str] = NOISES[:4]) -> list[Path]:
    """`n` composed real-speech calls (reused when already there): random speakers, turns, talk-overs, dead air
    and line noise (one of `noises` per call) from `seed`."""
    import subprocess

    wavs = sorted(calls_dir.glob("call*.wav"))
    if len(wavs) >= n:
        return wavs[:n]
    tool = SHARED / "tools" / "compose_calls.py"
    noise = [SHARED / "data" / "noise" / f"{name}.flac" for name in noises]
    if not tool.exists() or not all(p.exists() for p in noise):
        raise DemoError(f"the real-speech data is not at {SHARED} (set CALLQA_SHARED to the shared/ folder)")
    cmd = [sys.executable, str(tool), str(SHARED / "tools" / "dev_speakers.json"), str(calls_dir),
           "--calls", str(n), "--minutes", str(minutes), "--seed", str(seed), "--noise", *map(str, noise)]  # fmt: skip
    log.info("composing %d real-speech calls of %g min into %s", n, minutes, calls_dir)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603 - our own tool
    if done.returncode:
        raise DemoError(f"composing the calls failed: {done.stderr.strip().splitlines()[-1:]}")
    return sorted(calls_dir.glob("call*.wav"))[:n]


def start_broker(kind: str, workdir: Path) -> tuple[Any, str]:
    from hub.local_broker import EmbeddedBroker, Mosquitto, mosquitto_binary

    binary = mosquitto_binary() if kind in ("auto", "mosquitto") else None
    if kind == "mosquitto" and binary is None:
        raise DemoError("mosquitto is not installed (apt-get install mosquitto), or use --broker embedded")
    if binary is not None:
        broker: Any = Mosquitto(workdir / "mosquitto", binary)
        broker.start()
        return broker, f"Mosquitto ({binary})"
    broker = EmbeddedBroker()
    broker.start()
    return broker, "embedded (amqtt)" + (" as Mosquitto is not installed" if kind == "auto" else "")


def team_of(i: int) -> str:
    """Stations alternate between the teams, so every team has agents from two stations on."""
    return TEAMS[i % len(TEAMS)][0]


def seed_people(store: Any, n: int, logins: Path) -> dict[str, str]:
    """Site, two teams, their agents and the demo users: an admin, a lead per team, two QA reviewers and an
    agent per team; returns username -> password (each made once, kept in `logins`, readable by this user
    only; users an older demo directory lacks are added)."""
    from hub.auth import create_user, get_user

    store.put_site(SITE, "Demo contact centre", os.environ.get("QA_HUB_TZ", "UTC"))
    for team, name in TEAMS:
        store.put_team(team, name, SITE)
    for i in range(n):
        store.put_agent(agent_id(i), f"Agent {i + 1:02d}", team_of(i))
    out: dict[str, str] = {}
    if logins.exists():
        out = dict(line.split(" ", 1) for line in logins.read_text().splitlines() if " " in line)
    users: list[tuple[str, str, dict[str, str]]] = [
        ("admin", "admin", {}),
        *((f"lead-{team[-1]}", "lead", {"team_id": team}) for team, _ in TEAMS),
        ("reviewer1", "reviewer", {}),
        ("reviewer2", "reviewer", {}),
        *((agent_id(i), "agent", {"agent_id": agent_id(i)}) for i in range(min(n, len(TEAMS)))),
    ]
    for name, role, kw in users:
        if get_user(store, name) is None:
            out[name] = secrets.token_urlsafe(9)
            create_user(store, name, out[name], role, **kw)
    logins.touch(mode=0o600)
    logins.write_text("".join(f"{k} {v}\n" for k, v in out.items()))
    return out


def seed_reviews(store: Any, rng: random.Random) -> dict[str, int]:
    """Disputes (open, rejected, upheld with corrected points), an override, two reviewers' calibrations, a
    coaching session and a kudos on scored calls, through the same domain functions the API uses, so /reviews,
    /calibration, the call and agent pages show work in flight on first start. Does nothing where any review or
    calibration exists already (an earlier run, or people at work): the demo never adds to what people did."""
    from hub import calibration, coaching, reviews
    from hub.auth import get_user

    if store.db.scalar("SELECT (SELECT COUNT(*) FROM reviews) + (SELECT COUNT(*) FROM calibrations)"):
        return {}

    def user(name: str) -> Any:
        u = get_user(store, name)
        if u is None:
            raise DemoError(f"demo user {name} is missing")
        return u

    def calls_of(agent: str) -> list[str]:
        """The agent's scored calls, worst first."""
        rows = store.db.all(
            "SELECT call_id FROM calls WHERE agent_id = ? AND score IS NOT NULL ORDER BY score, started", (agent,)
        )
        return [r[0] for r in rows]

    def worst_rule(call_id: str) -> str:
        """The rule that cost the call most (the first rule where nothing did): what an agent would dispute."""
        row = store.db.one(
            "SELECT rule_id FROM call_rules WHERE call_id = ? ORDER BY auto_points, rule_id LIMIT 1", (call_id,)
        )
        return str(row[0])

    done = {"disputes": 0, "resolved": 0, "overrides": 0, "calibrated_calls": 0}
    reasons = ("The customer kept talking over me, not the other way round.",
               "The silence was me looking up the customer's order, as the script says.",
               "The line was noisy; I was answering, not interrupting.")  # fmt: skip
    for i, (team, _) in enumerate(TEAMS):
        agent = agent_id(i)
        calls = calls_of(agent)
        if not calls or get_user(store, agent) is None:
            continue
        me, lead = user(agent), user(f"lead-{team[-1]}")
        # an open dispute of one rule on the agent's worst call: waiting for the lead
        reviews.dispute(store, me, calls[0], worst_rule(calls[0]), reasons[i % len(reasons)])
        done["disputes"] += 1
        if len(calls) > 2 and i == 0:
            # one resolved each way: a whole call rejected, a rule upheld with corrected points
            r = reviews.dispute(store, me, calls[1], None, "I followed the script on this call.")
            reviews.resolve(store, lead, r.id, "rejected", "Listened to it: the deductions stand.")
            rule = worst_rule(calls[2])
            r = reviews.dispute(store, me, calls[2], rule, reasons[(i + 1) % len(reasons)])
            reviews.resolve(store, lead, r.id, "upheld", "Agreed, the customer's line caused it.", points=0.0)
            done["disputes"] += 2
            done["resolved"] += 2
    # a reviewer cancels the biggest deduction on a call nobody disputed
    row = store.db.one(
        "SELECT k.call_id, k.rule_id FROM call_rules k JOIN calls c ON c.call_id = k.call_id"
        " WHERE k.auto_points < 0 AND c.score IS NOT NULL"
        " AND k.call_id NOT IN (SELECT call_id FROM reviews) ORDER BY k.auto_points, c.started LIMIT 1"
    )
    if row is not None:
        reviews.override(store, user("reviewer1"), row[0], row[1], 0.0,
                         "Checked the recording: the rule misfired on line noise.")  # fmt: skip
        done["overrides"] += 1
    # both reviewers calibrate a few calls rule by rule, mostly agreeing with the machine, not always
    for (call_id,) in store.db.all(
        "SELECT call_id FROM calls WHERE score IS NOT NULL ORDER BY score DESC, started LIMIT 3"
    ):
        auto = dict(store.db.all("SELECT rule_id, auto_points FROM call_rules WHERE call_id = ?", (call_id,)))
        for name, spread in (("reviewer1", (0, 0, 0, 0, -1)), ("reviewer2", (0, 0, 0, -2, 1))):
            points = {rule: float(p) + rng.choice(spread) for rule, p in auto.items()}
            calibration.submit(store, user(name), call_id, points)
        done["calibrated_calls"] += 1
    # team A's lead has coached their agent on the two weakest rules of the last 4 weeks and recognised their
    # best call, so the agent page opens on a session to acknowledge and a trend since it
    agent, lead = agent_id(0), user("lead-a")
    suggested = coaching.suggestion(store, lead, agent, datetime.now(UTC).date())
    weakest = [w["rule"] for w in suggested["weakest"][:2]]
    if weakest:
        coaching.open_session(store, lead, agent, weakest, "Let the customer finish before answering;"
                              " fill silences by saying what you are doing.", "Opened by the demo.")  # fmt: skip
        done["coaching_sessions"] = 1
    best = calls_of(agent)[-1:]
    if best:
        coaching.give_kudos(store, lead, best[0], "Calm and clear all the way through: a model call.")
        done["kudos"] = 1
    return done


def seed_outcomes(store: Any) -> int:
    """Simulated outcomes with planted rules (hub/simulated_outcomes.py) for every scored call, imported by the
    demo's admin and labelled as simulated, so /validity opens on a report whose truth is known; once per demo
    directory (returns 0 where they were imported before). Returns the calls given outcomes."""
    from hub import simulated_outcomes
    from hub.auth import get_user

    if simulated_outcomes.imported(store):
        return 0
    admin = get_user(store, "admin")
    if admin is None:
        raise DemoError("demo user admin is missing")
    result = simulated_outcomes.import_simulated(store, admin)
    if result.refused is not None:
        raise DemoError(f"the simulated outcomes were refused ({result.refused})")
    return result.imported


def seed_when_scored(store: Any, expect: int, stop: threading.Event, stall_s: float = 30.0) -> None:
    """Once `expect` calls are scored (the backfilled past, or the first live calls), or scoring has stalled
    for `stall_s` with some scored, import simulated outcomes (`seed_outcomes`) and put reviews and
    calibrations in flight (`seed_reviews`)."""
    last, since = -1, time.monotonic()
    while not stop.wait(1.0):
        scored = int(store.db.scalar("SELECT COUNT(*) FROM calls WHERE score IS NOT NULL") or 0)
        if scored != last:
            last, since = scored, time.monotonic()
        if scored >= expect or (scored and time.monotonic() - since > stall_s):
            break
    else:
        return
    try:
        n = seed_outcomes(store)
    except Exception as exc:  # the demo goes on without them; say why in one line
        log.warning("could not import simulated outcomes: %s", exc)
    else:
        if n:
            print(f"outcomes:  {n} calls given simulated outcomes (labelled simulated; which rules relate to them:"
                  " /validity)", flush=True)  # fmt: skip
    try:
        done = seed_reviews(store, random.Random(3))  # noqa: S311 - demo reviewers' leeway, not a secret
    except Exception as exc:  # the demo goes on without them; say why in one line
        log.warning("could not put reviews in flight: %s", exc)
        return
    if done:
        log.info("in flight: %s", ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in done.items()))


def history_wavs(workdir: Path, stations: int, minutes: float, per_batch: int = HISTORY_CALLS) -> list[Path]:
    """The past calls' real-speech files: `HISTORY`'s batches of `per_batch` calls (one per station where there
    are more), composed once (in parallel: each is a process)."""
    from concurrent.futures import ThreadPoolExecutor

    n = max(per_batch, stations)
    with ThreadPoolExecutor(len(HISTORY)) as pool:
        batches = pool.map(
            lambda k: compose(workdir / "history" / f"b{k}", n, minutes * HISTORY[k][0], seed=HISTORY[k][1],
                              noises=HISTORY[k][2]),
            range(len(HISTORY)),
        )  # fmt: skip
        return [wav for batch in batches for wav in batch]


def _analyse(wav: Path) -> tuple[list[Any], dict[str, Any]]:
    from edge_agent.audio import read_call
    from edge_agent.pipeline import Pipeline
    from edge_agent.wire import model_refs, to_wire

    pipeline = Pipeline()
    return to_wire(pipeline.run(read_call(wav, block_seconds=2.0))), model_refs(pipeline)


def analyse_history(wavs: list[Path], workers: int | None = None) -> list[tuple[list[Any], dict[str, Any]]]:
    """Each history call's wire events and the models behind them (analysed once, as fast as it goes: one
    process per core, as each pipeline's models run on one thread)."""
    n = min(len(wavs), workers or os.cpu_count() or 1)
    if n <= 1:
        return [_analyse(wav) for wav in wavs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawned, not forked: the demo's hub threads (ingest, http) hold locks a forked child would inherit
    with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_analyse, wavs))


def past_calls(
    seat: str,
    agent: str,
    history: Sequence[tuple[list[Any], dict[str, Any]]],
    days: int,
    rng: random.Random,
    now: float,
) -> list[list[Any]]:
    """A seat's past: the agent's login dated before the oldest past call, then per past call (real-speech
    analyses from `history`, 3-6 per weekday over the last `days` days before `now`) its unsequenced
    envelopes, each list to be queued at once. The calls are named by working day from the oldest, not by
    date: any 28 days hold 20 weekdays, so the default past (calls, ids, and so their simulated outcomes) is the
    same whatever day the demo first starts, and tests/test_demo_outcomes.py checks the report on that past."""
    from edge_agent.schema import envelope
    from edge_agent.wire import AgentLogin

    # the hub attributes a call to whoever was logged in at the seat when it started, never to the agent its
    # events name (docs/trust.md): so the agent's login goes first, dated before the oldest past call
    first = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now - (days + 1) * 86400))
    out = [[envelope(AgentLogin(start=0.0, end=0.0), seat=seat, site=SITE, call_id=None, agent_id=agent, ts=first)]]
    workday = 0
    for day in range(days, 0, -1):
        if time.gmtime(now - day * 86400).tm_wday >= 5:
            continue  # the centre is closed at weekends
        workday += 1
        for k in range(rng.randint(3, 6)):
            events, refs = rng.choice(history)
            end = now - day * 86400 + (9 * 3600 - now % 86400) + k * 2400 + rng.uniform(0, 600)
            ts = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(end))
            call_id = f"{seat}-h{workday:02d}{k}"
            out.append(
                [envelope(e, seat=seat, site=SITE, call_id=call_id, agent_id=agent, model=refs.get(e.type), ts=ts)
                 for e in events]
            )  # fmt: skip
    return out


def agent_id(i: int) -> str:
    return f"agent{i + 1:02d}"


def seat_pool(history: list[tuple[list[Any], dict[str, Any]]], i: int) -> list[tuple[list[Any], dict[str, Any]]]:
    """Station `i`'s past calls come from a different slice of the pool: the agents' trends differ."""
    return [h for k, h in enumerate(history) if (k + i) % 3 != 0] or history


class SimulatedSeat:
    """A real station runtime on a call file, with a driver thread that starts and ends one call per pass."""

    def __init__(self, i: int, wav: Path, broker_url: str, state: Path) -> None:
        import soundfile as sf

        from firmware_py import config as station_config
        from firmware_py.runtime import Station
        from firmware_py.sources import FileSource

        self.seat = f"seat{i + 1:02d}"
        self.agent = agent_id(i)
        self.duration = float(sf.info(str(wav)).duration)
        doc: dict[str, Any] = {
            "station": {"site": SITE, "seat": self.seat, "state_dir": str(state / self.seat)},
            "mqtt": {"broker": broker_url, "health_interval_s": 15},
            "lifecycle": {"auto": False},
            "local_api": {"enabled": False},
            "source": {"type": "file", "file": str(wav), "loop": True, "realtime": True},
        }
        cfg = station_config.validate(doc, "demo")
        self.station = Station(cfg, base_doc=doc, source=FileSource(wav, loop=True, realtime=True))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drive, name=f"drive-{self.seat}", daemon=True)
        self.calls = 0

    def backfill(self, history: list[tuple[list[Any], dict[str, Any]]], days: int, rng: random.Random) -> int:
        """Queue past calls (`past_calls`) in the station's outbox: they reach the hub through the same transport
        as live ones, so the dashboard opens on weeks of trends. Returns the number of calls."""
        batches = past_calls(self.seat, self.agent, history, days, rng, time.time())
        for envs in batches:
            self.station.outbox.put_many(envs)
        return len(batches) - 1

    def start(self) -> None:
        from edge_agent.commands import Login

        self.station.submit(Login(agent_id=self.agent), "demo")
        self.station.start()
        self._thread.start()

    def _drive(self) -> None:
        from edge_agent.commands import CallEnd, CallStart

        while not self._stop.is_set():
            call_id = f"{self.seat}-{int(time.time())}"
            self.station.submit(CallStart(call_id=call_id, agent_id=self.agent), "demo")
            if self._stop.wait(self.duration):
                return
            self.station.submit(CallEnd(call_id=call_id), "demo")
            self.calls += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.station.stop(drain_s=3.0)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from edge_agent.mqtt_publisher import BrokerConfig
    from hub.cli import ensure_scorecard
    from hub.ingest import Ingest
    from hub.live import LiveBoard
    from hub.scores import Scorer
    from hub.storage import Store
    from hub.web.app import create_app

    workdir = Path(args.dir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    wavs = compose(workdir / "calls", args.stations, args.minutes)
    broker, broker_kind = start_broker(args.broker, workdir)
    store = Store(workdir / "hub.sqlite")
    seats: list[SimulatedSeat] = []
    server: uvicorn.Server | None = None
    ingest: Ingest | None = None
    try:
        ensure_scorecard(store)
        passwords = seed_people(store, args.stations, workdir / "logins.txt")
        board = LiveBoard(agent_of=lambda site, seat: store.agent_at(site, seat, time.time()))
        ingest = Ingest(store, BrokerConfig.from_url(broker.url), "callqa-demo-hub", scorer=Scorer(store),
                        on_stored=board.update)  # fmt: skip
        ingest.start()
        if not ingest.wait_subscribed(15):
            raise DemoError(f"the hub could not subscribe at {broker.url}")
        host, port = args.http
        server = uvicorn.Server(
            uvicorn.Config(create_app(store, board), host=host, port=port, log_level="warning", access_log=False)
        )
        web = threading.Thread(target=server.run, name="http", daemon=True)
        web.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if not web.is_alive() or time.monotonic() > deadline:
                raise DemoError(f"the dashboard could not listen on {host}:{port} (in use? try --http)")
            time.sleep(0.05)
        history = []
        to_backfill = [
            i for i in range(args.stations) if not (workdir / "stations" / f"seat{i + 1:02d}" / "backfilled").exists()
        ]
        if args.history_days and to_backfill:  # analysed only while some station still has to send its past
            t0 = time.monotonic()
            hist_wavs = history_wavs(workdir, args.stations, args.minutes, args.history_calls)
            t1 = time.monotonic()
            log.info("analysing %d real-speech calls for %d days of history", len(hist_wavs), args.history_days)
            history = analyse_history(hist_wavs)
            log.info("history: composed in %.0f s, analysed in %.0f s", t1 - t0, time.monotonic() - t1)
        rng = random.Random(7)  # noqa: S311 - which past call goes on which day, not a secret
        backfilled = 0
        for i, wav in enumerate(wavs):
            seat = SimulatedSeat(i, wav, broker.url, workdir / "stations")
            if history and not (workdir / "stations" / seat.seat / "backfilled").exists():
                backfilled += seat.backfill(seat_pool(history, i), args.history_days, rng)
                (workdir / "stations" / seat.seat / "backfilled").touch()
            seat.start()
            seats.append(seat)
        call_s = min(s.duration for s in seats)
        print(f"broker:    {broker_kind} at {broker.url}")
        print(f"hub:       SQLite {workdir / 'hub.sqlite'}")
        print(f"stations:  {len(seats)} real station runtimes replaying real-speech calls of {call_s / 60:.1f} min")
        if backfilled:
            print(
                f"history:   {backfilled} past calls over {args.history_days} days, sent through the stations' outboxes"
            )
        print(f"dashboard: http://{host}:{port}/")
        for user, pw in passwords.items():
            print(f"  login {user:9s} {pw}")
        print(f"first scores appear after the first calls end (~{call_s / 60:.1f} min); Ctrl-C stops", flush=True)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        reviewing = threading.Thread(
            target=seed_when_scored, args=(store, max(backfilled, len(seats)), stop), name="reviews", daemon=True
        )
        reviewing.start()
        stop.wait(args.seconds)
        stop.set()
        reviewing.join(10)
    finally:
        for seat in seats:
            seat.stop()
        if ingest is not None:
            time.sleep(1.0)  # the last acks and scores
            ingest.stop()
        if server is not None:
            server.should_exit = True
        events = store.count()
        scored = int(store.db.scalar("SELECT COUNT(*) FROM calls WHERE score IS NOT NULL") or 0)
        store.close()
        broker.stop()
    print(f"stopped: the hub stored {events} events and scored {scored} calls (kept in {workdir})")
    return 0


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: use HOST:PORT")
    return host, int(port)


def _days(text: str) -> int:
    if not text.isdigit() or int(text) > 365:
        raise argparse.ArgumentTypeError(f"{text[:20]!r}: a whole number of days, 0-365")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="callqa-demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--stations", type=int, default=4, choices=range(1, 33), metavar="N")
    ap.add_argument("--minutes", type=float, default=2.0, help="length of each composed call")
    ap.add_argument("--http", type=_host_port, default=("127.0.0.1", 8080))
    ap.add_argument("--dir", default="demo", help="where the calls, the hub database and the outboxes go")
    ap.add_argument("--broker", choices=("auto", "mosquitto", "embedded"), default="auto")
    ap.add_argument("--seconds", type=float, default=None, help="stop after this long (default: until Ctrl-C)")
    ap.add_argument("--history-days", type=_days, default=HISTORY_DAYS, metavar="DAYS",
                    help="past calls per agent over this many days, 0-365 (0: none)")  # fmt: skip
    ap.add_argument("--history-calls", type=int, default=HISTORY_CALLS, choices=range(1, 33), metavar="N",
                    help=f"distinct real-speech past calls per length, 1-32 (default {HISTORY_CALLS}; fewer start"
                    " faster, but the validity report then has fewer different calls to tell rules apart)")  # fmt: skip
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    log.setLevel(logging.INFO)
    try:
        return run(args)
    except Exception as exc:  # one line, not a traceback, for anything the set-up can meet
        if args.verbose:
            log.exception("demo failed")
        print(f"callqa-demo: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
