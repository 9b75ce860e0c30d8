"""Coaching (`hub.coaching`): its pages in both languages and its JSON API.

Pages (forms carry the CSRF field, checked before the route by `hub.web.deps.csrf_guard`; each route checks the
role again; bad input renders the page again with one translated line and the status of the refusal):

- `GET /coaching`: the sessions the user may see (an agent: their own); coaches pick an agent to coach;
- `GET /coaching/agents/{agent_id}` (`?end=`, `?days=`): the suggestion (score, tier, weakest and best rules)
  and the form that opens a session from it; `POST /coaching/agents/{agent_id}/sessions` opens it;
- `GET /coaching/sessions/{id}`: the session, the targeted rules' trend since it, notes; `POST .../acknowledge`
  (the agent), `.../notes` (a coach's follow-up or the agent's comment), `.../close` (a coach);
- `GET /coaching/tiers` (staff read, `?site=`), `POST /coaching/tiers` (admin);
- `POST /calls/{call_id}/kudos`: recognise a call (from the agent page's recognition block).

The API (`/api/coaching/...`, tag `coaching`) does the same with the same roles and scope: 403 for a role that
may not, 404 for what the user may not see, 400 for refused input, 409 for a session already acknowledged or
closed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from hub import coaching
from hub.auth import Scope, User
from hub.web.deps import Hub, HubDep, UserDep, parse_day, require, visible_agent
from hub.web.pages import page_lang, page_user, render

log = logging.getLogger(__name__)

T = TypeVar("T")
SessionId = Annotated[int, Path(ge=1, le=2**62)]
AgentId = Annotated[str, Path(min_length=1, max_length=128)]
CallId = Annotated[str, Path(min_length=1, max_length=256)]
Days = Annotated[int | None, Query(ge=coaching.MIN_DAYS, le=coaching.MAX_DAYS)]
AGENTS_LISTED = 500
"""Agents in the coach's picker on /coaching."""


def _call(fn: Callable[[], T]) -> T:
    """A domain call as the API answers it: 404 out of scope, the refusal's own status otherwise."""
    try:
        return fn()
    except coaching.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except coaching.CoachingError as exc:
        raise HTTPException(exc.status, str(exc)) from None


class TiersBody(BaseModel):
    """Score bands, lowest first: the first without `min_score`, the others with increasing lower bounds."""

    model_config = ConfigDict(extra="forbid")
    site: str | None = Field(None, max_length=64, description="A site id; none: center-wide")
    tiers: list[dict[str, Any]] = Field(max_length=coaching.MAX_TIERS + 1)


class OpenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[str] = Field(max_length=coaching.MAX_RULES + 1)
    goals: str = Field(max_length=coaching.GOALS_MAX + 100)
    notes: str = Field("", max_length=coaching.NOTE_MAX + 100)
    tier: int | None = Field(None, ge=1, le=9, description="The tier level; none: the suggested one")
    end: date | None = None
    days: int | None = Field(None, ge=coaching.MIN_DAYS, le=coaching.MAX_DAYS)


class NoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: str = Field(max_length=coaching.NOTE_MAX + 100)


class CloseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(None, max_length=coaching.NOTE_MAX + 100)


class KudosBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(max_length=coaching.KUDOS_MAX + 100)


def _sites(hub: Hub) -> list[str]:
    return [str(r[0]) for r in hub.store.db.all("SELECT site FROM sites ORDER BY site")]


def _form_tiers(form: Any) -> list[dict[str, Any]]:
    """The tiers form's rows (`level.i`, `name_en.i`, `name_zh.i`, `min.i`); blank rows are left out, a number
    that does not parse is passed on as text for `hub.coaching.validate_tiers` to refuse."""
    out: list[dict[str, Any]] = []
    for i in range(coaching.MAX_TIERS):
        vals = {k: form.get(f"{k}.{i}") for k in ("level", "name_en", "name_zh", "min")}
        texts = {k: v.strip() if isinstance(v, str) else "" for k, v in vals.items()}
        if not any(texts.values()):
            continue
        level: object = texts["level"]
        if texts["level"].isdigit() and len(texts["level"]) < 3:
            level = int(texts["level"])
        low: object = None
        if texts["min"]:
            try:
                low = float(texts["min"].replace(",", ".")) if len(texts["min"]) < 32 else texts["min"]
            except ValueError:
                low = texts["min"]
        out.append({"level": level, "name_en": texts["name_en"], "name_zh": texts["name_zh"], "min_score": low})
    return out


