"""Scorecards in the database, scores with history, and the per-agent daily rollups they feed.

- `import_scorecard` stores a validated document under (name, version); the same version with a different
  text is refused, so a stored score always names the exact rules that made it. One scorecard is active.
- `Scorer.score(call_ids)` scores calls under the active scorecard and `rescore` re-applies any stored version
  to past calls: each run adds a `scores` row and marks it current; earlier rows stay as history.
  `score_pending` (ingest's scoring thread) takes the calls from the durable work list (`score_queue`, filled
  in the transactions that change calls) and takes each off it in the transaction that saves its score, so
  no crash loses one. A call that cannot be scored is isolated (the chunk saved in halves down to it), retried,
  then set apart as failed, counted and shown (`MAX_ATTEMPTS`, `Store.scoring_status`): it never costs the
  calls scored with it their scores.
- A call's effective result is its automatic rule results with reviewers' overrides (and upheld disputes)
  applied: `call_rules` holds both per rule, `calls.score` the effective total.
- `agent_daily` / `agent_rule_daily` are recomputed for every (agent, day) a change touches, so agent
  pages read a few hundred rollup rows instead of scanning a million calls.
"""

from __future__ import annotations

import functools
import json
import logging
import multiprocessing
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, date, datetime

from hub import rollups, validity
from hub.db import StorageError
from hub.scorecard import Scorecard, ScorecardError, digest, parse
from hub.scoring import CallScore, call_view, score_call
from hub.storage import Store, lock_key

log = logging.getLogger(__name__)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def import_scorecard(store: Store, text: str, *, actor: str = "system", activate: bool = True) -> Scorecard:
    card = parse(text)
    sha = digest(text)
    db = store.db
    with db.transaction():
        if db.dialect == "postgres":
            # workers started together on a fresh database each import the shipped card, and two activations at
            # once could leave two active: one import at a time (SQLite's write lock already serialises them)
            db.execute("SELECT pg_advisory_xact_lock(?)", (lock_key("scorecards"),))
        old = db.one("SELECT sha256 FROM scorecards WHERE name = ? AND version = ?", (card.name, card.version))
        if old is not None and old[0] != sha:
            raise ScorecardError(
                f"scorecard {card.name} version {card.version} already exists with different rules; bump version"
            )
        if old is None:
            db.execute(
                "INSERT INTO scorecards (name, version, body, sha256, created, created_by) VALUES (?, ?, ?, ?, ?, ?)",
                (card.name, card.version, text, sha, now_iso(), actor),
            )
            audit(store, actor, "scorecard.import", f"{card.name}@{card.version}", {"sha256": sha})
        if activate:
            db.execute("UPDATE scorecards SET active = 0 WHERE active = 1")
            db.execute("UPDATE scorecards SET active = 1 WHERE name = ? AND version = ?", (card.name, card.version))
    return card


def get_scorecard(store: Store, name: str | None = None, version: int | None = None) -> Scorecard | None:
    """The active scorecard (no arguments), the latest version of `name`, or an exact version."""
    if name is None:
        row = store.db.one("SELECT body FROM scorecards WHERE active = 1")
    elif version is None:
        row = store.db.one("SELECT body FROM scorecards WHERE name = ? ORDER BY version DESC LIMIT 1", (name,))
    else:
        row = store.db.one("SELECT body FROM scorecards WHERE name = ? AND version = ?", (name, version))
    return parse(row[0]) if row else None


def audit(store: Store, actor: str, action: str, target: str, detail: Mapping[str, object]) -> None:
    store.db.execute(
        "INSERT INTO audit (ts, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
        (now_iso(), actor, action, target, json.dumps(detail, ensure_ascii=False, sort_keys=True)),
    )


