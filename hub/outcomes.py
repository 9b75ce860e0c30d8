"""Call outcomes (issue 22): what became of a call after it ended, imported from the center's own systems.

Per call: customer satisfaction (`csat`, a survey score in `CSAT_RANGE`), resolved at first contact (`fcr`),
repeat contact within N days (`repeat`, with `repeat_days` = N), complaint (`complaint`), and free custom
outcomes (`custom.<name>` -> a number). Rows come as CSV (a browser upload or `POST /api/outcomes/import` with
`text/csv`) or JSON (`{"rows": [...]}`), and each names its call either by the CTI's call id (`call_id`: the id
the CTI gave the station in `call_start`, which the hub keeps as the call's id, edge_agent/commands.py) or by
`seat` (and optionally `site`) plus `ts`: the one call on that seat that started within `window_s` of `ts`.
No call, or more than one, is unmatched: guessing would pin a survey on the wrong agent.

All or nothing: every row is validated and matched before anything is written, and every row that fails is
reported with its line (CSV: the physical line of the file, the header being line 1; JSON: the row's position
from 1) and a one-line reason. With any such row nothing is imported, unless the caller chose `partial`
("import the rows that match"): then the good rows are imported in one transaction and the others reported
and counted (`SKIPPED_COUNTER`). Bounded: `MAX_BYTES` per import and `MAX_ROWS` rows; a refused import is
counted per reason (`REFUSED_PREFIX`), as ingest counts its rejections.

Who: admins and QA reviewers import for every call, team leads for their own team's calls only (a call of
another team is unmatched for them, with the same reason as no call, so an import cannot probe other teams'
call ids); agents never, since they would be setting the outcomes their own calls are judged by.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import io
import json
import logging
import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hub import validity
from hub.auth import User
from hub.scores import audit, now_iso
from hub.storage import Store, zone

log = logging.getLogger(__name__)

IMPORT_ROLES = ("admin", "reviewer", "lead")
MAX_BYTES = 16 * 1024 * 1024
"""Largest import (CSV file or JSON body): 100,000 rows of every standard outcome take about 6 MiB."""
MAX_ROWS = 100_000
"""Most data rows in one import; a bigger export is split (each part is still all or nothing)."""
CSAT_RANGE = (1.0, 5.0)
"""The survey score's stated range (the common 5-point CSAT); a score outside it is refused, not clipped."""
REPEAT_DAYS = (1, 365)
"""The range of N in "repeat contact within N days"."""
WINDOW_S = 120.0
"""Default seat-and-time matching window (seconds either side of the row's time): a CTI's and a station's
clocks and their notion of when a call starts (ringing, answer) differ by seconds, not minutes."""
MAX_WINDOW_S = 3600.0
MAX_CUSTOM = 20
"""Custom outcomes per row."""
MAX_FIELD = 256
"""Characters in one field: ids are at most 128 (edge_agent/commands.py), numbers far fewer."""
CUSTOM_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
REFUSED_PREFIX = "outcome_import_refused."
"""Counters of refused imports, by reason: oversize, too_many_rows, bad_csv, bad_json, bad_rows."""
SKIPPED_COUNTER = "outcome_rows_skipped"
"""Rows left out of partial imports (unmatched or invalid), counted."""
STANDARD = ("csat", "fcr", "repeat", "complaint")
BOOLEANS = ("fcr", "repeat", "complaint")
_ID_COLUMNS = ("call_id", "site", "seat", "ts")
_ALIASES = {"cti_id": "call_id", "cti_call_id": "call_id", "time": "ts", "timestamp": "ts"}
_TRUE = frozenset({"1", "true", "yes", "y", "t", "是"})
_FALSE = frozenset({"0", "false", "no", "n", "f", "否"})
_CHUNK = 500
"""Ids per `IN (...)` lookup: well under both backends' parameter limits."""


