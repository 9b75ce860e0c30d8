"""The hub's JSON API (FastAPI; OpenAPI at /openapi.json, docs at /docs, served offline).

Every endpoint needs a session (`POST /api/login` gives a bearer token and sets the `qa_session` cookie the
dashboard uses) and reads through `hub.auth.Scope`: a call, agent or team outside the user's scope answers
404 exactly like one that does not exist, so ids cannot be probed; a role that may never use an endpoint
gets 403. CSRF, cookies and throttling: `hub.web.deps`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import tzinfo
from typing import Any, Literal
from urllib.parse import quote

import swagger_ui_bundle  # type: ignore[import-untyped]
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from hub import admin, aggregate, auth, calibration, reviews
from hub.aggregate import Period
from hub.auth import Scope
from hub.scorecard import ScorecardError
from hub.scores import get_scorecard, import_scorecard
from hub.storage import zone
from hub.web.deps import (
    HubDep,
    UserDep,
    clear_session_cookie,
    csrf_token,
    dumps,
    login_or_429,
    parse_day,
    require,
    set_session_cookie,
    token_of,
    visible_agent,
    visible_call,
)
from hub.web.views import (
    DEVICE_STATUS_SQL,
    EVENTS_PAGE,
    EVENTS_PAGE_MAX,
    agents_data,
    call_detail,
    calls_data,
    devices_csv_rows,
    devices_data,
    events_page,
    live_data,
    to_csv,
)

log = logging.getLogger(__name__)


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


def install_api(app: FastAPI) -> None:
    """The JSON routes (`/api/...`)."""

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
