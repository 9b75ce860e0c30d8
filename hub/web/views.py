"""What the API and the pages both show: agents, calls, a call's detail, devices, live seats, event pages and CSV,
each read through the user's scope. Lists of events come in bounded pages."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, tzinfo
from typing import Any

from fastapi import HTTPException

from hub import aggregate, calibration, reviews
from hub.aggregate import Period
from hub.auth import Scope, User
from hub.scores import get_scorecard
from hub.web import fleet
from hub.web.deps import Hub, visible_call

log = logging.getLogger(__name__)

EVENTS_PAGE = 500
"""Events per page of `GET /api/calls/{id}/events` unless asked for fewer; `EVENTS_PAGE_MAX` at most."""
EVENTS_PAGE_MAX = 2000
EVENTS_PAGE_BYTES = 1 << 20
"""A page also stops once its stored payloads pass this many bytes (at least one event per page)."""
EVIDENCE_SHOWN = 50
"""Evidence items per rule in a call's detail (API and page); `evidence_total` says how many there are."""
HISTORY_SHOWN = 50
"""Scores (re-scores) of one call in its detail, the latest; older ones stay in `GET /api/calls/{id}/scores`."""
CALIBRATIONS_SHOWN = 1000
"""Calibration points (reviewer x rule) of one call in its detail."""


def agents_data(hub: Hub, user: User, end: date, period: Period, team_id: str | None = None) -> list[dict[str, Any]]:
    return [r.to_dict() for r in aggregate.agents_table(hub.store, Scope(user), end, period, team_id=team_id)]


def calls_data(
    hub: Hub, user: User, agent_id: str | None, start: str | None, stop: str | None, limit: int
) -> list[dict[str, Any]]:
    cond, params = Scope(user).agents_sql("agent_id")
    sql = f"SELECT {aggregate.CALL_COLS} FROM calls WHERE summary_id IS NOT NULL{cond}"
    if agent_id:
        sql += " AND agent_id = ?"
        params.append(agent_id)
    if start:
        sql += " AND day >= ?"
        params.append(start)
    if stop:
        sql += " AND day <= ?"
        params.append(stop)
    return aggregate.call_dicts(hub.store.db.all(sql + " ORDER BY started DESC LIMIT ?", [*params, limit]))


def call_detail(hub: Hub, user: User, call_id: str) -> dict[str, Any]:
    """A call with its agent's name, its current score (the scorecard's base and range, every rule's automatic
    and effective points, the first `EVIDENCE_SHOWN` evidence items each), its reviews, its score history
    (`HISTORY_SHOWN` latest scores) and its calibrations, each bounded whatever the call holds."""
    call = visible_call(hub, user, call_id)
    db = hub.store.db
    call["agent_name"] = (
        db.scalar("SELECT name FROM agents WHERE agent_id = ?", (call["agent_id"],)) if call["agent_id"] else None
    )
    row = db.one(
        "SELECT s.id, s.scorecard, s.version, s.score, s.max_score, s.weight, s.excluded, s.note, s.items, s.created"
        " FROM calls c JOIN scores s ON s.id = c.score_id WHERE c.call_id = ?",
        (call_id,),
    )
    score = None
    if row is not None:
        effective: dict[str, float] = dict(
            db.all("SELECT rule_id, points FROM call_rules WHERE call_id = ?", (call_id,))
        )
        items = json.loads(row[8])
        for item in items:
            item["effective_points"] = effective.get(item["rule"], item["points"])
            # a call with 50,000 talk-overs cites every one: show the first few, say how many there are
            evidence = item.get("evidence") or []
            item["evidence_total"] = len(evidence)
            item["evidence"] = evidence[:EVIDENCE_SHOWN]
        score = {
            "score_id": row[0],
            "scorecard": row[1],
            "version": row[2],
            "auto_score": row[3],
            "score": call["score"],
            "max_score": row[4],
            "weight": row[5],
            "excluded": bool(row[6]),
            "note": row[7],
            "items": items,
            "created": row[9],
        }
        card = get_scorecard(hub.store, str(row[1]), int(row[2]))
        if card is not None:  # the base and range the rule points add to, so the numbers add up on screen
            score.update(base=card.base, min_score=card.min_score)
    history = db.all(
        "SELECT id, scorecard, version, score, note, created, current FROM scores WHERE call_id = ?"
        " ORDER BY id DESC LIMIT ?",
        (call_id, HISTORY_SHOWN),
    )
    keys = ("score_id", "scorecard", "version", "score", "note", "created", "current")
    return {
        "call": call,
        "score": score,
        "reviews": [r.to_dict() for r in reviews.listing(hub.store, Scope(user), call_id=call_id)],
        "history": [{**dict(zip(keys, r, strict=True)), "current": bool(r[6])} for r in reversed(history)],
        "calibrations": call_calibrations(hub, user, call_id),
    }


