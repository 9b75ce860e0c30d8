"""The hub's HTTP API (FastAPI; OpenAPI at /openapi.json, docs at /docs) and the app that also serves the dashboard.

Every endpoint needs a session (`POST /api/login` gives a bearer token and sets the `qa_session` cookie the
dashboard uses) and reads through `hub.auth.Scope`: a call, agent or team outside the user's scope answers
404 exactly like one that does not exist, so ids cannot be probed; a role that may never use an endpoint
gets 403.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
from collections.abc import AsyncIterator
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from hub import admin, aggregate, auth, calibration, reviews
from hub.aggregate import Period
from hub.auth import Scope, User
from hub.live import LiveBoard
from hub.scorecard import ScorecardError
from hub.scores import Scorer, get_scorecard, import_scorecard
from hub.storage import Store, zone

log = logging.getLogger(__name__)
COOKIE = "qa_session"


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
    call = visible_call(hub, user, call_id)
    db = hub.store.db
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
    return {
        "call": call,
        "score": score,
        "reviews": [r.to_dict() for r in reviews.listing(hub.store, Scope(user), call_id=call_id)],
    }


def devices_data(hub: Hub) -> list[dict[str, Any]]:
    rows = hub.store.db.all(
        "SELECT site, seat, status, status_at, last_seen, health, model FROM devices ORDER BY site, seat"
    )
    out = []
    for site, seat, status, status_at, last_seen, health, model in rows:
        h = json.loads(health) if health else {}
        out.append(
            {
                "site": site,
                "seat": seat,
                "status": status or "unknown",
                "status_at": status_at,
                "last_seen": last_seen,
                "outbox": h.get("pending"),
                "dropped": h.get("dropped"),
                "health": h,
                "model": model,
            }
        )
    return out


def live_data(hub: Hub, user: User) -> list[dict[str, Any]]:
    scope = Scope(user)
    return [s for s in hub.live.snapshot() if scope.can_see_agent(hub.store, s["agent_id"])]


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(
                {k: json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else v for k, v in r.items()}
            )
    return buf.getvalue()


# --- the app ---------------------------------------------------------------------------------------------------


def create_app(store: Store, board: LiveBoard | None = None) -> FastAPI:
    app = FastAPI(
        title="callqa hub",
        version="1",
        description="QA scores from station events: agents, teams, calls, scores, events, devices, scorecards,"
        " reviews and calibration. Authenticate with POST /api/login, then send `Authorization: Bearer <token>`.",
    )
    app.state.hub = Hub(store, board)

    @app.post("/api/login", tags=["auth"])
    def login(body: LoginBody, response: Response, hub: HubDep) -> dict[str, Any]:
        try:
            token, user = auth.login(hub.store, body.username, body.password)
        except auth.AuthError as exc:
            raise HTTPException(401, str(exc)) from None
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", max_age=int(auth.SESSION_S))
        return {"token": token, "username": user.username, "role": user.role}

    @app.post("/api/logout", tags=["auth"])
    def logout(request: Request, response: Response, hub: HubDep, user: UserDep) -> dict[str, bool]:
        token = token_of(request)
        if token:
            auth.logout(hub.store, token)
        response.delete_cookie(COOKIE)
        return {"ok": True}

    @app.get("/api/me", tags=["auth"])
    def me(user: UserDep) -> dict[str, Any]:
        return dict(user.__dict__)

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
        return Response(json.dumps(rows, ensure_ascii=False), media_type="application/json")

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
        return {
            "start": start,
            "end": stop,
            "coverage": aggregate.coverage(hub.store, scope, start, stop),
            "distribution": aggregate.distribution(hub.store, scope, start, stop),
        }

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
    def call_events(call_id: str, hub: HubDep, user: UserDep) -> list[dict[str, Any]]:
        visible_call(hub, user, call_id)
        return hub.store.call_events(call_id)

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
        require(user, "admin", "reviewer", "lead")
        return devices_data(hub)

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
                rows = devices_data(hub)
            elif table == "calibration":
                rows = calibration.report(hub.store, Scope(user))
            else:
                rows = aggregate.groups(hub.store, Scope(user), "team" if table == "teams" else "site", day, period)
        elif table == "reviews":
            rows = [r.to_dict() for r in reviews.listing(hub.store, Scope(user))]
        else:
            raise HTTPException(404, "no such table")
        return Response(
            to_csv(rows),
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
                if hub.live.version != seen:
                    seen = hub.live.version
                    yield f"data: {json.dumps(live_data(hub, user))}\n\n"
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
