"""Administration on both backends: users (create, role and team, reset password, deactivate, the last admin),
teams and agents (create, rename, move), sites (a new time zone re-dates the calls and their rollups), scorecards
(import, activate, re-score) through the API and through the dashboard's forms, which refuse a post without
the session's form token."""

from __future__ import annotations

import re
from datetime import date

import pytest
from fastapi.testclient import TestClient

from hub import aggregate, rollups
from hub.auth import Scope, User, create_user
from hub.scorecard import DEFAULT_SCORECARD
from hub.storage import Store
from hub.web.app import create_app
from tests.hub_support import Station, ingest

PASSWORD = "admin test password"
CALL_END = "2026-01-05T01:10:00.000Z"  # 09:07 on Jan 5 in Shanghai, 20:07 on Jan 4 in New York


@pytest.fixture
def client(hub_store: Store) -> TestClient:
    store = hub_store
    store.put_site("sh", "Shanghai", "Asia/Shanghai")
    store.put_team("t1", "Team One", "sh")
    store.put_team("t2", "Team Two", "sh")
    store.put_agent("a1", "Alice", "t1")
    store.put_agent("a2", "Bob", "t2")
    ingest(store, Station("sh", "s01").call("c1", CALL_END, agent="a1"))
    ingest(store, Station("sh", "s02").call("c2", CALL_END, agent="a2"))
    create_user(store, "admin", PASSWORD, "admin")
    create_user(store, "rev", PASSWORD, "reviewer")
    return TestClient(create_app(store))


def token(c: TestClient, user: str, password: str = PASSWORD) -> dict[str, str]:
    r = c.post("/api/login", json={"username": user, "password": password})
    assert r.status_code == 200, r.text
    c.cookies.clear()
    return {"Authorization": f"Bearer {r.json()['token']}"}


def agents_seen(c: TestClient, h: dict[str, str]) -> list[str]:
    return sorted(a["agent_id"] for a in c.get("/api/agents", headers=h).json())


def test_users_roles_passwords_and_deactivation(client: TestClient, hub_store: Store) -> None:
    c, admin = client, token(client, "admin")
    # refused: an agent user for an agent nobody knows, a lead without a team, a short password
    for body in (
        {"username": "zed", "password": PASSWORD, "role": "agent", "agent_id": "nobody"},
        {"username": "zed", "password": PASSWORD, "role": "lead"},
        {"username": "zed", "password": "short", "role": "reviewer"},
    ):
        assert c.post("/api/users", headers=admin, json=body).status_code in (400, 422), body
    assert c.post("/api/users", headers=admin, json={"username": "zed", "password": PASSWORD, "role": "agent",
                                                    "agent_id": "a1"}).status_code == 201  # fmt: skip
    zed = token(c, "zed")
    assert agents_seen(c, zed) == ["a1"]
    # a new role applies to the sessions already open
    r = c.patch("/api/users/zed", headers=admin, json={"role": "lead", "team_id": "t2"})
    assert r.status_code == 200 and r.json()["team_id"] == "t2"
    assert agents_seen(c, zed) == ["a2"]
    assert c.patch("/api/users/zed", headers=admin, json={"role": "lead", "team_id": "t9"}).status_code == 400
    assert c.patch("/api/users/nobody", headers=admin, json={"role": "reviewer"}).status_code == 404
    # a reset password ends the user's sessions; only the new password works
    assert c.post("/api/users/zed/password", headers=admin, json={"password": "new password 2"}).status_code == 200
    assert c.get("/api/me", headers=zed).status_code == 401
    assert c.post("/api/login", json={"username": "zed", "password": PASSWORD}).status_code == 401
    zed = token(c, "zed", "new password 2")
    # deactivated: sessions end and login is refused; reactivated: back
    assert (
        c.patch("/api/users/zed", headers=admin, json={"role": "lead", "team_id": "t2", "active": False}).json()[
            "active"
        ]
        is False
    )
    assert c.get("/api/me", headers=zed).status_code == 401
    assert c.post("/api/login", json={"username": "zed", "password": "new password 2"}).status_code == 401
    listed = {u["username"]: u for u in c.get("/api/users", headers=admin).json()}
    assert listed["zed"]["active"] is False and listed["admin"]["active"] is True
    c.patch("/api/users/zed", headers=admin, json={"role": "lead", "team_id": "t2", "active": True})
    token(c, "zed", "new password 2")
    # the last admin can be neither demoted nor deactivated; with a second one, they can
    assert c.patch("/api/users/admin", headers=admin, json={"role": "reviewer"}).status_code == 400
    assert c.patch("/api/users/admin", headers=admin, json={"role": "admin", "active": False}).status_code == 400
    assert c.patch("/api/users/rev", headers=admin, json={"role": "admin"}).status_code == 200
    assert c.patch("/api/users/admin", headers=admin, json={"role": "reviewer"}).status_code == 200
    actions = [(e["action"], e["target"]) for e in c.get("/api/audit", headers=token(c, "rev")).json()]
    assert ("user.password", "zed") in actions and ("user.update", "zed") in actions