@dataclass(frozen=True)
class ScoreRow:
    """A call's score as it is saved (`Scorer._save_all`), small enough to come back from a scoring process."""

    call_id: str
    scorecard: str
    version: int
    score: float
    max_score: float
    weight: float
    excluded: bool
    note: str
    items: str
    """The rule results with their evidence, as JSON (`scores.items`)."""
    rules: list[tuple[str, float, int]]
    """Per rule: id, points, occurrences (`call_rules`)."""
    error: str = ""
    """Set (and nothing else): the call could not be scored, and why (`failure`)."""
    length_bin: int = validity.LENGTH_UNKNOWN
    anger: int = validity.ANGER_UNKNOWN
    """The call's stratum in the rule validity report (`hub.validity.stratum`), from its summary."""

    @classmethod
    def failure(cls, call_id: str, error: str) -> ScoreRow:
        return cls(call_id, "", 0, 0.0, 0.0, 0.0, False, "", "", [], error)


def score_row(r: CallScore, stratum: tuple[int, int] = (validity.LENGTH_UNKNOWN, validity.ANGER_UNKNOWN)) -> ScoreRow:
    return ScoreRow(
        r.call_id,
        r.scorecard,
        r.version,
        r.score,
        r.max_score,
        r.weight,
        r.excluded,
        r.note,
        json.dumps(r.items_json(), ensure_ascii=False),
        [(i.rule, i.points, i.count) for i in r.items],
        length_bin=stratum[0],
        anger=stratum[1],
    )


def score_payloads(card: Scorecard, calls: Sequence[tuple[str, Sequence[str]]]) -> list[ScoreRow]:
    """Score calls from their stored payloads (JSON texts); the calls without a summary yet are left out, and a
    call whose events cannot be scored comes back as a failure (`ScoreRow.failure`) rather than failing the
    others. Pure, so a scoring process can run it."""
    rows = []
    for call_id, payloads in calls:
        try:
            view = call_view([json.loads(p) for p in payloads])
            if view is not None:
                rows.append(score_row(score_call(call_id, card, view), validity.stratum(view.summary)))
        except Exception as exc:  # whatever a stored event holds: it costs only its own call the score
            rows.append(ScoreRow.failure(call_id, describe(exc)))
    return rows


def describe(exc: BaseException) -> str:
    """An error in one bounded line (the work list's `last_error`, the log)."""
    text = " ".join(str(exc).split()) or "(no message)"
    return f"{type(exc).__name__}: {text}"[:300]


def rollup_day_error(day: str) -> str | None:
    """Why a call's local day cannot go into the rollups (None: it can). The weekly rollup spans the day's week
    Monday to Sunday (hub/rollups.py), and for the last days of 9999 that Sunday is past the last date there
    is: a summary stamped 9999-12-31 made every score saved with it fail (calls stored before ingest bounded
    event times still hold such days)."""
    try:
        d = date.fromisoformat(day)
    except (TypeError, ValueError):
        return f"its day {day!r} is not a date"
    if (date.max - d).days < 6 - d.weekday():
        return f"its day {day} is in the calendar's last week, past which the weekly rollup would end"
    return None


MAX_ATTEMPTS = 3
"""A call whose scoring fails this many times in a row is set apart as failed: counted, logged once, shown
(`Store.scoring_status`), tried again only when it changes or is re-scored."""
QUEUE_TAKE = 5000
"""Queued calls a scoring pass takes at a time."""

_POOL_MIN_CALLS = 16
"""Fewer calls than this are scored in the thread that asks: not worth the trip to the scoring process."""
_POOL_TASK_CALLS = 100
"""Calls per task sent to the scoring process (results come back while it works on the next)."""


