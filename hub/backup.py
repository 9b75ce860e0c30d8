"""Backups of the hub database: `qa-hub backup OUT [--keep N]` and `qa-hub restore IN`.

SQLite: the online backup API copies the whole database in one step under one read transaction, so the copy
is a consistent snapshot even while `qa-hub serve` writes (a WAL reader never blocks the writer); the copy is
switched to a self-contained rollback journal and checked before it replaces OUT. PostgreSQL: `pg_dump -Fc`
(one snapshot) and `pg_restore --clean --single-transaction`, so a restore that fails anywhere rolls back and
leaves the target as it was; both tools come from PATH and must be at least the server's major version.

A restore checks the backup first (a SQLite integrity check; the archive's table of contents and its schema
version) and refuses one from a newer hub. Neither the source nor the target is migrated here: a restored
older backup is migrated by the next `qa-hub serve`, as in an upgrade.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from hub.db import StorageError, migrations

log = logging.getLogger(__name__)

SQLITE_MAGIC = b"SQLite format 3\x00"
PGDUMP_MAGIC = b"PGDMP"
SUFFIX = {"sqlite": ".sqlite", "postgres": ".pgdump"}
BACKUP_NAME = re.compile(r"hub-\d{8}T\d{6}\.\d{6}Z\.(?:sqlite|pgdump)")
"""What `backup` names its files in a directory; the only files `--keep` ever deletes."""


class BackupError(StorageError):
    """A backup or restore failed; the message is one line for the admin."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    removed: list[Path] = field(default_factory=list)


def dialect(url: str) -> str:
    return "postgres" if url.startswith(("postgresql://", "postgres://")) else "sqlite"


def sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def backup(url: str, out: Path, *, keep: int | None = None, now: datetime | None = None) -> BackupResult:
    """Back up the database at `url` into the file `out`, or into a new `hub-<UTC time>.*` file when `out` is a
    directory; then, in a directory, delete all but the newest `keep` such files."""
    kind = dialect(url)
    if keep is not None and keep < 1:
        raise BackupError("--keep must be at least 1")
    if out.is_dir():
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S.%fZ")
        target = out / f"hub-{stamp}{SUFFIX[kind]}"
    elif keep is not None:
        raise BackupError(f"--keep needs OUT to be a directory: {out} is not one")
    else:
        target = out
    if not target.parent.is_dir():
        raise BackupError(f"cannot write {target}: no directory {target.parent}")
    if kind == "sqlite" and target.resolve() == sqlite_path(url).resolve():
        # replacing the live file would leave the hub writing to the unlinked old one
        raise BackupError(f"{target} is the database itself: back up to another file")
    partial = target.with_name(f".{target.name}.partial")
    try:
        # 0600 from the start: a backup holds every user's password hash and every call
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # also when a crashed run left the file behind
        os.close(fd)
    except OSError as exc:
        raise BackupError(f"cannot write {partial}: {exc.strerror}") from None
    try:
        if kind == "sqlite":
            _backup_sqlite(sqlite_path(url), partial)
        else:
            _backup_postgres(url, partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    removed = prune(out, keep) if keep is not None else []
    size = target.stat().st_size
    log.info("backed up %s to %s (%d bytes)", _safe(url), target, size)
    return BackupResult(target, size, removed)


def prune(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` backups `backup` made in `directory` (the UTC time in the name sorts)."""
    ours = sorted(p for p in directory.iterdir() if BACKUP_NAME.fullmatch(p.name) and p.is_file())
    old = ours[:-keep] if len(ours) > keep else []
    for p in old:
        p.unlink()
        log.info("removed old backup %s", p)
    return old


def restore(url: str, src: Path) -> None:
    """Replace the contents of the database at `url` with the backup `src`; the target is left as it was when
    the backup is unreadable, corrupt, from a newer hub or of the other backend."""
    kind = dialect(url)
    try:
        with src.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise BackupError(f"cannot read {src}: {exc.strerror}") from None
    found = "sqlite" if head == SQLITE_MAGIC else "postgres" if head.startswith(PGDUMP_MAGIC) else None
    if found is None:
        raise BackupError(f"{src} is not a hub backup (neither a SQLite database nor a pg_dump -Fc archive)")
    if found != kind:
        names = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
        raise BackupError(
            f"{src} is a {names[found]} backup but --db is a {names[kind]} database: restore into the same backend"
        )
    if kind == "sqlite":
        _restore_sqlite(sqlite_path(url), src)
    else:
        _restore_postgres(url, src)
    log.info("restored %s into %s", src, _safe(url))


# --- SQLite ----------------------------------------------------------------------------------------------------


def _backup_sqlite(path: Path, partial: Path) -> None:
    if not path.is_file():
        raise BackupError(f"no SQLite database at {path}")
    try:
        source = sqlite3.connect(path, timeout=30.0)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {path}: {exc}") from None
    try:
        copy = sqlite3.connect(partial)
        try:
            source.backup(copy)  # pages=-1: every page in one step, i.e. one read snapshot
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, whatever the hub's WAL holds
            _check_sqlite(copy, partial, "quick_check", restoring=False)
        finally:
            copy.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot back up {path}: {exc}") from None
    finally:
        source.close()


def _check_sqlite(conn: sqlite3.Connection, what: Path, check: str, *, restoring: bool) -> None:
    """`check` (quick_check or integrity_check) passes, the hub's tables are there and, `restoring`, the schema
    is one this hub knows."""
    try:
        problems = [str(r[0]) for r in conn.execute(f"PRAGMA {check}")]
        if problems != ["ok"]:
            raise BackupError(f"{what} is corrupt: {problems[0]}")
        versions = [int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations")]
        conn.execute("SELECT 1 FROM events LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        raise BackupError(f"{what} is not a usable hub database: {exc}") from None
    if restoring:
        _check_versions(versions, what)


def _check_versions(versions: list[int], what: Path) -> None:
    known = max((v for v, _, _ in migrations()), default=0)
    if not versions:
        raise BackupError(f"{what} has no schema version: not a hub database")
    if max(versions) > known:
        raise BackupError(
            f"{what} is from a newer hub (schema {max(versions)}; this one knows up to {known}): upgrade first"
        )


def _restore_sqlite(path: Path, src: Path) -> None:
    if not path.parent.is_dir():
        raise BackupError(f"cannot restore into {path}: no directory {path.parent}")
    try:
        # immutable: a backup is never written to, and needs no lock or journal beside it
        source = sqlite3.connect(f"file:{quote(str(src.resolve()))}?mode=ro&immutable=1", uri=True)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open {src}: {exc}") from None
    try:
        _check_sqlite(source, src, "integrity_check", restoring=True)
        target = sqlite3.connect(path, timeout=30.0)
        try:
            # the copy into the target is one write transaction: it commits whole or not at all
            source.backup(target)
        finally:
            target.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot restore into {path}: {exc}") from None
    finally:
        source.close()


# --- PostgreSQL ------------------------------------------------------------------------------------------------


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(
            f"{name} is not installed or not on PATH (Debian: apt-get install postgresql-client-NN, "
            "NN at least the server's major version)"
        )
    return found


def _conninfo(url: str) -> tuple[str, dict[str, str]]:
    """The DSN without its password, and an environment carrying the password: never on a command line
    (where `ps` shows it)."""
    env = dict(os.environ)
    try:
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        params = conninfo_to_dict(url)
    except ImportError:  # pragma: no cover - psycopg comes with the hub extra
        return url, env
    except Exception as exc:  # psycopg.ProgrammingError and friends: a malformed DSN
        raise BackupError(f"bad PostgreSQL DSN {_safe(url)}: {exc}") from None
    password = params.pop("password", None)
    if password is not None:
        env["PGPASSWORD"] = str(password)
    return make_conninfo("", **params), env


def _run(argv: list[str], env: dict[str, str] | None = None) -> str:
    name = Path(argv[0]).name
    try:
        # a PostgreSQL tool found on PATH with arguments built here; no shell
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    except OSError as exc:
        raise BackupError(f"cannot run {name}: {exc.strerror}") from None
    if done.returncode:
        raise BackupError(f"{name} failed: {_tool_error(name, done.stderr)}")
    return done.stdout


def _tool_error(name: str, stderr: str) -> str:
    """pg_dump / pg_restore say `NAME: error: ...` and `NAME: detail: ...` over several lines: one line."""
    lines = [line.strip().removeprefix(f"{name}: ") for line in stderr.splitlines() if line.strip()]
    wanted = [x for x in lines if x.startswith(("error:", "detail:", "hint:"))] or lines[-1:] or ["no message"]
    text = "; ".join(x.removeprefix("error: ") for x in wanted[:3])
    return text if len(text) <= 400 else text[:397] + "..."


def _backup_postgres(url: str, partial: Path) -> None:
    conninfo, env = _conninfo(url)
    # one snapshot (pg_dump's repeatable-read transaction) while the hub goes on writing
    _run([_tool("pg_dump"), "--format=custom", "--file", str(partial), "--dbname", conninfo], env)
    _archive_versions(partial)  # the archive reads back and is a hub's


def _archive_versions(archive: Path) -> list[int]:
    """The schema versions recorded in a pg_dump archive (also proves it reads back and is a hub's)."""
    pg_restore = _tool("pg_restore")
    toc = _run([pg_restore, "--list", str(archive)])
    if not re.search(r"TABLE DATA \S+ schema_migrations ", toc):
        raise BackupError(f"{archive} is not a hub backup: it has no schema_migrations table")
    script = _run([pg_restore, "--data-only", "--table", "schema_migrations", "--file", "-", str(archive)])
    copy = re.search(r"^COPY \S*schema_migrations .* FROM stdin;\n(.*?)^\\\.$", script, re.M | re.S)
    if copy is None:
        raise BackupError(f"{archive} is not a hub backup: no schema_migrations rows")
    return [int(line.split("\t", 1)[0]) for line in copy.group(1).splitlines() if line]


def _restore_postgres(url: str, src: Path) -> None:
    _check_versions(_archive_versions(src), src)
    conninfo, env = _conninfo(url)
    # --single-transaction: a failure anywhere (a truncated archive, a refused statement) rolls back everything,
    # the DROPs of --clean included; --no-owner: the restoring role owns what it creates
    _run(
        [
            _tool("pg_restore"),
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            "--exit-on-error",
            "--dbname",
            conninfo,
            str(src),
        ],
        env,
    )


def _safe(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


# --- qa-hub backup / restore -----------------------------------------------------------------------------------


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    b = sub.add_parser("backup", help="a consistent copy of the database, safe while the hub runs")
    b.add_argument("out", type=Path, help="a file, or a directory for a new hub-<UTC time>.sqlite|.pgdump")
    b.add_argument("--keep", type=int, metavar="N", help="OUT a directory: keep only its newest N backups")
    r = sub.add_parser("restore", help="replace the database's contents with a backup (stop every qa-hub first)")
    r.add_argument("backup", type=Path)


def run_cli(args: argparse.Namespace) -> int:
    """BackupError (a StorageError) is the caller's one-line error, exit 2."""
    if args.cmd == "backup":
        done = backup(args.db, args.out, keep=args.keep)
        gone = f"; removed {len(done.removed)} older" if done.removed else ""
        print(f"backup {done.path} ({done.size} bytes){gone}")
    else:
        restore(args.db, args.backup)
        print(f"restored {args.backup} into {_safe(args.db)}")
    return 0