def test_teams_agents_and_a_site_time_zone(client: TestClient, hub_store: Store) -> None:
    c, admin, store = client, token(client, "admin"), hub_store

    def post(path: str, body: dict[str, object]) -> int:
        return int(c.post(path, headers=admin, json=body).status_code)

    assert post("/api/teams", {"team_id": "t3", "name": "Three", "site": "nowhere"}) == 400
    assert post("/api/teams", {"team_id": "t3", "name": "Three", "site": "sh"}) == 201
    assert post("/api/teams", {"team_id": "t3", "name": "Again"}) == 400
    assert post("/api/teams", {"team_id": "bad id", "name": "x"}) == 422
    assert c.patch("/api/teams/t3", headers=admin, json={"name": "Team Three", "site": "sh"}).status_code == 200
    assert post("/api/agents", {"agent_id": "a9", "name": "Nina", "team_id": "t3"}) == 201
    # a lead of team 3 sees its agents; moving Alice there takes her calls along
    create_user(store, "lead3", PASSWORD, "lead", team_id="t3")
    lead3 = token(c, "lead3")
    assert agents_seen(c, lead3) == ["a9"]
    assert c.patch("/api/agents/a1", headers=admin, json={"name": "Alice W", "team_id": "t3"}).status_code == 200
    assert agents_seen(c, lead3) == ["a1", "a9"]
    assert c.get("/api/calls/c1", headers=lead3).status_code == 200
    assert c.patch("/api/agents/a1", headers=admin, json={"name": "x", "team_id": "t8"}).status_code == 400
    assert c.patch("/api/agents/zz", headers=admin, json={"name": "x"}).status_code == 404
    # a new time zone: the site's calls move to the local days of that zone, and so do the rollups
    assert store.db.scalar("SELECT day FROM calls WHERE call_id = 'c1'") == "2026-01-05"
    assert c.patch("/api/sites/sh", headers=admin, json={"name": "Shanghai", "tz": "Mars/Olympus"}).status_code == 400
    r = c.patch("/api/sites/sh", headers=admin, json={"name": "Shanghai", "tz": "America/New_York"})
    assert r.status_code == 200 and r.json()["redated"] == 2
    assert store.db.all("SELECT day, week FROM calls WHERE call_id = 'c1'") == [("2026-01-04", "2025-12-29")]
    assert store.db.all("SELECT agent_id, day FROM agent_daily ORDER BY agent_id") == [
        ("a1", "2026-01-04"),
        ("a2", "2026-01-04"),
    ]
    assert rollups.stale(store) == {}
    admin_scope = Scope(User("admin", "admin"))
    jan4 = {r.agent_id: r.calls for r in aggregate.agents_table(store, admin_scope, date(2026, 1, 4), "day")}
    jan5 = {r.agent_id: r.calls for r in aggregate.agents_table(store, admin_scope, date(2026, 1, 5), "day")}
    assert (jan4["a1"], jan5["a1"]) == (1, 0)
    assert post("/api/sites", {"site": "bj", "name": "Beijing", "tz": "Asia/Shanghai"}) == 201
    assert c.patch("/api/sites/nowhere", headers=admin, json={"name": "x", "tz": "UTC"}).status_code == 404