class Scorer:
    def __init__(self, store: Store, *, processes: int = 0) -> None:
        self.store = store
        self.processes = processes
        """Score in this many processes of their own (0: in the calling thread). What a scoring process does
        is pure computation (parsing the events, applying the rules, the evidence JSON): in the hub process it
        held the GIL that ingest's threads need, for longer than ingest itself took per event. Reading the
        events and saving the scores stays here."""
        self._pool: ProcessPoolExecutor | None = None

    def close(self) -> None:
        """Stop the scoring processes (a later `score` starts them again)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _compute(self, card: Scorecard, calls: list[tuple[str, list[str]]]) -> list[ScoreRow]:
        if self.processes > 0 and len(calls) >= _POOL_MIN_CALLS:
            if self._pool is None:
                # spawn, not fork: the hub process has threads (paho's, the writer's) that a fork would copy mid-step
                self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))
            tasks = [calls[i : i + _POOL_TASK_CALLS] for i in range(0, len(calls), _POOL_TASK_CALLS)]
            try:
                return [row for rows in self._pool.map(functools.partial(score_payloads, card), tasks) for row in rows]
            except (BrokenProcessPool, OSError):
                log.exception("the scoring process failed; scoring in the hub process from now on")
                self.close()
                self.processes = 0
        return score_payloads(card, calls)

    def score_pending(self) -> int:
        """Score what is queued (`Store.take_pending`: completed calls, late events, re-attributed calls, calls
        that failed an attempt before, whatever a stopped hub left), the calls with late events a scale-out
        worker's seq bookkeeping found (`Store.take_recheck`) whose score misses some, and rebuild the rollups
        marked stale. A backlog larger than one take is worked off take by take."""
        n = 0
        while True:
            calls, stale = self.store.take_pending(QUEUE_TAKE)
            queued = set(calls)
            recheck = [c for c in self.store.take_recheck() if c not in queued]
            if recheck:
                calls += self.store.outdated(recheck)
            saved = self._score(calls, None, 500, settle=True, queued=queued)
            n += saved
            if stale:
                self._refresh_stale()
            if len(queued) < QUEUE_TAKE or not saved:  # nothing saved (no active scorecard...): the next pass
                return n

    def score(
        self, call_ids: Iterable[str], card: Scorecard | None = None, chunk: int = 500, *, settle: bool = True
    ) -> int:
        """Score each call (under `card`, default the active scorecard); returns how many got a score.
        Saved `chunk` calls per transaction, each touched (agent, day) rollup recomputed once per chunk; the
        agents' running totals too unless `settle` is off (a re-score of everything settles once at the end).
        A call that cannot be scored costs only itself its score (see `_save`)."""
        return self._score(call_ids, card, chunk, settle=settle, queued=set())

    def _score(
        self, call_ids: Iterable[str], card: Scorecard | None, chunk: int, *, settle: bool, queued: set[str]
    ) -> int:
        """`score`; `queued`: the calls taken from the work list (saved only while still on it)."""
        card = card or get_scorecard(self.store)
        if card is None:
            return 0
        ids = list(dict.fromkeys(call_ids))  # once each: a chunk's statements name every call once
        results: list[ScoreRow] = []
        failures: dict[str, str] = {}
        seen: dict[str, int] = {}  # per call, how many stored events its score was computed from
        for i in range(0, len(ids), chunk):
            payloads = self.store.calls_payloads(ids[i : i + chunk])
            seen.update((c, len(payloads.get(c, []))) for c in ids[i : i + chunk])
            for row in self._compute(card, [(c, payloads.get(c, [])) for c in ids[i : i + chunk]]):
                if row.error:
                    failures[row.call_id] = row.error
                else:
                    results.append(row)
        got = {r.call_id for r in results} | failures.keys()
        self.store.unqueue_unsummarised([c for c in ids if c in queued and c not in got])
        saved = 0
        for i in range(0, len(results), chunk):
            saved += self._save(results[i : i + chunk], seen, queued, failures, settle=settle)
        if failures:
            self._failed(failures)
        return saved

    def _save(
        self,
        rows: list[ScoreRow],
        seen: Mapping[str, int],
        queued: set[str],
        failures: dict[str, str],
        *,
        settle: bool,
    ) -> int:
        """Save scores in one transaction (`_save_chunk`); when it fails, save each half in its own, down to the
        call that fails alone (its error goes to `failures`), so one call never costs the others their scores.
        A failure of the database itself (a probe fails too) is raised: the calls stay queued as they are."""
        try:
            return self._save_chunk(rows, seen, queued, settle=settle)
        except Exception as exc:
            error = describe(exc)
            if isinstance(exc, StorageError):
                self._probe()
            if len(rows) == 1:
                failures[rows[0].call_id] = error
                return 0
            log.info(
                "saving %d scores failed (%s): saving them in halves to find the call that fails", len(rows), error
            )
            half = len(rows) // 2
            return self._save(rows[:half], seen, queued, failures, settle=settle) + self._save(
                rows[half:], seen, queued, failures, settle=settle
            )

    def _probe(self) -> None:
        try:
            self.store.db.scalar("SELECT 1")
        except StorageError as exc:
            raise StorageError(f"the database is unreachable ({exc}); the calls stay queued") from exc

    def _save_chunk(self, rows: list[ScoreRow], seen: Mapping[str, int], queued: set[str], *, settle: bool) -> int:
        with self.store.db.transaction():
            rows, moved = self._lock_calls(rows, seen)
            if moved:
                # events stored since they were read (another worker's, maybe): scored again from all of them,
                # rather than this score made current over a newer one
                self.store.requeue(moved)
            # off the work list in the transaction that saves the score: a crash before the commit leaves both
            on_list = self.store.unqueue([r.call_id for r in rows])
            # a call taken from the list and no longer on it was saved by another worker meanwhile
            rows = [r for r in rows if r.call_id in on_list or r.call_id not in queued]
            if not rows:
                return 0
            touched = self._save_all(rows, seen)
            # each agent's rollups rebuilt by one transaction at a time (per-agent locks, in one order)
            rollups.lock_agents(self.store, {agent for agent, _ in touched})
            # agents already stale (a re-score running, or the migration): whoever marked them settles
            # them; rebuilding a year of their running totals here would stall every ingest chunk
            before = rollups.stale(self.store)
            for agent, day in sorted(touched):
                refresh_agent_day(self.store, agent, day, settle=False)
            if settle:
                rollups.settle(self.store, {agent for agent, _ in touched} - before.keys())
        return len(rows)

    def _failed(self, failures: Mapping[str, str]) -> None:
        """Record the calls that could not be scored (`Store.score_failed`) and say what becomes of each."""
        for call_id, attempts, newly in self.store.score_failed(failures, MAX_ATTEMPTS):
            if newly:
                log.error(
                    "call %s could not be scored (%d attempts): %s; set apart as failed (counted in scoring_failed)"
                    " until it changes or is re-scored",
                    call_id,
                    attempts,
                    failures[call_id],
                )
            elif attempts < MAX_ATTEMPTS:
                log.warning(
                    "call %s could not be scored (attempt %d of %d): %s; it stays queued for the next pass",
                    call_id,
                    attempts,
                    MAX_ATTEMPTS,
                    failures[call_id],
                )
            else:
                log.warning(
                    "call %s still cannot be scored: %s; it stays set apart as failed", call_id, failures[call_id]
                )

    def _refresh_stale(self) -> None:
        """Rebuild the (agent, day) rollups that lost a call to a re-attribution, taking their marks off the list
        in the same transaction (a failure leaves them marked for the next pass)."""
        store = self.store
        try:
            with store.db.transaction():
                stale = store.claim_stale(QUEUE_TAKE)
                good = []
                for agent, day in stale:
                    why = rollup_day_error(day)
                    if why is None:
                        good.append((agent, day))
                    else:
                        log.warning("dropped the rollup of agent %s on %s: %s", agent, day, why)
                agents = {agent for agent, _ in good}
                rollups.lock_agents(store, agents)
                before = rollups.stale(store)
                for agent, day in good:
                    refresh_agent_day(store, agent, day, settle=False)
                rollups.settle(store, agents - before.keys())
        except Exception:
            log.warning("rebuilding stale rollups failed; they stay marked for the next pass", exc_info=True)

    def _lock_calls(self, rows: list[ScoreRow], seen: Mapping[str, int]) -> tuple[list[ScoreRow], list[str]]:
        """Inside the saving transaction: lock the calls' rows (PostgreSQL: in call id order, so two scorers
        never wait on each other in a circle; one saving a call's score waits for another saving the same call,
        which would otherwise both mark theirs current), then set apart the calls that have more stored events
        now than their score was computed from."""
        db = self.store.db
        ids = sorted(r.call_id for r in rows)
        marks = ", ".join("?" * len(ids))
        if db.dialect == "postgres":
            db.execute(f"SELECT call_id FROM calls WHERE call_id IN ({marks}) ORDER BY call_id FOR UPDATE", ids)
        counts = {
            str(c): int(n)
            for c, n in db.all(f"SELECT call_id, COUNT(*) FROM events WHERE call_id IN ({marks}) GROUP BY call_id", ids)
        }
        moved = [r.call_id for r in rows if counts.get(r.call_id, 0) != seen[r.call_id]]
        return [r for r in rows if counts.get(r.call_id, 0) == seen[r.call_id]], moved

    def rescore(self, card: Scorecard, *, since_day: str | None = None, actor: str = "system") -> int:
        """Re-apply a scorecard version to past calls (all, or from `since_day`); history is kept."""
        sql, params = "SELECT call_id FROM calls WHERE summary_id IS NOT NULL", []
        if since_day:
            sql += " AND day >= ?"
            params.append(since_day)
        ids = [r[0] for r in self.store.db.all(sql + " ORDER BY started", params)]
        n = self.score(ids, card, settle=False)
        rollups.settle_all(self.store)
        with self.store.db.transaction():
            audit(self.store, actor, "rescore", f"{card.name}@{card.version}", {"calls": n, "since": since_day})
        return n

    def _save_all(self, results: list[ScoreRow], seen: Mapping[str, int]) -> set[tuple[str, str]]:
        """Store each score as its call's current one (inside the caller's transaction, a statement for all the
        calls where one can do), with the number of events it counted (`seen`: `n_events`, which scale-out
        workers count only here); the (agent, day) rollups they touch."""
        db = self.store.db
        ids = [r.call_id for r in results]
        marks = ", ".join("?" * len(ids))
        old = {
            str(c): (a, d)
            for c, a, d in db.all(f"SELECT call_id, agent_id, day FROM calls WHERE call_id IN ({marks})", ids)
        }
        for call_id, (_, day) in sorted(old.items()):
            why = None if day is None else rollup_day_error(str(day))
            if why is not None:
                raise ValueError(f"call {call_id}: {why}")
        db.executemany("UPDATE scores SET current = 0 WHERE call_id = ? AND current = 1", [(c,) for c in ids])
        created = now_iso()
        values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)"] * len(results))
        params: list[object] = []
        for r in results:
            params += (
                r.call_id,
                r.scorecard,
                r.version,
                r.score,
                r.max_score,
                r.weight,
                int(r.excluded),
                r.note,
                r.items,
                created,
            )
        score_ids = {
            str(c): int(i)
            for i, c in db.all(
                "INSERT INTO scores (call_id, scorecard, version, score, max_score, weight, excluded, note, items,"
                f" created, current) VALUES {values} RETURNING id, call_id",
                params,
            )
        }
        # the rule validity cells move with the score, in this transaction (the calls' rows are locked)
        validity.on_scores_saved(
            self.store,
            [
                validity.Covariates(
                    r.call_id, r.scorecard, r.version, r.length_bin, r.anger, validity.fired_of(r.rules), r.score
                )
                for r in results
            ],
        )
        db.executemany("DELETE FROM call_rules WHERE call_id = ?", [(c,) for c in ids])
        db.executemany(
            "INSERT INTO call_rules VALUES (?, ?, ?, ?, ?)",
            [(r.call_id, rule, points, points, n) for r in results for rule, points, n in r.rules],
        )
        # without reviews a call's effective score is its automatic one; calls with applied reviews get theirs
        # from apply_overrides below
        db.executemany(
            "UPDATE calls SET score_id = ?, scorecard = ?, scorecard_version = ?, auto_score = ?, weight = ?,"
            " excluded = ?, score = ?, n_events = ? WHERE call_id = ?",
            [
                (
                    score_ids[r.call_id],
                    r.scorecard,
                    r.version,
                    r.score,
                    r.weight,
                    int(r.excluded),
                    r.score,
                    seen[r.call_id],
                    r.call_id,
                )
                for r in results
            ],
        )
        reviewed = {
            str(c)
            for (c,) in db.all(
                f"SELECT DISTINCT call_id FROM reviews WHERE call_id IN ({marks}) AND rule_id IS NOT NULL"
                " AND points IS NOT NULL AND status = 'applied'",
                ids,
            )
        }
        touched: set[tuple[str, str]] = set()
        for call_id in ids:
            if call_id in reviewed:
                touched |= self.apply_overrides(call_id, refresh=False)
            agent, day = old.get(call_id, (None, None))
            if agent is not None and day is not None:
                touched.add((str(agent), str(day)))
        return touched

    def apply_overrides(self, call_id: str, *, refresh: bool = True) -> set[tuple[str, str]]:
        """Recompute the call's effective rule points and total from its automatic ones and the reviews
        (inside the caller's transaction); refreshes the call's rollup, or returns it for the caller to."""
        db = self.store.db
        row = db.one(
            "SELECT c.scorecard, c.scorecard_version, c.agent_id, c.day FROM calls c"
            " JOIN scores s ON s.id = c.score_id WHERE c.call_id = ?",
            (call_id,),
        )
        if row is None:
            return set()
        name, version, agent, day = row
        card = get_scorecard(self.store, name, int(version))
        db.execute("UPDATE call_rules SET points = auto_points WHERE call_id = ?", (call_id,))
        # the latest applied override per rule wins; a dispute upheld with corrected points counts as one
        for rule_id, points in db.all(
            "SELECT rule_id, points FROM reviews WHERE call_id = ? AND rule_id IS NOT NULL AND points IS NOT NULL"
            " AND status = 'applied' ORDER BY id",
            (call_id,),
        ):
            db.execute("UPDATE call_rules SET points = ? WHERE call_id = ? AND rule_id = ?", (points, call_id, rule_id))
        total = float(db.scalar("SELECT SUM(points) FROM call_rules WHERE call_id = ?", (call_id,)) or 0.0)
        if card is None:  # pragma: no cover - a score always names a stored scorecard
            raise StorageError(f"call {call_id} names scorecard {name}@{version}, which is not stored")
        effective = round(min(card.max_score, max(card.min_score, card.base + total)), 2)
        db.execute("UPDATE calls SET score = ? WHERE call_id = ?", (effective, call_id))
        touched = {(str(agent), str(day))} if agent is not None and day is not None else set()
        if refresh:
            for a, d in touched:
                refresh_agent_day(self.store, a, d)
        return touched


def refresh_agent_day(store: Store, agent_id: str, day: str, *, settle: bool = True) -> None:
    """Recompute one agent's rollup rows for one day from its calls (inside the caller's transaction), and the
    rollups above them (hub/rollups.py); with `settle` off the caller settles the running totals itself. Under
    the agent's rollup lock (a caller touching several agents takes theirs first, `rollups.lock_agents`)."""
    why = rollup_day_error(day)
    if why is not None:
        raise ValueError(f"the rollup of agent {agent_id} on {day}: {why}")
    db = store.db
    rollups.lock_agents(store, (agent_id,))
    db.execute("DELETE FROM agent_daily WHERE agent_id = ? AND day = ?", (agent_id, day))
    db.execute(
        "INSERT INTO agent_daily SELECT agent_id, day, MAX(week), COUNT(*),"
        " SUM(CASE WHEN score IS NOT NULL AND excluded = 0 THEN 1 ELSE 0 END), SUM(excluded),"
        " SUM(CASE WHEN score IS NOT NULL THEN weight ELSE 0 END),"
        " SUM(CASE WHEN score IS NOT NULL THEN score * weight ELSE 0 END), SUM(COALESCE(duration, 0))"
        " FROM calls WHERE agent_id = ? AND day = ? GROUP BY agent_id, day",
        (agent_id, day),
    )
    db.execute("DELETE FROM agent_rule_daily WHERE agent_id = ? AND day = ?", (agent_id, day))
    db.execute(
        "INSERT INTO agent_rule_daily SELECT c.agent_id, c.day, r.rule_id, SUM(r.points), SUM(r.n),"
        " SUM(CASE WHEN r.points <> 0 THEN 1 ELSE 0 END) FROM call_rules r JOIN calls c ON c.call_id = r.call_id"
        " WHERE c.agent_id = ? AND c.day = ? AND c.excluded = 0 GROUP BY c.agent_id, c.day, r.rule_id",
        (agent_id, day),
    )
    rollups.touch(store, agent_id, day)
    if settle:
        rollups.settle(store, (agent_id,))
