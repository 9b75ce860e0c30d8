"""Rule validity (issue 22): does breaking a rule go with a worse outcome for the customer, or not?

For one scorecard version and one outcome (csat, fcr, repeat, complaint or custom.<name>), every rule gets:

- **the raw difference**: the outcome's mean on the calls where the rule fired (its automatic points were not
  zero) minus its mean on the calls where it did not, with a Welch confidence interval. It says what a QA lead
  sees when comparing the two piles of calls, confounders and all: a rule that fires mostly on long calls
  "predicts" anything long calls go with.
- **the adjusted difference**: the same comparison holding the other rules, the call's length (under 2 min,
  2-5, 5-10, 10 min or more, unknown) and the customer's anger at the start (the summary's `emotion.ang[0]`,
  angry from 50 %, or unknown) fixed: the coefficient of the rule's indicator in an ordinary least squares fit of
  the outcome on every rule's indicator plus one indicator per (length, anger) stratum. This is the figure the
  verdict reads.
- **the verdict**: `too_few` when fewer than `MIN_CALLS` calls fired the rule or did not; `inseparable` when
  the rule fires on exactly the calls some other rules (or strata) single out, so the data cannot tell their
  effects apart (`inseparable_from` names them); else, on the "good" scale (higher csat is good, a lower
  complaint rate is good), `predicts` when the adjusted interval lies wholly on the side the rule's points
  expect (a deduction should go with a worse outcome, a credit with a better one), `contrary` when it lies
  wholly on the other side, and `no_evidence` when it includes zero. `no_evidence` is not proof that the rule is
  useless: with few calls or a small effect the interval is wide.
- The intervals are Bonferroni-corrected over the rules tested (family alpha = `ALPHA`, z = the normal quantile
  of 1 - alpha / (2 m)), so with ten rules that predict nothing the chance that any one of them is called
  `predicts` or `contrary` by luck is at most 5 %, not 40 %. `agreement` = sign(points) x effect_good / se, a z:
  the rules whose points disagree most with outcomes come first.
- **The total score**: the slope of the outcome on the automatic score (per 10 points), adjusted for the same
  strata, with a plain 95 % interval, and the raw Pearson r.

Never a scan of the calls: `call_validity` holds each call's covariates per version it was scored with (a
re-score with a new version adds a row, so the old version's report survives and the two can be compared on the
same calls), `validity_cells` the sufficient statistics per (version, outcome, stratum, set of fired rules),
which both the OLS fits and the raw figures are computed from exactly. Both are maintained in the transaction
that saves a score (`on_scores_saved`, from hub/scores.py) or imports outcomes (`on_outcomes_written`, from
hub/outcomes.py), with per-batch deltas applied as additive upserts (atomic on both backends, so concurrent
scorers agree); `rebuild` recomputes them from the `scores` and `call_outcomes` tables.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, TextIO

import numpy as np

from hub.db import Database
from hub.scorecard import Scorecard, parse
from hub.storage import Store

log = logging.getLogger(__name__)

ALPHA = 0.05
"""Family-wise error rate of the rule verdicts (Bonferroni over the rules tested)."""
MIN_CALLS = 20
"""Fewest calls on each side (fired, not fired) before a rule gets a verdict."""
ANGRY_PCT = 50.0
"""The customer counts as angry at the start when their mean calibrated anger in the first third of their speech
(`emotion.ang[0]`, percent) is at least this."""
LENGTH_EDGES = (120.0, 300.0, 600.0)
"""Call length bins (seconds): < 2 min, 2-5, 5-10, >= 10 min; `LENGTH_UNKNOWN` without a duration."""
LENGTH_UNKNOWN = 4
ANGER_UNKNOWN = 2
BETTER = {"csat": "higher", "fcr": "higher", "repeat": "lower", "complaint": "lower"}
"""Which way is good for the standard outcomes (a custom one's is the caller's `better`, default higher)."""
CUSTOM = re.compile(r"custom\.[a-z][a-z0-9_]{0,31}")
ALL_CALLS, WITH_OUTCOME = "", "*"
"""Pseudo-outcomes of `validity_cells`: every call of a version, and those with any outcome (n only)."""
BUILT = "validity_built"
"""Counter set once both tables were built from the stored scores (the migration sets it on an empty hub)."""
REFUSED_PREFIX = "validity_refused."
_CHUNK = 500
_TOL = 1e-8
"""A column whose share of variance not explained by the columns before it is below this is dependent on them."""
_Z95 = NormalDist().inv_cdf(0.975)

Key = tuple[str, int, str, int, int, str]
"""(scorecard, version, outcome, length_bin, anger, fired) of a cell."""


class ValidityError(ValueError):
    """A request the report cannot answer: `key` is `unknown` (no such version or outcome: 404) or `bad_params`
    (422); the message is one line."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Covariates:
    """A call's row of `call_validity` under one scorecard version."""

    call_id: str
    scorecard: str
    version: int
    length_bin: int
    anger: int
    fired: str
    """The ids of the rules whose automatic points are not zero, sorted, joined with ','."""
    score: float
    """The automatic score."""


