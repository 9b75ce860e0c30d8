"""The admin endpoints of the API (admins only; every other role gets 403): users, teams and agents, sites,
scorecard activation. Listing users, creating them, importing scorecards and re-scoring are in hub/web/api.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from hub import admin, auth
from hub.web.deps import HubDep, UserDep, require

T = TypeVar("T")


class AgentPatch(BaseModel):
    """`PATCH /api/agents/{id}`: the fields to change, each optional (`admin.AgentChange` once merged)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str | None = Field(None, min_length=1, max_length=200)
    team_id: str | None = Field(None, max_length=128)


def install_admin_api(app: FastAPI) -> None:
    @app.patch("/api/users/{username}", tags=["admin"])
    async def change_user(username: str, body: admin.UserChange, hub: HubDep, user: UserDep) -> dict[str, Any]:
        """Role, agent (agent users), team (team leads), and whether the user may log in (`active`)."""
        require(user, "admin")

        def change() -> dict[str, Any]:
            admin.check_user_refs(hub.store, body.role, body.agent_id, body.team_id)
            u = auth.update_user(hub.store, username, role=body.role, agent_id=body.agent_id, team_id=body.team_id,
                                 active=body.active, actor=user.username)  # fmt: skip
            return {**u.__dict__, "active": body.active}

        return await _run(change)

    @app.post("/api/users/{username}/password", tags=["admin"])
    async def reset_password(username: str, body: admin.PasswordReset, hub: HubDep, user: UserDep) -> dict[str, Any]:
        """Set a new password; the user's sessions end."""
        require(user, "admin")
        await _run(lambda: auth.set_password(hub.store, username, body.password, actor=user.username))
        return {"username": username, "ok": True}

    @app.post("/api/teams", tags=["admin"], status_code=201)
    async def create_team(body: admin.NewTeam, hub: HubDep, user: UserDep) -> dict[str, Any]:
        require(user, "admin")
        return await _run(lambda: admin.create_team(hub.store, body, user.username))

    @app.patch("/api/teams/{team_id}", tags=["admin"])
    async def change_team(team_id: str, body: admin.TeamChange, hub: HubDep, user: UserDep) -> dict[str, Any]:
        """Rename a team or move it to another site."""
        require(user, "admin")
        return await _run(lambda: admin.update_team(hub.store, team_id, body, user.username))

    @app.post("/api/agents", tags=["admin"], status_code=201)
    async def create_agent(body: admin.NewAgent, hub: HubDep, user: UserDep) -> dict[str, Any]:
        require(user, "admin")
        return await _run(lambda: admin.create_agent(hub.store, body, user.username))

    @app.patch("/api/agents/{agent_id}", tags=["admin"])
    async def change_agent(agent_id: str, body: AgentPatch, hub: HubDep, user: UserDep) -> dict[str, Any]:
        """Rename an agent or move them to another team (their history goes with them): only the fields sent
        change (`{"team_id": "t2"}` moves them; `"team_id": null` takes them out of any team)."""
        require(user, "admin")

        def change() -> dict[str, Any]:
            with hub.store.db.transaction():  # read and write at once: a rename meanwhile is not undone
                row = hub.store.db.one("SELECT name, team_id FROM agents WHERE agent_id = ?", (agent_id,))
                if row is None:
                    raise LookupError(f"no agent {agent_id!r}")
                sent = body.model_fields_set
                full = admin.AgentChange(
                    name=body.name if "name" in sent and body.name is not None else row[0],
                    team_id=body.team_id if "team_id" in sent else row[1],
                )
                return admin.update_agent(hub.store, agent_id, full, user.username)

        return await _run(change)

    @app.post("/api/sites", tags=["admin"], status_code=201)
    async def create_site(body: admin.NewSite, hub: HubDep, user: UserDep) -> dict[str, Any]:
        require(user, "admin")
        return await _run(lambda: admin.create_site(hub.store, body, user.username))

    @app.patch("/api/sites/{site}", tags=["admin"])
    async def change_site(site: str, body: admin.SiteChange, hub: HubDep, user: UserDep) -> dict[str, Any]:
        """Rename a site or change its time zone (its calls are re-dated: `redated` says how many moved day)."""
        require(user, "admin")
        return await _run(lambda: admin.update_site(hub.store, site, body, user.username))

    @app.post("/api/scorecards/{name}/{version}/activate", tags=["scorecards"])
    async def activate(name: str, version: int, hub: HubDep, user: UserDep) -> dict[str, Any]:
        """Score new calls with this version from now on (re-score past ones with POST /api/rescore)."""
        require(user, "admin")
        return await _run(lambda: admin.activate_scorecard(hub.store, name, version, user.username))


async def _run(fn: Callable[[], T]) -> T:
    """In a worker thread (hashing, re-dating and the database must not block the event loop); the errors a
    request can cause become 400 (bad change) and 404 (nothing by that id)."""
    try:
        return await run_in_threadpool(fn)
    except (admin.AdminError, auth.AuthError) as exc:
        if str(exc).startswith("no user "):
            raise HTTPException(404, str(exc)) from None
        raise HTTPException(400, str(exc)) from None
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
