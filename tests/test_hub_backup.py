"""`qa-hub backup` / `qa-hub restore` on SQLite and on a real PostgreSQL.

A hub with users, scored calls and their events is backed up (by the CLI, in its own process) while a writer
keeps storing events; the backup restored into an empty database holds every row the writer did not touch,
and the writer's rows form one consistent snapshot (a gap-free seq prefix that agrees with the seat's
watermark and the call's event count). A corrupt, foreign or newer backup is refused with one line and exit
status 2, and the target keeps what it had, also when PostgreSQL fails in the middle of the restore.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.events import Speech
from hub import auth
from hub.backup import BACKUP_NAME
from hub.cli import main as qa_hub_main
from hub.storage import Store
from tests.hub_support import ROOT, PgServer, Station, ingest

SITE = "sh"
WRITER_SEAT = "w01"
WRITER_CALL = "live-call"
PASSWORD = "a long enough password"


def tables(store: Store) -> list[str]:
    if store.db.dialect == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    else:
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    return sorted(str(r[0]) for r in store.db.all(sql))


def contents(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows (sorted), less the rows the writer thread touches."""
    out = {}
    for t in tables(store):
        cols = {str(r[0]) for r in store.db.all(_columns_sql(store, t), (t,))}
        where = f" WHERE seat <> '{WRITER_SEAT}'" if "seat" in cols else ""
        out[t] = sorted(store.db.all(f"SELECT * FROM {t}{where}"), key=repr)  # noqa: S608 - the catalog's names
    return out


def _columns_sql(store: Store, table: str) -> str:
    if store.db.dialect == "sqlite":
        return "SELECT name FROM pragma_table_info(?)"
    return "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = ?"


def fill(store: Store) -> None:
    """Real hub data: users, an org chart, three scored calls (two agents, hot-desking) and their events."""
    auth.create_user(store, "admin", PASSWORD, "admin")
    auth.create_user(store, "alice", PASSWORD, "agent", agent_id="a1")
    store.put_site(SITE, "Shanghai", "Asia/Shanghai")
    store.put_team("t1", "Team One", SITE)
    store.put_agent("a1", "Alice", "t1")
    st = Station(SITE, "s01")
    envs = [st.login("a1", "2026-01-05T01:00:00.000Z"), *st.call("c1", "2026-01-05T01:10:00.000Z")]
    envs += [*st.call("c2", "2026-01-05T01:20:00.000Z"), st.logout("2026-01-05T01:30:00.000Z")]
    envs += Station(SITE, "s02").call("c3", "2026-01-05T02:10:00.000Z", agent="a2")
    ingest(store, envs)


class Writer:
    """Keeps storing events of one call at its own seat, one transaction each, as ingest does."""

    def __init__(self, store: Store) -> None:
        self.store, self.n, self.stop = store, 0, threading.Event()
        self.station = Station(SITE, WRITER_SEAT)
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            e = self.station.env(Speech(float(self.n), self.n + 0.5, "agent"), WRITER_CALL, "2026-01-05T03:00:00.000Z")
            self.store.add(e, e.to_json())
            self.n += 1

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


