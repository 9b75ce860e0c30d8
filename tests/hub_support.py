"""Hub test support: a private PostgreSQL server, stores on both backends, and calls built from known events.

`pg_server` starts its own cluster (initdb + pg_ctl from the Debian packages under /usr/lib/postgresql/*/bin)
in a temporary directory on a free port, so no test depends on a server started by hand; as root it runs the
server as the `postgres` user, which initdb requires. Each test gets a fresh database on it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from edge_agent.events import CallSummary, DeadAir, Event, Speech, TalkOver
from edge_agent.schema import Envelope, envelope
from edge_agent.wire import to_wire
from hub import auth
from hub.scorecard import DEFAULT_SCORECARD, load
from hub.scores import Scorer, import_scorecard
from hub.storage import Store
from hub.web.app import create_app
from tests.broker import free_port

ROOT = Path(__file__).resolve().parents[1]
# still argon2id, with cheap parameters: the tests create and log in dozens of users on two shared cores
auth.use_hasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


@dataclass
class PgServer:
    port: int
    datadir: Path
    bindir: Path
    prefix: list[str]

    def dsn(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        subprocess.run([*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "stop"],
                       capture_output=True, check=False)  # fmt: skip


def start_cluster(base: Path, *, fsync: bool = False, max_connections: int = 200) -> PgServer:
    """initdb + pg_ctl start in `base` (owned by `postgres` when run as root); RuntimeError if it fails.
    Tests run without fsync (speed); benchmarks with it (what a hub runs)."""
    bindir = pg_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries are missing: apt-get install postgresql (.ci/run does)")
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    datadir, port = base / "data", free_port()
    init = subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        capture_output=True,
        text=True,
        check=False,
    )
    if init.returncode:
        raise RuntimeError(f"initdb failed: {init.stderr.strip()[-500:]}")
    opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections={max_connections}"
    if not fsync:
        opts += " -F"
    start = subprocess.run(
        [*prefix, str(bindir / "pg_ctl"), "-D", str(datadir), "-o", opts, "-l", str(base / "log"), "-w", "start"],
        capture_output=True,
        text=True,
        check=False,
    )
    if start.returncode:
        log = (base / "log").read_text(errors="replace")[-800:] if (base / "log").exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {start.stderr.strip()} {log}")
    return PgServer(port, datadir, bindir, prefix)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    base = Path(tempfile.mkdtemp(prefix="callqa-pg-"))
    try:
        server = start_cluster(base)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def pg_database(server: PgServer) -> Iterator[str]:
    """A fresh database on the private server, dropped afterwards: its DSN."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield server.dsn(name)
    finally:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> Iterator[str]:
    with pg_database(pg_server) as dsn:
        yield dsn


@contextlib.contextmanager
def backend_store(request: pytest.FixtureRequest, directory: Path) -> Iterator[Store]:
    """A fresh store on the backend `request.param` names ("sqlite": a file in `directory`; "postgres": a database
    of its own), with the shipped scorecard active; for module-scoped fixtures, which `hub_store` cannot serve."""
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = str(directory / "hub.sqlite")
        else:
            url = stack.enter_context(pg_database(request.getfixturevalue("pg_server")))
        s = Store(url, default_tz="Asia/Shanghai")
        stack.callback(s.close)
        import_scorecard(s, load(DEFAULT_SCORECARD)[1])
        yield s


