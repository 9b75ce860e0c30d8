"""Durable outbox: every event is on disk before anything tries to send it, and leaves only once acknowledged.

SQLite in WAL mode. `put` stamps the seat's next `seq` and commits (fsync) before returning; the per-seat
counter lives in the same database and the same transaction, so a crash can neither lose an event nor reuse
or skip a sequence number. `pending` hands rows out oldest first. With broker-level delivery, `ack` deletes a
row once the broker has acknowledged it. With end-to-end delivery, a PUBACK only marks the row `sent`
(`mark_sent`): a broker that crashes before saving or forwarding it would otherwise lose it, so the row is
deleted by `confirm` once the hub reports it stored, and `sent_before` finds sent rows still unconfirmed after
a while so they can be published again. The outbox is bounded by rows, bytes and optionally age: when over
budget the OLDEST rows (sent or not) are evicted, and every eviction is counted in the database, never silent,
in one of two counters:

- `dropped`: rows that never left the station (never handed to the MQTT client, never acknowledged by the
  broker). These are lost for certain; the hub sees them as a gap in the seat's seq.
- `evicted_unconfirmed`: rows the broker acknowledged (or the MQTT client was given in this process) but the hub
  had not yet confirmed. Most of them are at the hub already or on their way (the broker queues them for the
  hub's persistent session, and the client re-sends its in-flight ones after a reconnect); only a broker crash
  between its acknowledgement and its next save loses one. Counting them as dropped overstated the loss
  (2,212 "dropped" where 1,854 were lost, with the hub consuming slowly and the broker down for 40 s).

An outbox restored from an older copy of itself (a backup, a re-imaged card) would issue again the seqs its
lost newer self had issued: the hub holds other events under them, so its ack covers seqs this copy never
issued and the station could not trust it, ever. So every commit also writes the seat counters into the lock
file beside the database (`<outbox>.lock`, a file a backup of the database alone leaves where it was); an
outbox opened with lower counters than the lock file for the same epoch was restored: its counters jump to the
lock file's (`restores` counts it), new rows follow the seqs the hub already has, and the rows of the copy,
which carry the ids and seqs they always had, are confirmed by the hub's ack as usual.

The transport reads from here; the analysis side only writes. Nothing here knows about MQTT.
One process owns an outbox at a time (a lock file next to it enforces that).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from edge_agent.schema import MAX_PAYLOAD_BYTES, UNSEQUENCED, Envelope, SchemaError, from_json

log = logging.getLogger(__name__)

_DDL = """
CREATE TABLE IF NOT EXISTS outbox (
    n INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: never reused, so a cursor over n stays valid
    id TEXT NOT NULL UNIQUE,
    seat TEXT NOT NULL,
    site TEXT NOT NULL,
    seq INTEGER NOT NULL,
    payload TEXT NOT NULL,
    size INTEGER NOT NULL,
    created REAL NOT NULL,
    sent REAL  -- when the broker last acknowledged it (NULL: never); kept until the hub confirms it
);
CREATE TABLE IF NOT EXISTS seat_seq (seat TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# after any migration: indexes on columns an older database may not have had
_INDEXES = """
CREATE INDEX IF NOT EXISTS outbox_seat_seq ON outbox (seat, seq);
CREATE INDEX IF NOT EXISTS outbox_sent ON outbox (sent) WHERE sent IS NOT NULL;
"""


class OutboxError(Exception):
    """The outbox database cannot be opened or used."""


@dataclass(frozen=True)
class Pending:
    """One stored event waiting for its broker acknowledgement."""

    n: int
    """Insertion order; a cursor for `pending(after=...)`."""
    id: str
    seat: str
    site: str
    seq: int
    payload: str
    """The envelope's compact JSON, exactly as it goes on the wire."""


class Outbox:
    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_rows: int = 200_000,
        max_bytes: int = 256 * 1024 * 1024,
        max_age_s: float | None = None,
    ) -> None:
        if max_rows < 1 or max_bytes < MAX_PAYLOAD_BYTES:
            raise ValueError(f"outbox budget too small: max_rows >= 1 and max_bytes >= {MAX_PAYLOAD_BYTES}")
        self.path = Path(path)
        self.max_rows, self.max_bytes, self.max_age_s = max_rows, max_bytes, max_age_s
        self._lock = threading.Lock()  # the publisher acks from its network thread
        self._handed = 0
        """Highest `n` handed to the MQTT client by this process (`note_handed`): such a row may reach the hub."""
        self._lockfile = self._take_process_lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise OutboxError(f"{self.path}: cannot use WAL mode (got {mode})")
            # FULL: a committed put survives power loss, not just a process crash
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_DDL)
            self._migrate()
            self._db.executescript(_INDEXES)
            self.epoch = self._epoch()
            self._check_restored()
            row = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(MAX(n), 0) FROM outbox"
            ).fetchone()
            self._rows, self._bytes, self._opened_n = int(row[0]), int(row[1]), int(row[2])
        except sqlite3.Error as exc:
            self._lockfile.close()
            raise OutboxError(f"{self.path}: {exc}") from None
        log.info("outbox %s: %d pending, %d dropped so far", self.path, self._rows, self.dropped)

    def _migrate(self) -> None:
        """Bring an outbox written by an older version up to date, in place and keeping its rows."""
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(outbox)")}
        if "sent" not in columns:
            # rows of an older outbox count as never sent: they all go out again (the hub dedups by id)
            self._db.execute("ALTER TABLE outbox ADD COLUMN sent REAL")
            log.info("outbox %s: added the 'sent' column", self.path)

    def _epoch(self) -> str:
        """This outbox's identity, made once: seqs restart at 1 only with a new outbox, hence a new epoch."""
        self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?)", (secrets.token_hex(8),))
        return str(self._db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0])

    def _check_restored(self) -> None:
        """Jump the seat counters up to the lock file's when this database is an older copy of this outbox."""
        noted = self._read_counters()
        seqs = dict(self._db.execute("SELECT seat, last_seq FROM seat_seq").fetchall())
        behind = {seat: n for seat, n in noted.items() if n > int(seqs.get(seat, 0))}
        if behind:
            # the seqs in between were issued by the newer copy: the hub holds them (or reports them as a gap)
            log.warning(
                "outbox %s was restored from an older copy: seq counters %s jump to %s (what it had issued)",
                self.path,
                {seat: int(seqs.get(seat, 0)) for seat in behind},
                behind,
            )
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO seat_seq (seat, last_seq) VALUES (?, ?) "
                "ON CONFLICT(seat) DO UPDATE SET last_seq = excluded.last_seq",
                behind.items(),
            )
            self._bump("restores", 1)
            self._db.execute("COMMIT")
        self._note_counters()

    def _read_counters(self) -> dict[str, int]:
        """The seat counters the lock file holds for this epoch (none for another epoch or an unreadable file)."""
        try:
            self._lockfile.seek(0)
            data = json.loads(self._lockfile.read() or b"{}")
        except (OSError, ValueError):
            return {}
        seqs = data.get("last_seq") if isinstance(data, dict) and data.get("epoch") == self.epoch else None
        if not isinstance(seqs, dict):
            return {}
        return {str(k): v for k, v in seqs.items() if isinstance(v, int) and not isinstance(v, bool) and v > 0}

    def _note_counters(self) -> None:
        """Write the seat counters into the lock file (after the commit that made them, so it never runs ahead of
        the database). Not synced: one lagging behind after a power loss only misses a restore, never invents
        one."""
        seqs = dict(self._db.execute("SELECT seat, last_seq FROM seat_seq").fetchall())
        try:
            self._lockfile.seek(0)
            self._lockfile.truncate()
            self._lockfile.write(json.dumps({"epoch": self.epoch, "last_seq": seqs}).encode())
            self._lockfile.flush()
        except OSError as exc:
            log.warning("outbox %s: cannot note the seq counters in the lock file (%s)", self.path, exc)

    def _bump(self, name: str, by: int) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    def _take_process_lock(self) -> BinaryIO:
        lockpath = self.path.with_name(self.path.name + ".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            f = open(lockpath, "a+b")  # held open (and locked) for the outbox's lifetime
        except OSError as exc:
            raise OutboxError(f"{lockpath}: {exc.strerror}") from None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise OutboxError(f"{self.path}: in use by another process") from None
        return f

    # --- writing -------------------------------------------------------------------------------------------

    def put(self, env: Envelope) -> Envelope:
        """Stamp `env` with its seat's next seq, commit it to disk, and return the stamped envelope."""
        return self.put_many([env])[0]

    def put_many(self, envs: Iterable[Envelope]) -> list[Envelope]:
        """Like `put` for several envelopes, in one transaction (one fsync): all are stored or none."""
        envs = list(envs)
        if any(e.seq != UNSEQUENCED for e in envs):
            raise SchemaError("put takes unsequenced envelopes: the outbox assigns seq")
        stamped: list[Envelope] = []
        now = time.time()
        with self._transaction():
            last: dict[str, int] = {}
            for env in envs:
                if env.seat not in last:
                    row = self._db.execute("SELECT last_seq FROM seat_seq WHERE seat = ?", (env.seat,)).fetchone()
                    last[env.seat] = row[0] if row else 0
                last[env.seat] += 1
                env = env.with_seq(last[env.seat], self.epoch)
                payload = env.to_json()
                size = len(payload.encode())
                if size > MAX_PAYLOAD_BYTES:
                    raise SchemaError(f"event {env.type} of {size} bytes exceeds {MAX_PAYLOAD_BYTES}")
                self._db.execute(
                    "INSERT INTO outbox (id, seat, site, seq, payload, size, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (env.id, env.seat, env.site, env.seq, payload, size, now),
                )
                self._rows += 1
                self._bytes += size
                stamped.append(env)
            self._db.executemany(
                "INSERT INTO seat_seq (seat, last_seq) VALUES (?, ?) "
                "ON CONFLICT(seat) DO UPDATE SET last_seq = excluded.last_seq",
                last.items(),
            )
            self._enforce_budget(now)
        with self._lock:
            self._note_counters()
        return stamped

    def _enforce_budget(self, now: float) -> None:
        """Evict the oldest rows until within budget and count them (module doc); inside the caller's
        transaction."""
        cutoff = now - self.max_age_s if self.max_age_s is not None else None
        if self._rows <= self.max_rows and self._bytes <= self.max_bytes and cutoff is None:
            return
        rows, nbytes, last_n = self._rows, self._bytes, None
        for n, size, created in self._db.execute("SELECT n, size, created FROM outbox ORDER BY n"):
            too_old = cutoff is not None and created < cutoff
            if rows <= 1 or not (rows > self.max_rows or nbytes > self.max_bytes or too_old):
                break
            rows, nbytes, last_n = rows - 1, nbytes - size, n
        if last_n is None:
            return
        evicted = self._db.execute("DELETE FROM outbox WHERE n <= ? RETURNING n, sent", (last_n,)).fetchall()
        unconfirmed = sum(1 for n, sent in evicted if sent is not None or n <= self._handed)
        dropped = len(evicted) - unconfirmed
        for name, by in (("dropped", dropped), ("evicted_unconfirmed", unconfirmed)):
            if by:
                self._bump(name, by)
        self._rows, self._bytes = rows, nbytes
        log.warning(
            "outbox over budget: evicted the %d oldest events: %d never sent (lost), %d sent but not yet confirmed",
            len(evicted),
            dropped,
            unconfirmed,
        )

    def note_handed(self, n: int) -> None:
        """The transport handed row `n` (and every row it handed before) to the MQTT client: if the budget evicts
        it now, it may still reach the hub, so it is not counted as dropped."""
        self._handed = max(self._handed, n)

    def ack(self, event_id: str) -> bool:
        """Delete an event the broker acknowledged; False if it was not there (already acked or dropped)."""
        return self.ack_many([event_id]) == 1

    def ack_many(self, event_ids: Iterable[str]) -> int:
        ids = list(event_ids)
        # an ack lost to power loss only means a resend that the hub deduplicates by id, so no fsync here;
        # the next put's FULL commit syncs the WAL, this delete included
        with self._transaction(durable=False):
            deleted = 0
            for event_id in ids:
                row = self._db.execute("DELETE FROM outbox WHERE id = ? RETURNING size", (event_id,)).fetchone()
                if row:
                    deleted += 1
                    self._rows -= 1
                    self._bytes -= row[0]
        return deleted

    def mark_sent(self, event_id: str, when: float | None = None) -> bool:
        """Record that the broker acknowledged (or we re-published) an event; it stays until `confirm`."""
        with self._transaction(durable=False):  # lost on power loss: the row merely goes out again
            cur = self._db.execute(
                "UPDATE outbox SET sent = ? WHERE id = ?", (time.time() if when is None else when, event_id)
            )
        return cur.rowcount == 1

    def confirm(self, seat: str, upto: int, gaps: Iterable[tuple[int, int]] = ()) -> int:
        """Delete `seat`'s rows with seq <= `upto`, except those in the inclusive `gaps`: the hub has them.

        Returns how many rows left. Rows never sent are deleted too: the hub holding a seq is what counts.
        """
        sql = "DELETE FROM outbox WHERE seat = ? AND seq <= ?"
        args: list[object] = [seat, upto]
        for first, last in gaps:
            sql += " AND seq NOT BETWEEN ? AND ?"
            args += [first, last]
        with self._transaction(durable=False):  # as for ack: a lost delete only means a deduplicated resend
            sizes = self._db.execute(sql + " RETURNING size", args).fetchall()
            self._rows -= len(sizes)
            self._bytes -= sum(r[0] for r in sizes)
        return len(sizes)

    def resync(self, seat: str, hub_top: int) -> int:
        """The hub holds seqs up to `hub_top` of this epoch, more than this outbox issued: it was restored from an
        older copy with the lock file (so the open could not tell). Jump the seat's counter to `hub_top` and
        renumber above it the rows this process put and never handed out (the hub holds other events under their
        seqs); returns how many. Rows of the copy keep their seqs (the hub has them under those), as do rows
        already handed to the client (the hub stores them by id). Counted as `restores`."""
        with self._transaction():
            limit = max(self._handed, self._opened_n)
            rows = self._db.execute(
                "SELECT n, payload, size FROM outbox WHERE seat = ? AND sent IS NULL AND n > ? ORDER BY n",
                (seat, limit),
            ).fetchall()
            last = hub_top  # above every seq this outbox issued (the caller checked)
            for n, payload, old_size in rows:
                last += 1
                new = from_json(payload).with_seq(last).to_json()
                size = len(new.encode())
                self._db.execute("UPDATE outbox SET seq = ?, payload = ?, size = ? WHERE n = ?", (last, new, size, n))
                self._bytes += size - int(old_size)
            self._db.execute(
                "INSERT INTO seat_seq (seat, last_seq) VALUES (?, ?) "
                "ON CONFLICT(seat) DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq)",
                (seat, last),
            )
            self._bump("restores", 1)
            self._note_counters()
        return len(rows)

    # --- reading -------------------------------------------------------------------------------------------

    def pending(self, limit: int = 100, *, seat: str | None = None, after: int = 0) -> list[Pending]:
        """Up to `limit` stored events oldest first, optionally of one seat and inserted after cursor `after`."""
        return self._select("n > ?", (after,), seat, limit)

    def sent_before(self, cutoff: float, limit: int = 100, *, seat: str | None = None, upto: int) -> list[Pending]:
        """Up to `limit` rows sent before `cutoff` (time.time()) and not confirmed since, with `n <= upto`."""
        return self._select("sent IS NOT NULL AND sent < ? AND n <= ?", (cutoff, upto), seat, limit)

    def _select(self, where: str, args: tuple[object, ...], seat: str | None, limit: int) -> list[Pending]:
        # `where` is one of the two literal clauses above, never input; values go through placeholders
        sql = "SELECT n, id, seat, site, seq, payload FROM outbox WHERE " + where  # noqa: S608
        if seat is not None:
            sql += " AND seat = ?"
            args += (seat,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY n LIMIT ?", (*args, limit)).fetchall()
        return [Pending(*r) for r in rows]

    def count(self, seat: str | None = None) -> int:
        if seat is None:
            return int(self._rows)
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox WHERE seat = ?", (seat,)).fetchone()[0])

    def __len__(self) -> int:
        return int(self._rows)

    @property
    def size_bytes(self) -> int:
        return int(self._bytes)

    @property
    def dropped(self) -> int:
        """Events the budget evicted before they ever left the station, over the outbox's whole life (persisted):
        lost for certain."""
        return self.counter("dropped")

    @property
    def evicted_unconfirmed(self) -> int:
        """Events the budget evicted after the broker acknowledged them (or the client was given them) but before
        the hub confirmed them (persisted): at the hub unless the broker lost them."""
        return self.counter("evicted_unconfirmed")

    def counter(self, name: str) -> int:
        """A persisted counter: `dropped`, `evicted_unconfirmed`, `restores` (times a restored copy was found)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def last_seq(self, seat: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT last_seq FROM seat_seq WHERE seat = ?", (seat,)).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._lockfile.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self, durable: bool = True) -> Iterator[None]:
        with self._lock:
            rows, nbytes = self._rows, self._bytes
            try:
                if not durable:
                    self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    self._rows, self._bytes = rows, nbytes  # keep the in-memory totals in step with the rollback
                    raise
            except sqlite3.Error as exc:
                raise OutboxError(f"{self.path}: {exc}") from None
            finally:
                if not durable:
                    self._db.execute("PRAGMA synchronous=FULL")
