"""What admins change: teams, agents, sites and their time zones, the active scorecard; every change audited.

Shared by the admin API (hub/web/admin_api.py) and the admin pages (hub/web/admin_pages.py); users themselves live in
hub/auth.py. Bad input raises `AdminError` with a one-line message (the endpoints answer 400 with it).

Moving an agent to another team moves their history with them (rollups are per agent; teams are joined when
read). Changing a site's time zone re-dates its calls (the local day and week each call counts in) and
rebuilds the rollups of the days that lose or gain calls, a chunk of calls per transaction so ingest keeps
going meanwhile; the running totals are settled once at the end (hub/rollups.py).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hub import rollups
from hub.auth import ROLES, Role
from hub.scores import audit, get_scorecard, refresh_agent_day
from hub.storage import Store, local_day, zone

log = logging.getLogger(__name__)

ID = r"^[A-Za-z0-9_.:\-]{1,128}$"
"""Agent and team ids: what stations may send as an agent id (edge_agent/schema.py)."""
SITE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
"""Site ids are MQTT topic levels (edge_agent/schema.py)."""


class AdminError(ValueError):
    """A change that cannot be made, with the reason in one line."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class UserChange(_Body):
    role: Role
    agent_id: str | None = Field(None, max_length=128)
    team_id: str | None = Field(None, max_length=128)
    active: bool = True


class PasswordReset(_Body):
    password: str = Field(min_length=8, max_length=1024)


class NewTeam(_Body):
    team_id: str = Field(pattern=ID)
    name: str = Field(min_length=1, max_length=200)
    site: str | None = None


class TeamChange(_Body):
    name: str = Field(min_length=1, max_length=200)
    site: str | None = None


class NewAgent(_Body):
    agent_id: str = Field(pattern=ID)
    name: str = Field(min_length=1, max_length=200)
    team_id: str | None = None


class AgentChange(_Body):
    name: str = Field(min_length=1, max_length=200)
    team_id: str | None = None


class NewSite(_Body):
    site: str = Field(pattern=SITE_ID)
    name: str = Field(min_length=1, max_length=200)
    tz: str = Field(min_length=1, max_length=64)


class SiteChange(_Body):
    name: str = Field(min_length=1, max_length=200)
    tz: str = Field(min_length=1, max_length=64)


def _exists(store: Store, table: str, column: str, value: str | None) -> bool:
    return value is None or store.db.one(f"SELECT 1 FROM {table} WHERE {column} = ?", (value,)) is not None


def check_user_refs(store: Store, role: str, agent_id: str | None, team_id: str | None) -> None:
    """An agent user's agent and a lead's team must exist: a typo would leave them seeing nothing."""
    if role not in ROLES:
        raise AdminError(f"role {role!r}: one of {', '.join(ROLES)}")
    if role == "agent" and agent_id and not _exists(store, "agents", "agent_id", agent_id):
        raise AdminError(f"no agent {agent_id!r} (create it under Teams and agents first)")
    if role == "lead" and team_id and not _exists(store, "teams", "team_id", team_id):
        raise AdminError(f"no team {team_id!r}")


# --- directory ---------------------------------------------------------------------------------------------------


def teams(store: Store) -> list[dict[str, Any]]:
    rows = store.db.all(
        "SELECT t.team_id, t.name, t.site, (SELECT COUNT(*) FROM agents a WHERE a.team_id = t.team_id)"
        " FROM teams t ORDER BY t.team_id"
    )
    return [{"team_id": t, "name": n, "site": s, "agents": int(c)} for t, n, s, c in rows]


def agents(store: Store) -> list[dict[str, Any]]:
    rows = store.db.all("SELECT agent_id, name, team_id FROM agents ORDER BY agent_id")
    return [{"agent_id": a, "name": n, "team_id": t} for a, n, t in rows]


def sites(store: Store) -> list[dict[str, Any]]:
    rows = store.db.all("SELECT site, name, tz FROM sites ORDER BY site")
    return [{"site": s, "name": n, "tz": tz} for s, n, tz in rows]


def create_team(store: Store, body: NewTeam, actor: str) -> dict[str, Any]:
    with store.db.transaction():
        if _exists(store, "teams", "team_id", body.team_id):
            raise AdminError(f"team {body.team_id!r} already exists")
        _site_exists(store, body.site)
        store.db.execute("INSERT INTO teams VALUES (?, ?, ?)", (body.team_id, body.name, body.site))
        audit(store, actor, "team.create", body.team_id, {"name": body.name, "site": body.site})
    return {"team_id": body.team_id, "name": body.name, "site": body.site}


def update_team(store: Store, team_id: str, body: TeamChange, actor: str) -> dict[str, Any]:
    with store.db.transaction():
        row = store.db.one("SELECT name, site FROM teams WHERE team_id = ?", (team_id,))
        if row is None:
            raise LookupError(f"no team {team_id!r}")
        _site_exists(store, body.site)
        store.db.execute("UPDATE teams SET name = ?, site = ? WHERE team_id = ?", (body.name, body.site, team_id))
        audit(store, actor, "team.update", team_id, _changes({"name": row[0], "site": row[1]}, body.model_dump()))
    return {"team_id": team_id, "name": body.name, "site": body.site}


