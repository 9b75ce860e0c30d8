"""The hub's store: events exactly once by id, per-seat seq bookkeeping, calls, agent attribution, devices.

Everything goes through `hub.db.Database`, so the same code runs on SQLite and PostgreSQL. `add_many` is the
ingest path: a batch of events in one transaction, in a few statements (`add`: one event), which also
- keeps the seat's highest seq and the missing ranges below it (the ack watermark);
- records `agent_login` / `agent_logout` as the seat's attribution timeline (hot-desking);
- creates or updates the event's call, and on its `call_summary` fills in duration, start time, quality flags
  and the agent: the envelope's `agent_id` when the station knew it, else whoever was logged in at the seat
  when the call started (and a login that arrives late re-attributes the calls it covers);
- queues the call for scoring (`take_pending`), again when events of an already scored call arrive late.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge_agent.schema import Envelope
from hub.db import Database, StorageError

log = logging.getLogger(__name__)

SEAT_LOGIN, SEAT_LOGOUT = "agent_login", "agent_logout"
_UNKNOWN, _NEW_SEAT = object(), object()
"""Markers in the epoch cache: not looked up yet; a seat with no row at all."""


_INSERT_ROWS = 500
"""Event rows per INSERT statement (13 parameters each: well below both backends' limits)."""


@functools.cache
def _insert_events_sql(rows: int) -> str:
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * rows)
    return (
        "INSERT INTO events (id, site, seat, seq, epoch, call_id, agent_id, type, ts, start_s, end_s, payload,"
        f" received) VALUES {values} ON CONFLICT (id) DO NOTHING RETURNING id"
    )


class Outcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    OVERSIZED = "oversized"
    BAD_JSON = "bad_json"
    BAD_SCHEMA = "bad_schema"
    BAD_TOPIC = "bad_topic"
    TOPIC_MISMATCH = "topic_mismatch"


REJECTIONS = frozenset(o for o in Outcome if o not in (Outcome.STORED, Outcome.DUPLICATE))


@dataclass(frozen=True)
class Gap:
    site: str
    seat: str
    first: int
    last: int
    """Inclusive: seq first..last have not arrived."""


