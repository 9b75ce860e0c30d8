"""Scorecards in the database, scores with history, and the per-agent daily rollups they feed.

- `import_scorecard` stores a validated document under (name, version); the same version with a different
  text is refused, so a stored score always names the exact rules that made it. One scorecard is active.
- `Scorer.score(call_ids)` scores calls under the active scorecard (ingest calls it after each commit) and
  `rescore` re-applies any stored version to past calls: each run adds a `scores` row and marks it current;
  earlier rows stay as history.
- A call's effective result is its automatic rule results with reviewers' overrides (and upheld disputes)
  applied: `call_rules` holds both per rule, `calls.score` the effective total.
- `agent_daily` / `agent_rule_daily` are recomputed for every (agent, day) a change touches, so agent
  pages read a few hundred rollup rows instead of scanning a million calls.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from hub import rollups
from hub.db import StorageError
from hub.scorecard import Scorecard, ScorecardError, digest, parse
from hub.scoring import CallScore, call_view, score_call
from hub.storage import Store

log = logging.getLogger(__name__)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def import_scorecard(store: Store, text: str, *, actor: str = "system", activate: bool = True) -> Scorecard:
    card = parse(text)
    sha = digest(text)
    db = store.db
    with db.transaction():
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


SCORING_LOCK = 0x63616C6C7161  # "callqa": the advisory lock key that serialises scoring across workers


class Scorer:
    def __init__(self, store: Store) -> None:
        self.store = store

    def score_pending(self) -> int:
        """Score what ingest queued (completed calls, late events, re-attributed calls)."""
        calls, stale = self.store.take_pending()
        n = self.score(calls)
        if stale:
            with self.store.db.transaction():
                before = rollups.stale(self.store)
                for agent, day in stale:
                    refresh_agent_day(self.store, agent, day, settle=False)
                rollups.settle(self.store, {agent for agent, _ in stale} - before.keys())
        return n

    def score(
        self, call_ids: Iterable[str], card: Scorecard | None = None, chunk: int = 500, *, settle: bool = True
    ) -> int:
        """Score each call (under `card`, default the active scorecard); returns how many got a score.
        Saved `chunk` calls per transaction, each touched (agent, day) rollup recomputed once per chunk; the
        agents' running totals too unless `settle` is off (a re-score of everything settles once at the end)."""
        card = card or get_scorecard(self.store)
        if card is None:
            return 0
        results: list[CallScore] = []
        for call_id in call_ids:
            view = call_view(self.store.call_events(call_id))
            if view is not None:
                results.append(score_call(call_id, card, view))
        for i in range(0, len(results), chunk):
            try:
                with self.store.db.transaction():
                    self._exclusive()
                    # agents already stale (a re-score running, or the migration): whoever marked them settles
                    # them; rebuilding a year of their running totals here would stall every ingest chunk
                    before = rollups.stale(self.store)
                    touched: set[tuple[str, str]] = set()
                    for r in results[i : i + chunk]:
                        touched |= self._save(r)
                    for agent, day in sorted(touched):
                        refresh_agent_day(self.store, agent, day, settle=False)
                    if settle:
                        rollups.settle(self.store, {agent for agent, _ in touched} - before.keys())
            except StorageError:
                log.exception("saving %d scores failed; retried with the next batch", chunk)
                self.store.requeue([r.call_id for r in results[i : i + chunk]])
        return len(results)

    def _exclusive(self) -> None:
        """With several ingest workers on one PostgreSQL, one scoring transaction at a time: two saving the same
        call, or the same agent's day, at once would both mark their score current or collide on the rollup."""
        if self.store.shared and self.store.db.dialect == "postgres":
            self.store.db.execute("SELECT pg_advisory_xact_lock(?)", (SCORING_LOCK,))

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

    def _save(self, r: CallScore) -> set[tuple[str, str]]:
        """Store one score as the call's current one (inside the caller's transaction); the rollups it touches."""
        db = self.store.db
        old = db.one("SELECT agent_id, day FROM calls WHERE call_id = ?", (r.call_id,))
        db.execute("UPDATE scores SET current = 0 WHERE call_id = ? AND current = 1", (r.call_id,))
        score_id = db.scalar(
            "INSERT INTO scores (call_id, scorecard, version, score, max_score, weight, excluded, note, items, created,"
            " current) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1) RETURNING id",
            (
                r.call_id,
                r.scorecard,
                r.version,
                r.score,
                r.max_score,
                r.weight,
                int(r.excluded),
                r.note,
                json.dumps(r.items_json(), ensure_ascii=False),
                now_iso(),
            ),
        )
        db.execute("DELETE FROM call_rules WHERE call_id = ?", (r.call_id,))
        db.executemany(
            "INSERT INTO call_rules VALUES (?, ?, ?, ?, ?)",
            [(r.call_id, i.rule, i.points, i.points, i.count) for i in r.items],
        )
        db.execute(
            "UPDATE calls SET score_id = ?, scorecard = ?, scorecard_version = ?, auto_score = ?, weight = ?,"
            " excluded = ? WHERE call_id = ?",
            (score_id, r.scorecard, r.version, r.score, r.weight, int(r.excluded), r.call_id),
        )
        touched = self.apply_overrides(r.call_id, refresh=False)
        if old is not None and old[0] is not None and old[1] is not None:
            touched.add((str(old[0]), str(old[1])))
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
    rollups above them (hub/rollups.py); with `settle` off the caller settles the running totals itself."""
    db = store.db
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