def call_calibrations(hub: Hub, user: User, call_id: str) -> dict[str, Any]:
    """The call's calibration scores, blind like the calibration itself (`hub.calibration.blind`: a reviewer
    sees the others' points once their own for the call are in); an agent, only how many reviewers calibrated it."""
    db = hub.store.db
    reviewers = int(db.scalar("SELECT COUNT(DISTINCT reviewer) FROM calibrations WHERE call_id = ?", (call_id,)))
    own = db.one("SELECT 1 FROM calibrations WHERE call_id = ? AND reviewer = ?", (call_id, user.username))
    if user.role == "agent" or calibration.blind(user, own is not None):
        return {"reviewers": reviewers, "visible": False, "scores": []}
    rows = db.all(
        "SELECT reviewer, rule_id, points, created FROM calibrations WHERE call_id = ? ORDER BY reviewer, rule_id"
        " LIMIT ?",
        (call_id, CALIBRATIONS_SHOWN),
    )
    keys = ("reviewer", "rule_id", "points", "created")
    return {"reviewers": reviewers, "visible": True, "scores": [dict(zip(keys, r, strict=True)) for r in rows]}


def devices_data(
    hub: Hub, user: User, only: Sequence[str] = (), order: str = "seat", now: float | None = None
) -> list[dict[str, Any]]:
    """Stations, scoped like calls: admins and QA reviewers see all; a team lead sees the seats whose last
    stored call is by an agent of their team (`agent_id`: the hub's record, not what the seat's health says),
    and agents none. The agent and call a seat's health report names are blanked for whoever may not see that
    agent (a seat moves between teams; its report is the seat's word).

    Each row also has the health columns (`hub.web.fleet.health_columns`: temperature, disk, clock offset, outbox,
    software version, speech and emotion model, all bounded) and its `problems` (`hub.web.fleet.problems`, against
    the newest versions in the whole fleet); `only` keeps the rows that have every one of those problems, and
    `order` is one of `hub.web.fleet.SORTS`."""
    if user.role == "agent":
        return []
    rows = hub.store.db.all(
        "SELECT d.site, d.seat, d.status, d.status_at, d.last_seen, d.health, d.model,"
        " (SELECT c.agent_id FROM calls c WHERE c.site = d.site AND c.seat = d.seat"
        "  ORDER BY c.started IS NULL, c.started DESC LIMIT 1)"
        " FROM devices d ORDER BY d.site, d.seat"
    )
    team: set[str] | None = None
    if not user.sees_all:
        team = {str(r[0]) for r in hub.store.db.all("SELECT agent_id FROM agents WHERE team_id = ?", (user.team_id,))}
    every, out = [], []
    for site, seat, status, status_at, last_seen, health, model, agent_id in rows:
        try:
            h = json.loads(health) if health else {}
        except ValueError:
            h = {}
        if not isinstance(h, dict):
            h = {}
        row = {
            "site": site,
            "seat": seat,
            "agent_id": agent_id,
            "status": status or "unknown",
            "status_at": status_at,
            "last_seen": last_seen,
            **fleet.health_columns(h),
            "dropped": h.get("dropped"),
            "health": h,
            "model": model,
        }
        every.append(row)  # the fleet's newest versions are the whole fleet's, whoever looks
        if team is not None and agent_id not in team:
            continue
        if team is not None and h.get("agent_id") not in team:
            row["health"] = {**h, "agent_id": None, "call_id": None}
        out.append(row)
    newest = fleet.newest(every)
    for row in out:
        row["problems"] = fleet.problems(row, newest, now)
        row["speech_outdated"] = fleet.outdated(row["speech_model"], newest)
        row["emotion_outdated"] = fleet.outdated(row["emotion_model"], newest)
    out = [r for r in out if all(p in r["problems"] for p in only)]
    return fleet.sort_rows(out, order)