class OutcomeError(ValueError):
    """An import refused as a whole (too big, not CSV/JSON, wrong columns); `key` names it for the counters."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Problem:
    line: int
    reason: str


@dataclass
class Result:
    """What an import did. `imported`: rows stored (0 when refused); `problems`: every row not imported."""

    total: int
    imported: int = 0
    outcomes: int = 0
    import_id: str | None = None
    partial: bool = False
    problems: list[Problem] = field(default_factory=list)
    refused: str | None = None
    """Why nothing was imported (a reason key), or None."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.refused is None,
            "import_id": self.import_id,
            "total": self.total,
            "imported": self.imported,
            "outcomes": self.outcomes,
            "unmatched": len(self.problems),
            "partial": self.partial,
            "refused": self.refused,
            "problems": [{"line": p.line, "reason": p.reason} for p in self.problems],
        }


@dataclass
class _Row:
    line: int
    values: dict[str, tuple[float, int | None]]
    """outcome name -> (value, window_days)."""
    call_id: str | None = None
    site: str | None = None
    seat: str | None = None
    at: float | None = None


# --- parsing ------------------------------------------------------------------------------------------------------


def _decode(data: bytes) -> str:
    """UTF-8 (with or without Excel's BOM), else GB18030: what Excel saves a Chinese sheet as by default."""
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return codecs.decode(data, encoding)
        except UnicodeDecodeError:
            continue
    raise OutcomeError("bad_csv", "the file is neither UTF-8 nor GB18030 text")


def _column(name: str) -> str:
    key = name.strip().lower()
    return _ALIASES.get(key, key)


def check_size(n: int) -> None:
    if n > MAX_BYTES:
        raise OutcomeError("oversize", f"the import is {n} bytes; at most {MAX_BYTES} bytes ({MAX_ROWS} rows)")


def parse_csv(data: bytes) -> list[tuple[int, dict[str, object]]]:
    """(line, fields) of every non-blank data row; the header names the columns (see the module docstring)."""
    check_size(len(data))
    text = _decode(data)
    if "\x00" in text:
        raise OutcomeError("bad_csv", "the file holds NUL bytes: not a CSV text file")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise OutcomeError("bad_csv", "the file is empty: a header line is needed")
        columns = [_column(h) for h in header]
        _check_columns(columns)
        rows: list[tuple[int, dict[str, object]]] = []
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if len(rows) >= MAX_ROWS:
                raise OutcomeError("too_many_rows", f"more than {MAX_ROWS} rows: split the file")
            line = reader.line_num
            if len(cells) != len(columns):
                rows.append((line, {"": f"{len(cells)} fields where the header has {len(columns)}"}))
                continue
            rows.append((line, {c: v for c, v in zip(columns, cells, strict=True) if v.strip()}))
    except csv.Error as exc:
        raise OutcomeError("bad_csv", f"line {reader.line_num}: not valid CSV ({exc})") from None
    return rows