def form_token(page: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert m, "no form token on the page"
    return m.group(1)


def test_admin_forms_and_their_token(client: TestClient, hub_store: Store) -> None:
    c, store = client, hub_store
    # logged in with the cookie, like the browser
    assert c.post("/login", data={"username": "admin", "password": PASSWORD}, follow_redirects=False).status_code == 303
    page = c.get("/admin/scorecards")
    assert page.status_code == 200 and "default" in page.text
    csrf = form_token(page.text)
    v2 = DEFAULT_SCORECARD.read_text().replace("version: 1", "version: 2").replace("points: -3", "points: -4")
    # no token, or another session's: refused, nothing imported
    for bad in ({}, {"csrf": "0" * 64}):
        r = c.post("/admin/scorecards", data={"yaml": v2, **bad}, follow_redirects=False)
        assert r.status_code == 403
    assert store.db.scalar("SELECT COUNT(*) FROM scorecards") == 1
    # import v2 without activating, activate it, re-score every call with it
    r = c.post("/admin/scorecards", data={"yaml": v2, "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/admin/scorecards?done=1"
    assert store.db.scalar("SELECT active FROM scorecards WHERE version = 2") == 0
    assert c.post("/admin/scorecards/default/2/activate", data={"csrf": csrf}).status_code == 200
    assert store.db.scalar("SELECT version FROM scorecards WHERE active = 1") == 2
    r = c.post("/admin/scorecards/default/2/rescore", data={"csrf": csrf, "since_day": ""})
    assert r.status_code == 200 and "calls re-scored: 2" in r.text
    assert store.db.all("SELECT DISTINCT scorecard_version FROM calls") == [(2,)]
    # a refused change shows the page again with why
    r = c.post("/admin/scorecards", data={"yaml": "name: [", "csrf": csrf})
    assert r.status_code == 400 and 'id="admin-error"' in r.text
    r = c.post("/admin/teams", data={"team_id": "t5", "name": "", "csrf": csrf})
    assert r.status_code == 400 and "name" in r.text
    # teams, agents, sites and users through their forms
    for path, data in (
        ("/admin/teams", {"team_id": "t5", "name": "Five", "site": "sh"}),
        ("/admin/teams/t5", {"name": "Team Five", "site": ""}),
        ("/admin/agents", {"agent_id": "a5", "name": "Fay", "team_id": "t5"}),
        ("/admin/agents/a2", {"name": "Bob L", "team_id": "t5"}),
        ("/admin/sites", {"site": "gz", "name": "Guangzhou", "tz": "Asia/Shanghai"}),
        ("/admin/sites/gz", {"name": "Canton", "tz": "Asia/Shanghai"}),
        ("/admin/users", {"username": "fay", "password": PASSWORD, "role": "agent", "agent_id": "a5"}),
        ("/admin/users/fay", {"role": "lead", "team_id": "t5", "agent_id": "", "active": "1"}),
        ("/admin/users/fay/password", {"password": "fresh password"}),
    ):
        r = c.post(path, data={**data, "csrf": csrf}, follow_redirects=False)
        assert (r.status_code, r.headers.get("location", "")[:7]) == (303, "/admin/"), (path, r.text[:300])
    assert store.db.one("SELECT name, site FROM teams WHERE team_id = 't5'") == ("Team Five", None)
    assert store.db.one("SELECT name, team_id FROM agents WHERE agent_id = 'a2'") == ("Bob L", "t5")
    assert store.db.one("SELECT name FROM sites WHERE site = 'gz'") == ("Canton",)
    assert store.db.one("SELECT role, team_id, agent_id FROM users WHERE username = 'fay'") == ("lead", "t5", None)
    fay = token(c, "fay", "fresh password")
    assert agents_seen(c, fay) == ["a2", "a5"]
    # other roles: 403 on every admin page; no session: to the login page
    c.cookies.clear()
    assert c.post("/login", data={"username": "rev", "password": PASSWORD}, follow_redirects=False).status_code == 303
    assert c.get("/admin/users").status_code == 403
    assert c.post("/admin/teams", data={"team_id": "t6", "name": "Six"}).status_code == 403
    c.cookies.clear()
    r = c.get("/admin/users", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_admin_pages_in_both_languages(client: TestClient) -> None:
    c = client
    c.post("/login", data={"username": "admin", "password": PASSWORD})
    for section, en, zh in (
        ("users", "New user", "新建用户"),
        ("teams", "Create agent", "新建坐席"),
        ("scorecards", "Import YAML", "导入 YAML"),
        ("sites", "Time zone", "时区"),
    ):
        assert en in c.get(f"/admin/{section}?lang=en").text
        assert zh in c.get(f"/admin/{section}?lang=zh-CN").text