# --- covariates -----------------------------------------------------------------------------------------------------


def _finite(x: object) -> float | None:
    if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x):
        return float(x)
    return None


def stratum(summary: Mapping[str, Any]) -> tuple[int, int]:
    """(length_bin, anger) of a call from its summary: whatever a station sent, a missing or malformed value is
    the stratum's 'unknown', never an error."""
    duration = _finite(summary.get("duration"))
    if duration is None or duration < 0:
        length = LENGTH_UNKNOWN
    else:
        length = sum(duration >= edge for edge in LENGTH_EDGES)
    emotion = summary.get("emotion")
    ang = emotion.get("ang") if isinstance(emotion, Mapping) else None
    first = _finite(ang[0]) if isinstance(ang, list | tuple) and ang else None
    anger = ANGER_UNKNOWN if first is None else int(first >= ANGRY_PCT)
    return length, anger


def fired_of(rules: Iterable[tuple[str, float, int]]) -> str:
    """`fired` from a score's (rule, automatic points, occurrences): a rule inside its free allowance did not fire."""
    return ",".join(sorted({rule for rule, points, _ in rules if points != 0}))


# --- maintenance ----------------------------------------------------------------------------------------------------


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _add(deltas: dict[Key, list[float]], key: Key, y: float, s: float, sign: int) -> None:
    d = deltas.get(key)
    if d is None:
        d = deltas[key] = [0.0] * 6
    d[0] += sign
    d[1] += sign * y
    d[2] += sign * y * y
    d[3] += sign * s
    d[4] += sign * s * s
    d[5] += sign * s * y


def _contribute(deltas: dict[Key, list[float]], c: Covariates, outcomes: Mapping[str, float] | None, sign: int) -> None:
    """What one call adds to (sign 1) or takes from (-1) the cells of its version."""
    base = (c.scorecard, c.version)
    _add(deltas, (*base, ALL_CALLS, c.length_bin, c.anger, c.fired), 0.0, c.score, sign)
    if outcomes:
        _add(deltas, (*base, WITH_OUTCOME, c.length_bin, c.anger, c.fired), 0.0, c.score, sign)
        for name, y in outcomes.items():
            _add(deltas, (*base, name, c.length_bin, c.anger, c.fired), y, c.score, sign)


_UPSERT_ROWS = 1000
"""Cells per upsert statement (12 parameters each: well under both backends' limits)."""


def _apply(db: Database, deltas: Mapping[Key, list[float]]) -> None:
    """Add the deltas to their cells (inside the caller's transaction) as additive upserts, in key order (two
    transactions never wait on each other's cells in a circle), many cells a statement; a cell left with no
    call is deleted."""
    rows = [(*k, round(d[0]), *d[1:]) for k, d in sorted(deltas.items()) if any(d)]
    emptied: list[tuple[Any, ...]] = []
    for i in range(0, len(rows), _UPSERT_ROWS):
        part = rows[i : i + _UPSERT_ROWS]
        values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(part))
        emptied += db.all(
            f"INSERT INTO validity_cells VALUES {values} ON CONFLICT (scorecard, version, outcome, length_bin, anger,"
            " fired) DO UPDATE SET n = validity_cells.n + excluded.n, sum_y = validity_cells.sum_y + excluded.sum_y,"
            " sum_y2 = validity_cells.sum_y2 + excluded.sum_y2, sum_s = validity_cells.sum_s + excluded.sum_s,"
            " sum_s2 = validity_cells.sum_s2 + excluded.sum_s2, sum_sy = validity_cells.sum_sy + excluded.sum_sy"
            " RETURNING scorecard, version, outcome, length_bin, anger, fired, n",
            [x for r in part for x in r],
        )
    gone = [r[:6] for r in emptied if int(r[6]) <= 0]
    if gone:
        db.executemany(
            "DELETE FROM validity_cells WHERE scorecard = ? AND version = ? AND outcome = ? AND length_bin = ?"
            " AND anger = ? AND fired = ? AND n <= 0",
            gone,
        )