def parse_json(data: bytes) -> tuple[list[tuple[int, dict[str, object]]], dict[str, object]]:
    """(position, fields) of every row of `{"rows": [...]}`, and the body's other keys (options)."""
    check_size(len(data))
    try:
        body = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise OutcomeError("bad_json", f"not JSON: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("rows"), list):
        raise OutcomeError("bad_json", 'the body must be {"rows": [...]}')
    raw: list[object] = body["rows"]
    if len(raw) > MAX_ROWS:
        raise OutcomeError("too_many_rows", f"{len(raw)} rows; at most {MAX_ROWS}: split the import")
    rows: list[tuple[int, dict[str, object]]] = []
    for i, item in enumerate(raw, 1):
        if not isinstance(item, dict):
            rows.append((i, {"": "a row must be an object"}))
            continue
        fields: dict[str, object] = {}
        for k, v in item.items():
            if k == "custom" and isinstance(v, dict):
                fields.update({f"custom.{ck}": cv for ck, cv in v.items()})
            elif v is not None:
                fields[_column(str(k))] = v
        rows.append((i, fields))
    _check_columns(sorted({k for _, f in rows for k in f if k}))
    return rows, {k: v for k, v in body.items() if k != "rows"}


def _check_columns(columns: Sequence[str]) -> None:
    """Unknown columns refuse the whole import: a misspelt `csta` silently left out would look imported."""
    unknown = [c for c in columns if c not in (*_ID_COLUMNS, *STANDARD, "repeat_days") and not _custom_ok(c)]
    if unknown:
        raise OutcomeError(
            "bad_columns",
            f"unknown column(s) {', '.join(repr(c[:40]) for c in unknown[:5])}: use call_id or seat and ts, then"
            f" {', '.join(STANDARD)}, repeat_days and custom.<name>",
        )
    if len(set(columns)) != len(columns):
        raise OutcomeError("bad_columns", "a column is named twice")
    if "call_id" not in columns and not {"seat", "ts"} <= set(columns):
        raise OutcomeError("bad_columns", "a call_id column, or seat and ts columns, are needed to find the calls")


def _custom_ok(column: str) -> bool:
    return column.startswith("custom.") and CUSTOM_NAME.fullmatch(column[7:]) is not None


# --- validating one row ---------------------------------------------------------------------------------------------


class _Bad(ValueError):
    pass


def _text(value: object, what: str) -> str:
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else None
    if not text or len(text) > MAX_FIELD or "@" in text:  # '@' only in the hub's own scoped ids (storage.py)
        raise _Bad(f"{what} {str(value)[:40]!r} is not an id")
    return text


def _number(value: object, what: str) -> float:
    if isinstance(value, bool):
        raise _Bad(f"{what} must be a number, not {value}")
    if isinstance(value, int | float):
        x = float(value)
    elif isinstance(value, str) and len(value) < 32:
        try:
            x = float(value.strip())
        except ValueError:
            raise _Bad(f"{what} {value.strip()[:20]!r} is not a number") from None
    else:
        raise _Bad(f"{what} must be a number")
    if not math.isfinite(x) or abs(x) > 1e9:
        raise _Bad(f"{what} {value!s:.20} is out of range")
    return x


def _bool(value: object, what: str) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int) and value in (0, 1):
        return float(value)
    text = str(value).strip().lower() if isinstance(value, str) else ""
    if text in _TRUE:
        return 1.0
    if text in _FALSE:
        return 0.0
    raise _Bad(f"{what} {str(value)[:20]!r} is not yes/no (1/0, true/false)")


def _time(value: object, tz: str) -> float:
    text = value.strip() if isinstance(value, str) else ""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00")) if 0 < len(text) < 40 else None
    except ValueError:
        when = None
    if when is None:
        raise _Bad(f"ts {str(value)[:40]!r} is not a time (ISO 8601, e.g. 2026-01-05 09:07:00)")
    # a CTI export's local time without an offset is the site's (the hub's default without a site)
    return (when if when.tzinfo else when.replace(tzinfo=zone(tz))).timestamp()


def _row(line: int, fields: Mapping[str, object], site_tz: Mapping[str, str], default_tz: str) -> _Row:
    if "" in fields:
        raise _Bad(str(fields[""]))
    values: dict[str, tuple[float, int | None]] = {}
    if "csat" in fields:
        x = _number(fields["csat"], "csat")
        lo, hi = CSAT_RANGE
        if not lo <= x <= hi:
            raise _Bad(f"csat {x:g} is outside its range {lo:g}..{hi:g}")
        values["csat"] = (x, None)
    for name in BOOLEANS:
        if name in fields:
            values[name] = (_bool(fields[name], name), None)
    if "repeat_days" in fields:
        if "repeat" not in values:
            raise _Bad("repeat_days without repeat")
        days = _number(fields["repeat_days"], "repeat_days")
        if days != int(days) or not REPEAT_DAYS[0] <= days <= REPEAT_DAYS[1]:
            raise _Bad(f"repeat_days {days:g} must be a whole number of days {REPEAT_DAYS[0]}..{REPEAT_DAYS[1]}")
        values["repeat"] = (values["repeat"][0], int(days))
    elif "repeat" in values:
        raise _Bad("repeat needs repeat_days (the N of 'repeat contact within N days')")
    custom = [k for k in fields if k.startswith("custom.")]
    if len(custom) > MAX_CUSTOM:
        raise _Bad(f"{len(custom)} custom outcomes; at most {MAX_CUSTOM}")
    for key in custom:
        if not _custom_ok(key):
            raise _Bad(f"custom outcome name {key[7:47]!r}: lower-case letters, digits and _ (at most 32)")
        values[key] = (_number(fields[key], key), None)
    if not values:
        raise _Bad("no outcome in the row")
    row = _Row(line, values)
    if "call_id" in fields:
        row.call_id = _text(fields["call_id"], "call_id")
        return row
    if "seat" not in fields or "ts" not in fields:
        raise _Bad("neither call_id nor seat and ts")
    row.seat = _text(fields["seat"], "seat")
    row.site = _text(fields["site"], "site") if "site" in fields else None
    row.at = _time(fields["ts"], site_tz.get(row.site, default_tz) if row.site else default_tz)
    return row