def create_agent(store: Store, body: NewAgent, actor: str) -> dict[str, Any]:
    with store.db.transaction():
        if _exists(store, "agents", "agent_id", body.agent_id):
            raise AdminError(f"agent {body.agent_id!r} already exists")
        _team_exists(store, body.team_id)
        store.db.execute("INSERT INTO agents VALUES (?, ?, ?)", (body.agent_id, body.name, body.team_id))
        audit(store, actor, "agent.create", body.agent_id, {"name": body.name, "team_id": body.team_id})
    return {"agent_id": body.agent_id, "name": body.name, "team_id": body.team_id}


def update_agent(store: Store, agent_id: str, body: AgentChange, actor: str) -> dict[str, Any]:
    with store.db.transaction():
        row = store.db.one("SELECT name, team_id FROM agents WHERE agent_id = ?", (agent_id,))
        if row is None:
            raise LookupError(f"no agent {agent_id!r}")
        _team_exists(store, body.team_id)
        store.db.execute(
            "UPDATE agents SET name = ?, team_id = ? WHERE agent_id = ?", (body.name, body.team_id, agent_id)
        )
        audit(store, actor, "agent.update", agent_id, _changes({"name": row[0], "team_id": row[1]}, body.model_dump()))
    return {"agent_id": agent_id, "name": body.name, "team_id": body.team_id}


def create_site(store: Store, body: NewSite, actor: str) -> dict[str, Any]:
    _zone(body.tz)
    if _exists(store, "sites", "site", body.site):
        raise AdminError(f"site {body.site!r} already exists")
    with store.db.transaction():
        audit(store, actor, "site.create", body.site, {"name": body.name, "tz": body.tz})
        store.put_site(body.site, body.name, body.tz)
    return {"site": body.site, "name": body.name, "tz": body.tz, "redated": 0}


def update_site(store: Store, site: str, body: SiteChange, actor: str) -> dict[str, Any]:
    """Rename a site or change its time zone; a new zone re-dates the site's calls (see the module docstring)."""
    _zone(body.tz)
    row = store.db.one("SELECT name, tz FROM sites WHERE site = ?", (site,))
    if row is None:
        raise LookupError(f"no site {site!r}")
    with store.db.transaction():
        audit(store, actor, "site.update", site, _changes({"name": row[0], "tz": row[1]}, body.model_dump()))
        store.put_site(site, body.name, body.tz)
    moved = redate_site(store, site) if body.tz != row[1] else 0
    return {"site": site, "name": body.name, "tz": body.tz, "redated": moved}


def redate_site(store: Store, site: str, chunk: int = 5000) -> int:
    """Recompute every call's local day and week at the site in its (new) time zone; returns how many moved."""
    tz = store.site_tz(site)
    db = store.db
    moved, after = 0, ""
    while True:
        rows = db.all(
            "SELECT call_id, started, day, agent_id FROM calls WHERE site = ? AND started IS NOT NULL"
            " AND call_id > ? ORDER BY call_id LIMIT ?",
            (site, after, chunk),
        )
        if not rows:
            break
        after = rows[-1][0]
        changes: list[tuple[str, str, str]] = []
        touched: set[tuple[str, str]] = set()
        for call_id, started, day, agent in rows:
            new_day, new_week = local_day(float(started), tz)
            if new_day != day:
                changes.append((new_day, new_week, call_id))
                if agent is not None:
                    touched |= {(agent, new_day), (agent, day)} if day else {(agent, new_day)}
        if changes:
            with db.transaction():
                db.executemany("UPDATE calls SET day = ?, week = ? WHERE call_id = ?", changes)
                for agent, day in sorted(touched):
                    refresh_agent_day(store, agent, day, settle=False)
            moved += len(changes)
    rollups.settle_all(store)
    if moved:
        log.info("site %s: %d calls re-dated in time zone %s", site, moved, tz.key)
    return moved


def activate_scorecard(store: Store, name: str, version: int, actor: str) -> dict[str, Any]:
    """Score new calls with this stored version from now on (past calls keep theirs until re-scored)."""
    if get_scorecard(store, name, version) is None:
        raise LookupError(f"no scorecard {name} version {version}")
    with store.db.transaction():
        store.db.execute("UPDATE scorecards SET active = 0 WHERE active = 1")
        store.db.execute("UPDATE scorecards SET active = 1 WHERE name = ? AND version = ?", (name, version))
        audit(store, actor, "scorecard.activate", f"{name}@{version}", {})
    return {"name": name, "version": version, "active": True}


def scorecards(store: Store) -> list[dict[str, Any]]:
    rows = store.db.all(
        "SELECT name, version, sha256, created, created_by, active FROM scorecards ORDER BY name, version DESC"
    )
    out = []
    for name, version, sha, created, by, active in rows:
        card = get_scorecard(store, name, int(version))
        out.append(
            {"name": name, "version": int(version), "sha256": sha, "created": created, "created_by": by,
             "active": bool(active), "rules": len(card.rules) if card else 0}
        )  # fmt: skip
    return out


def _site_exists(store: Store, site: str | None) -> None:
    if not _exists(store, "sites", "site", site):
        raise AdminError(f"no site {site!r}")


def _team_exists(store: Store, team_id: str | None) -> None:
    if not _exists(store, "teams", "team_id", team_id):
        raise AdminError(f"no team {team_id!r}")


def _zone(tz: str) -> None:
    try:
        zone(tz)
    except ValueError as exc:
        raise AdminError(str(exc)) from None


def _changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {k: [before[k], v] for k, v in after.items() if k in before and before[k] != v}
