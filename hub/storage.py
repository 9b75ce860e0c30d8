"""The hub's store: events exactly once by id, per-seat seq bookkeeping, calls, agent attribution, devices.

Everything goes through `hub.db.Database`, so the same code runs on SQLite and PostgreSQL. `add_many` is the
ingest path: a batch of events in one transaction, in a few statements (`add`: one event), which also
- keeps the seat's highest seq and the missing ranges below it (the ack watermark);
- records `agent_login` / `agent_logout` as the seat's attribution timeline (hot-desking);
- creates or updates the event's call, and on its `call_summary` fills in duration, start time, quality flags
  and the agent: the envelope's `agent_id` when the station knew it, else whoever was logged in at the seat
  when the call started (and a login that arrives late re-attributes the calls it covers);
- queues the call for scoring (`take_pending`), again when events of an already scored call arrive late.

Scale-out (`shared`: several ingest workers on one PostgreSQL, docs/scale.md): nothing in a worker's ingest
transaction waits for another worker's. The seq bookkeeping leaves it: the transaction records each new event in
`seq_pending`, and `settle_seqs` (the ack loop, a short transaction per pass under the seats' advisory locks)
counts them into the watermark afterwards, so an ack only ever covers committed events. The rows that every
worker's batch would write (calls, agents, devices) are created by `prepare` in a short transaction before it,
and a call's `n_events` is counted when it is scored.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge_agent.schema import Envelope
from hub.db import Database, StorageError

log = logging.getLogger(__name__)

SEAT_LOGIN, SEAT_LOGOUT = "agent_login", "agent_logout"
SOURCE_SEAT, SOURCE_CTI = "seat", "cti"
"""Where a login came from (`seat_logins.source`, a call's `agent_source`): the seat's own `agent_login` event,
or the CTI's `cmd/login` (docs/trust.md)."""
_LOGIN_SOURCES = "('seat', 'cti')"
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
    """What became of one message; every one but STORED and DUPLICATE is a rejection, counted in `counters` as
    `rejected.{value}` (docs/hub.md, "Ingest")."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    OVERSIZED = "oversized"
    BAD_JSON = "bad_json"
    BAD_SCHEMA = "bad_schema"
    BAD_TOPIC = "bad_topic"
    TOPIC_MISMATCH = "topic_mismatch"
    OUT_OF_RANGE = "out_of_range"
    """A number NaN, infinite or past its bound (seq, a call time, `ts` outside 2000..2100): edge_agent/schema.py."""
    TOO_DEEP = "too_deep"
    BAD_TEXT = "bad_text"
    """A string too long, or holding a lone surrogate or NUL."""
    FOREIGN_CALL = "foreign_call"
    """An event for a call that another (site, seat) published first: kept apart, never part of that call."""
    UNSTORABLE = "unstorable"
    """Valid, but the database refused it (alone, while it stored others): acknowledged so it cannot stall ingest."""


REJECTIONS = frozenset(o for o in Outcome if o not in (Outcome.STORED, Outcome.DUPLICATE))


@dataclass(frozen=True)
class Gap:
    site: str
    seat: str
    first: int
    last: int
    """Inclusive: seq first..last have not arrived."""


def scoped_call_id(call_id: str, site: str, seat: str) -> str:
    """The id a call's events from a seat that does not own `call_id` are kept under: '@' is in no call, site or
    seat id (edge_agent/schema.py), so no seat can name another's scoped id, and two seats' never meet."""
    return f"{call_id}@{site}@{seat}"


def _rekeyed(env: Envelope, call_id: str) -> Envelope:
    """`env` under the hub's scoped call id. Not through the constructor, which checks ids against the wire's
    alphabet: the scoped id is outside it on purpose (`scoped_call_id`), and never goes back on the wire."""
    out = copy.copy(env)
    object.__setattr__(out, "call_id", call_id)
    return out


def lock_key(kind: str, *names: str) -> int:
    """A PostgreSQL advisory lock key: a stable signed 64-bit hash (the same in every worker process)."""
    digest = hashlib.blake2b("/".join((f"callqa-{kind}", *names)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def seat_lock_key(site: str, seat: str) -> int:
    """A seat's advisory lock key (its seq bookkeeping, `Store.settle_seqs`)."""
    return lock_key("seat", site, seat)


@dataclass
class _SeqState:
    """What the seq bookkeeping knows about seats while it runs. One lives as long as the store for the single
    writer (a cache of committed rows); the shared path takes a fresh one per pass, after the seats' locks."""

    top: dict[tuple[str, str], int] = field(default_factory=dict)
    epochs: dict[tuple[str, str], object] = field(default_factory=dict)
    dirty: set[tuple[str, str]] = field(default_factory=set)
    """Seats whose max_seq this transaction moved (written once at the end)."""
    bumps: Counter[str] | None = None
    """Counter increments kept until the end (the shared pass: written in name order, so two passes never wait on
    each other's counter rows in a circle); None: written at once."""


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


def _seq_order(events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """A seat's pending rows (n, id, site, seat, seq, epoch, ...) in the order to book them: as stored (by n),
    but each run of one epoch by seq. Booked that way a run ends in the same seats, gaps and counters as one by
    one (the missing seqs below the highest are the same set, and a repeated seq repeats either way), without
    the gaps that two workers' interleaved batches would open and close statement by statement."""
    out: list[tuple[Any, ...]] = []
    run: list[tuple[Any, ...]] = []
    for row in sorted(events, key=lambda r: int(r[0])):
        if run and row[5] != run[0][5]:
            out += sorted(run, key=lambda r: int(r[4]))
            run = []
        run.append(row)
    return out + sorted(run, key=lambda r: int(r[4]))


class Store:
    """See the module docstring. Safe to share between threads."""

    def __init__(self, url: str | os.PathLike[str], *, default_tz: str = "UTC", shared: bool = False) -> None:
        self.db = Database(url)
        self.shared = shared
        """Other ingest processes write this database too (scale-out workers on one PostgreSQL): the seq
        bookkeeping is deferred to `settle_seqs` (under per-seat locks, state re-read there), and `prepare` creates
        the rows that several workers' batches would share; see the module docstring."""
        self.default_tz = default_tz
        zone(default_tz)
        self._tz_cache: dict[str, ZoneInfo] = {}
        self._claimant = uuid.uuid4().hex
        """Names this store's claims on queued calls (`take_pending`, shared)."""
        # write-path caches (only the ingest writer adds): the seats' seq state, devices' last-seen writes, agents
        self._seq = _SeqState()
        self._seen: dict[tuple[str, str, str | None], float] = {}
        self._agents: set[str] = set()
        self._recheck: set[str] = set()
        self._pending_lock = threading.Lock()

    # --- ingest ----------------------------------------------------------------------------------------------

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group several `add`s into one commit (one fsync): ingest's group commit."""
        try:
            with self.db.transaction():
                yield
        except BaseException:
            self._forget_cache()
            raise

    def _forget_cache(self) -> None:
        # the caches mirror committed rows only as long as nothing rolls back: after a rollback, re-read
        self._seq = _SeqState()
        self._seen.clear()
        self._agents.clear()

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
            if self.shared and not self.db.in_transaction():
                self.prepare(items)
            with self.db.transaction():
                return self._add_many(items)
        except BaseException:
            self._forget_cache()
            raise

    def _add_many(self, items: Sequence[tuple[Envelope, str]]) -> list[Outcome]:
        db = self.db
        foreign = self._foreign(items)
        if foreign:  # kept whole as the sender's own call, under an id only that seat's events can reach
            items = [(_rekeyed(env, foreign[env.id]) if env.id in foreign else env, p) for env, p in items]
        new = self._insert_events(items)
        outcomes: list[Outcome] = []
        tracked: list[Envelope] = []  # new rows: their seqs count, so the seat's station stops re-sending them
        stored: list[Envelope] = []  # new rows that belong to their call
        for env, _ in items:
            if env.id in new:
                new.discard(env.id)  # a second copy in the same batch is a duplicate, as it would be one by one
                tracked.append(env)
                stored.append(env)
                outcomes.append(Outcome.FOREIGN_CALL if env.id in foreign else Outcome.STORED)
            else:
                outcomes.append(Outcome.DUPLICATE)
        n_foreign = sum(1 for env in tracked if env.id in foreign)
        if n_foreign:
            self._bump(f"rejected.{Outcome.FOREIGN_CALL}", n_foreign)
        if self.shared:
            # no seat bookkeeping here (settle_seqs, after the commit) and no call row touched by every event:
            # another worker's batch holds those seats and calls too, and would wait for this one's commit
            self._ensure_calls(stored)
            self._insert_pending(tracked)
            self._lock_summarised(stored)
            summary_ids: dict[str, object] = {}  # late events of summarised calls: settle_seqs queues them
        else:
            summary_ids = self._upsert_calls(stored)
        later = {env.id for env in tracked}  # stored by this batch, not yet book-kept
        now = time.time()
        for env in tracked:
            later.discard(env.id)
            if not self.shared and self._same_epoch(self._seq, env.site, env.seat, env.epoch, env.id, later):
                self._track_seq(self._seq, env.site, env.seat, env.seq)
            model = env.model.name if env.model else None
            # shared: `prepare` wrote these before the transaction (here they would deadlock with the other worker)
            if not self.shared and now - self._seen.get((env.site, env.seat, model), 0.0) > 5.0:  # 5 s is plenty
                db.execute(
                    "INSERT INTO devices (site, seat, last_seen, model) VALUES (?, ?, ?, ?) ON CONFLICT (site, seat) "
                    "DO UPDATE SET last_seen = excluded.last_seen, model = COALESCE(excluded.model, devices.model)",
                    (env.site, env.seat, now, model),
                )
                self._seen[(env.site, env.seat, model)] = now
            # no agents row from what a seat says: the directory is the admin's and the CTI's (docs/trust.md)
            if env.type in (SEAT_LOGIN, SEAT_LOGOUT):
                self._seat_event(env)
            if env.call_id is not None:
                self._call_event(env, summary_ids)
        return outcomes

    def _foreign(self, items: Sequence[tuple[Envelope, str]]) -> dict[str, str]:
        """The events whose call belongs to another (site, seat), the one that published it first (its row in
        `calls`, or the first of this batch to name it), each with the call id it is kept under instead
        (`scoped_call_id`). One query for the batch.

        Rejected from the owner's call, such an event is not thrown away: call ids are guessable (a CTI's are
        sequence numbers), so a seat that names another's call id first would otherwise make the rightful
        seat's whole call vanish. Kept apart under the sender's scoped id, neither call can touch the other."""
        ids = sorted({str(env.call_id) for env, _ in items if env.call_id is not None})
        owners: dict[str, tuple[str, str]] = {}
        for i in range(0, len(ids), _INSERT_ROWS):
            chunk = ids[i : i + _INSERT_ROWS]
            marks = ", ".join("?" * len(chunk))
            for call_id, site, seat in self.db.all(
                f"SELECT call_id, site, seat FROM calls WHERE call_id IN ({marks})", chunk
            ):
                owners[str(call_id)] = (str(site), str(seat))
        out: dict[str, str] = {}
        for env, _ in items:
            if env.call_id is not None and owners.setdefault(env.call_id, (env.site, env.seat)) != (env.site, env.seat):
                out[env.id] = scoped_call_id(env.call_id, env.site, env.seat)
        return out

    def _insert_events(self, items: Sequence[tuple[Envelope, str]]) -> set[str]:
        """INSERT the rows, many per statement; the ids this inserted (the others were stored already)."""
        received = time.time()
        new: set[str] = set()
        if self.shared:
            # in id order: two workers storing the same (re-delivered) events never wait on each other in a circle
            items = sorted(items, key=lambda item: item[0].id)
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

    def _same_epoch(
        self,
        state: _SeqState,
        site: str,
        seat: str,
        epoch: str | None,
        event_id: str,
        later: set[str] | frozenset[str] = frozenset(),
    ) -> bool:
        """Whether an event's seq counts in the seat's current outbox epoch; switches to a new epoch when a station
        comes back with a fresh outbox (seq from 1 again). An event of a retired epoch is stored but its seq
        is not tracked (it would reopen the old numbering). `later`: ids stored already but behind this event,
        which one-by-one storing would not have stored yet; events still in `seq_pending` are not book-kept
        either."""
        if epoch is None:
            return True  # a station too old to say: one unnamed epoch
        key = (site, seat)
        current = state.epochs.get(key, _UNKNOWN)
        if current is _UNKNOWN:
            row = self.db.one("SELECT epoch FROM seats WHERE site = ? AND seat = ?", key)
            current = None if row is None else row[0]
            if row is None:
                current = _NEW_SEAT
        if current == epoch:
            return True
        db = self.db
        if current is not _NEW_SEAT and any(
            row[0] not in later
            for row in db.all(
                "SELECT id FROM events e WHERE site = ? AND seat = ? AND epoch = ? AND id <> ?"
                " AND NOT EXISTS (SELECT 1 FROM seq_pending p WHERE p.id = e.id) LIMIT ?",
                (site, seat, epoch, event_id, len(later) + 1),
            )
        ):
            self._count(state, "retired_epoch_events")
            return False
        if current is not _NEW_SEAT:
            self._count(state, "epoch_resets")
            log.warning("seat %s/%s: a new station outbox (epoch %s): seq counting starts again", *key, epoch)
            db.execute("DELETE FROM gaps WHERE site = ? AND seat = ?", key)
        db.execute(
            "INSERT INTO seats (site, seat, max_seq, epoch) VALUES (?, ?, 0, ?) "
            "ON CONFLICT (site, seat) DO UPDATE SET max_seq = 0, epoch = excluded.epoch",
            (*key, epoch),
        )
        state.top[key] = 0
        state.epochs[key] = epoch
        return True

    def _count(self, state: _SeqState, name: str) -> None:
        if state.bumps is None:
            self._bump(name)
        else:
            state.bumps[name] += 1

    def epoch(self, site: str, seat: str) -> str | None:
        """The outbox epoch the seat's watermark counts in (None: never named)."""
        return self.db.scalar("SELECT epoch FROM seats WHERE site = ? AND seat = ?", (site, seat))  # type: ignore[no-any-return]

    def _track_seq(self, state: _SeqState, site: str, seat: str, seq: int) -> None:
        db = self.db
        top = state.top.get((site, seat))
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
                self._count(state, "seq_regressions")
                log.warning(
                    "seat %s/%s: seq %d at or below %d and not missing: station seq reset?", site, seat, seq, top
                )
            else:
                first, last = gap
                db.execute("DELETE FROM gaps WHERE site = ? AND seat = ? AND first = ?", (site, seat, first))
                for a, b in ((first, seq - 1), (seq + 1, last)):
                    if a <= b:
                        db.execute("INSERT INTO gaps VALUES (?, ?, ?, ?)", (site, seat, a, b))
        if seq > top or (site, seat) not in state.top:
            if not state.dirty and state.bumps is None:
                db.before_commit(functools.partial(self._write_seats, state))
            state.dirty.add((site, seat))
        state.top[(site, seat)] = max(seq, top)

    def _write_seats(self, state: _SeqState) -> None:
        # the seats' highest seq, once per seat at the commit rather than once per event
        rows = [(site, seat, state.top[(site, seat)]) for site, seat in sorted(state.dirty)]
        state.dirty.clear()
        self.db.executemany(
            "INSERT INTO seats (site, seat, max_seq) VALUES (?, ?, ?) ON CONFLICT (site, seat) "
            "DO UPDATE SET max_seq = "
            "CASE WHEN seats.max_seq > excluded.max_seq THEN seats.max_seq ELSE excluded.max_seq END",
            rows,
        )

    # --- scale-out: the work moved out of the ingest transaction ------------------------------------------------

    def prepare(self, items: Sequence[tuple[Envelope, str]]) -> None:
        """Before a shared worker's batch transaction, in a short one of its own: the batch's agents, calls and
        devices' last-seen rows. Both workers' batches name the same seats and calls; written inside them, each
        would hold those rows until its commit and the other worker would wait for it. Rows in key order, so two
        of these never wait on each other in a circle. A call row made here for events that then fail to store
        is an empty call, the same as one whose summary has not come yet (the events are re-delivered)."""
        envs = [env for env, _ in items]
        now = time.time()
        agents: list[str] = []  # no agents row from what a seat says (docs/trust.md)
        due: set[tuple[str, str, str | None]] = set()
        seen: dict[tuple[str, str], str | None] = {}  # a row per seat: the model if any event named one
        for e in envs:
            model = e.model.name if e.model else None
            if now - self._seen.get((e.site, e.seat, model), 0.0) > 5.0:
                due.add((e.site, e.seat, model))
                seen[(e.site, e.seat)] = model or seen.get((e.site, e.seat))
        with self.db.transaction():
            self._ensure_calls(envs)
            self.db.executemany(
                "INSERT INTO devices (site, seat, last_seen, model) VALUES (?, ?, ?, ?) ON CONFLICT (site, seat) "
                "DO UPDATE SET last_seen = excluded.last_seen, model = COALESCE(excluded.model, devices.model)",
                [(site, seat, now, model) for (site, seat), model in sorted(seen.items())],
            )
            self.db.after_commit(functools.partial(self._prepared, agents, due, now))

    def _prepared(self, agents: list[str], due: set[tuple[str, str, str | None]], now: float) -> None:
        # the caches mirror committed rows only
        self._agents.update(agents)
        for key in due:
            self._seen[key] = now

    def _ensure_calls(self, envs: Sequence[Envelope]) -> None:
        """The calls' rows, made where missing (shared: `n_events` is counted when the call is scored). Only the
        missing ones are inserted: an insert that meets another worker's uncommitted row waits for its commit."""
        ids = sorted({str(e.call_id) for e in envs if e.call_id is not None})
        if not ids:
            return
        have: set[str] = set()
        for i in range(0, len(ids), _INSERT_ROWS):
            chunk = ids[i : i + _INSERT_ROWS]
            marks = ", ".join("?" * len(chunk))
            have.update(str(r[0]) for r in self.db.all(f"SELECT call_id FROM calls WHERE call_id IN ({marks})", chunk))
        first = {str(e.call_id): e for e in reversed(envs) if e.call_id is not None}
        missing = [c for c in ids if c not in have]
        for i in range(0, len(missing), _INSERT_ROWS):
            chunk = missing[i : i + _INSERT_ROWS]
            params: list[object] = []
            for c in chunk:
                params += (c, first[c].site, first[c].seat)
            self.db.execute(
                "INSERT INTO calls (call_id, site, seat) VALUES "
                + ", ".join(["(?, ?, ?)"] * len(chunk))
                + " ON CONFLICT (call_id) DO NOTHING",
                params,
            )

    def _lock_summarised(self, stored: Sequence[Envelope]) -> None:
        """Lock the rows of the calls whose summaries this batch stores, in call id order, before it updates them
        in arrival order: a scorer locks the calls it saves in that order too, so the two never deadlock."""
        ids = sorted({str(e.call_id) for e in stored if e.type == "call_summary" and e.call_id is not None})
        if ids and self.db.dialect == "postgres":
            marks = ", ".join("?" * len(ids))
            self.db.execute(f"SELECT call_id FROM calls WHERE call_id IN ({marks}) ORDER BY call_id FOR UPDATE", ids)

    def _insert_pending(self, stored: Sequence[Envelope]) -> None:
        for i in range(0, len(stored), _INSERT_ROWS):
            chunk = stored[i : i + _INSERT_ROWS]
            params: list[object] = []
            for e in chunk:  # in arrival order: settle_seqs books a seat's events in that order
                params += (e.id, e.site, e.seat, e.seq, e.epoch, e.call_id, e.type)
            self.db.execute(
                "INSERT INTO seq_pending (id, site, seat, seq, epoch, call_id, type) VALUES "
                + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(chunk)),
                params,
            )

    def pending_seats(self) -> set[tuple[str, str]]:
        """Seats with stored events that `settle_seqs` has not counted yet (any worker's, a crashed one's too)."""
        return {(str(a), str(b)) for a, b in self.db.all("SELECT DISTINCT site, seat FROM seq_pending")}

    def settle_seqs(self, seats: Iterable[tuple[str, str]] | None = None) -> set[tuple[str, str]]:
        """Count the stored events of `seats` (None: every seat with any) into their seats' watermarks: the
        bookkeeping `add_many` does inline for a single writer, here after the events' commit, in one short
        transaction, each seat under its advisory lock (tried, never waited for: a seat another worker holds is
        being settled by it; it is returned, for the caller to try again). A seat's pending events are claimed
        whole, so an ack read after this covers only committed events, and a watermark only moves up. Late events
        of summarised calls are queued for a re-check (`take_recheck`): read here, after their commit, a summary
        committed meanwhile cannot be missed by both this and the summary's own scoring."""
        todo = sorted(set(self.pending_seats() if seats is None else seats))
        if not todo:
            return set()
        db = self.db
        state = _SeqState(bumps=Counter())
        with db.transaction():
            locked = self._try_lock_seats(todo)
            rows = self._claim_pending(locked)
            per_seat: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
            for row in rows:
                per_seat.setdefault((str(row[2]), str(row[3])), []).append(row)
            for key, (top, epoch) in self._seat_rows(sorted(per_seat)).items():  # one query, not two a seat
                state.top[key], state.epochs[key] = top, epoch
            for key in sorted(per_seat):
                events = _seq_order(per_seat[key])
                later = {str(r[1]) for r in events}
                for _, event_id, site, seat, seq, epoch, _, _ in events:
                    later.discard(str(event_id))
                    if self._same_epoch(state, str(site), str(seat), epoch, str(event_id), later):
                        self._track_seq(state, str(site), str(seat), int(seq))
            late = sorted({str(r[6]) for r in rows if r[6] is not None and r[7] != "call_summary"})
            summarised: set[str] = set()
            for i in range(0, len(late), _INSERT_ROWS):
                chunk = late[i : i + _INSERT_ROWS]
                marks = ", ".join("?" * len(chunk))
                summarised.update(
                    str(r[0])
                    for r in db.all(
                        f"SELECT call_id FROM calls WHERE call_id IN ({marks}) AND summary_id IS NOT NULL", chunk
                    )
                )
            self._reattribute(rows)
            self._write_seats(state)
            assert state.bumps is not None  # noqa: S101 - made with one above
            for name in sorted(state.bumps):
                self._bump(name, state.bumps[name])
            if summarised:
                db.after_commit(functools.partial(self._recheck_add, summarised))
        return set(todo) - set(locked)

    def _reattribute(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Settle pass: the seat-attributed calls that the claimed logins, logouts and summaries bear on, each
        given whoever was logged in when it started. Two workers storing a login and a summary of one seat at
        once each miss the other's uncommitted row; this pass runs after both commits (the later of the two
        passes, under the seat's lock, sees both), so the call cannot stay with the wrong agent."""
        db = self.db
        candidates: set[str] = set()
        for _, event_id, site, seat, _, _, call_id, typ in rows:
            if typ == "call_summary" and call_id is not None:
                candidates.add(str(call_id))
            elif typ in (SEAT_LOGIN, SEAT_LOGOUT):
                at = db.scalar("SELECT at FROM seat_logins WHERE event_id = ?", (event_id,))
                if at is None:
                    continue
                nxt = db.scalar(
                    "SELECT MIN(at) FROM seat_logins WHERE site = ? AND seat = ? AND at > ?", (site, seat, at)
                )
                candidates.update(
                    str(r[0])
                    for r in db.all(
                        "SELECT call_id FROM calls WHERE site = ? AND seat = ? AND started >= ? AND started < ?",
                        (site, seat, at, nxt if nxt is not None else 1e18),
                    )
                )
        for call_id in sorted(candidates):  # call id order, as everyone locks call rows
            row = db.one(
                "SELECT site, seat, started, agent_id, day FROM calls WHERE call_id = ?"
                f" AND (agent_source IS NULL OR agent_source IN {_LOGIN_SOURCES}) AND started IS NOT NULL",
                (call_id,),
            )
            if row is None:
                continue
            site, seat, started, old_agent, day = row
            agent, source = self._login_at(str(site), str(seat), float(started))
            if agent == old_agent:
                continue
            if old_agent is not None and day is not None:
                self._stale_add(str(old_agent), str(day))  # marked in this transaction, durably
            db.execute(
                "UPDATE calls SET agent_id = ?, agent_source = ? WHERE call_id = ?",
                (agent, source if agent else None, call_id),
            )
            self._queue(call_id)

    def _seat_rows(self, seats: Sequence[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, str | None]]:
        """The seats' (max_seq, epoch), for those that have a row."""
        out: dict[tuple[str, str], tuple[int, str | None]] = {}
        for i in range(0, len(seats), 200):
            chunk = seats[i : i + 200]
            where = " OR ".join(["(site = ? AND seat = ?)"] * len(chunk))
            for site, seat, top, epoch in self.db.all(
                f"SELECT site, seat, max_seq, epoch FROM seats WHERE {where}", [x for key in chunk for x in key]
            ):
                out[(str(site), str(seat))] = (int(top), epoch)
        return out

    def _try_lock_seats(self, seats: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The seats whose advisory lock this transaction got (PostgreSQL; SQLite: BEGIN IMMEDIATE already
        serialises every writer, so all)."""
        if self.db.dialect != "postgres":
            return seats
        keys = [seat_lock_key(site, seat) for site, seat in seats]
        got = self.db.all(
            "SELECT pg_try_advisory_xact_lock(k) FROM unnest(CAST(? AS bigint[])) WITH ORDINALITY AS t(k, i)"
            " ORDER BY i",
            (keys,),
        )
        return [seat for seat, (ok,) in zip(seats, got, strict=True) if ok]

    def _claim_pending(self, seats: list[tuple[str, str]]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        for i in range(0, len(seats), 200):
            chunk = seats[i : i + 200]
            where = " OR ".join(["(site = ? AND seat = ?)"] * len(chunk))
            rows += self.db.all(
                f"DELETE FROM seq_pending WHERE {where} RETURNING n, id, site, seat, seq, epoch, call_id, type",
                [x for key in chunk for x in key],
            )
        return rows

    def recheck_waiting(self) -> bool:
        with self._pending_lock:
            return bool(self._recheck)

    def _recheck_add(self, call_ids: set[str]) -> None:
        with self._pending_lock:
            self._recheck.update(call_ids)

    def take_recheck(self) -> list[str]:
        """Summarised calls that got events since (`settle_seqs`): to be scored again unless their current score
        already counts every stored event (`outdated`)."""
        with self._pending_lock:
            out, self._recheck = sorted(self._recheck), set()
        return out

    def outdated(self, call_ids: Sequence[str]) -> list[str]:
        """Of `call_ids`, those without a score or whose score counted fewer events than are stored now."""
        out: list[str] = []
        for i in range(0, len(call_ids), _INSERT_ROWS):
            chunk = list(call_ids[i : i + _INSERT_ROWS])
            marks = ", ".join("?" * len(chunk))
            out += [
                str(r[0])
                for r in self.db.all(
                    f"SELECT c.call_id FROM calls c WHERE c.call_id IN ({marks}) AND (c.score_id IS NULL OR"
                    " c.n_events <> (SELECT COUNT(*) FROM events e WHERE e.call_id = c.call_id))",
                    chunk,
                )
            ]
        return out

    def _seat_event(self, env: Envelope) -> None:
        at = parse_ts(env.ts)
        agent = env.agent_id if env.type == SEAT_LOGIN else None
        self.db.execute(
            "INSERT INTO seat_logins (event_id, site, seat, at, agent_id, source) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (event_id) DO NOTHING",
            (env.id, env.site, env.seat, at, agent, SOURCE_SEAT),
        )
        self._reattribute_from(env.site, env.seat, at)

    def cti_login(self, site: str, seat: str, agent: str | None, *, at: float | None = None, key: str) -> None:
        """A login (`agent`) or logout (None) the CTI sent the seat (`cmd/login`, `cmd/logout`: only the `cti`
        and `hub` broker users may publish those): the seat's trusted login state, docs/trust.md. From the seat's
        first one on, its own `agent_login`/`agent_logout` events no longer count. The CTI names real agents:
        an agent it names is added to the directory if missing. `key`: the command's identity (a redelivered
        one changes nothing); `at`: its `ts`, else now."""
        at = time.time() if at is None else at
        with self.db.transaction():
            if agent is not None:
                self.db.execute(
                    "INSERT INTO agents (agent_id, name) VALUES (?, ?) ON CONFLICT (agent_id) DO NOTHING",
                    (agent, agent),
                )
            self.db.execute(
                "INSERT INTO seat_logins (event_id, site, seat, at, agent_id, source) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (event_id) DO NOTHING",
                (f"cti:{key}", site, seat, at, agent, SOURCE_CTI),
            )
            self._reattribute_from(site, seat, at)

    def _reattribute_from(self, site: str, seat: str, at: float) -> None:
        """A login or logout delivered late (an outbox replaying after an outage, a CTI message): the calls it
        covers (started from `at` up to the seat's next login or logout) go to whoever `agent_at` says now."""
        nxt = self.db.scalar("SELECT MIN(at) FROM seat_logins WHERE site = ? AND seat = ? AND at > ?", (site, seat, at))
        rows = self.db.all(
            "SELECT call_id, agent_id, day, started FROM calls WHERE site = ? AND seat = ?"
            f" AND (agent_source IS NULL OR agent_source IN {_LOGIN_SOURCES}) AND started >= ? AND started < ?",
            (site, seat, at, nxt if nxt is not None else 1e18),
        )
        for call_id, old_agent, day, started in rows:
            agent, source = self._login_at(site, seat, float(started))
            if old_agent == agent:
                continue
            if old_agent is not None and day is not None:
                self._stale_add(old_agent, day)  # its rollup loses the call (marked in this transaction)
            self.db.execute(
                "UPDATE calls SET agent_id = ?, agent_source = ? WHERE call_id = ?",
                (agent, source if agent else None, call_id),
            )
            self._queue(call_id)

    def agent_at(self, site: str, seat: str, at: float) -> str | None:
        """Who was logged in at the seat at POSIX time `at`, by the hub's login state (None: nobody, logged out,
        or an agent the hub does not know): see `_login_at`."""
        return self._login_at(site, seat, at)[0]

    def _login_at(self, site: str, seat: str, at: float) -> tuple[str | None, str | None]:
        """(agent, source) of the seat's login state at `at`: the latest login or logout at or before it, counting
        the seat's own only while the CTI has never spoken for the seat. A seat's login of an agent that is
        not in the directory (agents) attributes nothing: no seat makes a call visible to an agent it names."""
        row = self.db.one(
            "SELECT l.agent_id, l.source, EXISTS (SELECT 1 FROM agents a WHERE a.agent_id = l.agent_id)"
            " FROM seat_logins l WHERE l.site = ? AND l.seat = ? AND l.at <= ? AND (l.source = ? OR NOT EXISTS"
            " (SELECT 1 FROM seat_logins c WHERE c.site = ? AND c.seat = ? AND c.source = ?))"
            " ORDER BY l.at DESC LIMIT 1",
            (site, seat, at, SOURCE_CTI, site, seat, SOURCE_CTI),
        )
        if row is None or row[0] is None:
            return None, None
        agent, source, known = str(row[0]), str(row[1] or SOURCE_SEAT), bool(row[2])
        if source != SOURCE_CTI and not known:
            return None, None
        return agent, source

    def _upsert_calls(self, stored: list[Envelope]) -> dict[str, object]:
        """The batch's calls' rows in one statement, each counting its events stored here; per call, the summary
        it had before this batch. (Rows made early change nothing for the events before a call's first: a new
        row has no start time, which is all a login's re-attribution looks at.)"""
        counts = Counter(str(env.call_id) for env in stored if env.call_id is not None)
        if not counts:
            return {}
        first = {str(env.call_id): env for env in reversed(stored) if env.call_id is not None}
        params: list[object] = []
        # in call id order: the rows are locked in that order, as the scorer locks the calls it saves
        for call_id, n in sorted(counts.items()):
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
        # the agent: whoever the hub's login state says was at the seat when the call started, never the
        # envelope's agent_id (the seat's own claim: one that disagrees is counted, docs/trust.md)
        agent, source = self._login_at(env.site, env.seat, started)
        if env.agent_id is not None and env.agent_id != agent:
            self._bump("agent_mismatch")
        self.db.execute(
            "UPDATE calls SET started = ?, day = ?, week = ?, duration = ?, summary_id = ?, low_confidence = ?,"
            " flags = ?, agent_id = ?, agent_source = ? WHERE call_id = ?",
            (
                started,
                day,
                week,
                duration,
                env.id,
                int(low),
                ",".join(flags),
                agent,
                source or SOURCE_SEAT,
                env.call_id,
            ),
        )

    # --- the scorer's work list: durable (score_queue, score_stale), docs/hub.md "Scorecards and scores" ----------

    def _queue(self, call_id: str) -> None:
        """Queue a call for scoring inside the current transaction (its summary, a late event, a re-attribution):
        the row commits with the change or not at all, so no crash leaves a changed call unscored. A call set
        apart as failed is tried afresh: it changed. Callers hold the call's row already (written or locked), as
        everyone who writes a call's queue row does, so two such transactions never wait on each other in a
        circle."""
        self.db.execute(
            "INSERT INTO score_queue (call_id, queued_at) VALUES (?, ?) ON CONFLICT (call_id) DO UPDATE SET"
            " queued_at = excluded.queued_at, attempts = 0, last_error = NULL, failed = 0, claimed_by = NULL",
            (call_id, time.time()),
        )

    def requeue(self, call_ids: Sequence[str]) -> None:
        """Queue calls whose score could not be made current (events stored since they were read), inside the
        caller's transaction or one of its own; a call queued already keeps its place and attempts."""
        now = time.time()
        with self.db.transaction():
            self.db.executemany(
                "INSERT INTO score_queue (call_id, queued_at) VALUES (?, ?) ON CONFLICT (call_id) DO NOTHING",
                [(c, now) for c in sorted(call_ids)],
            )

    def _stale_add(self, agent: str, day: str) -> None:
        """Mark an (agent, day) rollup that lost a call to a re-attribution, for the scorer to rebuild: inside the
        transaction that moved the call, or one of its own. An upsert, not DO NOTHING: it takes the mark's row
        lock, so a rebuild that has taken the mark meanwhile (`claim_stale`) commits first and the mark is made
        again for the next one."""
        with self.db.transaction():
            self.db.execute(
                "INSERT INTO score_stale (agent_id, day, marked) VALUES (?, ?, ?) ON CONFLICT (agent_id, day)"
                " DO UPDATE SET marked = excluded.marked",
                (agent, day, time.time()),
            )

    def take_pending(self, limit: int = 5000, claim_s: float = 60.0) -> tuple[list[str], list[tuple[str, str]]]:
        """The scorer's work: queued calls (oldest first, at most `limit`; those set apart as failed left out) and
        the (agent, day) rollups marked stale. Nothing is removed here: the transaction that saves a call's score
        removes its row (`unqueue`), so a crash in between leaves the call queued. A shared worker claims the
        calls it takes for `claim_s` seconds (a crashed worker's claims run out), skipping those another worker
        claimed or is writing right now, so two workers do not score the same calls at once."""
        db = self.db
        if self.shared:
            now = time.time()
            skip = " FOR UPDATE SKIP LOCKED" if db.dialect == "postgres" else ""
            with db.transaction():
                rows = db.all(
                    "UPDATE score_queue SET claimed_by = ?, claimed_at = ? WHERE call_id IN (SELECT call_id FROM"
                    " score_queue WHERE failed = 0 AND (claimed_by IS NULL OR claimed_by = ? OR claimed_at < ?)"
                    f" ORDER BY queued_at LIMIT ?{skip}) RETURNING call_id",
                    (self._claimant, now, self._claimant, now - claim_s, limit),
                )
        else:
            rows = db.all("SELECT call_id FROM score_queue WHERE failed = 0 ORDER BY queued_at LIMIT ?", (limit,))
        stale = db.all("SELECT agent_id, day FROM score_stale ORDER BY agent_id, day LIMIT ?", (limit,))
        return sorted(str(r[0]) for r in rows), [(str(a), str(d)) for a, d in stale]

    def unqueue(self, call_ids: Sequence[str]) -> set[str]:
        """Inside the transaction that saves the calls' scores (their rows locked): take them off the work list;
        the ids that were on it (a queued call missing here was saved by another worker since it was taken)."""
        if not call_ids:
            return set()
        marks = ", ".join("?" * len(call_ids))
        return {
            str(r[0])
            for r in self.db.all(
                f"DELETE FROM score_queue WHERE call_id IN ({marks}) RETURNING call_id", list(call_ids)
            )
        }

    def unqueue_unsummarised(self, call_ids: Sequence[str]) -> None:
        """Take queued calls without a summary off the work list (nothing to score: their summary queues them
        again), under the calls' row locks, so a summary being stored meanwhile is never missed."""
        ids = sorted(set(call_ids))
        if not ids:
            return
        marks = ", ".join("?" * len(ids))
        with self.db.transaction():
            self._lock_call_rows(ids)
            self.db.execute(
                f"DELETE FROM score_queue WHERE call_id IN ({marks}) AND NOT EXISTS (SELECT 1 FROM calls c"
                " WHERE c.call_id = score_queue.call_id AND c.summary_id IS NOT NULL)",
                ids,
            )

    def _lock_call_rows(self, ids: Sequence[str]) -> None:
        # PostgreSQL, in call id order: as ingest and the scorer lock the calls whose queue rows they write
        if ids and self.db.dialect == "postgres":
            marks = ", ".join("?" * len(ids))
            self.db.execute(f"SELECT call_id FROM calls WHERE call_id IN ({marks}) ORDER BY call_id FOR UPDATE", ids)

    def score_failed(self, failures: Mapping[str, str], max_attempts: int) -> list[tuple[str, int, bool]]:
        """Record failed attempts at scoring calls (each with its error): a call stays queued, behind the others,
        and is set apart as failed at its `max_attempts`-th failure in a row, counted once in `scoring_failed`.
        Per call: (id, attempts so far, whether this attempt set it apart)."""
        ids = sorted(failures)
        out: list[tuple[str, int, bool]] = []
        now = time.time()
        with self.db.transaction():
            self._lock_call_rows(ids)
            for call_id in ids:
                was = self.db.one("SELECT attempts, failed FROM score_queue WHERE call_id = ?", (call_id,))
                attempts = (int(was[0]) if was else 0) + 1
                failed = attempts >= max_attempts
                self.db.execute(
                    "INSERT INTO score_queue (call_id, queued_at, attempts, last_error, failed) VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT (call_id) DO UPDATE SET queued_at = excluded.queued_at, attempts = excluded.attempts,"
                    " last_error = excluded.last_error, failed = excluded.failed, claimed_by = NULL",
                    (call_id, now, attempts, failures[call_id], int(failed)),
                )
                newly = failed and not (was is not None and int(was[1]))
                if newly:
                    self._bump("scoring_failed")
                out.append((call_id, attempts, newly))
        return out

    def claim_stale(self, limit: int = 5000) -> list[tuple[str, str]]:
        """Inside the transaction that rebuilds them: take the stale (agent, day) marks off the list (PostgreSQL:
        skipping marks a re-attribution is writing right now; they are rebuilt by the next pass)."""
        skip = " FOR UPDATE SKIP LOCKED" if self.db.dialect == "postgres" else ""
        rows = [
            (str(a), str(d))
            for a, d in self.db.all(
                f"SELECT agent_id, day FROM score_stale ORDER BY agent_id, day LIMIT ?{skip}", (limit,)
            )
        ]
        self.db.executemany("DELETE FROM score_stale WHERE agent_id = ? AND day = ?", rows)
        return rows

    def scoring_status(self, failed_calls: int = 20) -> dict[str, Any]:
        """The work list at a glance: calls waiting for a score, those among them retrying after a failed
        attempt, those set apart as failed (and the latest `failed_calls` of them with their errors), and how many
        times a call has been set apart since the database was made (`scoring_failed`)."""
        queued, retrying, failed = self.db.one(
            "SELECT COUNT(*), SUM(CASE WHEN attempts > 0 AND failed = 0 THEN 1 ELSE 0 END), SUM(failed)"
            " FROM score_queue"
        ) or (0, 0, 0)
        rows = self.db.all(
            "SELECT call_id, attempts, last_error FROM score_queue WHERE failed = 1 ORDER BY queued_at DESC LIMIT ?",
            (failed_calls,),
        )
        return {
            "queued": int(queued or 0) - int(failed or 0),
            "retrying": int(retrying or 0),
            "failed": int(failed or 0),
            "failed_total": self.counters().get("scoring_failed", 0),
            "failed_calls": [{"call_id": c, "attempts": int(a), "error": e} for c, a, e in rows],
        }

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

    def watermarks(
        self, seats: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[int, int, list[tuple[int, int]], str | None]]:
        """`watermark` and `epoch` of many seats in a few queries (the ack loop's): per seat (contiguous seq,
        highest seq, missing ranges, epoch)."""
        seats = sorted(set(seats))
        rows = self._seat_rows(seats)
        gaps: dict[tuple[str, str], list[tuple[int, int]]] = {}
        for i in range(0, len(seats), 200):
            chunk = seats[i : i + 200]
            where = " OR ".join(["(site = ? AND seat = ?)"] * len(chunk))
            for site, seat, a, b in self.db.all(
                f"SELECT site, seat, first, last FROM gaps WHERE {where} ORDER BY site, seat, first",
                [x for key in chunk for x in key],
            ):
                gaps.setdefault((str(site), str(seat)), []).append((int(a), int(b)))
        out = {}
        for key in seats:
            top, epoch = rows.get(key, (0, None))
            g = gaps.get(key, [])
            out[key] = ((g[0][0] - 1 if g else top), top, g, epoch)
        return out

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

    def bump_counter(self, name: str, n: int = 1) -> int:
        """Add `n` to the counter `name` (not an ingest rejection: those are `count_reject`'s); its new value."""
        with self.db.transaction():
            return self._bump(name, n)

    def _bump(self, name: str, n: int = 1) -> int:
        return int(
            self.db.scalar(
                "INSERT INTO counters VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = counters.value"
                " + excluded.value RETURNING value",
                (name, n),
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