# --- matching -----------------------------------------------------------------------------------------------------


def _visible_agents(store: Store, user: User) -> set[str] | None:
    """The agents whose calls `user` may import for; None: every call (unattributed ones too)."""
    if user.sees_all:
        return None
    rows = store.db.all("SELECT agent_id FROM agents WHERE team_id = ?", (user.team_id,))
    return {str(r[0]) for r in rows}


def _by_call_id(store: Store, ids: Iterable[str]) -> dict[str, str | None]:
    """call id -> agent id of the calls that exist."""
    out: dict[str, str | None] = {}
    unique = sorted(set(ids))
    for i in range(0, len(unique), _CHUNK):
        part = unique[i : i + _CHUNK]
        marks = ", ".join("?" * len(part))
        for call_id, agent in store.db.all(f"SELECT call_id, agent_id FROM calls WHERE call_id IN ({marks})", part):
            out[str(call_id)] = None if agent is None else str(agent)
    return out


def _by_seat(store: Store, rows: Sequence[_Row], window_s: float) -> dict[int, list[tuple[str, str | None]]]:
    """line -> (call id, agent id) of every call on the row's seat that started within the window of its time.
    One query per seat over the span of its rows, then a binary search per row."""
    groups: dict[tuple[str | None, str], list[_Row]] = {}
    for r in rows:
        assert r.seat is not None and r.at is not None  # noqa: S101 - only seat rows come here
        groups.setdefault((r.site, r.seat), []).append(r)
    out: dict[int, list[tuple[str, str | None]]] = {}
    sites: list[str] = []
    if any(site is None for site, _ in groups):
        sites = [str(r[0]) for r in store.db.all("SELECT site FROM sites UNION SELECT DISTINCT site FROM calls")]
    for (site, seat), group in groups.items():
        lo = min(float(r.at or 0) for r in group) - window_s
        hi = max(float(r.at or 0) for r in group) + window_s
        # every site named, so the lookup runs on the (site, seat, started) index: without the site it scans
        # every call once per seat
        in_sites = [site] if site is not None else sites
        if not in_sites:  # no calls at all (and PostgreSQL refuses an empty IN list)
            out.update((r.line, []) for r in group)
            continue
        marks = ", ".join("?" * len(in_sites))
        sql = f"SELECT started, call_id, agent_id FROM calls WHERE site IN ({marks}) AND seat = ? AND started >= ?"
        sql += " AND started <= ?"
        params: list[object] = [*in_sites, seat, lo, hi]
        calls = sorted((float(s), str(c), None if a is None else str(a)) for s, c, a in store.db.all(sql, params))
        starts = [c[0] for c in calls]
        for r in group:
            at = float(r.at or 0)
            a, b = bisect.bisect_left(starts, at - window_s), bisect.bisect_right(starts, at + window_s)
            out[r.line] = [(c, agent) for _, c, agent in calls[a:b]]
    return out


