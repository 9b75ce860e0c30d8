"""The dashboard in a real headless Chromium (Debian's chromium + chromedriver, driven by Selenium) against a
real hub server (uvicorn on a free port). Screenshots go to test-artifacts/hub/ (or $CALLQA_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from edge_agent.mqtt_publisher import BrokerConfig, Publisher
from edge_agent.outbox import Outbox
from edge_agent.schema import Envelope
from hub.auth import create_user
from hub.ingest import Ingest
from hub.live import LiveBoard
from hub.storage import Store
from hub.web.app import create_app
from tests.broker import Mosquitto, free_port, mosquitto, port_open  # noqa: F401 - the fixture
from tests.hub_support import ROOT, Station, ingest
from tests.test_transport import wait_until

ARTIFACTS = Path(os.environ.get("CALLQA_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "hub"
PASSWORD = "dashboard password"
CALL_END = "2026-01-05T01:10:00.000Z"  # started 140 s earlier: 09:07 in Shanghai


def ts(days_ago: int, hour: int = 3) -> str:
    t = datetime.now(UTC).replace(hour=hour, minute=0, second=0, microsecond=0) - timedelta(days=days_ago)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Hub:
    url: str
    store: Store
    board: LiveBoard


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    from hub.scorecard import DEFAULT_SCORECARD, load
    from hub.scores import import_scorecard

    store = Store(tmp_path_factory.mktemp("hub") / "hub.sqlite", default_tz="Asia/Shanghai")
    import_scorecard(store, load(DEFAULT_SCORECARD)[1])
    store.put_site("sh", "Shanghai", "Asia/Shanghai")
    store.put_team("t1", "Team One", "sh")
    store.put_team("t2", "Team Two", "sh")
    store.put_agent("a1", "Alice Wang", "t1")
    store.put_agent("a2", "Bob Li", "t1")
    store.put_agent("a3", "Chen Jie", "t2")
    envs: list[Envelope] = []
    for n, agent in enumerate(("a1", "a2", "a3")):
        st = Station("sh", f"s0{n}")
        for day in range(0, 21, 2):
            call = f"{agent}-d{day}"
            envs += st.call(call, ts(day), agent=agent)
            if (day + n) % 3 == 0:  # an angry customer now and then
                envs.append(
                    st.env({"type": "emotion", "start": 20, "end": 24, "party": "customer", "label": "angry"},
                           call, ts(day), agent)
                )  # fmt: skip
    envs += Station("sh", "s09").call("fixed-time", CALL_END, agent="a1")
    ingest(store, envs)
    store.set_status("sh", "s00", status="online", health={"pending": 2, "dropped": 0})
    store.set_status("sh", "s01", status="offline")
    create_user(store, "admin", PASSWORD, "admin")
    create_user(store, "alice", PASSWORD, "agent", agent_id="a1")
    with served(store) as h:
        yield h


@contextmanager
def served(store: Store, board: LiveBoard | None = None) -> Iterator[Hub]:
    """`serving` as a Hub (with a live board of its own unless given one); the store is closed afterwards."""
    board = board or LiveBoard()
    try:
        with serving(store, board) as url:
            yield Hub(url, store, board)
    finally:
        store.close()


@contextmanager
def serving(store: Store, board: LiveBoard | None = None) -> Iterator[str]:
    """The hub app on `store` served by a real uvicorn on a free loopback port, for a browser; its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(store, board), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not port_open(port):
        assert time.monotonic() < deadline, "the hub server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver")
    if chromium is None or driver_bin is None:
        pytest.fail(
            "chromium and chromedriver are not installed: apt-get install chromium chromium-driver (.ci/run does)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000", "--lang=en"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_bin), options=opts)
    driver.set_page_load_timeout(30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def login(d: object, hub: Hub, user: str) -> None:
    from selenium.webdriver.common.by import By

    d.delete_all_cookies()  # type: ignore[attr-defined]
    d.get(f"{hub.url}/login?lang=en")  # type: ignore[attr-defined]
    d.find_element(By.ID, "username").send_keys(user)  # type: ignore[attr-defined]
    d.find_element(By.ID, "password").send_keys(PASSWORD)  # type: ignore[attr-defined]
    d.find_element(By.ID, "submit").click()  # type: ignore[attr-defined]
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(d, 15).until(lambda drv: "/login" not in drv.current_url)  # type: ignore[arg-type]


def shot(d: object, name: str) -> None:
    path = ARTIFACTS / f"{name}.png"
    assert d.save_screenshot(str(path)), name  # type: ignore[attr-defined]
    assert path.stat().st_size > 5000  # a rendered page, not a blank


def test_agents_agent_and_call_pages(browser: object, hub: Hub) -> None:
    from selenium.webdriver.common.by import By

    d = browser
    login(d, hub, "admin")
    assert d.current_url.endswith("/agents")  # type: ignore[attr-defined]
    rows = d.find_elements(By.CSS_SELECTOR, "tr.agent-row")  # type: ignore[attr-defined]
    assert sorted(r.get_attribute("data-agent") for r in rows) == ["a1", "a2", "a3"]
    assert all(r.find_elements(By.CSS_SELECTOR, "svg.spark polyline") for r in rows)  # a trend line each
    assert "Agent interrupted the customer" in d.page_source  # type: ignore[attr-defined]  # a top issue
    # the arrow (period vs the one before) and the sparkline (calendar weeks) say what they compare
    arrows = d.find_elements(By.CSS_SELECTOR, "td.score span[title]")  # type: ignore[attr-defined]
    assert arrows and all(a.get_attribute("title").startswith("The same length of time before: ") for a in arrows)
    assert all("Monday to Sunday" in r.find_element(By.CSS_SELECTOR, "td[title]").get_attribute("title") for r in rows)
    shot(d, "agents")

    d.get(d.find_element(By.LINK_TEXT, "Alice Wang").get_attribute("href"))  # type: ignore[attr-defined]
    assert "/agents/a1" in d.current_url  # type: ignore[attr-defined]
    assert len(d.find_elements(By.CSS_SELECTOR, "#trend svg circle")) >= 5  # type: ignore[attr-defined]
    worst = d.find_elements(By.CSS_SELECTOR, "#worst tbody tr a")  # type: ignore[attr-defined]
    assert worst
    shot(d, "agent")

    d.get(f"{hub.url}/calls/fixed-time")  # type: ignore[attr-defined]
    svg = d.find_element(By.CSS_SELECTOR, "#timeline svg")  # type: ignore[attr-defined]
    assert len(svg.find_elements(By.CSS_SELECTOR, "rect.seg")) == 6  # the known call's speech segments
    assert len(svg.find_elements(By.CSS_SELECTOR, "rect.to")) == 5  # its talk-overs
    assert len(svg.find_elements(By.CSS_SELECTOR, "rect.da")) == 2  # its dead air
    rules = d.find_elements(By.CSS_SELECTOR, "#breakdown tr.rule")  # type: ignore[attr-defined]
    assert len(rules) == 10
    inter = d.find_element(By.CSS_SELECTOR, 'tr.rule[data-rule="agent_interruptions"]')  # type: ignore[attr-defined]
    assert "-6" in inter.text and "15.0\u201316.0 s" in inter.text  # points and the evidence's times
    assert d.find_element(By.ID, "score").text == "79.0"  # type: ignore[attr-defined]
    assert "2026-01-05 09:07" in d.page_source  # type: ignore[attr-defined]  # the site's time zone
    shot(d, "call")

    d.get(f"{hub.url}/calls/fixed-time?lang=zh-CN")  # type: ignore[attr-defined]
    assert "时间轴" in d.page_source and "坐席打断客户" in d.page_source  # type: ignore[attr-defined]
    shot(d, "call-zh-CN")
    d.get(f"{hub.url}/agents")  # type: ignore[attr-defined]
    assert "主要问题" in d.page_source  # type: ignore[attr-defined]  # the choice sticks (cookie)
    d.get(f"{hub.url}/agents?lang=en")  # type: ignore[attr-defined]


def test_live_wall_updates_over_sse(browser: object, hub: Hub) -> None:
    """The wall in Chromium, fed over SSE without a reload: the agent's name, the seat in a call with its running
    time, one deduplicated alert however often it repeats, cleared with the call's end; a station's offline
    status (the devices table) shows as offline."""

    d = browser
    login(d, hub, "admin")
    d.get(f"{hub.url}/live")  # type: ignore[attr-defined]
    d.execute_script("window.notReloaded = true")  # type: ignore[attr-defined]
    st = Station("sh", "s05")
    angry = {"type": "emotion", "start": 30, "end": 33, "party": "customer", "label": "angry"}

    # The wall re-renders a seat's row on each SSE event, so a WebElement can go stale between two reads: each
    # check reads the row's class, text and cells in one script call, a snapshot no re-render can split.
    snapshot_js = """
        const r = document.querySelector(arguments[0]);
        if (!r) return null;
        const cells = {};
        for (const td of r.querySelectorAll('td')) for (const c of td.classList) cells[c] = td.innerText.trim();
        return {cls: r.className, text: r.innerText, cells: cells};
    """

    def snap(seat: str) -> dict[str, Any] | None:
        got = d.execute_script(snapshot_js, f'tr.seat[data-seat="{seat}"]')  # type: ignore[attr-defined]
        return got if isinstance(got, dict) else None

    def row_when(ok: Any, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            row = snap("sh/s05")
            if row is not None and ok(row):
                return row
            time.sleep(0.2)
        pytest.fail(f"the live wall did not show {what}")

    def cell(row: dict[str, Any], name: str) -> str:
        return str(row["cells"].get(name, ""))

    hub.board.update(st.env(angry, "live-1", ts(0), "a2"))
    row = row_when(lambda r: "customer anger" in cell(r, "alerts"), "the new alert")
    assert "live-1" in row["text"] and cell(row, "agent") == "Bob Li"  # the name, not the id
    assert cell(row, "state") == "in call" and "alert" in row["cls"].split()
    # the same anger twice more: still one entry, counted
    hub.board.update(st.env({**angry, "start": 50, "end": 52}, "live-1", ts(0), "a2"))
    hub.board.update(st.env({**angry, "start": 70, "end": 71}, "live-1", ts(0), "a2"))
    row = row_when(lambda r: "\u00d73" in cell(r, "alerts"), "the repeated alert counted")
    assert cell(row, "alerts") == "customer anger \u00d73"
    assert "call time" in cell(row, "now") and "customer anger" in cell(row, "now")  # the running "now"
    shot(d, "live")
    # the call ends: the alert and its highlight go, the seat is idle
    hub.board.update(st.env({"type": "call_summary", "start": 0, "end": 80, "duration": 80}, "live-1", ts(0), "a2"))
    row = row_when(lambda r: cell(r, "state") == "idle", "the call's end")
    assert cell(row, "alerts") == "" and "alert" not in row["cls"].split()
    # s01's station reported offline (the fixture's devices table): offline on the wall
    offline = snap("sh/s01")
    assert offline is not None and cell(offline, "state") == "offline" and "state-offline" in offline["cls"].split()
    assert d.execute_script("return window.notReloaded === true")  # type: ignore[attr-defined]  # no reload
    shot(d, "live-ended")


def test_live_talk_over_shows_on_the_wall_at_once(
    browser: object,
    hub: Hub,
    mosquitto: Mosquitto,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Station publisher -> Mosquitto (the `live` topic, QoS 0) -> hub ingest -> SSE -> the wall in Chromium."""
    from selenium.webdriver.common.by import By

    d = browser
    login(d, hub, "admin")
    d.get(f"{hub.url}/live")  # type: ignore[attr-defined]
    broker = BrokerConfig.from_url(mosquitto.url)
    hub_ingest = Ingest(hub.store, broker, client_id="browser-hub", on_live=hub.board.live)
    hub_ingest.start()
    try:
        assert hub_ingest.wait_subscribed(10), mosquitto.log_tail()
        with Outbox(tmp_path / "ob.sqlite") as ob, Publisher(ob, site="sh", seat="s07", broker=broker) as pub:
            assert wait_until(lambda: pub.connected, 10)
            t0 = time.monotonic()
            pub.publish_live({"type": "talk_over", "call_id": "live-2", "start": 41.5, "by": "customer"})
            while time.monotonic() - t0 < 10:
                rows = d.find_elements(By.CSS_SELECTOR, 'tr.seat.now-talk_over[data-seat="sh/s07"]')  # type: ignore[attr-defined]
                if rows and "talk-over (Customer)" in rows[0].text:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the live wall did not show the talk-over")
            latency = time.monotonic() - t0
            assert "live-2" in rows[0].text
            shot(d, "live-talk-over")
            assert latency < 2.5, latency  # the stream polls every 0.5 s; the rest is the broker and the page
    finally:
        hub_ingest.stop()
    # it runs out by itself (a talk-over lasts seconds; the station sends no end for it)
    assert wait_until(lambda: not d.find_elements(By.CSS_SELECTOR, 'tr.now-talk_over[data-seat="sh/s07"]'), 10)  # type: ignore[attr-defined]


def test_devices_reviews_calibration_pages(browser: object, hub: Hub) -> None:
    from selenium.webdriver.common.by import By

    d = browser
    login(d, hub, "admin")
    d.get(f"{hub.url}/devices")  # type: ignore[attr-defined]
    status = {
        r.get_attribute("data-seat"): r.find_element(By.CSS_SELECTOR, ".badge").text
        for r in d.find_elements(By.CSS_SELECTOR, "tr.device")  # type: ignore[attr-defined]
    }
    assert status["sh/s00"] == "online" and status["sh/s01"] == "offline"
    shot(d, "devices")
    for page in ("reviews", "calibration", "reports/team/t1"):
        d.get(f"{hub.url}/{page}")  # type: ignore[attr-defined]
        assert d.find_elements(By.CSS_SELECTOR, "main table")  # type: ignore[attr-defined]
        shot(d, page.replace("/", "-"))


def test_weekly_team_report_adds_up(browser: object, hub: Hub) -> None:
    """The team's figures agree with its agents' rows; rules are named, not ids; trend and distribution drawn."""
    from selenium.webdriver.common.by import By

    d = browser
    login(d, hub, "admin")
    d.find_element(By.CSS_SELECTOR, "a[href='/reports/team/t1']").click()  # type: ignore[attr-defined]  # from /agents
    assert d.current_url.endswith("/reports/team/t1")  # type: ignore[attr-defined]
    rows = d.find_elements(By.CSS_SELECTOR, "#report tbody tr")  # type: ignore[attr-defined]
    agent_calls = [int(r.find_elements(By.TAG_NAME, "td")[1].text) for r in rows]
    assert len(rows) == 2 and int(d.find_element(By.ID, "team-calls").text) == sum(agent_calls) > 0  # type: ignore[attr-defined]
    scored = sum(int(r.find_elements(By.TAG_NAME, "td")[2].text) for r in rows)
    bars = d.find_elements(By.CSS_SELECTOR, "#team-distribution rect")  # type: ignore[attr-defined]
    assert sum(int(b.get_attribute("textContent").split(": ")[1]) for b in bars) == scored
    assert d.find_elements(By.CSS_SELECTOR, "#team-trend svg circle")  # type: ignore[attr-defined]
    rules = d.find_elements(By.CSS_SELECTOR, "#team-rules tbody tr[data-rule]")  # type: ignore[attr-defined]
    named = {r.get_attribute("data-rule"): r.find_element(By.TAG_NAME, "td").text for r in rules}
    assert named.get("agent_interruptions") == "Agent interrupted the customer"
    assert "agent_interruptions" not in d.find_element(By.ID, "report").text  # type: ignore[attr-defined]
    # a team score between its agents' scores (a weighted mean of them)
    agent_scores = [float(r.find_elements(By.TAG_NAME, "td")[3].text) for r in rows]
    assert min(agent_scores) <= float(d.find_element(By.ID, "team-score").text) <= max(agent_scores)  # type: ignore[attr-defined]
    shot(d, "report-team-t1")
    d.get(f"{hub.url}/reports/team/t1?lang=zh-CN")  # type: ignore[attr-defined]
    assert "周报" in d.find_element(By.TAG_NAME, "h1").text  # type: ignore[attr-defined]
    shot(d, "report-team-t1-zh-CN")


def test_an_admin_creates_a_user_who_can_log_in(browser: object, hub: Hub) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    d = browser
    login(d, hub, "admin")
    d.find_element(By.ID, "nav-admin").click()  # type: ignore[attr-defined]
    WebDriverWait(d, 10).until(lambda drv: drv.current_url.endswith("/admin/users"))  # type: ignore[arg-type]
    d.find_element(By.ID, "new-username").send_keys("carol")  # type: ignore[attr-defined]
    d.find_element(By.ID, "new-password").send_keys(PASSWORD)  # type: ignore[attr-defined]
    Select(d.find_element(By.ID, "new-role")).select_by_value("lead")  # type: ignore[attr-defined]
    Select(d.find_element(By.ID, "new-team")).select_by_value("t2")  # type: ignore[attr-defined]
    d.find_element(By.ID, "create-user").click()  # type: ignore[attr-defined]
    WebDriverWait(d, 10).until(lambda drv: drv.find_elements(By.ID, "admin-done"))  # type: ignore[arg-type]
    assert d.find_elements(By.CSS_SELECTOR, 'tr.user[data-user="carol"]')  # type: ignore[attr-defined]
    shot(d, "admin-users")
    for section in ("teams", "scorecards", "sites"):
        d.get(f"{hub.url}/admin/{section}?lang=zh-CN")  # type: ignore[attr-defined]
        assert "管理" in d.page_source  # type: ignore[attr-defined]
        shot(d, f"admin-{section}-zh-CN")
    d.get(f"{hub.url}/admin/users?lang=en")  # type: ignore[attr-defined]
    # the new team lead logs in and sees their team's agent only
    login(d, hub, "carol")
    rows = d.find_elements(By.CSS_SELECTOR, "tr.agent-row")  # type: ignore[attr-defined]
    assert [r.get_attribute("data-agent") for r in rows] == ["a3"]
    assert not d.find_elements(By.ID, "nav-admin")  # type: ignore[attr-defined]
    d.get(f"{hub.url}/admin/users")  # type: ignore[attr-defined]
    assert "needs role admin" in d.page_source  # type: ignore[attr-defined]
    # deactivated by the admin (the form in carol's row), carol can no longer log in
    login(d, hub, "admin")
    d.get(f"{hub.url}/admin/users")  # type: ignore[attr-defined]
    row = d.find_element(By.CSS_SELECTOR, 'tr.user[data-user="carol"]')  # type: ignore[attr-defined]
    row.find_element(By.CSS_SELECTOR, 'form.user-edit input[name="active"]').click()
    row.find_element(By.CSS_SELECTOR, "form.user-edit button.save").click()
    WebDriverWait(d, 10).until(
        lambda drv: drv.find_elements(By.CSS_SELECTOR, 'tr.user[data-user="carol"][data-active="0"]')  # type: ignore[arg-type]
    )
    d.delete_all_cookies()  # type: ignore[attr-defined]
    d.get(f"{hub.url}/login?lang=en")  # type: ignore[attr-defined]
    d.find_element(By.ID, "username").send_keys("carol")  # type: ignore[attr-defined]
    d.find_element(By.ID, "password").send_keys(PASSWORD)  # type: ignore[attr-defined]
    d.find_element(By.ID, "submit").click()  # type: ignore[attr-defined]
    WebDriverWait(d, 10).until(lambda drv: drv.find_elements(By.ID, "login-error"))  # type: ignore[arg-type]


def test_an_agent_sees_only_their_own(browser: object, hub: Hub) -> None:
    from selenium.webdriver.common.by import By

    d = browser
    login(d, hub, "alice")
    rows = d.find_elements(By.CSS_SELECTOR, "tr.agent-row")  # type: ignore[attr-defined]
    assert [r.get_attribute("data-agent") for r in rows] == ["a1"]
    assert not d.find_elements(By.CSS_SELECTOR, "a[href^='/reports/']")  # type: ignore[attr-defined]  # not theirs
    d.get(f"{hub.url}/calls/a3-d0")  # type: ignore[attr-defined]
    assert "no such call" in d.page_source and "Chen" not in d.page_source  # type: ignore[attr-defined]
    d.get(f"{hub.url}/live")  # type: ignore[attr-defined]
    assert "Chen" not in d.page_source  # type: ignore[attr-defined]
    shot(d, "agent-view")