def _bound_text(value: object) -> str:
    """A tier's lower bound as the form shows it: blank for none, a number without trailing zeros, else as typed."""
    if value is None:
        return ""
    return f"{value:g}" if isinstance(value, float | int) else str(value)


def _int(raw: object, lo: int, hi: int) -> int | None:
    s = raw.strip() if isinstance(raw, str) else ""
    return int(s) if s.isdigit() and len(s) < 6 and lo <= int(s) <= hi else None


def install_coaching_pages(app: FastAPI) -> None:
    # --- views ------------------------------------------------------------------------------------------------------

    def list_view(request: Request, hub: Hub, user: User) -> HTMLResponse:
        agents: list[tuple[str, str]] = []
        if user.role in coaching.COACH_ROLES:
            cond, params = Scope(user).agents_sql("agent_id")
            agents = [
                (str(a), str(n))
                for a, n in hub.store.db.all(
                    f"SELECT agent_id, name FROM agents WHERE 1 = 1{cond} ORDER BY name, agent_id LIMIT ?",
                    [*params, AGENTS_LISTED],
                )
            ]
        status = request.query_params.get("status")
        return render(
            request,
            "coaching.html",
            user,
            view="list",
            sessions=coaching.sessions(hub.store, user, status=status if status in ("open", "closed") else None),
            agents=agents,
            titles=coaching.rule_titles(hub.store, page_lang(request)),
        )

    def agent_view(
        request: Request,
        hub: Hub,
        user: User,
        agent_id: AgentId,
        end: date,
        days: int | None,
        error: str | None = None,
        status: int = 200,
    ) -> HTMLResponse:
        agent = visible_agent(hub, user, agent_id)
        lang = page_lang(request)
        s = _call(lambda: coaching.suggestion(hub.store, user, agent_id, end, days, lang))
        return render(
            request,
            "coaching.html",
            user,
            status_code=status,
            view="agent",
            agent=agent,
            s=s,
            end=end.isoformat(),
            days=days or coaching.DEFAULT_DAYS,
            max_rules=coaching.MAX_RULES,
            error=error,
        )

    def session_view(
        request: Request, hub: Hub, user: User, session_id: int, error: str | None = None, status: int = 200
    ) -> HTMLResponse:
        lang = page_lang(request)
        s = _call(lambda: coaching.get_session(hub.store, user, session_id, lang, hub.today()))
        return render(
            request,
            "coaching.html",
            user,
            status_code=status,
            view="session",
            s=s,
            error=error,
            sent=request.query_params.get("sent"),
        )

    def tiers_view(
        request: Request,
        hub: Hub,
        user: User,
        site: str | None,
        error: str | None = None,
        status: int = 200,
        entered: list[dict[str, Any]] | None = None,
    ) -> HTMLResponse:
        sites = _sites(hub)
        chosen = site if site in sites else None
        tv = coaching.tiers_view(hub.store, chosen)
        # the form's rows as text: what a refused form held (so nothing typed is lost), else the tiers in force
        rows = [
            {
                "level": str(r.get("level") or ""),
                "name_en": str(r.get("name_en") or ""),
                "name_zh": str(r.get("name_zh") or ""),
                "min": _bound_text(r.get("min_score")),
            }
            for r in (entered if entered is not None else tv["tiers"])
        ]
        return render(
            request,
            "coaching.html",
            user,
            status_code=status,
            view="tiers",
            sites=sites,
            site=chosen,
            tv=tv,
            rows=rows,
            max_tiers=coaching.MAX_TIERS,
            name_max=coaching.NAME_MAX,
            refused=coaching.refused_counts(hub.store),
            error=error,
            sent=request.query_params.get("sent"),
        )

    # --- pages --------------------------------------------------------------------------------------------------

    @app.get("/coaching", include_in_schema=False)
    def coaching_page(request: Request, agent: str | None = None) -> Response:
        hub, user = page_user(request)
        if agent and user.role in coaching.COACH_ROLES:
            return RedirectResponse(f"/coaching/agents/{quote(agent[:128], safe='')}", status_code=303)
        return list_view(request, hub, user)

    @app.get("/coaching/agents/{agent_id}", include_in_schema=False)
    def coaching_agent_page(
        request: Request, agent_id: AgentId, end: str | None = None, days: Days = None
    ) -> HTMLResponse:
        hub, user = page_user(request)
        if user.role not in coaching.COACH_ROLES:
            raise HTTPException(403, "needs role admin, reviewer or lead")
        return agent_view(request, hub, user, agent_id, parse_day(end, hub), days)

    @app.post("/coaching/agents/{agent_id}/sessions", include_in_schema=False)
    async def open_form(request: Request, agent_id: AgentId) -> Response:
        hub, user = page_user(request)
        if user.role not in coaching.COACH_ROLES:
            raise HTTPException(403, "needs role admin, reviewer or lead")
        await run_in_threadpool(visible_agent, hub, user, agent_id)
        form = await request.form()
        end_raw = form.get("end")
        try:
            end = date.fromisoformat(end_raw) if isinstance(end_raw, str) and len(end_raw) == 10 else hub.today()
        except ValueError:
            end = hub.today()
        days = _int(form.get("days"), coaching.MIN_DAYS, coaching.MAX_DAYS)
        rules = [r for r in form.getlist("rules") if isinstance(r, str)][: coaching.MAX_RULES + 1]

        def change() -> int:
            return coaching.open_session(
                hub.store,
                user,
                agent_id,
                rules,
                form.get("goals"),
                form.get("notes") or "",
                _int(form.get("tier"), 1, 9),
                end,
                days,
            )

        try:
            sid = await run_in_threadpool(change)
        except coaching.CoachingError as exc:
            return await run_in_threadpool(agent_view, request, hub, user, agent_id, end, days, exc.key, exc.status)
        return RedirectResponse(f"/coaching/sessions/{sid}?sent=open", status_code=303)

    @app.get("/coaching/sessions/{session_id}", include_in_schema=False)
    def coaching_session_page(request: Request, session_id: SessionId) -> HTMLResponse:
        hub, user = page_user(request)
        return session_view(request, hub, user, session_id)

    async def session_form(
        request: Request,
        session_id: int,
        change: Callable[[Any, Hub, User], object],
        anchor: str,
        roles: tuple[str, ...] = ("admin", "reviewer", "lead", "agent"),
    ) -> Response:
        """A session page's form post: the role (403), then the change in a worker thread (404 out of scope); 303
        back to the session, or the session page with the reason and the refusal's status."""
        hub, user = page_user(request)
        if user.role not in roles:
            raise HTTPException(403, f"needs role {' or '.join(roles)}")
        form = await request.form()
        try:
            await run_in_threadpool(change, form, hub, user)
        except coaching.NotFound:
            raise HTTPException(404, "no such coaching session") from None
        except coaching.CoachingError as exc:
            if exc.status == 403:
                raise HTTPException(403, str(exc)) from None
            return await run_in_threadpool(session_view, request, hub, user, session_id, exc.key, exc.status)
        return RedirectResponse(f"/coaching/sessions/{session_id}?sent={anchor}#{anchor}", status_code=303)

    @app.post("/coaching/sessions/{session_id}/acknowledge", include_in_schema=False)
    async def acknowledge_form(request: Request, session_id: SessionId) -> Response:
        return await session_form(
            request,
            session_id,
            lambda form, hub, user: coaching.acknowledge(hub.store, user, session_id),
            "ack",
            ("agent",),
        )

    @app.post("/coaching/sessions/{session_id}/notes", include_in_schema=False)
    async def note_form(request: Request, session_id: SessionId) -> Response:
        return await session_form(
            request,
            session_id,
            lambda form, hub, user: coaching.add_note(hub.store, user, session_id, form.get("body")),
            "notes",
        )

    @app.post("/coaching/sessions/{session_id}/close", include_in_schema=False)
    async def close_form(request: Request, session_id: SessionId) -> Response:
        return await session_form(
            request,
            session_id,
            lambda form, hub, user: coaching.close(hub.store, user, session_id, form.get("note")),
            "close",
            coaching.COACH_ROLES,
        )

    @app.get("/coaching/tiers", include_in_schema=False)
    def tiers_page(request: Request, site: str | None = None) -> HTMLResponse:
        hub, user = page_user(request)
        if user.role not in coaching.COACH_ROLES:
            raise HTTPException(403, "needs role admin, reviewer or lead")
        return tiers_view(request, hub, user, site)

    @app.post("/coaching/tiers", include_in_schema=False)
    async def tiers_form(request: Request) -> Response:
        hub, user = page_user(request)
        if user.role != "admin":
            raise HTTPException(403, "needs role admin")
        form = await request.form()
        raw_site = form.get("site")
        site = raw_site.strip() if isinstance(raw_site, str) and raw_site.strip() else None
        entered = _form_tiers(form)
        try:
            await run_in_threadpool(coaching.set_tiers, hub.store, user, site, entered)
        except coaching.CoachingError as exc:
            return await run_in_threadpool(tiers_view, request, hub, user, site, exc.key, exc.status, entered)
        return RedirectResponse(f"/coaching/tiers?site={quote(site or '')}&sent=1", status_code=303)

    @app.post("/calls/{call_id}/kudos", include_in_schema=False)
    async def kudos_form(request: Request, call_id: CallId) -> Response:
        hub, user = page_user(request)
        if user.role not in coaching.COACH_ROLES:
            raise HTTPException(403, "needs role admin, reviewer or lead")
        form = await request.form()
        try:
            k = await run_in_threadpool(coaching.give_kudos, hub.store, user, call_id, form.get("note"))
        except coaching.NotFound:
            raise HTTPException(404, "no such call") from None
        except coaching.CoachingError as exc:
            raise HTTPException(exc.status, str(exc)) from None
        return RedirectResponse(f"/agents/{quote(str(k['agent_id']), safe='')}?kudos=1#recognition", status_code=303)

    # --- the API ------------------------------------------------------------------------------------------------

    @app.get("/api/coaching/tiers", tags=["coaching"])
    def get_tiers(
        hub: HubDep, user: UserDep, site: Annotated[str | None, Query(max_length=64)] = None
    ) -> dict[str, Any]:
        """The score bands in force for a site (none: the center's), lowest first, and where they come from."""
        require(user, *coaching.COACH_ROLES)
        if site is not None and site not in _sites(hub):
            raise HTTPException(404, "no such site")
        return coaching.tiers_view(hub.store, site)

    @app.put("/api/coaching/tiers", tags=["coaching"])
    def put_tiers(body: TiersBody, hub: HubDep, user: UserDep) -> dict[str, Any]:
        """Set a site's (or the center's) score bands: 2 to 6, lowest first, increasing lower bounds within the
        scorecard's scale; audited."""
        require(user, "admin")
        _call(lambda: coaching.set_tiers(hub.store, user, body.site, body.tiers))
        return coaching.tiers_view(hub.store, body.site)

    @app.get("/api/coaching/agents/{agent_id}/suggestion", tags=["coaching"])
    def get_suggestion(
        agent_id: AgentId, hub: HubDep, user: UserDep, request: Request, end: str | None = None, days: Days = None
    ) -> dict[str, Any]:
        """The agent's weighted mean score over the period (default the last 28 days), its tier, their weakest
        rules (points lost per scored call, calls fired on) and their best credited ones."""
        day = parse_day(end, hub)
        return _call(lambda: coaching.suggestion(hub.store, user, agent_id, day, days, page_lang(request)))

    @app.get("/api/coaching/agents/{agent_id}/recognition", tags=["coaching"])
    def get_recognition(
        agent_id: AgentId, hub: HubDep, user: UserDep, request: Request, end: str | None = None, days: Days = None
    ) -> dict[str, Any]:
        """The agent's best calls of the period, the good practice credited and the kudos received."""
        day = parse_day(end, hub)
        return _call(lambda: coaching.recognition(hub.store, user, agent_id, day, days, page_lang(request)))

    @app.get("/api/coaching/sessions", tags=["coaching"])
    def list_sessions(
        hub: HubDep,
        user: UserDep,
        agent_id: Annotated[str | None, Query(max_length=128)] = None,
        status: Annotated[str | None, Query(pattern="^(open|closed)$")] = None,
    ) -> list[dict[str, Any]]:
        """Coaching sessions the caller may see, newest first (an agent: their own)."""
        return coaching.sessions(hub.store, user, agent_id, status)

    @app.post("/api/coaching/agents/{agent_id}/sessions", tags=["coaching"], status_code=201)
    def open_api(agent_id: AgentId, body: OpenBody, hub: HubDep, user: UserDep, request: Request) -> dict[str, Any]:
        """Open a coaching session for the agent from the suggestion of the period (admin, reviewer, or the
        agent's team lead)."""
        require(user, *coaching.COACH_ROLES)
        sid = _call(
            lambda: coaching.open_session(
                hub.store,
                user,
                agent_id,
                body.rules,
                body.goals,
                body.notes,
                body.tier,
                body.end or hub.today(),
                body.days,
            )
        )
        return coaching.get_session(hub.store, user, sid, page_lang(request), hub.today())

    @app.get("/api/coaching/sessions/{session_id}", tags=["coaching"])
    def get_session_api(session_id: SessionId, hub: HubDep, user: UserDep, request: Request) -> dict[str, Any]:
        """A session with its targeted rules' trend since it was opened and its notes."""
        return _call(lambda: coaching.get_session(hub.store, user, session_id, page_lang(request), hub.today()))

    @app.post("/api/coaching/sessions/{session_id}/notes", tags=["coaching"], status_code=201)
    def note_api(session_id: SessionId, body: NoteBody, hub: HubDep, user: UserDep) -> dict[str, Any]:
        """A coach's follow-up note, or the agent's comment on their own session."""
        nid = _call(lambda: coaching.add_note(hub.store, user, session_id, body.body))
        return {"id": nid}

    @app.post("/api/coaching/sessions/{session_id}/acknowledge", tags=["coaching"])
    def acknowledge_api(session_id: SessionId, hub: HubDep, user: UserDep) -> dict[str, Any]:
        """The agent acknowledges their session (once; 409 afterwards; 403 for anyone else)."""
        require(user, "agent")
        when = _call(lambda: coaching.acknowledge(hub.store, user, session_id))
        return {"id": session_id, "acknowledged_at": when}

    @app.post("/api/coaching/sessions/{session_id}/close", tags=["coaching"])
    def close_api(session_id: SessionId, body: CloseBody, hub: HubDep, user: UserDep) -> dict[str, Any]:
        """Close an open session, with an optional last note (409 when closed already)."""
        require(user, *coaching.COACH_ROLES)
        _call(lambda: coaching.close(hub.store, user, session_id, body.note))
        return {"id": session_id, "status": "closed"}

    @app.post("/api/calls/{call_id}/kudos", tags=["coaching"])
    def kudos_api(call_id: CallId, body: KudosBody, hub: HubDep, user: UserDep) -> dict[str, Any]:
        """Recognise a call with a short note, shown to its agent (one per call and author, the latest kept)."""
        require(user, *coaching.COACH_ROLES)
        return _call(lambda: coaching.give_kudos(hub.store, user, call_id, body.note))