def _match(store: Store, user: User, rows: Sequence[_Row], window_s: float) -> tuple[dict[int, str], list[Problem]]:
    """line -> matched call id, and the rows that matched no call (or more than one, or one not theirs)."""
    visible = _visible_agents(store, user)
    known = _by_call_id(store, (r.call_id for r in rows if r.call_id is not None))
    seat_calls = _by_seat(store, [r for r in rows if r.call_id is None], window_s)
    matched: dict[int, str] = {}
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    for r in rows:
        if r.call_id is not None:
            hit = [(r.call_id, known[r.call_id])] if r.call_id in known else []
            nothing = f"no call {r.call_id[:64]!r}"
        else:
            hit = seat_calls.get(r.line, [])
            nothing = f"no call on seat {r.seat!r} started within {window_s:g} s of ts"
            if len(hit) > 1:
                ids = ", ".join(c for c, _ in hit[:3])
                problems.append(
                    Problem(r.line, f"ambiguous: {len(hit)} calls on seat {r.seat!r} in the window ({ids})")
                )
                continue
        # a call of another team is reported exactly like no call: an import must not probe other teams' ids
        if not hit or (visible is not None and hit[0][1] not in visible):
            problems.append(Problem(r.line, nothing))
            continue
        call_id = hit[0][0]
        if call_id in first_line:
            problems.append(Problem(r.line, f"the same call as line {first_line[call_id]} ({call_id[:64]})"))
            continue
        first_line[call_id] = r.line
        matched[r.line] = call_id
    return matched, problems


# --- importing ------------------------------------------------------------------------------------------------------


def refuse(store: Store, user: User, key: str, total: int = 0) -> Result:
    """Count a refused import (by reason) and say so."""
    n = store.bump_counter(f"{REFUSED_PREFIX}{key}")
    log.info("refused an outcome import from %s: %s (%d so far)", user.username, key, n)
    return Result(total=total, refused=key)


def import_rows(
    store: Store,
    user: User,
    rows: Sequence[tuple[int, Mapping[str, object]]],
    *,
    partial: bool = False,
    window_s: float = WINDOW_S,
    source: str = "api",
    filename: str | None = None,
) -> Result:
    """Validate, match and (all or, with `partial`, the good ones) store parsed rows; see the module docstring."""
    if user.role not in IMPORT_ROLES:
        raise PermissionError("outcomes are imported by admins, QA reviewers and team leads")
    if not (math.isfinite(window_s) and 0 < window_s <= MAX_WINDOW_S):
        raise OutcomeError("bad_window", f"window_s must be in (0, {MAX_WINDOW_S:g}] seconds")
    tzs = {str(s): str(tz) for s, tz in store.db.all("SELECT site, tz FROM sites")}
    good: list[_Row] = []
    problems: list[Problem] = []
    for line, fields in rows:
        try:
            good.append(_row(line, fields, tzs, store.default_tz))
        except _Bad as exc:
            problems.append(Problem(line, str(exc)))
    matched, unmatched = _match(store, user, good, window_s)
    problems = sorted([*problems, *unmatched], key=lambda p: p.line)
    result = Result(total=len(rows), partial=partial, problems=problems)
    if not rows:
        result.refused = "empty"
        store.bump_counter(f"{REFUSED_PREFIX}empty")
        return result
    if problems and not partial:
        # all or nothing: one bad row and the whole import waits for a corrected file (or an explicit partial)
        refuse(store, user, "bad_rows", len(rows))
        result.refused = "bad_rows"
        return result
    if not matched:
        refuse(store, user, "nothing_matched", len(rows))
        result.refused = "nothing_matched"
        return result
    import_id, at = uuid.uuid4().hex, now_iso()
    values = [
        (matched[r.line], name, value, *_range(name), days, import_id, user.username, at)
        for r in good
        if r.line in matched
        for name, (value, days) in r.values.items()
    ]
    with store.db.transaction():
        store.db.execute(
            "INSERT INTO outcome_imports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (import_id, user.username, at, source, (filename or "")[:200] or None, len(rows), len(matched),
             len(problems), int(partial)),
        )  # fmt: skip
        # the rule validity cells of the calls' scored versions trade each old value for the new one, here
        validity.on_outcomes_written(store, [(v[0], v[1], v[2]) for v in values])
        store.db.executemany(
            "INSERT INTO call_outcomes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (call_id, name) DO UPDATE SET"
            " value = excluded.value, lo = excluded.lo, hi = excluded.hi, window_days = excluded.window_days,"
            " import_id = excluded.import_id, imported_by = excluded.imported_by, imported_at = excluded.imported_at",
            values,
        )
        if problems:
            store.bump_counter(SKIPPED_COUNTER, len(problems))
        audit(store, user.username, "outcomes.import", import_id,
              {"rows": len(rows), "imported": len(matched), "skipped": len(problems), "source": source,
               "filename": filename})  # fmt: skip
    log.info("outcome import %s by %s: %d of %d rows", import_id, user.username, len(matched), len(rows))
    result.import_id, result.imported, result.outcomes = import_id, len(matched), len(values)
    return result


