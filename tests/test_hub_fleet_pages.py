"""The devices page fit for a fleet, HTML error pages, offline API docs, CSV exports and the agents table
(issue 20), through the real app (TestClient) on both store backends where storage is read.

Health reports go in through `Store.set_status`, as the ingest stores what a seat publishes
(firmware_py/health.py and edge_agent/mqtt_publisher.py `publish_health` name the fields).
"""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from hub import auth
from hub.storage import Store
from hub.web import fleet, i18n
from hub.web.app import create_app
from hub.web.pages import TREND_MIN, _agent_rows
from tests.hub_support import Station, ingest
from tests.test_hub_browser import Hub as BrowserHub
from tests.test_hub_browser import browser, hub, login, shot  # noqa: F401 - the browser tests' fixtures

PASSWORD = "a long enough password"
END = "2026-01-05T01:10:00.000Z"


def health(**over: Any) -> dict[str, Any]:
    """A healthy station's report (the fields firmware_py/health.py and the publisher send), with changes."""
    h: dict[str, Any] = {
        "ts": "2026-01-05T01:10:00Z",
        "pending": 3,
        "dropped": 0,
        "cpu_temp_c": 52.5,
        "load1": 0.4,
        "cpus": 4,
        "mem_available_mb": 900.0,
        "mem_used_pct": 40.0,
        "disk_free_mb": 20_000.0,
        "disk_used_pct": 30.0,
        "clock_offset_s": 0.002,
        "version": "0.2.0",
        "state": "idle",
        "agent_id": None,
        "call_id": None,
        "models": {
            "activity": {"name": "speech-mlp-v2", "sha256": "a" * 64},
            "emotion": {"name": "emotion-v1", "sha256": "b" * 64},
        },
    }
    h.update(over)
    return h


def fleet_world(store: Store) -> TestClient:
    """Two teams' seats with one problem or more each, one seat with no call (QA staff only), users per role."""
    store.put_site("sh", "Shanghai", "Asia/Shanghai")
    store.put_team("t1", "华东一组", "sh")
    store.put_team("t2", "Team Two", "sh")
    store.put_agent("a1", "张伟", "t1")
    store.put_agent("a3", "Chen", "t2")
    for seat, call, by in (("s01", "C1", "a1"), ("s02", "C3", "a3"), ("s04", "C4", "a1"), ("s05", "C5", "a1")):
        ingest(store, Station("sh", seat).call(call, END, agent=by))
    store.set_status("sh", "s01", status="online", health=health(cpu_temp_c=81.0))  # hot
    store.set_status("sh", "s02", status="online", health=health(  # everything else at once
        disk_used_pct=95.0, clock_offset_s=-2.5, pending=1500, version="0.1.0",
        models={"activity": {"name": "speech-mlp-v1", "sha256": "c" * 64},
                "emotion": {"name": "emotion-v1", "sha256": "b" * 64}}))  # fmt: skip
    # no call stored: QA staff only. Its report is hostile: markup, a formula, a huge name, a wrong type
    store.set_status("sh", "s03", status="online", health=health(
        cpu_temp_c="hot", version="=HYPERLINK(\"http://evil\")", agent_id="a1",
        models={"activity": {"name": "<script>alert(1)</script>" + "x" * 500}}))  # fmt: skip
    store.set_status("sh", "s04", status="offline", health=health())  # its last will said so
    store.set_status("sh", "s05", status="online", health=health())
    store.db.execute("UPDATE devices SET last_seen = last_seen - 3600 WHERE seat = 's05'")  # silent for an hour
    for user, role, team, agent in (("admin", "admin", None, None), ("rev", "reviewer", None, None),
                                    ("lead1", "lead", "t1", None), ("lead2", "lead", "t2", None),
                                    ("ag1", "agent", None, "a1")):  # fmt: skip
        auth.create_user(store, user, PASSWORD, role, team_id=team, agent_id=agent)
    return TestClient(create_app(store), raise_server_exceptions=False)


def h(c: TestClient, user: str) -> dict[str, str]:
    token = c.post("/api/login", json={"username": user, "password": PASSWORD}).json()["token"]
    c.cookies.clear()
    return {"Authorization": f"Bearer {token}"}


