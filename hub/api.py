"""The hub's HTTP API (FastAPI; OpenAPI at /openapi.json, docs at /docs) and the app that also serves the dashboard.

Every endpoint needs a session (`POST /api/login` gives a bearer token and sets the `qa_session` cookie the
dashboard uses) and reads through `hub.auth.Scope`: a call, agent or team outside the user's scope answers
404 exactly like one that does not exist, so ids cannot be probed; a role that may never use an endpoint
gets 403.

Forgery: one app-wide dependency (`csrf_guard`) refuses (403) every state-changing request (POST, PUT, PATCH,
DELETE) that is authenticated by the session cookie and does not carry the session's token, as the
`X-CSRF-Token` header (API; `GET /api/me` tells it) or the `csrf` form field (dashboard forms). A bearer
token is not an ambient credential (no page on another site can make a browser send it), so such requests
need none. Logins are throttled (`hub.auth.LoginGuard`: 429 with `Retry-After`); the cookie is `HttpOnly`,
`SameSite=Strict`, and `Secure` whenever the request came over https (directly or through a trusted proxy).

Nothing stored makes a response fail: JSON is written with NaN/Infinity as null and unencodable characters
(lone surrogates) replaced, lists of events come in bounded pages.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import hmac
import io
import json
import logging
import math
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, date, datetime, tzinfo
from typing import Annotated, Any, Literal
from urllib.parse import quote

import swagger_ui_bundle  # type: ignore[import-untyped]
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from hub import admin, aggregate, auth, calibration, fleet, reviews
from hub.aggregate import Period
from hub.auth import Scope, User
from hub.live import LiveBoard
from hub.scorecard import ScorecardError
from hub.scores import Scorer, get_scorecard, import_scorecard
from hub.storage import Store, zone

log = logging.getLogger(__name__)
COOKIE = "qa_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
CSRF_EXEMPT = frozenset({"/api/login", "/login"})
"""Paths that change state without a session to forge (they create one)."""
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
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


def _finite(value: Any) -> Any:
    """`value` with every NaN or infinity (which JSON cannot carry) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def dumps(content: Any) -> bytes:
    """JSON for a response, whatever was stored: non-finite numbers become null and characters UTF-8 cannot
    carry (a lone surrogate a seat once sent) become U+FFFD, instead of the response failing with a 500."""
    try:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:  # NaN or infinity somewhere: the slow path only for such content
        text = json.dumps(_finite(content), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8", errors="replace")


class SafeJSONResponse(JSONResponse):
    """The app's JSON responses (see `dumps`)."""

    def render(self, content: Any) -> bytes:
        return dumps(content)


class LoginBody(BaseModel):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


class NewUser(BaseModel):
    username: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    password: str = Field(min_length=8, max_length=1024)
    role: auth.Role
    agent_id: str | None = None
    team_id: str | None = None


class OverrideBody(BaseModel):
    rule_id: str
    points: float
    reason: str = Field(min_length=1, max_length=2000)


class DisputeBody(BaseModel):
    rule_id: str | None = None
    reason: str = Field(min_length=1, max_length=2000)


class ResolveBody(BaseModel):
    decision: Literal["upheld", "rejected"]
    note: str = Field("", max_length=2000)
    points: float | None = None


class CalibrationBody(BaseModel):
    points: dict[str, float] = Field(min_length=1)


class RescoreBody(BaseModel):
    name: str
    version: int
    since_day: str | None = None


class Hub:
    """What the endpoints share: the store, the scorer and the live board."""

    def __init__(self, store: Store, live: LiveBoard | None = None) -> None:
        self.store = store
        self.scorer = Scorer(store)
        self.live = live or LiveBoard()
        self.guard = auth.LoginGuard()

    def today(self) -> date:
        """Today in the hub's default time zone (periods end on it unless asked otherwise)."""
        return datetime.now(zone(self.store.default_tz)).date()


def get_hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


HubDep = Annotated[Hub, Depends(get_hub)]


def token_of(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE)


def current_user(request: Request, hub: HubDep) -> User:
    token = token_of(request)
    user = auth.user_for_token(hub.store, token) if token else None
    if user is None:
        raise HTTPException(401, "log in first", headers={"WWW-Authenticate": "Bearer"})
    return user


UserDep = Annotated[User, Depends(current_user)]


def client_address(request: Request) -> str:
    """The client's address: the peer, or what a trusted reverse proxy says it is (uvicorn's proxy headers
    middleware rewrites the peer only for `--forwarded-allow-ips`)."""
    return request.client.host if request.client else "-"


def is_https(request: Request) -> bool:
    """Whether the browser reached the hub over TLS: uvicorn's own (`--ssl-certfile`) or a trusted proxy's
    `X-Forwarded-Proto: https` (an untrusted client's header is ignored by uvicorn)."""
    return request.url.scheme == "https"


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    """`HttpOnly` (no script reads it), `SameSite=Strict` (no other site's request carries it), `Secure` when
    served over https (never sent in clear text afterwards)."""
    response.set_cookie(
        COOKIE, token, httponly=True, samesite="strict", secure=is_https(request), max_age=int(auth.SESSION_S)
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(COOKIE, httponly=True, samesite="strict", secure=is_https(request))


def login_or_429(hub: Hub, request: Request, username: str, password: str) -> tuple[str, User]:
    """`hub.guard.login` from this client; a throttled attempt becomes 429 with `Retry-After`."""
    try:
        return hub.guard.login(hub.store, username, password, client_address(request))
    except auth.Throttled as exc:  # counted and logged by the guard
        raise HTTPException(429, exc.reason, headers={"Retry-After": str(exc.retry_after)}) from None


def bearer(request: Request) -> bool:
    return request.headers.get("authorization", "").lower().startswith("bearer ")


def csrf_token(request: Request) -> str:
    """The session's anti-forgery token: bound to it, useless with any other, never stored."""
    session = token_of(request) or ""
    return hmac.new(session.encode(), b"callqa admin form", hashlib.sha256).hexdigest()


async def csrf_guard(request: Request) -> None:
    """Every route's dependency (installed on the app): a cookie-authenticated state change must carry the
    session's token, else 403. Applied app-wide, so no route can forget it (tests/test_hub_web_security.py
    walks every route)."""
    if request.method not in UNSAFE_METHODS or request.url.path in CSRF_EXEMPT:
        return
    if bearer(request) or COOKIE not in request.cookies:
        return  # a bearer token is not ambient; no session at all: the route itself answers 401
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        field = (await request.form()).get(CSRF_FIELD)  # parsed once: the route reads the same (cached) form
        sent = field if isinstance(field, str) else None
    if not sent or not hmac.compare_digest(sent.encode(errors="replace"), csrf_token(request).encode()):
        raise HTTPException(403, "this form is stale or was not sent from this dashboard: reload the page and retry")


def require(user: User, *roles: str) -> None:
    if user.role not in roles:
        raise HTTPException(403, f"needs role {' or '.join(roles)}")


def visible_call(hub: Hub, user: User, call_id: str) -> dict[str, Any]:
    rows = hub.store.db.all(f"SELECT {aggregate.CALL_COLS} FROM calls WHERE call_id = ?", (call_id,))
    calls = aggregate.call_dicts(rows)
    if not calls or not Scope(user).can_see_agent(hub.store, calls[0]["agent_id"]):
        raise HTTPException(404, "no such call")
    return calls[0]


def visible_agent(hub: Hub, user: User, agent_id: str) -> dict[str, Any]:
    row = hub.store.db.one("SELECT agent_id, name, team_id FROM agents WHERE agent_id = ?", (agent_id,))
    if row is None or not Scope(user).can_see_agent(hub.store, agent_id):
        raise HTTPException(404, "no such agent")
    return {"agent_id": row[0], "name": row[1], "team_id": row[2]}


def parse_day(day: str | None, hub: Hub) -> date:
    if day is None:
        return hub.today()
    try:
        return date.fromisoformat(day)
    except ValueError:
        raise HTTPException(422, f"day {day!r}: use YYYY-MM-DD") from None


# --- data functions shared by the JSON endpoints, CSV export and the dashboard ------------------------------


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

    Each row also has the health columns (`hub.fleet.health_columns`: temperature, disk, clock offset, outbox,
    software version, speech and emotion model, all bounded) and its `problems` (`hub.fleet.problems`, against
    the newest versions in the whole fleet); `only` keeps the rows that have every one of those problems, and
    `order` is one of `hub.fleet.SORTS`."""
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


DOCS_ASSETS = "/static/swagger-ui"


def install_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the hub itself (FastAPI's self-hosting recipe): its scripts, style and icon come
    from the `swagger-ui-bundle` package under `DOCS_ASSETS`, and the online spec validator (a badge loaded from
    another host) is off, so the page loads nothing from another host and works without internet."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_bundle.swagger_ui_path)), name="swagger-ui")
    oauth2_redirect = app.swagger_ui_oauth2_redirect_url

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            oauth2_redirect_url=oauth2_redirect,
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},
        )

    if oauth2_redirect:

        @app.get(oauth2_redirect, include_in_schema=False)
        def docs_oauth2_redirect() -> HTMLResponse:
            return get_swagger_ui_oauth2_redirect_html()


def create_app(store: Store, board: LiveBoard | None = None) -> FastAPI:
    app = FastAPI(
        title="callqa hub",
        version="1",
        description="QA scores from station events: agents, teams, calls, scores, events, devices, scorecards,"
        " reviews and calibration. Authenticate with POST /api/login, then send `Authorization: Bearer <token>`"
        " (a client that uses the session cookie instead sends `X-CSRF-Token` from GET /api/me on every POST, PUT,"
        " PATCH and DELETE). Failed logins are throttled: 429 with `Retry-After`.",
        dependencies=[Depends(csrf_guard)],
        default_response_class=SafeJSONResponse,
        # FastAPI's own /docs and /redoc load their scripts from a CDN: a site hub has no internet
        docs_url=None,
        redoc_url=None,
    )
    app.state.hub = Hub(store, board)
    install_docs(app)

    @app.post("/api/login", tags=["auth"], responses={429: {"description": "too many failed logins"}})
    def login(body: LoginBody, request: Request, response: Response, hub: HubDep) -> dict[str, Any]:
        try:
            token, user = login_or_429(hub, request, body.username, body.password)
        except auth.AuthError as exc:
            raise HTTPException(401, str(exc)) from None
        set_session_cookie(request, response, token)
        return {"token": token, "username": user.username, "role": user.role}

    @app.post("/api/logout", tags=["auth"])
    def logout(request: Request, response: Response, hub: HubDep, user: UserDep) -> dict[str, bool]:
        token = token_of(request)
        if token:
            auth.logout(hub.store, token)
        clear_session_cookie(request, response)
        return {"ok": True}

    @app.get("/api/me", tags=["auth"])
    def me(request: Request, user: UserDep) -> dict[str, Any]:
        """Who is logged in, and `csrf`: the token a cookie-authenticated client sends as `X-CSRF-Token`."""
        return {**user.__dict__, "csrf": csrf_token(request)}

    @app.get("/api/users", tags=["admin"])
    def users(hub: HubDep, user: UserDep) -> list[dict[str, Any]]:
        require(user, "admin")
        return auth.list_users(hub.store)

    @app.post("/api/users", tags=["admin"], status_code=201)
    def new_user(body: NewUser, hub: HubDep, user: UserDep) -> dict[str, Any]:
        require(user, "admin")
        try:
            admin.check_user_refs(hub.store, body.role, body.agent_id, body.team_id)
            u = auth.create_user(
                hub.store, body.username, body.password, body.role, agent_id=body.agent_id, team_id=body.team_id,
                actor=user.username,
            )  # fmt: skip
        except (auth.AuthError, admin.AdminError) as exc:
            raise HTTPException(400, str(exc)) from None
        return dict(u.__dict__)

    @app.get("/api/agents", tags=["scores"], response_model=list[dict[str, Any]])
    def agents(
        hub: HubDep, user: UserDep, period: Period = "week", end: str | None = None, team_id: str | None = None
    ) -> Response:
        """Per agent: calls, weighted score, previous period's score, weekly trend, top issues, coverage."""
        rows = agents_data(hub, user, parse_day(end, hub), period, team_id)
        # plain JSON values already: skip the generic encoder, which cost as much as the query for 500 agents
        return Response(dumps(rows), media_type="application/json")

    @app.get("/api/agents/{agent_id}", tags=["scores"])
    def agent(agent_id: str, hub: HubDep, user: UserDep, end: str | None = None, days: int = 90) -> dict[str, Any]:
        a = visible_agent(hub, user, agent_id)
        stop = parse_day(end, hub)
        start, stop_s, _, _ = aggregate.period_bounds(stop, "month")
        return {
            **a,
            "trend": aggregate.agent_trend(hub.store, agent_id, stop, min(max(days, 1), 366)),
            "worst": aggregate.agent_calls(hub.store, agent_id, start, stop_s, "worst"),
            "best": aggregate.agent_calls(hub.store, agent_id, start, stop_s, "best"),
            "recent": aggregate.agent_calls(hub.store, agent_id, start, stop_s, "recent", 20),
        }

    @app.get("/api/teams", tags=["scores"])
    def teams(hub: HubDep, user: UserDep, period: Period = "week", end: str | None = None) -> list[dict[str, Any]]:
        require(user, "admin", "reviewer", "lead")
        return aggregate.groups(hub.store, Scope(user), "team", parse_day(end, hub), period)

    @app.get("/api/teams/{team_id}", tags=["scores"])
    def team(
        team_id: str, hub: HubDep, user: UserDep, period: Period = "week", end: str | None = None
    ) -> dict[str, Any]:
        row = hub.store.db.one("SELECT team_id, name, site FROM teams WHERE team_id = ?", (team_id,))
        if row is None or not Scope(user).can_see_team(team_id):
            raise HTTPException(404, "no such team")
        day = parse_day(end, hub)
        return {
            "team_id": row[0],
            "name": row[1],
            "site": row[2],
            "agents": agents_data(hub, user, day, period, team_id),
        }

    @app.get("/api/sites", tags=["scores"])
    def sites(hub: HubDep, user: UserDep, period: Period = "week", end: str | None = None) -> list[dict[str, Any]]:
        require(user, "admin", "reviewer")
        return aggregate.groups(hub.store, Scope(user), "site", parse_day(end, hub), period)

    @app.get("/api/stats", tags=["scores"])
    def stats(hub: HubDep, user: UserDep, period: Period = "week", end: str | None = None) -> dict[str, Any]:
        start, stop, _, _ = aggregate.period_bounds(parse_day(end, hub), period)
        scope = Scope(user)
        out = {
            "start": start,
            "end": stop,
            "coverage": aggregate.coverage(hub.store, scope, start, stop),
            "distribution": aggregate.distribution(hub.store, scope, start, stop),
        }
        if user.sees_all:  # the scorer's work list (calls waiting, retrying, set apart as failed) names every team's
            out["scoring"] = hub.store.scoring_status()
        return out

    @app.get("/api/calls", tags=["calls"])
    def calls(
        hub: HubDep,
        user: UserDep,
        agent_id: str | None = None,
        start: str | None = None,
        end: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        return calls_data(hub, user, agent_id, start, end, min(max(limit, 1), 1000))

    @app.get("/api/calls/{call_id}", tags=["calls"])
    def call(call_id: str, hub: HubDep, user: UserDep) -> dict[str, Any]:
        return call_detail(hub, user, call_id)

    @app.get("/api/calls/{call_id}/events", tags=["calls"])
    def call_events(
        call_id: str, response: Response, hub: HubDep, user: UserDep, limit: int = EVENTS_PAGE, after: str | None = None
    ) -> list[dict[str, Any]]:
        """The call's stored events, oldest seq first per seat, in pages of at most `limit` (up to 2000) and
        about 1 MB: when more follow, the `X-Next-After` header holds the `after` value for the next page
        (and `Link` the next page's URL)."""
        visible_call(hub, user, call_id)
        events, cursor = events_page(hub, call_id, min(max(limit, 1), EVENTS_PAGE_MAX), after)
        if cursor is not None:
            response.headers["X-Next-After"] = cursor
            response.headers["Link"] = (
                f'</api/calls/{quote(call_id)}/events?after={quote(cursor)}&limit={limit}>; rel="next"'
            )
        return events

    @app.get("/api/calls/{call_id}/scores", tags=["calls"])
    def call_scores(call_id: str, hub: HubDep, user: UserDep) -> list[dict[str, Any]]:
        visible_call(hub, user, call_id)
        rows = hub.store.db.all(
            "SELECT id, scorecard, version, score, weight, excluded, note, created, current FROM scores"
            " WHERE call_id = ? ORDER BY id",
            (call_id,),
        )
        keys = ("score_id", "scorecard", "version", "score", "weight", "excluded", "note", "created", "current")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    @app.get("/api/devices", tags=["devices"])
    def devices(hub: HubDep, user: UserDep) -> list[dict[str, Any]]:
        """Stations and their health, scoped like calls (`devices_data`)."""
        require(user, "admin", "reviewer", "lead")
        return devices_data(hub, user)

    @app.get("/api/scorecards", tags=["scorecards"])
    def scorecards(hub: HubDep, user: UserDep) -> list[dict[str, Any]]:
        rows = hub.store.db.all("SELECT name, version, sha256, created, active FROM scorecards ORDER BY name, version")
        return [{"name": n, "version": v, "sha256": h, "created": c, "active": bool(a)} for n, v, h, c, a in rows]

    @app.get("/api/scorecards/{name}/{version}", tags=["scorecards"])
    def scorecard(name: str, version: int, hub: HubDep, user: UserDep) -> dict[str, Any]:
        card = get_scorecard(hub.store, name, version)
        if card is None:
            raise HTTPException(404, "no such scorecard")
        return card.model_dump()

    @app.post("/api/scorecards", tags=["scorecards"], status_code=201)
    async def upload_scorecard(request: Request, hub: HubDep, user: UserDep, activate: bool = True) -> dict[str, Any]:
        require(user, "admin")
        text = (await request.body()).decode("utf-8", errors="replace")
        try:
            card = import_scorecard(hub.store, text, actor=user.username, activate=activate)
        except ScorecardError as exc:
            raise HTTPException(400, str(exc)) from None
        return {"name": card.name, "version": card.version, "rules": len(card.rules)}

    @app.post("/api/rescore", tags=["scorecards"])
    def rescore(body: RescoreBody, hub: HubDep, user: UserDep) -> dict[str, Any]:
        require(user, "admin")
        card = get_scorecard(hub.store, body.name, body.version)
        if card is None:
            raise HTTPException(404, "no such scorecard")
        return {"rescored": hub.scorer.rescore(card, since_day=body.since_day, actor=user.username)}

    @app.post("/api/calls/{call_id}/overrides", tags=["reviews"], status_code=201)
    def override(call_id: str, body: OverrideBody, hub: HubDep, user: UserDep) -> dict[str, Any]:
        require(user, "admin", "reviewer")
        visible_call(hub, user, call_id)
        try:
            return reviews.override(hub.store, user, call_id, body.rule_id, body.points, body.reason).to_dict()
        except reviews.ReviewError as exc:
            raise HTTPException(400, str(exc)) from None

    @app.post("/api/calls/{call_id}/disputes", tags=["reviews"], status_code=201)
    def dispute(call_id: str, body: DisputeBody, hub: HubDep, user: UserDep) -> dict[str, Any]:
        require(user, "agent")
        visible_call(hub, user, call_id)
        try:
            return reviews.dispute(hub.store, user, call_id, body.rule_id, body.reason).to_dict()
        except reviews.ReviewError as exc:
            raise HTTPException(400, str(exc)) from None

    @app.post("/api/reviews/{review_id}/resolve", tags=["reviews"])
    def resolve(review_id: int, body: ResolveBody, hub: HubDep, user: UserDep) -> dict[str, Any]:
        require(user, "admin", "lead")
        try:
            r = reviews.get(hub.store, review_id)
        except reviews.ReviewError:
            raise HTTPException(404, "no such review") from None
        visible_call(hub, user, r.call_id)
        try:
            return reviews.resolve(hub.store, user, review_id, body.decision, body.note, body.points).to_dict()
        except reviews.ReviewError as exc:
            raise HTTPException(400, str(exc)) from None

    @app.get("/api/reviews", tags=["reviews"])
    def review_list(hub: HubDep, user: UserDep, status: str | None = None) -> list[dict[str, Any]]:
        return [r.to_dict() for r in reviews.listing(hub.store, Scope(user), status=status)]

    @app.get("/api/audit", tags=["admin"])
    def audit_log(hub: HubDep, user: UserDep, limit: int = 200) -> list[dict[str, Any]]:
        require(user, "admin")
        rows = hub.store.db.all(
            "SELECT id, ts, actor, action, target, detail FROM audit ORDER BY id DESC LIMIT ?", (min(limit, 5000),)
        )
        return [
            {"id": i, "ts": t, "actor": a, "action": ac, "target": tg, "detail": json.loads(d)}
            for i, t, a, ac, tg, d in rows
        ]

    @app.put("/api/calibration/{call_id}", tags=["calibration"])
    def calibrate(call_id: str, body: CalibrationBody, hub: HubDep, user: UserDep) -> dict[str, Any]:
        require(user, "admin", "reviewer", "lead")
        visible_call(hub, user, call_id)
        try:
            return {"rules": calibration.submit(hub.store, user, call_id, body.points)}
        except calibration.CalibrationError as exc:
            raise HTTPException(400, str(exc)) from None

    @app.get("/api/calibration", tags=["calibration"])
    def calibration_report(hub: HubDep, user: UserDep, tolerance: float = 1.0) -> list[dict[str, Any]]:
        require(user, "admin", "reviewer", "lead")
        return calibration.report(hub.store, Scope(user), tolerance)

    @app.get("/api/export/{table}.csv", tags=["reports"])
    def export(table: str, hub: HubDep, user: UserDep, period: Period = "week", end: str | None = None) -> Response:
        day = parse_day(end, hub)
        if table == "agents":
            rows = agents_data(hub, user, day, period)
        elif table == "calls":
            start, stop, _, _ = aggregate.period_bounds(day, period)
            rows = calls_data(hub, user, None, start, stop, 100_000)
        elif table in ("teams", "sites", "devices", "calibration"):
            require(user, "admin", "reviewer", *(() if table == "sites" else ("lead",)))
            if table == "devices":
                rows = devices_csv_rows(devices_data(hub, user))
            elif table == "calibration":
                rows = calibration.report(hub.store, Scope(user))
            else:
                rows = aggregate.groups(hub.store, Scope(user), "team" if table == "teams" else "site", day, period)
        elif table == "reviews":
            rows = [r.to_dict() for r in reviews.listing(hub.store, Scope(user))]
        else:
            raise HTTPException(404, "no such table")
        default_tz = zone(hub.store.default_tz)

        def tz_of(row: dict[str, Any]) -> tzinfo:
            site = row.get("site")
            return hub.store.site_tz(site) if isinstance(site, str) and site else default_tz

        # the BOM tells Excel the file is UTF-8 (without it Chinese names come out garbled)
        return Response(
            ("\ufeff" + to_csv(rows, tz_of)).encode("utf-8", errors="replace"),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{table}-{day.isoformat()}.csv"'},
        )

    @app.get("/api/live", tags=["live"])
    def live_seats(hub: HubDep, user: UserDep) -> list[dict[str, Any]]:
        require(user, "admin", "reviewer", "lead")
        return live_data(hub, user)

    @app.get("/api/live/stream", tags=["live"])
    async def live_stream(request: Request, hub: HubDep, user: UserDep, once: bool = False) -> StreamingResponse:
        """Server-sent events: a snapshot of the visible seats whenever the board changes (at most 2 a second)."""
        require(user, "admin", "reviewer", "lead")

        async def frames() -> AsyncIterator[str]:
            seen = -1
            while not await request.is_disconnected():
                # the device statuses change in the table, not on the board: read (rate-limited) to see them
                hub.live.sync_devices(lambda: hub.store.db.all(DEVICE_STATUS_SQL))
                if hub.live.version != seen:
                    seen = hub.live.version
                    yield f"data: {dumps(live_data(hub, user)).decode()}\n\n"
                    if once:
                        return
                await asyncio.sleep(0.5)

        return StreamingResponse(frames(), media_type="text/event-stream")

    from hub.admin_api import install_admin_api
    from hub.admin_pages import install_admin_pages
    from hub.pages import install_pages

    install_admin_api(app)
    install_pages(app)
    install_admin_pages(app)
    return app