def events_page(hub: Hub, call_id: str, limit: int, after: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """Up to `limit` of the call's events (and about EVENTS_PAGE_BYTES of them) after the cursor `after`
    (`seat:seq` of the last event of the page before); the cursor of this page's last event when more follow."""
    sql = "SELECT seat, seq, payload FROM events WHERE call_id = ?"
    params: list[object] = [call_id]
    if after:
        seat, _, seq = after.rpartition(":")
        try:
            n = int(seq)
        except ValueError:
            raise HTTPException(422, f"after {after[:80]!r}: the X-Next-After value of the page before") from None
        sql += " AND (seat > ? OR (seat = ? AND seq > ?))"
        params += [seat, seat, n]
    rows = hub.store.db.all(sql + " ORDER BY seat, seq LIMIT ?", [*params, limit + 1])
    events: list[dict[str, Any]] = []
    size, taken, last = 0, 0, None
    for seat, seq, payload in rows[:limit]:
        if taken and size + len(payload) > EVENTS_PAGE_BYTES:
            break
        size, taken, last = size + len(payload), taken + 1, f"{seat}:{seq}"
        try:
            events.append(json.loads(payload))
        except ValueError:
            log.warning("call %s: stored event %s:%s is not JSON; left out", call_id, seat, seq)
    return events, last if taken < len(rows) else None


DEVICE_STATUS_SQL = "SELECT site, seat, status, status_at, last_seen FROM devices"
"""What the live wall takes from the devices table (`LiveBoard.sync_devices`)."""


def live_data(hub: Hub, user: User) -> list[dict[str, Any]]:
    """The wall's seats the user may see, with the device statuses (`LiveBoard.sync_devices`) and each seat's
    agent's name from the directory (`agent_name`; the agent is the one the hub holds as logged in there)."""
    store = hub.store
    hub.live.sync_devices(lambda: store.db.all(DEVICE_STATUS_SQL))
    scope = Scope(user)
    seats = [s for s in hub.live.snapshot() if scope.can_see_agent(store, s["agent_id"])]
    ids = sorted({s["agent_id"] for s in seats if s["agent_id"] is not None})
    names: dict[str, str] = {}
    for i in range(0, len(ids), 200):
        chunk = ids[i : i + 200]
        marks = ", ".join("?" * len(chunk))
        names.update(store.db.all(f"SELECT agent_id, name FROM agents WHERE agent_id IN ({marks})", chunk))
    for s in seats:
        s["agent_name"] = names.get(s["agent_id"]) if s["agent_id"] is not None else None
    return seats


CSV_TIMES = frozenset({"started", "status_at", "last_seen", "created", "resolved_at"})
"""Columns written as local date and time (`YYYY-MM-DD HH:MM:SS` in the row's site's zone, or the hub's default
zone for a row without a site; the `tz` column names it): epoch seconds or UTC ISO text in the data."""
CSV_FORMULA = ("=", "+", "-", "@", "\t", "\r")
"""How a text cell starts that Excel or LibreOffice would read as a formula: written with a leading `'`."""
CSV_LIST_MAX = 10
"""Items of a list value written (`trend.1` ... `trend.8`, `top_issues.1.rule` ...); the rest are left out."""


def _csv_time(value: Any, tz: tzinfo) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return datetime.fromtimestamp(value, tz).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, str):
        try:
            t = datetime.fromisoformat(value)
        except ValueError:
            return value
        t = t if t.tzinfo else t.replace(tzinfo=UTC)
        return t.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")
    return value


def _csv_cells(key: str, value: Any, out: dict[str, Any], depth: int = 0) -> None:
    """One value per cell: a dict's items and a list's first `CSV_LIST_MAX` items become columns of their own
    (`key.sub`, `key.1`), two levels deep; whatever is nested deeper is left out."""
    if isinstance(value, dict):
        items: list[tuple[str, Any]] = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, list | tuple):
        items = [(str(i), v) for i, v in enumerate(value[:CSV_LIST_MAX], 1)]
    else:
        # a text a spreadsheet would run as a formula (a name or a seat's report starting with "=") stays text
        out[key] = "'" + value if isinstance(value, str) and value.startswith(CSV_FORMULA) else value
        return
    if depth < 2:
        for sub, v in items:
            _csv_cells(f"{key}.{sub}", v, out, depth + 1)


def to_csv(rows: list[dict[str, Any]], tz_of: Callable[[dict[str, Any]], tzinfo]) -> str:
    """Rows as CSV a spreadsheet opens right: local times (`CSV_TIMES`) with a `tz` column, one value per
    cell (`_csv_cells`; the columns are the union over all rows, in first-seen order), text as it is (the
    caller writes it as UTF-8 with a BOM, so Excel reads Chinese names right)."""
    flat: list[dict[str, Any]] = []
    columns: dict[str, None] = {}
    for r in rows:
        tz = tz_of(r)
        out: dict[str, Any] = {}
        for k, v in r.items():
            _csv_cells(k, _csv_time(v, tz) if k in CSV_TIMES else v, out)
        if CSV_TIMES.intersection(r):
            out["tz"] = str(tz)
        columns.update(dict.fromkeys(out))
        flat.append(out)
    buf = io.StringIO()
    if flat:
        w = csv.DictWriter(buf, fieldnames=list(columns), restval="")
        w.writeheader()
        w.writerows(flat)
    return buf.getvalue()


def devices_csv_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The devices list for the CSV: the bounded health columns and a 0/1 column per problem; the raw report
    (the seat's word, any keys) is left out."""
    out = []
    for r in rows:
        row = {k: v for k, v in r.items() if k not in ("health", "problems")}
        row.update({f"problem_{p}": int(p in r["problems"]) for p in fleet.PROBLEMS})
        out.append(row)
    return out


# --- the app ---------------------------------------------------------------------------------------------------