@pytest.fixture
def empty_url(hub_store: Store, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database that does not exist yet (SQLite) or is empty (PostgreSQL), on the store's backend."""
    if hub_store.db.dialect == "sqlite":
        yield str(tmp_path / "restored.sqlite")
        return
    import psycopg

    server: PgServer = request.getfixturevalue("pg_server")
    name = f"r_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield server.dsn(name)
    finally:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def cli(capsys: pytest.CaptureFixture[str], db: str, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = qa_hub_main(["--db", db, *args])
    out, err = capsys.readouterr()
    return rc, out, err


def one_error(rc: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("qa-hub: ")]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_backup_while_writing_restores_everything(
    hub_store: Store, empty_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = hub_store
    fill(store)
    assert store.db.scalar("SELECT COUNT(*) FROM scores") == 3
    out = tmp_path / "backups"
    out.mkdir()
    with Writer(store) as writer:
        while writer.n < 20:  # the writer is well under way before the backup starts
            threading.Event().wait(0.01)
        before = writer.n
        r = subprocess.run(
            [sys.executable, "-m", "hub.cli", "--db", store.db.url, "backup", str(out)],
            capture_output=True, text=True, cwd=ROOT, timeout=120,
        )  # fmt: skip
        after = writer.n
    assert r.returncode == 0, r.stderr
    assert after > before  # it really wrote while the backup ran
    [made] = list(out.iterdir())
    assert BACKUP_NAME.fullmatch(made.name) and made.stat().st_mode & 0o077 == 0
    assert r.stdout.strip().startswith(f"backup {made} (")

    rc, stdout, err = cli(capsys, empty_url, "restore", str(made))
    assert rc == 0, err
    assert stdout.strip() == f"restored {made} into {empty_url}"
    restored = Store(empty_url, default_tz="Asia/Shanghai")
    try:
        assert restored.db.migrate() == []  # the schema came with the data
        got, want = contents(restored), contents(store)
        for table in ("users", "calls", "scores", "events", "call_rules", "agent_daily", "scorecards"):
            assert got[table] and got[table] == want[table], table
        assert got == want  # and every other table
        # the writer's rows are one snapshot: seqs 1..k without a gap, the seat's watermark and the call agree
        seqs = [
            int(r[0]) for r in restored.db.all("SELECT seq FROM events WHERE seat = ? ORDER BY seq", (WRITER_SEAT,))
        ]
        k = len(seqs)
        assert before <= k <= after and seqs == list(range(1, k + 1))
        assert restored.watermark(SITE, WRITER_SEAT) == (k, k, [])
        assert restored.db.scalar("SELECT n_events FROM calls WHERE call_id = ?", (WRITER_CALL,)) == k
        assert restored.call_events("c1") == store.call_events("c1")
        assert auth.login(restored, "alice", PASSWORD)[1].agent_id == "a1"
    finally:
        restored.close()


def test_a_bad_backup_is_refused_and_the_target_kept(
    hub_store: Store, empty_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = hub_store
    fill(store)
    pg = store.db.dialect == "postgres"
    good = tmp_path / ("good.pgdump" if pg else "good.sqlite")
    assert cli(capsys, store.db.url, "backup", str(good))[0] == 0
    assert cli(capsys, empty_url, "restore", str(good))[0] == 0
    target = Store(empty_url, default_tz="Asia/Shanghai")
    try:
        kept = contents(target)
        assert kept["calls"] and kept["users"]
        data = good.read_bytes()
        bad = {
            "garbage": (os.urandom(4096), "is not a hub backup"),
            "truncated": (data[: len(data) // 2], "pg_restore failed" if pg else "is not a usable hub database"),
            "empty": (b"", "is not a hub backup"),
        }
        if pg:
            # passes every check before the restore and fails inside it, after --clean dropped the tables
            bad["bad row"] = (broken_users_archive(store, tmp_path), "pg_restore failed")
        else:
            bad["not a hub"] = (sqlite_without_hub_tables(tmp_path), "is not a usable hub database")
        for name, (payload, message) in bad.items():
            path = tmp_path / f"{name.replace(' ', '_')}.bak"
            path.write_bytes(payload)
            rc, _, err = cli(capsys, empty_url, "restore", str(path))
            assert message in one_error(rc, err), (name, err)
            assert contents(target) == kept, name

        foreign = tmp_path / ("other.sqlite" if pg else "other.pgdump")
        foreign.write_bytes(b"SQLite format 3\x00" + bytes(100) if pg else b"PGDMP" + bytes(100))
        rc, _, err = cli(capsys, empty_url, "restore", str(foreign))
        assert "restore into the same backend" in one_error(rc, err)

        store.db.execute("INSERT INTO schema_migrations VALUES (9999, '9999_future.sql')")
        newer = tmp_path / ("newer.pgdump" if pg else "newer.sqlite")
        assert cli(capsys, store.db.url, "backup", str(newer))[0] == 0
        rc, _, err = cli(capsys, empty_url, "restore", str(newer))
        assert "from a newer hub (schema 9999" in one_error(rc, err)
        rc, _, err = cli(capsys, empty_url, "restore", str(tmp_path / "missing.bak"))
        assert "cannot read" in one_error(rc, err)
        assert contents(target) == kept
    finally:
        target.close()


def broken_users_archive(store: Store, tmp_path: Path) -> bytes:
    """An uncompressed pg_dump archive whose users row lost a column separator (same length, so the archive's
    framing still reads): PostgreSQL's COPY refuses it in the middle of the restore."""
    path = tmp_path / "plain.pgdump"
    subprocess.run(["pg_dump", "-Fc", "--compress=0", "-f", str(path), "-d", store.db.url], check=True)
    data = path.read_bytes()
    assert data.count(b"alice\t$argon2") == 1
    return data.replace(b"alice\t$argon2", b"alice $argon2")


def sqlite_without_hub_tables(tmp_path: Path) -> bytes:
    import sqlite3

    path = tmp_path / "plain.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (x TEXT)")
    return path.read_bytes()


def test_retention_and_argument_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "hub.sqlite")
    Store(db).close()
    out = tmp_path / "nightly"
    out.mkdir()
    (out / "notes.txt").write_text("not a backup: --keep never touches it")
    made = []
    for _ in range(3):
        rc, stdout, err = cli(capsys, db, "backup", str(out), "--keep", "2")
        assert rc == 0, err
        made.append(Path(stdout.split()[1]))
    assert stdout.rstrip().endswith("; removed 1 older")
    assert sorted(p.name for p in out.iterdir()) == sorted([made[1].name, made[2].name, "notes.txt"])
    assert made[0] < made[1] < made[2]  # names sort by time: retention keeps the newest
    rc, _, err = cli(capsys, db, "backup", str(tmp_path / "one.sqlite"), "--keep", "2")
    assert "--keep needs OUT to be a directory" in one_error(rc, err)
    rc, _, err = cli(capsys, str(tmp_path / "absent.sqlite"), "backup", str(out))
    assert "no SQLite database at" in one_error(rc, err)
    assert not (tmp_path / "absent.sqlite").exists()  # a backup never creates the database
    rc, _, err = cli(capsys, db, "backup", db)
    assert "is the database itself" in one_error(rc, err)
    rc, _, err = cli(capsys, db, "backup", str(tmp_path / "no-dir" / "x.sqlite"))
    assert "no directory" in one_error(rc, err)
    assert not [p for p in out.iterdir() if p.name.endswith(".partial")]


def test_missing_postgres_tools_are_one_line(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=str(tmp_path))  # nothing on PATH: no pg_dump, no pg_restore
    for args in (["backup", str(tmp_path / "x.pgdump")], ["restore", str(tmp_path / "x.pgdump")]):
        if args[0] == "restore":
            (tmp_path / "x.pgdump").write_bytes(b"PGDMP" + bytes(100))
        r = subprocess.run(
            [sys.executable, "-m", "hub.cli", "--db", "postgresql://callqa:secret@127.0.0.1:1/hub", *args],
            capture_output=True, text=True, cwd=ROOT, env=env, timeout=60,
        )  # fmt: skip
        tool = "pg_dump" if args[0] == "backup" else "pg_restore"
        lines = [line for line in r.stderr.splitlines() if line.startswith("qa-hub: ")]
        assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        assert lines[0].startswith(f"qa-hub: {tool} is not installed or not on PATH")
        assert "secret" not in r.stderr
    assert not (tmp_path / ".x.pgdump.partial").exists()