def _outcomes(db: Database, call_ids: Sequence[str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for part in _chunks(call_ids):
        marks = ", ".join("?" * len(part))
        for call_id, name, value in db.all(
            f"SELECT call_id, name, value FROM call_outcomes WHERE call_id IN ({marks})", part
        ):
            out.setdefault(str(call_id), {})[str(name)] = float(value)
    return out


_Row = tuple[str, int, int, int, str, float]
"""A call_validity row without its call: scorecard, version, length_bin, anger, fired, score."""


def _covariates(db: Database, call_ids: Sequence[str], *, lock: bool) -> dict[str, list[_Row]]:
    out: dict[str, list[_Row]] = {}
    for part in _chunks(call_ids):
        marks = ", ".join("?" * len(part))
        sql = (
            "SELECT call_id, scorecard, version, length_bin, anger, fired, score FROM call_validity"
            f" WHERE call_id IN ({marks})"
        )
        if lock and db.dialect == "postgres":
            # waits out a rebuild (which holds the table in EXCLUSIVE mode), then reads what it wrote
            sql += " ORDER BY call_id, scorecard, version FOR UPDATE"
        # both drivers return the columns' own types (text, integer, real): no conversion per row
        for row in db.all(sql, part):
            out.setdefault(row[0], []).append(row[1:])
    return out


def on_scores_saved(store: Store, rows: Sequence[Covariates]) -> None:
    """Scores saved (inside the saving transaction, the calls' rows already locked by the scorer): each call's
    old contributions under that version leave the cells, its new row goes in with its current outcomes."""
    if not rows:
        return
    db = store.db
    new = {(r.call_id, r.scorecard, r.version): r for r in rows}
    ids = sorted({r.call_id for r in rows})
    old = _covariates(db, ids, lock=True)
    outcomes = _outcomes(db, ids)
    deltas: dict[Key, list[float]] = {}
    for call_id, covs in old.items():
        for row in covs:
            if (call_id, row[0], row[1]) in new:
                _contribute(deltas, Covariates(call_id, *row), outcomes.get(call_id), -1)
    for r in new.values():
        _contribute(deltas, r, outcomes.get(r.call_id), 1)
    rows_new = [r for _, r in sorted(new.items())]
    for i in range(0, len(rows_new), _CHUNK):
        part = rows_new[i : i + _CHUNK]
        db.execute(
            f"INSERT INTO call_validity VALUES {', '.join(['(?, ?, ?, ?, ?, ?, ?)'] * len(part))}"
            " ON CONFLICT (call_id, scorecard, version) DO UPDATE SET length_bin = excluded.length_bin,"
            " anger = excluded.anger, fired = excluded.fired, score = excluded.score",
            [x for r in part for x in (r.call_id, r.scorecard, r.version, r.length_bin, r.anger, r.fired, r.score)],
        )
    _apply(db, deltas)


def on_outcomes_written(store: Store, values: Sequence[tuple[str, str, float]]) -> None:
    """Outcomes about to be written, (call, name, value) each (inside the import's transaction, before the
    write): every cell a call is in (one per version it was scored with) loses the old value and gains the new."""
    db = store.db
    ids = sorted({c for c, _, _ in values})
    if db.dialect == "postgres":
        # a scorer saving one of these calls meanwhile would move its old contributions with the outcomes it
        # read before this commit: one at a time per call (the scorer locks the same rows, in the same order)
        for part in _chunks(ids):
            marks = ", ".join("?" * len(part))
            db.execute(f"SELECT call_id FROM calls WHERE call_id IN ({marks}) ORDER BY call_id FOR UPDATE", part)
    covs = _covariates(db, ids, lock=True)
    if not covs:
        return
    before = _outcomes(db, sorted(covs))
    # an import writes up to 500,000 values: each becomes (cell, y, s, sign) entries summed by numpy, the cell an
    # integer (the call row's stratum-and-fired-set index x the outcome's), built by whole-array operations: a
    # Python loop with an append per value was a fifth of a 100k-row import
    bases: dict[tuple[str, int, int, int, str], int] = {}
    flat_base: list[int] = []  # the calls' validity rows, each call's in a run: (offset, count) in `at`
    flat_score: list[float] = []
    at: dict[str, tuple[int, int]] = {}
    for call_id, found in covs.items():
        at[call_id] = (len(flat_base), len(found))
        for sc, v, lb, an, fired, score in found:
            flat_base.append(bases.setdefault((sc, v, lb, an, fired), len(bases)))
            flat_score.append(score)
    names: dict[str, int] = {WITH_OUTCOME: 0}
    mine = [(at[c], names.setdefault(n, len(names)), y, c, n) for c, n, y in values if c in at]
    if not mine:
        return
    off = np.fromiter((m[0][0] for m in mine), np.int64, len(mine))
    cnt = np.fromiter((m[0][1] for m in mine), np.int64, len(mine))
    j = np.fromiter((m[1] for m in mine), np.int64, len(mine))
    y = np.fromiter((m[2] for m in mine), float, len(mine))
    prev = np.fromiter(((before.get(m[3]) or {}).get(m[4], math.nan) for m in mine), float, len(mine))
    # each value once per validity row of its call (one per version it was scored with)
    reps = np.repeat(np.arange(len(mine)), cnt)
    row = np.repeat(off, cnt) + np.arange(len(reps)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    base_arr = np.asarray(flat_base, dtype=np.int64)
    score_arr = np.asarray(flat_score, dtype=float)
    code = base_arr[row] * 64 + j[reps]
    had = ~np.isnan(prev[reps])
    parts = [
        np.column_stack([code, y[reps], score_arr[row], np.ones(len(row))]),
        np.column_stack([code[had], prev[reps][had], score_arr[row][had], -np.ones(int(had.sum()))]),
    ]
    # a call's first outcome: it joins the calls with any (the WITH_OUTCOME pseudo-outcome, code % 64 == 0)
    first = [at[c] for c in {m[3] for m in mine} if not before.get(c)]
    if first:
        rows_first = np.concatenate([np.arange(o, o + k) for o, k in first])
        parts.append(np.column_stack([base_arr[rows_first] * 64, np.zeros(len(rows_first)),
                                      score_arr[rows_first], np.ones(len(rows_first))]))  # fmt: skip
    if len(names) > 64:  # pragma: no cover - an import row holds at most 4 standard and 20 custom outcomes
        raise ValueError(f"{len(names)} outcome names in one import")
    table = np.concatenate(parts)
    cells, idx = np.unique(table[:, 0].astype(np.int64), return_inverse=True)
    y, sc_, sign = table[:, 1], table[:, 2], table[:, 3]
    sums = np.column_stack([np.bincount(idx, weights=w, minlength=len(cells)) for w in (sign, sign * y, sign * y * y,
                            sign * sc_, sign * sc_ * sc_, sign * sc_ * y)])  # fmt: skip
    base_of = list(bases)
    name_of = list(names)
    deltas: dict[Key, list[float]] = {}
    for i, code in enumerate(cells.tolist()):
        sc, v, lb, an, fired = base_of[code // 64]
        deltas[(sc, v, name_of[code % 64], lb, an, fired)] = sums[i].tolist()
    _apply(db, deltas)


def rebuild(store: Store) -> int:
    """Recompute `call_validity` from the stored scores (per call and version the latest score's automatic rule
    points and total, the stratum from the call's summary) and `validity_cells` from it and `call_outcomes`, in
    one transaction; sets the `validity_built` counter. Returns the call_validity rows written."""
    db = store.db
    n = 0
    with db.transaction():
        if db.dialect == "postgres":
            db.execute("LOCK TABLE call_validity, validity_cells IN EXCLUSIVE MODE")
        db.execute("DELETE FROM call_validity")
        latest = sorted(int(r[0]) for r in db.all("SELECT MAX(id) FROM scores GROUP BY call_id, scorecard, version"))
        for part in _chunks(latest):
            marks = ", ".join("?" * len(part))
            rows = []
            for call_id, sc, v, score, items, summary in db.all(
                "SELECT s.call_id, s.scorecard, s.version, s.score, s.items, e.payload FROM scores s"
                " LEFT JOIN calls c ON c.call_id = s.call_id LEFT JOIN events e ON e.id = c.summary_id"
                f" WHERE s.id IN ({marks})",
                part,
            ):
                rows.append((str(call_id), str(sc), int(v), *_stored_stratum(summary), _stored_fired(items), score))
            db.executemany("INSERT INTO call_validity VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            n += len(rows)
        rebuild_cells(db)
        db.execute("INSERT INTO counters VALUES (?, 1) ON CONFLICT (name) DO UPDATE SET value = 1", (BUILT,))
    log.info("rebuilt the rule validity tables: %d call rows", n)
    return n


def rebuild_cells(db: Database) -> None:
    """`validity_cells` from `call_validity` and `call_outcomes` (inside the caller's transaction)."""
    db.execute("DELETE FROM validity_cells")
    group = "v.scorecard, v.version, v.length_bin, v.anger, v.fired"
    db.execute(
        "INSERT INTO validity_cells SELECT v.scorecard, v.version, o.name, v.length_bin, v.anger, v.fired, COUNT(*),"
        " SUM(o.value), SUM(o.value * o.value), SUM(v.score), SUM(v.score * v.score), SUM(v.score * o.value)"
        f" FROM call_validity v JOIN call_outcomes o ON o.call_id = v.call_id GROUP BY {group}, o.name"
    )
    pseudo = (
        "INSERT INTO validity_cells SELECT v.scorecard, v.version, ?, v.length_bin, v.anger, v.fired, COUNT(*),"
        " 0.0, 0.0, SUM(v.score), SUM(v.score * v.score), 0.0 FROM call_validity v"
    )
    db.execute(f"{pseudo} GROUP BY {group}", (ALL_CALLS,))
    db.execute(
        f"{pseudo} WHERE EXISTS (SELECT 1 FROM call_outcomes o WHERE o.call_id = v.call_id) GROUP BY {group}",
        (WITH_OUTCOME,),
    )


def _stored_stratum(payload: object) -> tuple[int, int]:
    try:
        summary = json.loads(payload) if isinstance(payload, str) else None
    except ValueError:
        summary = None
    return stratum(summary) if isinstance(summary, Mapping) else (LENGTH_UNKNOWN, ANGER_UNKNOWN)


def _stored_fired(items: object) -> str:
    """`fired` from a stored score's `items` JSON (hub.scoring.CallScore.items_json: rule, points per item)."""
    try:
        parsed = json.loads(items) if isinstance(items, str) else []
    except ValueError:
        parsed = []
    rules = [
        (str(i["rule"]), float(i["points"]), 0)
        for i in (parsed if isinstance(parsed, list) else [])
        if isinstance(i, Mapping) and "rule" in i and _finite(i.get("points")) is not None
    ]
    return fired_of(rules)


_BUILDING = threading.Lock()


def _built(store: Store) -> bool:
    return store.db.one("SELECT 1 FROM counters WHERE name = ?", (BUILT,)) is not None


def ensure_built(store: Store) -> None:
    """Build both tables once on a hub that had scores before they existed (the migration cannot run Python).
    At a million calls that reads every stored score's rule items (minutes): an upgraded hub that large runs
    `qa-hub validity rebuild` first. Two first reports at once in one process build once."""
    if _built(store):
        return
    with _BUILDING:
        if not _built(store) and store.db.one("SELECT 1 FROM scores LIMIT 1") is not None:
            rebuild(store)


# --- reading --------------------------------------------------------------------------------------------------------


def versions(store: Store) -> list[dict[str, Any]]:
    """Every scorecard version calls were scored with: `calls` (with a call_validity row), `outcome_calls`
    (those with any outcome)."""
    ensure_built(store)
    got: dict[tuple[str, int], dict[str, Any]] = {}
    for sc, v, outcome, n in store.db.all(
        "SELECT scorecard, version, outcome, SUM(n) FROM validity_cells WHERE outcome IN (?, ?)"
        " GROUP BY scorecard, version, outcome",
        (ALL_CALLS, WITH_OUTCOME),
    ):
        d = got.setdefault((str(sc), int(v)), {"scorecard": str(sc), "version": int(v), "calls": 0, "outcome_calls": 0})
        d["calls" if outcome == ALL_CALLS else "outcome_calls"] = int(n)
    return [got[k] for k in sorted(got)]


def outcome_names(store: Store, scorecard: str, version: int) -> list[str]:
    """The outcomes some call of the version has, the standard ones first."""
    rows = store.db.all(
        "SELECT DISTINCT outcome FROM validity_cells WHERE scorecard = ? AND version = ? AND outcome NOT IN (?, ?)",
        (scorecard, version, ALL_CALLS, WITH_OUTCOME),
    )
    order = {name: i for i, name in enumerate(BETTER)}
    return sorted((str(r[0]) for r in rows), key=lambda n: (order.get(n, len(order)), n))


def _card(store: Store, scorecard: str, version: int) -> Scorecard:
    row = store.db.one("SELECT body FROM scorecards WHERE name = ? AND version = ?", (scorecard, version))
    if row is None:
        raise ValidityError("unknown", f"no scorecard {scorecard[:64]} version {version}")
    return parse(str(row[0]))


def _r(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


def _solve(xtx: np.ndarray, xty: np.ndarray, yty: float, n: float) -> tuple[np.ndarray, np.ndarray] | None:
    """OLS from the normal equations: (coefficients, their covariance), or None without residual degrees of
    freedom."""
    p = len(xty)
    if n - p <= 0:
        return None
    inv = np.linalg.inv(xtx)
    beta = inv @ xty
    rss = max(yty - float(beta @ xty), 0.0)
    return beta, inv * (rss / (n - p))


def _select(xtx: np.ndarray) -> tuple[list[int], dict[int, list[int]]]:
    """Columns in order, each kept unless it is a linear combination of the kept ones before it (its share of
    variance the others leave unexplained below `_TOL`): (kept columns, dropped column -> kept columns it
    depends on)."""
    kept: list[int] = []
    dropped: dict[int, list[int]] = {}
    for j in range(xtx.shape[0]):
        total = float(xtx[j, j])
        if total <= 0:
            dropped[j] = []
            continue
        if kept:
            b = np.linalg.solve(xtx[np.ix_(kept, kept)], xtx[kept, j])
            resid = total - float(xtx[j, kept] @ b)
        else:
            b, resid = np.zeros(0), total
        if resid <= _TOL * total:
            dropped[j] = [k for k, bk in zip(kept, b, strict=True) if abs(bk) > 1e-6]
        else:
            kept.append(j)
    return kept, dropped


def report(store: Store, scorecard: str, version: int, outcome: str, *, better: str | None = None) -> dict[str, Any]:
    """The rule validity report of one scorecard version and outcome (see the module docstring), from the cells
    only. `better` ("higher"/"lower") is read for custom outcomes; the standard ones have their own. Raises
    `ValidityError` for an unknown version or outcome, or a bad `better`."""
    if better not in (None, "", "higher", "lower"):
        raise ValidityError("bad_params", "better must be higher or lower")
    if outcome not in BETTER and not CUSTOM.fullmatch(outcome):
        raise ValidityError("unknown", f"no outcome {outcome[:64]!r}: csat, fcr, repeat, complaint or custom.<name>")
    ensure_built(store)
    card = _card(store, scorecard, version)
    direction = BETTER.get(outcome) or better or "higher"
    good = 1.0 if direction == "higher" else -1.0
    cells = store.db.all(
        "SELECT length_bin, anger, fired, n, sum_y, sum_y2, sum_s, sum_s2, sum_sy FROM validity_cells"
        " WHERE scorecard = ? AND version = ? AND outcome = ? AND n > 0",
        (scorecard, version, outcome),
    )
    if not cells and outcome not in BETTER:
        raise ValidityError("unknown", f"no call scored with {scorecard[:64]} version {version} has {outcome[:64]}")
    simulated = store.db.one("SELECT 1 FROM outcome_imports WHERE source = 'simulated' LIMIT 1") is not None
    rules = card.rules
    # a version's cells repeat a few hundred fired sets over at most 15 strata: each parsed once, then indexed
    st_index: dict[tuple[int, int], int] = {}
    fs_index: dict[str, int] = {}
    st_of = np.array([st_index.setdefault((int(c[0]), int(c[1])), len(st_index)) for c in cells], dtype=np.intp)
    fs_of = np.array([fs_index.setdefault(str(c[2]), len(fs_index)) for c in cells], dtype=np.intp)
    m = np.array([c[3:] for c in cells], dtype=float).reshape(len(cells), 6)
    n, sy, sy2, ss, ss2, ssy = m.T
    total_n = float(n.sum())
    per_stratum = np.bincount(st_of, weights=n, minlength=len(st_index)) if len(cells) else np.zeros(0)
    counts = {st: float(per_stratum[i]) for st, i in st_index.items()}
    strata = sorted(counts)
    # strata dummies against the most common stratum
    reference = max(strata, key=lambda s: (counts[s], s)) if strata else None
    dummies = [s for s in strata if s != reference]
    d = np.eye(len(st_index))[:, [st_index[s] for s in dummies]][st_of] if len(cells) else np.zeros((0, 0))
    sets = [set(text.split(",")) for text in fs_index]
    f_sets = np.array([[float(r.id in fs) for r in rules] for fs in sets], dtype=float).reshape(len(sets), len(rules))
    f = f_sets[fs_of]
    fired = f.T @ n
    varying = [i for i in range(len(rules)) if 0 < fired[i] < total_n]
    x = np.hstack([np.ones((len(cells), 1)), d, f[:, varying]])
    xtx = x.T @ (n[:, None] * x)
    xty = x.T @ sy
    yty = float(sy2.sum())
    first_rule = 1 + len(dummies)
    kept, dropped = _select(xtx)
    fit = _solve(xtx[np.ix_(kept, kept)], xty[kept], yty, total_n) if kept else None
    col_rule = {first_rule + j: varying[j] for j in range(len(varying))}

    def names(cols: Iterable[int]) -> list[str]:
        out = [rules[col_rule[c]].id if c in col_rule else "strata" for c in cols if c != 0]
        return list(dict.fromkeys(out))

    partners: dict[int, list[str]] = {}
    for col, deps in dropped.items():
        if col not in col_rule:
            continue
        mine = names(deps) or ["strata"]
        partners.setdefault(col_rule[col], []).extend(mine)
        for dep in deps:
            if dep in col_rule:
                partners.setdefault(col_rule[dep], []).append(rules[col_rule[col]].id)
    out_rules: list[dict[str, Any]] = []
    adjusted: dict[int, tuple[float, float]] = {}
    if fit is not None:
        beta, cov = fit
        for pos, col in enumerate(kept):
            if col in col_rule:
                adjusted[col_rule[col]] = (float(beta[pos]), math.sqrt(max(float(cov[pos, pos]), 0.0)))
    tested = [i for i in range(len(rules)) if min(fired[i], total_n - fired[i]) >= MIN_CALLS and i not in partners]
    z = NormalDist().inv_cdf(1 - ALPHA / (2 * max(len(tested), 1)))
    for i, rule in enumerate(rules):
        on = f[:, i] > 0
        n1, n0 = float(fired[i]), total_n - float(fired[i])
        mean1 = float(sy[on].sum()) / n1 if n1 else None
        mean0 = float(sy[~on].sum()) / n0 if n0 else None
        raw = raw_lo = raw_hi = None
        if mean1 is not None and mean0 is not None:
            raw = mean1 - mean0
            if n1 >= 2 and n0 >= 2:
                v1 = max(float(sy2[on].sum()) - n1 * mean1 * mean1, 0.0) / (n1 - 1)
                v0 = max(float(sy2[~on].sum()) - n0 * mean0 * mean0, 0.0) / (n0 - 1)
                se_raw = math.sqrt(v1 / n1 + v0 / n0)
                raw_lo, raw_hi = raw - z * se_raw, raw + z * se_raw
        # an inseparable rule's kept column carries its partners' joint effect: no figure of its own
        adj, se = adjusted.get(i, (None, None)) if i not in partners else (None, None)
        sign = float(np.sign(rule.points))
        agreement = None
        if min(n1, n0) < MIN_CALLS:
            verdict = "too_few"
        elif i in partners:
            verdict = "inseparable"
        elif adj is None or se is None:
            verdict = "no_evidence"
        else:
            lo_good, hi_good = sorted(((adj - z * se) * good, (adj + z * se) * good))
            agreement = sign * adj * good / se if se > 0 else None
            if sign != 0 and (lo_good > 0 if sign > 0 else hi_good < 0):
                verdict = "predicts"
            elif sign != 0 and (hi_good < 0 if sign > 0 else lo_good > 0):
                verdict = "contrary"
            else:
                verdict = "no_evidence"
        out_rules.append(
            {
                "rule_id": rule.id,
                "title": rule.title,
                "title_zh": rule.title_zh or rule.title,
                "points": rule.points,
                "fired": int(n1),
                "not_fired": int(n0),
                "mean_fired": _r(mean1),
                "mean_not": _r(mean0),
                "raw_diff": _r(raw),
                "raw_lo": _r(raw_lo),
                "raw_hi": _r(raw_hi),
                "adj_diff": _r(adj),
                "adj_lo": _r(adj - z * se) if adj is not None and se is not None else None,
                "adj_hi": _r(adj + z * se) if adj is not None and se is not None else None,
                "verdict": verdict,
                "inseparable_from": sorted(set(partners.get(i, []))) if verdict == "inseparable" else [],
                "agreement": _r(agreement) if verdict not in ("too_few", "inseparable") else None,
            }
        )
    order = {r["rule_id"]: k for k, r in enumerate(out_rules)}
    # the rules whose points disagree most with outcomes first; those without a verdict last, in scorecard order
    out_rules.sort(key=lambda r: (r["agreement"] is None, r["agreement"] or 0.0, order[r["rule_id"]]))
    return {
        "scorecard": scorecard,
        "version": version,
        "outcome": outcome,
        "better": direction,
        "calls": int(total_n),
        "simulated": simulated,
        "alpha": ALPHA,
        "z": _r(z),
        "strata": [{"length_bin": s[0], "anger": s[1], "calls": int(counts[s])} for s in strata],
        "rules": out_rules,
        "total": _total(n, sy, sy2, ss, ss2, ssy, d, good),
    }


def _total(
    n: np.ndarray,
    sy: np.ndarray,
    sy2: np.ndarray,
    ss: np.ndarray,
    ss2: np.ndarray,
    ssy: np.ndarray,
    d: np.ndarray,
    good: float,
) -> dict[str, Any]:
    """The outcome on the automatic score, adjusted for the strata: per cell the constant columns (intercept,
    dummies) are weighted by n and cross the score through sum_s, the score with itself through sum_s2."""
    calls = float(n.sum())
    out: dict[str, Any] = {"calls": int(calls), "slope_per_10": None, "lo": None, "hi": None, "r": None}
    a = np.hstack([np.ones((len(n), 1)), d])
    k = a.shape[1]
    xtx = np.zeros((k + 1, k + 1))
    xtx[:k, :k] = a.T @ (n[:, None] * a)
    xtx[:k, k] = xtx[k, :k] = a.T @ ss
    xtx[k, k] = float(ss2.sum())
    xty = np.concatenate([a.T @ sy, [float(ssy.sum())]])
    verdict = "too_few" if calls < MIN_CALLS else "no_evidence"
    kept, _ = _select(xtx) if calls else ([], {})
    if calls >= MIN_CALLS and k in kept:
        fit = _solve(xtx[np.ix_(kept, kept)], xty[kept], float(sy2.sum()), calls)
        if fit is not None:
            beta, cov = fit
            slope, se = float(beta[-1]) * 10, math.sqrt(max(float(cov[-1, -1]), 0.0)) * 10
            lo, hi = slope - _Z95 * se, slope + _Z95 * se
            lo_good, hi_good = sorted((lo * good, hi * good))
            verdict = "predicts" if lo_good > 0 else "contrary" if hi_good < 0 else "no_evidence"
            out.update(slope_per_10=_r(slope), lo=_r(lo), hi=_r(hi))
    if calls >= 2:
        cov_sy = float(ssy.sum()) - float(ss.sum()) * float(sy.sum()) / calls
        var_s = float(ss2.sum()) - float(ss.sum()) ** 2 / calls
        var_y = float(sy2.sum()) - float(sy.sum()) ** 2 / calls
        if var_s > 0 and var_y > 0:
            out["r"] = _r(cov_sy / math.sqrt(var_s * var_y))
    out["verdict"] = verdict
    return out


# --- export and command line ----------------------------------------------------------------------------------------

_HEADER = {
    "en": ("rule", "title", "points", "fired", "not fired", "mean fired", "mean not fired", "raw difference",
           "raw low", "raw high", "adjusted difference", "adjusted low", "adjusted high", "verdict", "agreement",
           "inseparable from"),
    "zh-CN": ("规则", "名称", "分值", "触发通话", "未触发通话", "触发均值", "未触发均值", "原始差异", "原始下限",
              "原始上限", "调整后差异", "调整后下限", "调整后上限", "结论", "一致性", "无法区分于"),
}  # fmt: skip
_VERDICTS = {
    "en": {"predicts": "predicts", "no_evidence": "no evidence", "contrary": "contrary", "too_few": "too few calls",
           "inseparable": "inseparable"},
    "zh-CN": {"predicts": "有预测力", "no_evidence": "无证据", "contrary": "相反", "too_few": "通话太少",
              "inseparable": "无法区分"},
}  # fmt: skip
_TOTAL = {"en": "Total score (per 10 points)", "zh-CN": "总分（每 10 分）"}  # noqa: RUF001 - Chinese punctuation


def _cell(text: str) -> str:
    """A spreadsheet would run a text cell starting with = + - @ as a formula: titles come from a YAML document."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def to_csv(rep: Mapping[str, Any], lang: str = "en") -> str:
    """One row per rule (in the report's order) and a last row for the total score (its slope per 10 points in
    the adjusted columns, its calls under `fired`, Pearson r under `agreement`)."""
    lang = lang if lang in _HEADER else "en"
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(_HEADER[lang])
    words = _VERDICTS[lang]
    for r in rep["rules"]:
        title = r["title_zh"] if lang == "zh-CN" else r["title"]
        verdict = words.get(r["verdict"], r["verdict"])
        w.writerow([r["rule_id"], _cell(str(title)), r["points"], r["fired"], r["not_fired"], r["mean_fired"],
                    r["mean_not"], r["raw_diff"], r["raw_lo"], r["raw_hi"], r["adj_diff"], r["adj_lo"], r["adj_hi"],
                    verdict, r["agreement"], " ".join(r["inseparable_from"])])  # fmt: skip
    t = rep["total"]
    w.writerow(["(total)", _TOTAL[lang], "", t["calls"], "", "", "", "", "", "", t["slope_per_10"], t["lo"], t["hi"],
                words.get(t["verdict"], t["verdict"]), t["r"], ""])  # fmt: skip
    return out.getvalue()


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    v = sub.add_parser("validity", help="rule validity: do the rules relate to call outcomes").add_subparsers(
        dest="action", required=True
    )
    v.add_parser("rebuild", help="recompute the validity tables from the stored scores and outcomes")
    r = v.add_parser("report", help="one scorecard version against one outcome, as JSON (or --csv)")
    r.add_argument("--scorecard", default="default")
    r.add_argument("--version", type=int, required=True)
    r.add_argument("--outcome", default="csat")
    r.add_argument("--better", choices=("higher", "lower"), help="a custom outcome's good direction")
    r.add_argument("--csv", action="store_true")
    r.add_argument("--lang", choices=tuple(_HEADER), default="en")


def run_cli(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    """`qa-hub validity ...`; a ValidityError is the caller's one-line error (a ValueError)."""
    if args.action == "rebuild":
        n = rebuild(store)
        out.write(f"rebuilt rule validity for {n} call scores\n")
        return 0
    rep = report(store, args.scorecard, args.version, args.outcome, better=args.better)
    out.write(to_csv(rep, args.lang) if args.csv else json.dumps(rep, ensure_ascii=False, indent=1) + "\n")
    return 0