@pytest.fixture(params=["sqlite", "postgres"])
def hub_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh store on each backend, with the shipped scorecard active."""
    with backend_store(request, tmp_path) as s:
        yield s


def populated_file(directory: Path, populate: Callable[[Store], object]) -> Path:
    """A SQLite hub file in `directory` with the shipped scorecard, filled by `populate` once (ingesting and
    scoring takes seconds) and checkpointed, so tests can each start from a copy (`store_copy`)."""
    path = directory / "base.sqlite"
    store = Store(path, default_tz="Asia/Shanghai")
    import_scorecard(store, load(DEFAULT_SCORECARD)[1])
    populate(store)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return path


@contextlib.contextmanager
def store_copy(base: Path, directory: Path) -> Iterator[Store]:
    """A store on a copy of `base` (`populated_file`) in `directory`, closed afterwards."""
    path = directory / "hub.sqlite"
    path.write_bytes(base.read_bytes())
    store = Store(path, default_tz="Asia/Shanghai")
    try:
        yield store
    finally:
        store.close()


# --- known calls ------------------------------------------------------------------------------------------------

SUMMARY: dict[str, Any] = {
    "duration": 120.0,
    "agent": {"talk_time": 50.0, "talk_ratio": 0.55, "shouting": False},
    "customer": {"talk_time": 41.0, "talk_ratio": 0.45, "shouting": False},
    "talk_overs": 5,
    "dead_air_count": 2,
    "longest_agent_monologue": 20.0,
    "agent_response_latency_mean": 0.8,
    "monotone_agent": False,
    "quality": {"flags": [], "low_confidence": False},
}


def known_call_events() -> list[Event]:
    """3 agent interruptions, 2 agent backchannels, dead air of 6 s and 3.5 s; then the summary above."""
    evs: list[Event] = [
        Speech(1.0, 5.0, "agent"),
        Speech(5.5, 20.0, "customer"),
        TalkOver(10.0, 10.8, "agent", "backchannel", 0.8),
        TalkOver(15.0, 16.0, "agent", "interruption", 1.0),
        Speech(15.0, 30.0, "agent"),
        DeadAir(30.0, 36.0),
        Speech(36.0, 60.0, "customer"),
        TalkOver(40.0, 40.5, "agent", "backchannel", 0.5),
        TalkOver(50.0, 51.0, "agent", "interruption", 1.0),
        Speech(50.0, 70.0, "agent"),
        DeadAir(70.0, 73.5),
        TalkOver(130.0, 131.0, "agent", "interruption", 1.0),  # in the second 120 s batch
        Speech(125.0, 135.0, "agent"),
    ]
    return [*sorted(evs, key=lambda e: e.end), CallSummary(0.0, 140.0, dict(SUMMARY, duration=140.0))]


class Station:
    """Makes envelopes the way a station does: per-seat seq from 1, UTC timestamps. With `stamp=False` they are
    left unsequenced, for a real station outbox to stamp."""

    def __init__(self, site: str, seat: str, stamp: bool = True) -> None:
        self.site, self.seat, self.seq, self.stamp = site, seat, 0, stamp

    def env(self, event: Event | dict[str, Any], call_id: str | None, ts: str, agent: str | None = None) -> Envelope:
        e = envelope(event, seat=self.seat, site=self.site, call_id=call_id, agent_id=agent, ts=ts)
        if not self.stamp:
            return e
        self.seq += 1
        return e.with_seq(self.seq)

    def login(self, agent: str, ts: str) -> Envelope:
        return self.env({"type": "agent_login", "start": 0, "end": 0}, None, ts, agent)

    def logout(self, ts: str) -> Envelope:
        return self.env({"type": "agent_logout", "start": 0, "end": 0}, None, ts)

    def call(
        self,
        call_id: str,
        end_ts: str,
        agent: str | None = None,
        events: list[Event] | None = None,
        summary: dict[str, Any] | None = None,
    ) -> list[Envelope]:
        evs = events if events is not None else known_call_events()
        if summary is not None:
            evs = [*evs[:-1], CallSummary(0.0, float(summary["duration"]), summary)]
        # 120 s batches (a station setting): the 131 s call spans two, so evidence crosses batches
        out = [self.env(e, call_id, end_ts, agent) for e in to_wire(evs, batch_s=120)]
        if agent is None:
            return out
        # a station names an agent on its events only after that agent's login, and the hub attributes calls by
        # the login, never by the events' agent_id (docs/trust.md): so the login first, a second before the call
        start = datetime.fromisoformat(end_ts) - timedelta(seconds=float(evs[-1].end) + 1)
        login = self.login(agent, start.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
        if self.stamp:  # seqs in emission order: the login's before the call's
            login, out = login.with_seq(out[0].seq), [e.with_seq(e.seq + 1) for e in out]
        return [login, *out]


def ingest(store: Store, envs: list[Envelope], score: bool = True) -> None:
    """Store `envs` one by one (and score), after adding the agents they log in to the directory if missing: a
    seat's login attributes calls only to agents the hub knows (docs/trust.md); here the test is the admin."""
    for agent in sorted({e.agent_id for e in envs if e.type == "agent_login" and e.agent_id is not None}):
        store.db.execute("INSERT INTO agents (agent_id, name) VALUES (?, ?) ON CONFLICT (agent_id) DO NOTHING",
                         (agent, agent))  # fmt: skip
    for e in envs:
        store.add(e, e.to_json())
    if score:
        Scorer(store).score_pending()


def api_client(store: Store, user: str, password: str) -> TestClient:
    """A client of the hub app on `store` logged in as `user` with a bearer token (an API client: no cookie, no
    CSRF field)."""
    c = TestClient(create_app(store))
    r = c.post("/api/login", json={"username": user, "password": password})
    assert r.status_code == 200, r.text
    c.headers["authorization"] = f"Bearer {r.json()['token']}"
    return c