def _range(name: str) -> tuple[float | None, float | None]:
    if name == "csat":
        return CSAT_RANGE
    if name in BOOLEANS:
        return 0.0, 1.0
    return None, None


def import_csv(store: Store, user: User, data: bytes, **kw: Any) -> Result:
    """`import_rows` of a CSV file; a file refused as a whole is counted and reported (`Result.refused`)."""
    try:
        rows = parse_csv(data)
    except OutcomeError as exc:
        result = refuse(store, user, exc.key)
        result.problems = [Problem(0, str(exc))]
        return result
    return import_rows(store, user, rows, **kw)


def import_json(store: Store, user: User, data: bytes, **kw: Any) -> Result:
    """`import_rows` of `{"rows": [...], "partial": bool, "window_s": number}` (the keyword arguments win)."""
    try:
        rows, options = parse_json(data)
    except OutcomeError as exc:
        result = refuse(store, user, exc.key)
        result.problems = [Problem(0, str(exc))]
        return result
    if "partial" in options and "partial" not in kw:
        kw["partial"] = options["partial"] is True
    window = options.get("window_s")
    if "window_s" not in kw and isinstance(window, int | float) and not isinstance(window, bool):
        kw["window_s"] = float(window)
    return import_rows(store, user, rows, **kw)


# --- reading ------------------------------------------------------------------------------------------------------


def call_outcomes(store: Store, call_id: str) -> list[dict[str, Any]]:
    """The call's outcomes, standard ones first: name, value, lo, hi, window_days, import_id, by, at."""
    rows = store.db.all(
        "SELECT name, value, lo, hi, window_days, import_id, imported_by, imported_at FROM call_outcomes"
        " WHERE call_id = ?",
        (call_id,),
    )
    keys = ("name", "value", "lo", "hi", "window_days", "import_id", "imported_by", "imported_at")
    out = [dict(zip(keys, r, strict=True)) for r in rows]
    order = {n: i for i, n in enumerate(STANDARD)}
    return sorted(out, key=lambda o: (order.get(o["name"], len(order)), o["name"]))


def recent_imports(store: Store, user: User, limit: int = 20) -> list[dict[str, Any]]:
    """The latest imports: every one for admins and reviewers, a lead's own for a lead."""
    keys = ("import_id", "imported_by", "imported_at", "source", "filename", "rows_total", "rows_imported",
            "rows_unmatched", "partial")  # fmt: skip
    where, params = ("", []) if user.sees_all else (" WHERE imported_by = ?", [user.username])
    rows = store.db.all(
        f"SELECT {', '.join(keys)} FROM outcome_imports{where} ORDER BY imported_at DESC, import_id LIMIT ?",
        [*params, limit],
    )
    return [dict(zip(keys, r, strict=True)) for r in rows]


def refused_counts(store: Store) -> dict[str, int]:
    return {k.removeprefix(REFUSED_PREFIX): v for k, v in store.counters().items() if k.startswith(REFUSED_PREFIX)}