def rows_of(html: str) -> dict[str, list[str]]:
    """seat -> its problems, in the page's order."""
    return {
        seat: problems.split()
        for seat, problems in re.findall(r'<tr class="device[^"]*" data-seat="([^"]+)" data-problems="([^"]*)"', html)
    }


# --- devices page -----------------------------------------------------------------------------------------------


def test_devices_page_shows_health_highlights_problems_and_filters(hub_store: Store) -> None:
    c = fleet_world(hub_store)
    admin = h(c, "admin")
    r = c.get("/devices?lang=en", headers=admin)
    assert r.status_code == 200
    en = i18n.STRINGS["en"]
    for key in ("temperature", "disk", "clock_offset", "outbox", "software", "speech_model", "emotion_model"):
        assert f">{en[key]}<" in r.text, key
    rows = rows_of(r.text)
    # problems first: the seat with the most, then the offline ones, then by seat
    assert list(rows) == ["sh/s02", "sh/s04", "sh/s05", "sh/s01", "sh/s03"]
    assert rows["sh/s02"] == ["disk", "clock", "backlog", "outdated_model", "outdated_software"]
    assert rows["sh/s01"] == ["hot"] and rows["sh/s04"] == ["offline"] and rows["sh/s05"] == ["offline"]
    assert rows["sh/s03"] == []
    s01 = r.text.split('data-seat="sh/s01"')[1].split("</tr>")[0]
    assert '<td class="num temp warn">81.0</td>' in s01 and "speech-mlp-v2" in s01 and "emotion-v1" in s01
    s02 = r.text.split('data-seat="sh/s02"')[1].split("</tr>")[0]
    for cell in ("num disk warn", "num clock warn", "num outbox warn", "software warn", "speech-model warn"):
        assert f'class="{cell}"' in s02, cell
    assert 'class="emotion-model"' in s02  # emotion-v1 is the newest emotion model: not highlighted
    assert "-2.500" in s02 and "1500" in s02
    # the seat's word is escaped and bounded
    assert "<script>alert" not in r.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    assert "x" * (fleet.TEXT_MAX + 1) not in r.text
    assert fleet.REJECTED["type"] > 0  # "hot" is no temperature

    def seats(query: str, user: dict[str, str] = admin) -> list[str]:
        page = c.get(f"/devices?{query}", headers=user)
        assert page.status_code == 200, page.text
        return list(rows_of(page.text))

    assert seats("only=hot") == ["sh/s01"]
    assert seats("only=offline") == ["sh/s04", "sh/s05"]
    assert seats("only=disk") == seats("only=outdated_model") == seats("only=disk&only=clock") == ["sh/s02"]
    assert seats("only=hot&only=disk") == []
    assert seats("sort=temp") == ["sh/s01", "sh/s02", "sh/s04", "sh/s05", "sh/s03"]  # hottest first, none last
    assert seats("sort=seat") == ["sh/s01", "sh/s02", "sh/s03", "sh/s04", "sh/s05"]
    bad = c.get("/devices?only=bogus", headers=admin)
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("text/html")
    zh = c.get("/devices?lang=zh-CN", headers=admin).text
    assert "过热" in zh and "语音模型" in zh and "情绪模型" in zh

    # the API has the same columns: speech and emotion model each in its own, whatever the last event's model
    api = {d["seat"]: d for d in c.get("/api/devices", headers=admin).json()}
    assert api["s02"]["speech_model"] == "speech-mlp-v1" and api["s02"]["emotion_model"] == "emotion-v1"
    assert api["s01"]["temp_c"] == 81.0 and api["s01"]["problems"] == ["hot"] and api["s03"]["temp_c"] is None

    # scoping as issue 19 left it: a lead sees their team's seats only, an agent none
    lead1 = h(c, "lead1")
    assert seats("sort=seat", lead1) == ["sh/s01", "sh/s04", "sh/s05"]
    assert seats("only=disk", lead1) == []  # s02 is team 2's
    assert seats("sort=seat", h(c, "lead2")) == ["sh/s02"]
    assert seats("sort=seat", h(c, "rev")) == ["sh/s01", "sh/s02", "sh/s03", "sh/s04", "sh/s05"]
    page = c.get("/devices", headers=lead1).text
    assert "s02" not in page and "s03" not in page
    assert c.get("/devices", headers=h(c, "ag1")).status_code == 403


