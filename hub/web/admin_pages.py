"""The admin pages of the dashboard (admins only; other roles get 403): users, teams and agents, scorecards, sites.

Plain HTML forms, post-redirect-get: a change answers 303 back to its page (`?done=1`), a refused one renders
the page again with the reason (400). Forgery: the session cookie is `SameSite=Strict`, so a browser sends it
on no request another site starts, and every form also carries a token derived from the session (an HMAC of
the session token, so nothing more is stored) that a cookie-authenticated post must return: the app-wide
`hub.web.deps.csrf_guard` checks it before any of these routes runs. A request with a bearer token (the API's
clients) carries nothing a browser adds by itself, so it needs none.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, TypeVar

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from edge_agent.config import first_error
from hub import admin, auth
from hub.auth import ROLES, User
from hub.scorecard import ScorecardError
from hub.scores import get_scorecard, import_scorecard
from hub.web.deps import CSRF_FIELD, Hub, csrf_token
from hub.web.pages import page_user, render

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


__all__ = ["CSRF_FIELD", "install_admin_pages"]


def _admin(request: Request) -> tuple[Hub, User]:
    hub, user = page_user(request)
    if user.role != "admin":
        raise HTTPException(403, "needs role admin")
    return hub, user


def _fields(form: FormData, *names: str, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """Form values by name; an empty optional one means none (a select's "none" or a blank box)."""
    out: dict[str, Any] = {}
    for name in (*names, *optional):
        v = form.get(name)
        v = v.strip() if isinstance(v, str) else None
        out[name] = None if (name in optional and not v) else (v or "")
    return out


def _model(cls: type[M], data: dict[str, Any]) -> M:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise admin.AdminError(first_error(exc)) from None


def install_admin_pages(app: FastAPI) -> None:
    def page(request: Request, name: str, user: User, error: str | None = None, **ctx: Any) -> HTMLResponse:
        hub: Hub = request.app.state.hub
        store = hub.store
        data: dict[str, Any]
        if name == "users":
            data = {"users": auth.list_users(store), "agents": admin.agents(store), "teams": admin.teams(store),
                    "roles": ROLES}  # fmt: skip
        elif name == "teams":
            data = {"teams": admin.teams(store), "agents": admin.agents(store), "sites": admin.sites(store)}
        elif name == "scorecards":
            data = {"cards": admin.scorecards(store)}
        else:
            data = {"sites": admin.sites(store)}
        return render(
            request,
            f"admin_{name}.html",
            user,
            status_code=400 if error else 200,
            section=name,
            csrf=csrf_token(request),
            error=error,
            done=request.query_params.get("done") == "1",
            count=request.query_params.get("count", ""),
            **data,
            **ctx,
        )

    async def act(request: Request, section: str, change: Callable[[FormData, Hub, User], T]) -> Response:
        """A form post (its token already checked by `hub.web.deps.csrf_guard`): admin, then the change in a worker
        thread; 303 to the page, or the page again with the reason it was refused."""
        hub, user = _admin(request)
        form = await request.form()
        try:
            result = await run_in_threadpool(change, form, hub, user)
        except (admin.AdminError, auth.AuthError, ScorecardError, LookupError) as exc:
            return page(request, section, user, error=str(exc))
        count = f"&count={result}" if isinstance(result, int) and not isinstance(result, bool) else ""
        return RedirectResponse(f"/admin/{section}?done=1{count}", status_code=303)

    @app.get("/admin", include_in_schema=False)
    def admin_home(request: Request) -> Response:
        _admin(request)
        return RedirectResponse("/admin/users", status_code=303)

    def shows(section: str) -> Callable[[Request], HTMLResponse]:
        def show(request: Request) -> HTMLResponse:
            _, user = _admin(request)
            return page(request, section, user)

        return show

    for section in ("users", "teams", "scorecards", "sites"):
        app.add_api_route(f"/admin/{section}", shows(section), methods=["GET"], include_in_schema=False)

    # --- users ---------------------------------------------------------------------------------------------

    @app.post("/admin/users", include_in_schema=False)
    async def user_create(request: Request) -> Response:
        def change(form: FormData, hub: Hub, user: User) -> None:
            f = _fields(form, "username", "password", "role", optional=("agent_id", "team_id"))
            if not f["username"]:
                raise admin.AdminError("a user needs a name")
            admin.check_user_refs(hub.store, f["role"], f["agent_id"], f["team_id"])
            auth.create_user(hub.store, f["username"], f["password"], f["role"], agent_id=f["agent_id"],
                             team_id=f["team_id"], actor=user.username)  # fmt: skip

        return await act(request, "users", change)

    @app.post("/admin/users/{username}", include_in_schema=False)
    async def user_update(request: Request, username: str) -> Response:
        def change(form: FormData, hub: Hub, user: User) -> None:
            f = _fields(form, "role", optional=("agent_id", "team_id"))
            body = _model(admin.UserChange, {**f, "active": form.get("active") == "1"})
            admin.check_user_refs(hub.store, body.role, body.agent_id, body.team_id)
            auth.update_user(hub.store, username, role=body.role, agent_id=body.agent_id, team_id=body.team_id,
                             active=body.active, actor=user.username)  # fmt: skip

        return await act(request, "users", change)

    @app.post("/admin/users/{username}/password", include_in_schema=False)
    async def user_password(request: Request, username: str) -> Response:
        def change(form: FormData, hub: Hub, user: User) -> None:
            auth.set_password(hub.store, username, _fields(form, "password")["password"], actor=user.username)

        return await act(request, "users", change)

    # --- teams and agents -------------------------------------------------------------------------------------

    @app.post("/admin/teams", include_in_schema=False)
    async def team_create(request: Request) -> Response:
        def change(form: FormData, hub: Hub, user: User) -> None:
            body = _model(admin.NewTeam, _fields(form, "team_id", "name", optional=("site",)))
            admin.create_team(hub.store, body, user.username)

        return await act(request, "teams", change)

    @app.post("/admin/teams/{team_id}", include_in_schema=False)
    async def team_update(request: Request, team_id: str) -> Response:
        def change(form: FormData, hub: Hub, user: User) -> None:
            body = _model(admin.TeamChange, _fields(form, "name", optional=("site",)))
            admin.update_team(hub.store, team_id, body, user.username)

        return await act(request, "teams", change)

    @app.post("/admin/agents", include_in_schema=False)
    async def agent_create(request: Request) -> Response:
        def change(form: FormData, hub: Hub, user: User) -> None:
            body = _model(admin.NewAgent, _fields(form, "agent_id", "name", optional=("team_id",)))
            admin.create_agent(hub.store, body, user.username)

        return await act(request, "teams", change)

    @app.post("/admin/agents/{agent_id}", include_in_schema=False)
    async def agent_update(request: Request, agent_id: str) -> Response:
        def change(form: FormData, hub: Hub, user: User) -> None:
            body = _model(admin.AgentChange, _fields(form, "name", optional=("team_id",)))
            admin.update_agent(hub.store, agent_id, body, user.username)

        return await act(request, "teams", change)

    # --- scorecards -----------------------------------------------------------------------------------------

    @app.post("/admin/scorecards", include_in_schema=False)
    async def card_import(request: Request) -> Response:
        def change(form: FormData, hub: Hub, user: User) -> None:
            text = form.get("yaml")
            if not isinstance(text, str) or not text.strip():
                raise admin.AdminError("paste a scorecard document (YAML) first")
            import_scorecard(hub.store, text.replace("\r\n", "\n"), actor=user.username,
                             activate=form.get("activate") == "1")  # fmt: skip

        return await act(request, "scorecards", change)

    @app.post("/admin/scorecards/{name}/{version}/activate", include_in_schema=False)
    async def card_activate(request: Request, name: str, version: int) -> Response:
        def change(form: FormData, hub: Hub, user: User) -> None:
            admin.activate_scorecard(hub.store, name, version, user.username)

        return await act(request, "scorecards", change)

    @app.post("/admin/scorecards/{name}/{version}/rescore", include_in_schema=False)
    async def card_rescore(request: Request, name: str, version: int) -> Response:
        def change(form: FormData, hub: Hub, user: User) -> int:
            card = get_scorecard(hub.store, name, version)
            if card is None:
                raise LookupError(f"no scorecard {name} version {version}")
            since = _fields(form, optional=("since_day",))["since_day"]
            if since is not None:
                _day(since)
            return hub.scorer.rescore(card, since_day=since, actor=user.username)

        return await act(request, "scorecards", change)

    # --- sites ------------------------------------------------------------------------------------------------

    @app.post("/admin/sites", include_in_schema=False)
    async def site_create(request: Request) -> Response:
        def change(form: FormData, hub: Hub, user: User) -> None:
            admin.create_site(hub.store, _model(admin.NewSite, _fields(form, "site", "name", "tz")), user.username)

        return await act(request, "sites", change)

    @app.post("/admin/sites/{site}", include_in_schema=False)
    async def site_update(request: Request, site: str) -> Response:
        def change(form: FormData, hub: Hub, user: User) -> None:
            admin.update_site(hub.store, site, _model(admin.SiteChange, _fields(form, "name", "tz")), user.username)

        return await act(request, "sites", change)


def _day(text: str) -> None:
    try:
        date.fromisoformat(text)
    except ValueError:
        raise admin.AdminError(f"day {text!r}: use YYYY-MM-DD") from None