def seat_lock_key(site: str, seat: str) -> int:
    """A seat's PostgreSQL advisory lock key: a stable signed 64-bit hash (the same in every worker process)."""
    digest = hashlib.blake2b(f"callqa-seat/{site}/{seat}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def parse_ts(ts: str) -> float:
    """ISO-8601 UTC ('...Z') to POSIX seconds."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {tz!r} (use an IANA name such as Asia/Shanghai)") from None


def local_day(t: float, tz: ZoneInfo) -> tuple[str, str]:
    """(day, Monday of its ISO week), both YYYY-MM-DD in the site's time zone."""
    d = datetime.fromtimestamp(t, tz).date()
    return d.isoformat(), (d - timedelta(days=d.weekday())).isoformat()


class Store:
    """See the module docstring. Safe to share between threads."""

    def __init__(self, url: str | os.PathLike[str], *, default_tz: str = "UTC", shared: bool = False) -> None:
        self.db = Database(url)
        self.shared = shared
        """Other ingest processes write this database too (scale-out workers on one PostgreSQL): a seat's seq
        state is then re-read under a per-seat lock in every transaction instead of trusted from this cache."""
        self._locked: set[tuple[str, str]] = set()  # seats locked by the current transaction
        self.default_tz = default_tz
        zone(default_tz)
        self._tz_cache: dict[str, ZoneInfo] = {}
        self._pending: set[str] = set()
        # write-path caches (only the ingest writer adds): seat -> highest seq, devices' last-seen writes, agents
        self._top: dict[tuple[str, str], int] = {}
        self._epochs: dict[tuple[str, str], object] = {}
        self._seen: dict[tuple[str, str, str | None], float] = {}
        self._agents: set[str] = set()
        self._stale: set[tuple[str, str]] = set()
        self._seats_dirty: set[tuple[str, str]] = set()  # seats whose max_seq this transaction moved
        self._pending_lock = threading.Lock()

    # --- ingest ----------------------------------------------------------------------------------------------

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group several `add`s into one commit (one fsync): ingest's group commit."""
        self._locked.clear()
        try:
            with self.db.transaction():
                yield
        except BaseException:
            self._forget_cache()
            raise

    def _forget_cache(self) -> None:
        # the caches mirror committed rows only as long as nothing rolls back: after a rollback, re-read
        self._top.clear()
        self._epochs.clear()
        self._seen.clear()
        self._agents.clear()
        self._seats_dirty.clear()

    def add(self, env: Envelope, payload: str) -> Outcome:
        """Store one event idempotently, with its seat, call and attribution bookkeeping, in one transaction."""
        return self.add_many([(env, payload)])[0]

    def add_many(self, items: Sequence[tuple[Envelope, str]]) -> list[Outcome]:
        """Store events (envelope, its JSON) in one transaction, each with the outcome and bookkeeping that `add`
        one after the other gives it, in fewer statements (ingest's group commit): one INSERT for all the rows,
        each seat's watermark written once at the commit, each call's row touched once."""
        if not items:
            return []
        try:
            if not self.db.in_transaction():
                self._locked.clear()
            with self.db.transaction():
                return self._add_many(items)
        except BaseException:
            self._forget_cache()
            raise

    def _add_many(self, items: Sequence[tuple[Envelope, str]]) -> list[Outcome]:
        db = self.db
        if self.shared:
            # every seat of the batch before any write, in one order for every worker: no waiting in a circle
            for site, seat in sorted({(env.site, env.seat) for env, _ in items}):
                self._lock_seat(site, seat)
        new = self._insert_events(items)
        outcomes: list[Outcome] = []
        stored: list[Envelope] = []
        for env, _ in items:
            if env.id in new:
                new.discard(env.id)  # a second copy in the same batch is a duplicate, as it would be one by one
                outcomes.append(Outcome.STORED)
                stored.append(env)
            else:
                outcomes.append(Outcome.DUPLICATE)
        summary_ids = self._upsert_calls(stored)
        later = {env.id for env in stored}  # stored by this batch, not yet book-kept
        now = time.time()
        for env in stored:
            later.discard(env.id)
            if self._same_epoch(env, later):
                self._track_seq(env.site, env.seat, env.seq)
            model = env.model.name if env.model else None
            if now - self._seen.get((env.site, env.seat, model), 0.0) > 5.0:  # last seen: to 5 s is plenty
                db.execute(
                    "INSERT INTO devices (site, seat, last_seen, model) VALUES (?, ?, ?, ?) ON CONFLICT (site, seat) "
                    "DO UPDATE SET last_seen = excluded.last_seen, model = COALESCE(excluded.model, devices.model)",
                    (env.site, env.seat, now, model),
                )
                self._seen[(env.site, env.seat, model)] = now
            if env.agent_id is not None and env.agent_id not in self._agents:
                db.execute(
                    "INSERT INTO agents (agent_id, name) VALUES (?, ?) ON CONFLICT (agent_id) DO NOTHING",
                    (env.agent_id, env.agent_id),
                )
                self._agents.add(env.agent_id)
            if env.type in (SEAT_LOGIN, SEAT_LOGOUT):
                self._seat_event(env)
            if env.call_id is not None:
                self._call_event(env, summary_ids)
        return outcomes

    def _insert_events(self, items: Sequence[tuple[Envelope, str]]) -> set[str]:
        """INSERT the rows, many per statement; the ids this inserted (the others were stored already)."""
        received = time.time()
        new: set[str] = set()
        for i in range(0, len(items), _INSERT_ROWS):
            chunk = items[i : i + _INSERT_ROWS]
            params: list[object] = []
            for env, payload in chunk:
                params += (
                    env.id,
                    env.site,
                    env.seat,
                    env.seq,
                    env.epoch,
                    env.call_id,
                    env.agent_id,
                    env.type,
                    env.ts,
                    env.start,
                    env.end,
                    payload,
                    received,
                )
            new.update(str(r[0]) for r in self.db.all(_insert_events_sql(len(chunk)), params))
        return new

    def _lock_seat(self, site: str, seat: str) -> None:
        """Serialise this seat's writes with other workers' until the transaction ends, then drop what this
        process cached about the seat (another worker may have moved it on). PostgreSQL: a transaction-scoped
        advisory lock; SQLite: BEGIN IMMEDIATE already serialises every writer, so only the cache goes. A batch
        takes its seats' locks in sorted order (hub/ingest.py), so two workers never wait on each other in a
        circle."""
        key = (site, seat)
        if key in self._locked:
            return
        if self.db.dialect == "postgres":
            self.db.execute("SELECT pg_advisory_xact_lock(?)", (seat_lock_key(site, seat),))
        self._locked.add(key)
        self._top.pop(key, None)
        self._epochs.pop(key, None)

    def _same_epoch(self, env: Envelope, later: set[str] | frozenset[str] = frozenset()) -> bool:
        """Whether `env.seq` counts in the seat's current outbox epoch; switches to a new epoch when a station
        comes back with a fresh outbox (seq from 1 again). An event of a retired epoch is stored but its seq
        is not tracked (it would reopen the old numbering). `later`: ids inserted by this batch but behind this
        event, which one-by-one storing would not have stored yet."""
        if env.epoch is None:
            return True  # a station too old to say: one unnamed epoch
        key = (env.site, env.seat)
        current = self._epochs.get(key, _UNKNOWN)
        if current is _UNKNOWN:
            row = self.db.one("SELECT epoch FROM seats WHERE site = ? AND seat = ?", key)
            current = None if row is None else row[0]
            if row is None:
                current = _NEW_SEAT
        if current == env.epoch:
            return True
        db = self.db
        if current is not _NEW_SEAT and any(
            row[0] not in later
            for row in db.all(
                "SELECT id FROM events WHERE site = ? AND seat = ? AND epoch = ? AND id <> ? LIMIT ?",
                (env.site, env.seat, env.epoch, env.id, len(later) + 1),
            )
        ):
            self._bump("retired_epoch_events")
            return False
        if current is not _NEW_SEAT:
            self._bump("epoch_resets")
            log.warning("seat %s/%s: a new station outbox (epoch %s): seq counting starts again", *key, env.epoch)
            db.execute("DELETE FROM gaps WHERE site = ? AND seat = ?", key)
        db.execute(
            "INSERT INTO seats (site, seat, max_seq, epoch) VALUES (?, ?, 0, ?) "
            "ON CONFLICT (site, seat) DO UPDATE SET max_seq = 0, epoch = excluded.epoch",
            (*key, env.epoch),
        )
        self._top[key] = 0
        self._epochs[key] = env.epoch
        return True

    def epoch(self, site: str, seat: str) -> str | None:
        """The outbox epoch the seat's watermark counts in (None: never named)."""
        return self.db.scalar("SELECT epoch FROM seats WHERE site = ? AND seat = ?", (site, seat))  # type: ignore[no-any-return]

    def _track_seq(self, site: str, seat: str, seq: int) -> None:
        db = self.db
        top = self._top.get((site, seat))
        if top is None:
            top = int(db.scalar("SELECT max_seq FROM seats WHERE site = ? AND seat = ?", (site, seat)) or 0)
        if seq > top + 1:
            db.execute("INSERT INTO gaps VALUES (?, ?, ?, ?)", (site, seat, top + 1, seq - 1))
            # with several workers, a seat's events arrive split between them: a gap that the next moment
            # fills is routine there, not news
            log.log(
                logging.DEBUG if self.shared else logging.WARNING,
                "seat %s/%s: seq gap %d..%d (events missing so far)",
                site,
                seat,
                top + 1,
                seq - 1,
            )
        elif seq <= top:
            gap = db.one(
                "SELECT first, last FROM gaps WHERE site = ? AND seat = ? AND first <= ? AND last >= ?",
                (site, seat, seq, seq),
            )
            if gap is None:
                # a new id with an old seq: the station lost its outbox database and started again from 1
                self._bump("seq_regressions")
                log.warning(
                    "seat %s/%s: seq %d at or below %d and not missing: station seq reset?", site, seat, seq, top
                )
            else:
                first, last = gap
                db.execute("DELETE FROM gaps WHERE site = ? AND seat = ? AND first = ?", (site, seat, first))
                for a, b in ((first, seq - 1), (seq + 1, last)):
                    if a <= b:
                        db.execute("INSERT INTO gaps VALUES (?, ?, ?, ?)", (site, seat, a, b))
        if seq > top or (site, seat) not in self._top:
            if not self._seats_dirty:
                db.before_commit(self._write_seats)
            self._seats_dirty.add((site, seat))
        self._top[(site, seat)] = max(seq, top)

    def _write_seats(self) -> None:
        # the seats' highest seq, once per seat at the commit rather than once per event
        rows = [(site, seat, self._top[(site, seat)]) for site, seat in sorted(self._seats_dirty)]
        self._seats_dirty.clear()
        self.db.executemany(
            "INSERT INTO seats (site, seat, max_seq) VALUES (?, ?, ?) ON CONFLICT (site, seat) "
            "DO UPDATE SET max_seq = "
            "CASE WHEN seats.max_seq > excluded.max_seq THEN seats.max_seq ELSE excluded.max_seq END",
            rows,
        )

    def _seat_event(self, env: Envelope) -> None:
        at = parse_ts(env.ts)
        agent = env.agent_id if env.type == SEAT_LOGIN else None
        self.db.execute(
            "INSERT INTO seat_logins VALUES (?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
            (env.id, env.site, env.seat, at, agent),
        )
        # a login/logout delivered late: the seat-attributed calls it covers (up to the seat's next event) change
        nxt = self.db.scalar(
            "SELECT MIN(at) FROM seat_logins WHERE site = ? AND seat = ? AND at > ?", (env.site, env.seat, at)
        )
        rows = self.db.all(
            "SELECT call_id, agent_id, day FROM calls WHERE site = ? AND seat = ?"
            " AND (agent_source IS NULL OR agent_source = 'seat') AND started >= ? AND started < ?",
            (env.site, env.seat, at, nxt if nxt is not None else 1e18),
        )
        for call_id, old_agent, day in rows:
            if old_agent == agent:
                continue
            if old_agent is not None and day is not None:
                self.db.after_commit(functools.partial(self._stale_add, old_agent, day))  # its rollup loses the call
            self.db.execute(
                "UPDATE calls SET agent_id = ?, agent_source = ? WHERE call_id = ?",
                (agent, "seat" if agent else None, call_id),
            )
            self._queue(call_id)

    def agent_at(self, site: str, seat: str, at: float) -> str | None:
        """Who was logged in at the seat at POSIX time `at` (None: nobody, or logged out)."""
        row = self.db.one(
            "SELECT agent_id FROM seat_logins WHERE site = ? AND seat = ? AND at <= ? ORDER BY at DESC LIMIT 1",
            (site, seat, at),
        )
        return row[0] if row else None

    def _upsert_calls(self, stored: list[Envelope]) -> dict[str, object]:
        """The batch's calls' rows in one statement, each counting its events stored here; per call, the summary
        it had before this batch. (Rows made early change nothing for the events before a call's first: a new
        row has no start time, which is all a login's re-attribution looks at.)"""
        counts = Counter(str(env.call_id) for env in stored if env.call_id is not None)
        if not counts:
            return {}
        first = {str(env.call_id): env for env in reversed(stored) if env.call_id is not None}
        params: list[object] = []
        for call_id, n in counts.items():
            params += (call_id, first[call_id].site, first[call_id].seat, n)
        return {
            str(call_id): summary_id
            for call_id, summary_id in self.db.all(
                "INSERT INTO calls (call_id, site, seat, n_events) VALUES "
                + ", ".join(["(?, ?, ?, ?)"] * len(counts))
                + " ON CONFLICT (call_id) DO UPDATE SET n_events = calls.n_events + excluded.n_events"
                " RETURNING call_id, summary_id",
                params,
            )
        }

    def _call_event(self, env: Envelope, summary_ids: dict[str, object]) -> None:
        """`summary_ids`: per call the summary it had before the batch (`_upsert_calls`); a call's events after
        its summary in the same batch change nothing, the summary queued it."""
        call_id = str(env.call_id)
        if env.type == "call_summary":
            self._summary(env)
            self._queue(call_id)
        elif summary_ids.get(call_id) is not None:
            self._queue(call_id)  # a late event of a call already summarised: score it again

    def _summary(self, env: Envelope) -> None:
        f = env.fields
        duration = float(f.get("duration", env.end))
        started = parse_ts(env.ts) - duration  # the summary is emitted when the call ends
        day, week = local_day(started, self.site_tz(env.site))
        quality = f.get("quality") if isinstance(f.get("quality"), dict) else {}
        flags = [str(x) for x in quality.get("flags", []) if isinstance(x, str)] if quality else []
        low = bool(quality.get("low_confidence")) if quality else False
        # the agent: the envelope's, else whoever was logged in at the seat when the call started (agent_at),
        # looked up by the same statement
        self.db.execute(
            "UPDATE calls SET started = ?, day = ?, week = ?, duration = ?, summary_id = ?, low_confidence = ?,"
            " flags = ?, agent_id = COALESCE(?, (SELECT agent_id FROM seat_logins WHERE site = ? AND seat = ?"
            " AND at <= ? ORDER BY at DESC LIMIT 1)), agent_source = ? WHERE call_id = ?",
            (
                started,
                day,
                week,
                duration,
                env.id,
                int(low),
                ",".join(flags),
                env.agent_id,
                env.site,
                env.seat,
                started,
                "event" if env.agent_id is not None else "seat",
                env.call_id,
            ),
        )

    def _queue(self, call_id: str) -> None:
        def publish() -> None:
            with self._pending_lock:
                self._pending.add(call_id)

        self.db.after_commit(publish)  # the scorer (another thread) must find the call's rows committed

    def requeue(self, call_ids: list[str]) -> None:
        """Put calls back on the scorer's work list (their scoring transaction failed)."""
        with self._pending_lock:
            self._pending.update(call_ids)

    def _stale_add(self, agent: str, day: str) -> None:
        with self._pending_lock:
            self._stale.add((agent, day))

    def take_pending(self) -> tuple[list[str], list[tuple[str, str]]]:
        """Calls that completed or changed since the last call (the scorer's work list), and the (agent, day)
        rollups that lost a call to re-attribution."""
        with self._pending_lock:
            out, self._pending = sorted(self._pending), set()
            stale, self._stale = sorted(self._stale), set()
        return out, stale

    def set_status(self, site: str, seat: str, status: str | None = None, health: dict[str, Any] | None = None) -> None:
        """A station's retained availability (`online`/`offline`, the last will) or health report."""
        now = time.time()
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO devices (site, seat) VALUES (?, ?) ON CONFLICT (site, seat) DO NOTHING", (site, seat)
            )
            if status is not None:
                self.db.execute(
                    "UPDATE devices SET status = ?, status_at = ? WHERE site = ? AND seat = ?",
                    (status, now, site, seat),
                )
            if health is not None:
                self.db.execute(
                    "UPDATE devices SET health = ?, last_seen = ? WHERE site = ? AND seat = ?",
                    (json.dumps(health), now, site, seat),
                )

    # --- ack watermark and counters ----------------------------------------------------------------------------

    def watermark(self, site: str, seat: str) -> tuple[int, int, list[tuple[int, int]]]:
        """(highest seq with none missing below it, highest seq stored, the missing ranges below that)."""
        top = int(self.db.scalar("SELECT max_seq FROM seats WHERE site = ? AND seat = ?", (site, seat)) or 0)
        gaps = [
            (int(a), int(b))
            for a, b in self.db.all(
                "SELECT first, last FROM gaps WHERE site = ? AND seat = ? ORDER BY first", (site, seat)
            )
        ]
        return (gaps[0][0] - 1 if gaps else top), top, gaps

    def count_reject(self, outcome: Outcome) -> int:
        with self.db.transaction():
            return self._bump(f"rejected.{outcome}")

    def _bump(self, name: str) -> int:
        return int(
            self.db.scalar(
                "INSERT INTO counters VALUES (?, 1) ON CONFLICT (name) DO UPDATE SET value = counters.value + 1"
                " RETURNING value",
                (name,),
            )
        )

    def counters(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.db.all("SELECT name, value FROM counters")}

    def rejected(self) -> dict[str, int]:
        return {k.removeprefix("rejected."): v for k, v in self.counters().items() if k.startswith("rejected.")}

    def gaps(self) -> list[Gap]:
        rows = self.db.all("SELECT site, seat, first, last FROM gaps ORDER BY site, seat, first")
        return [Gap(str(a), str(b), int(c), int(d)) for a, b, c, d in rows]

    def count(self) -> int:
        return int(self.db.scalar("SELECT COUNT(*) FROM events"))

    def seqs(self, site: str, seat: str) -> list[int]:
        rows = self.db.all("SELECT seq FROM events WHERE site = ? AND seat = ? ORDER BY seq", (site, seat))
        return [int(r[0]) for r in rows]

    def payloads(self) -> list[dict[str, Any]]:
        rows = self.db.all("SELECT payload FROM events ORDER BY site, seat, seq")
        return [json.loads(r[0]) for r in rows]

    def calls_payloads(self, call_ids: Sequence[str]) -> dict[str, list[str]]:
        """Several calls' stored payloads (JSON), oldest seq first (per seat), in one query (the scorer's chunks)."""
        out: dict[str, list[str]] = {}
        if not call_ids:
            return out
        marks = ", ".join("?" * len(call_ids))
        for call_id, payload in self.db.all(
            f"SELECT call_id, payload FROM events WHERE call_id IN ({marks}) ORDER BY call_id, seat, seq",
            list(call_ids),
        ):
            out.setdefault(str(call_id), []).append(str(payload))
        return out

    def call_events(self, call_id: str) -> list[dict[str, Any]]:
        """The call's stored payloads, oldest seq first (per seat)."""
        rows = self.db.all("SELECT payload FROM events WHERE call_id = ? ORDER BY seat, seq", (call_id,))
        return [json.loads(r[0]) for r in rows]

    # --- directory -------------------------------------------------------------------------------------------

    def site_tz(self, site: str) -> ZoneInfo:
        tz = self._tz_cache.get(site)
        if tz is None:
            name = self.db.scalar("SELECT tz FROM sites WHERE site = ?", (site,)) or self.default_tz
            tz = self._tz_cache[site] = zone(name)
        return tz

    def put_site(self, site: str, name: str, tz: str) -> None:
        zone(tz)
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO sites VALUES (?, ?, ?) ON CONFLICT (site) DO UPDATE SET name = excluded.name,"
                " tz = excluded.tz",
                (site, name, tz),
            )
        self._tz_cache.pop(site, None)

    def put_team(self, team_id: str, name: str, site: str | None = None) -> None:
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO teams VALUES (?, ?, ?) ON CONFLICT (team_id) DO UPDATE SET name = excluded.name,"
                " site = excluded.site",
                (team_id, name, site),
            )

    def put_agent(self, agent_id: str, name: str, team_id: str | None) -> None:
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO agents VALUES (?, ?, ?) ON CONFLICT (agent_id) DO UPDATE SET name = excluded.name,"
                " team_id = excluded.team_id",
                (agent_id, name, team_id),
            )

    def close(self) -> None:
        self.db.close()


class HubStore(Store):
    """The store ingest and the transport tests open by path (SQLite) or by `postgresql://` DSN."""


def today(tz: ZoneInfo) -> date:
    return datetime.now(tz).date()


__all__ = ["REJECTIONS", "Gap", "HubStore", "Outcome", "StorageError", "Store"]