def test_fleet_versions_compare_within_a_family() -> None:
    assert fleet.model_version("speech-mlp-v2") == ("speech-mlp", (2,))
    assert fleet.model_version("emotion-v1.10") == ("emotion", (1, 10))
    assert fleet.model_version("custom") is None  # no version: never called outdated
    assert fleet.software_version("0.10.0") > fleet.software_version("0.9.1")  # type: ignore[operator]
    assert fleet.software_version("unknown") is None
    newest = fleet.newest(
        [
            {"version": v, "speech_model": m, "emotion_model": None}
            for v, m in (("0.9.1", "speech-mlp-v2"), ("0.10.0", "speech-mlp-v10"), ("unknown", "other-v1"))
        ]
    )
    assert newest == {"software": (0, 10, 0), "models": {"speech-mlp": (10,), "other": (1,)}}
    assert fleet.outdated("speech-mlp-v2", newest) and not fleet.outdated("other-v1", newest)


# --- error pages ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_error_pages_are_html_in_the_pages_language(hub_store: Store, lang: str) -> None:
    c = fleet_world(hub_store)
    t = i18n.STRINGS[lang]
    admin, agent = h(c, "admin"), h(c, "ag1")

    def page(path: str, status: int, user: dict[str, str], message: str) -> str:
        r = c.get(f"{path}{'&' if '?' in path else '?'}lang={lang}", headers=user)
        assert r.status_code == status, (path, r.status_code, r.text[:200])
        assert r.headers["content-type"].startswith("text/html"), path
        assert f'<html lang="{lang}">' in r.text and t[message] in r.text and 'href="/agents" id="back"' in r.text
        return r.text

    text = page("/calls/NO-SUCH-CALL", 404, admin, "error_404")
    assert '"detail"' not in text
    page("/no/such/page", 404, admin, "error_404")
    page("/devices", 403, agent, "error_403")
    page("/agents?period=fortnight", 422, admin, "error_422")
    text = page("/agents?end=<b>2026</b>", 422, admin, "error_422")
    assert "<b>2026" not in text and "&lt;b&gt;2026" in text  # the error's detail quotes the input: escaped
    # the API stays JSON
    r = c.get("/api/calls/NO-SUCH-CALL", headers=admin)
    assert r.status_code == 404 and r.json() == {"detail": "no such call"}
    assert c.get("/api/agents?period=fortnight", headers=admin).json()["detail"][0]["loc"] == ["query", "period"]
    # not logged in: still off to the login page
    c.cookies.clear()
    r = c.get("/devices", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/devices"
    # a fault inside the hub: a page says so in the page's language, the API in JSON, no traceback anywhere
    hub_store.db.execute("DROP TABLE devices")
    text = page("/devices", 500, admin, "error_500")
    assert "Traceback" not in text and "devices" not in text.split("<main>")[1]
    r = c.get("/api/devices", headers=admin)
    assert r.status_code == 500 and r.json() == {"detail": "internal error"}


# --- offline API docs -------------------------------------------------------------------------------------------


def test_docs_load_nothing_from_another_host(tmp_path: Path) -> None:
    c = TestClient(create_app(Store(tmp_path / "hub.sqlite")))
    r = c.get("/docs")
    assert r.status_code == 200 and "swagger-ui" in r.text
    urls = re.findall(r'(?:src|href)="([^"]+)"', r.text) + re.findall(r"url: '([^']+)'", r.text)
    assert len(urls) >= 4, urls  # style, icon, script, the spec
    for url in urls:
        assert not re.match(r"^(?:[a-z]+:)?//", url, re.I), url  # relative or same-host only
        got = c.get(url)
        assert got.status_code == 200 and len(got.content) > 100, url
    assert '"validatorUrl": null' in r.text  # the spec validator's badge would load from another host
    assert c.get("/redoc").status_code == 404  # ReDoc's script comes from a CDN: not offered
    assert c.get("/docs/oauth2-redirect").status_code == 200


# --- CSV exports ------------------------------------------------------------------------------------------------


def read_csv(c: TestClient, path: str, user: dict[str, str]) -> list[dict[str, str]]:
    r = c.get(path, headers=user)
    assert r.status_code == 200, r.text
    assert r.content.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel reads the Chinese names right
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"), newline="")))
    for row in rows:
        for key, value in row.items():
            assert not value.startswith(("[", "{")), (path, key, value)  # one value per cell, never JSON
    return rows


def test_csv_exports_open_right_in_a_spreadsheet(hub_store: Store) -> None:
    c = fleet_world(hub_store)
    admin = h(c, "admin")
    calls = {r["call_id"]: r for r in read_csv(c, "/api/export/calls.csv?period=month&end=2026-01-06", admin)}
    started = hub_store.db.scalar("SELECT started FROM calls WHERE call_id = 'C1'")
    local = datetime.fromtimestamp(float(started), ZoneInfo("Asia/Shanghai"))
    assert calls["C1"]["started"] == local.strftime("%Y-%m-%d %H:%M:%S") and calls["C1"]["tz"] == "Asia/Shanghai"
    assert datetime.fromisoformat(calls["C1"]["started"]).replace(tzinfo=ZoneInfo("Asia/Shanghai")) == local
    agents = {r["agent_id"]: r for r in read_csv(c, "/api/export/agents.csv?period=month&end=2026-01-06", admin)}
    assert agents["a1"]["name"] == "张伟"  # round-trips through the csv module
    assert "trend.8" in agents["a1"] and "trend" not in agents["a1"]  # a list: one column per item
    devices = {r["seat"]: r for r in read_csv(c, "/api/export/devices.csv", admin)}
    assert devices["s01"]["problem_hot"] == "1" and devices["s02"]["problem_hot"] == "0"
    assert devices["s02"]["speech_model"] == "speech-mlp-v1" and devices["s02"]["clock_offset_s"] == "-2.5"
    assert devices["s03"]["version"].startswith("'=")  # a seat's formula stays text
    assert "health" not in devices["s01"] and "health.agent_id" not in devices["s01"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", devices["s01"]["last_seen"])
    teams = {r["team"]: r for r in read_csv(c, "/api/export/teams.csv?period=month&end=2026-01-06", admin)}
    assert set(teams) >= {"t1", "t2"}


# --- agents table -------------------------------------------------------------------------------------------------


def test_agents_table_names_teams_and_moves_agents_without_a_name(hub_store: Store) -> None:
    c = fleet_world(hub_store)
    admin = h(c, "admin")
    page = c.get("/agents?period=month&end=2026-01-06", headers=admin).text
    row = page.split('data-agent="a1"')[1].split("</tr>")[0]
    assert ">华东一组</a>" in row and ">t1</a>" not in row
    # PATCH moves an agent without needing their name; only what is sent changes
    r = c.patch("/api/agents/a1", headers=admin, json={"team_id": "t2"})
    assert r.status_code == 200 and r.json() == {"agent_id": "a1", "name": "张伟", "team_id": "t2"}
    assert c.patch("/api/agents/a1", headers=admin, json={"name": "Zhang Wei"}).json()["team_id"] == "t2"
    assert hub_store.db.one("SELECT name, team_id FROM agents WHERE agent_id = 'a1'") == ("Zhang Wei", "t2")
    assert c.patch("/api/agents/a1", headers=admin, json={"team_id": None}).json()["team_id"] is None
    assert c.patch("/api/agents/a1", headers=admin, json={"team_id": "t9"}).status_code == 400
    assert c.patch("/api/agents/a1", headers=admin, json={"name": ""}).status_code == 422
    assert c.patch("/api/agents/zz", headers=admin, json={"team_id": "t1"}).status_code == 404
    assert c.patch("/api/agents/a1", headers=h(c, "lead1"), json={"team_id": "t1"}).status_code == 403


def test_trend_arrow_only_for_a_meaningful_change() -> None:
    t = i18n.STRINGS["en"]

    def arrow(score: float, previous: float) -> str:
        row = {"agent_id": "a", "name": "A", "team_id": None, "calls": 3, "score": score, "previous": previous,
               "trend": [score], "top_issues": []}  # fmt: skip
        html = str(_agent_rows([row], {}, t, lambda _: False))
        assert "The same length of time before: " in html  # the tooltip either way
        return "▲" if "▲" in html else "▼" if "▼" in html else "≈" if "\u2248" in html else ""

    assert arrow(80.3, 80.0) == arrow(80.0, 80.9) == "≈"
    assert arrow(80.0 + TREND_MIN, 80.0) == "▲" and arrow(75.0, 80.0) == "▼"


# --- in a real browser (headless Chromium, the fixtures of tests/test_hub_browser.py) -------------------------------


def test_devices_and_error_pages_in_a_browser(browser: object, hub: BrowserHub) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    d = browser
    hub.store.set_status("sh", "s00", status="online", health=health(cpu_temp_c=82.0))
    login(d, hub, "admin")
    d.get(f"{hub.url}/devices?lang=zh-CN")  # type: ignore[attr-defined]
    counts = [len(r.get_attribute("data-problems").split()) for r in d.find_elements(By.CSS_SELECTOR, "tr.device")]  # type: ignore[attr-defined]
    assert counts[0] >= 1 and counts == sorted(counts, reverse=True)  # problems first
    hot = d.find_element(By.CSS_SELECTOR, 'tr[data-seat="sh/s00"] td.temp')  # type: ignore[attr-defined]
    assert hot.text == "82.0" and hot.value_of_css_property("background-color") == "rgba(255, 224, 178, 1)"
    assert "过热" in d.find_element(By.CSS_SELECTOR, 'tr[data-seat="sh/s00"] td.problems').text  # type: ignore[attr-defined]
    shot(d, "devices-fleet-zh")
    d.find_element(By.CSS_SELECTOR, 'a[data-filter="hot"]').click()  # type: ignore[attr-defined]
    seats = [r.get_attribute("data-seat") for r in d.find_elements(By.CSS_SELECTOR, "tr.device")]  # type: ignore[attr-defined]
    assert seats == ["sh/s00"] and "only=hot" in d.current_url  # type: ignore[attr-defined]
    d.get(f"{hub.url}/calls/NO-SUCH-CALL?lang=zh-CN")  # type: ignore[attr-defined]
    assert d.find_element(By.ID, "error-message").text == i18n.STRINGS["zh-CN"]["error_404"]  # type: ignore[attr-defined]
    shot(d, "error-404-zh")
    d.find_element(By.ID, "back").click()  # type: ignore[attr-defined]
    assert d.current_url.endswith("/agents")  # type: ignore[attr-defined]


def test_the_nav_names_the_role_in_the_pages_language(hub_store: Store) -> None:
    c = fleet_world(hub_store)
    lead = h(c, "lead1")
    zh, en = (c.get(f"/devices?lang={lang}", headers=lead).text for lang in ("zh-CN", "en"))
    assert f"lead1 ({i18n.STRINGS['zh-CN']['role_lead']})" in zh and "(lead)" not in zh
    assert f"lead1 ({i18n.STRINGS['en']['role_lead']})" in en


EXTERNAL = re.compile(
    r"""(?:src|href|action)\s*=\s*["']\s*(?:[a-z][a-z0-9+.-]*:)?//|url\(\s*["']?\s*(?:https?:)?//""", re.I
)
"""An attribute or CSS url() that names another host (scheme-relative `//host` included)."""


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_no_page_loads_anything_from_another_host(hub_store: Store, lang: str) -> None:
    """Every page a site hub serves, as the admin (who sees them all): nothing from a CDN or any other host."""
    c = fleet_world(hub_store)
    admin = h(c, "admin")
    pages = ["/login", "/agents", "/agents/a1", "/calls/C1", "/live", "/devices", "/reviews", "/calibration",
             "/reports/team/t1", "/admin", "/docs", "/calls/NO-SUCH-CALL"]  # fmt: skip
    seen = 0
    for path in pages:
        r = c.get(f"{path}?lang={lang}", headers=admin, follow_redirects=True)
        assert r.status_code in (200, 404), (path, r.status_code)
        assert "text/html" in r.headers["content-type"], path
        assert not EXTERNAL.search(r.text), (path, EXTERNAL.search(r.text))
        seen += 1
    assert seen == len(pages)


def test_admin_pages_show_times_in_the_hubs_zone_not_iso_text(hub_store: Store) -> None:
    c = fleet_world(hub_store)
    admin = h(c, "admin")
    for path in ("/admin/users", "/admin/scorecards"):
        html = c.get(path, headers=admin).text
        assert re.search(r"<td>\d{4}-\d{2}-\d{2} \d{2}:\d{2}", html), path
        assert not re.search(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}", html), path  # no stored UTC text
