"""The QA workflow in the dashboard's forms: dispute, resolve, override, calibrate, and the queues per role.

End to end in a real headless Chromium against a real hub server (as tests/test_hub_browser.py, whose browser
fixture and helpers this reuses), per role and in both languages, with screenshots in test-artifacts/hub/
(workflow-*.png): an agent disputes a deduction, the team lead upholds it with corrected points and the call's
score and the agent's rollups follow; a QA reviewer overrides a rule; three reviewers calibrate a call, each
blind to the others' points until their own are in, then the agreement report. With the TestClient on both
store backends: every form route refuses the wrong role (403) and a cookie without the CSRF field, and bad
input gives the page again with one translated line, never a traceback or JSON.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import pytest
from fastapi.testclient import TestClient

from hub import aggregate, calibration
from hub.auth import Scope, User, create_user
from hub.storage import Store
from hub.web.app import create_app
from tests.hub_support import Station, ingest
from tests.test_hub_browser import PASSWORD, browser, login, serving, shot, ts  # noqa: F401 - browser: the fixture

CSRF_REFUSAL = "not sent from this dashboard"
USERS = {
    "admin": ("admin", None, None),
    "alice": ("agent", "a1", None),
    "bob": ("agent", "a2", None),
    "lead1": ("lead", None, "t1"),
    "lead2": ("lead", None, "t2"),
    "rev1": ("reviewer", None, None),
    "rev2": ("reviewer", None, None),
    "rev3": ("reviewer", None, None),
}


def populate(store: Store) -> None:
    """Two teams; alice (a1, team 1) with a call every other day, bob (a2, team 2) likewise; all users."""
    store.put_site("sh", "Shanghai", "Asia/Shanghai")
    store.put_team("t1", "Team One", "sh")
    store.put_team("t2", "Team Two", "sh")
    store.put_agent("a1", "Alice Wang", "t1")
    store.put_agent("a2", "Bob Li", "t2")
    envs = []
    for n, agent in enumerate(("a1", "a2")):
        st = Station("sh", f"s0{n}")
        for day in range(0, 12, 2):
            envs += st.call(f"{agent}-d{day}", ts(day), agent=agent)
    ingest(store, envs)
    for user, (role, agent, team) in USERS.items():
        create_user(store, user, PASSWORD, role, agent_id=agent, team_id=team)


def effective(store: Store, call_id: str, rule_id: str) -> float:
    return float(store.db.scalar("SELECT points FROM call_rules WHERE call_id = ? AND rule_id = ?", (call_id, rule_id)))


def call_score(store: Store, call_id: str) -> float:
    return float(store.db.scalar("SELECT score FROM calls WHERE call_id = ?", (call_id,)))


def call_day(store: Store, call_id: str) -> str:
    return str(store.db.scalar("SELECT day FROM calls WHERE call_id = ?", (call_id,)))


def day_rollup(store: Store, agent: str, day: str) -> float | None:
    """The agent's mean score that day from the rollup (agent_daily), as the agent page's trend reads it."""
    trend = aggregate.agent_trend(store, agent, date.fromisoformat(day), 1)
    return trend[0]["score"] if trend else None


def week_row(store: Store, agent: str, day: str) -> float | None:
    """The agent's score for the week ending `day` in the agents table (the running totals)."""
    admin = User("admin", "admin")
    rows = aggregate.agents_table(store, Scope(admin), date.fromisoformat(day), "week")
    return next(r.score for r in rows if r.agent_id == agent)


# --- a real hub server ----------------------------------------------------------------------------------------------


@dataclass
class Hub:
    url: str
    store: Store


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    from hub.scorecard import DEFAULT_SCORECARD, load
    from hub.scores import import_scorecard

    store = Store(tmp_path_factory.mktemp("hub") / "hub.sqlite", default_tz="Asia/Shanghai")
    import_scorecard(store, load(DEFAULT_SCORECARD)[1])
    populate(store)
    try:
        with serving(store) as url:
            yield Hub(url, store)
    finally:
        store.close()


def wait_for(d: object, css: str, timeout: float = 10) -> list[object]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(d, timeout).until(lambda drv: drv.find_elements(By.CSS_SELECTOR, css))  # type: ignore[arg-type]
    return d.find_elements(By.CSS_SELECTOR, css)  # type: ignore[attr-defined, no-any-return]


LOCAL_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$")
WORDS = {  # what the pages must say in each language (zh-CN must not fall back to English)
    "en": {"open": "open", "applied": "applied", "dispute": "dispute", "override": "override", "upheld": "upheld"},
    "zh-CN": {"open": "待处理", "applied": "已生效", "dispute": "申诉", "override": "改判", "upheld": "成立"},
}


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_agent_disputes_a_deduction_and_the_lead_upholds_it(browser: object, hub: Hub, lang: str) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    d, store = browser, hub.store
    call = "a1-d2" if lang == "en" else "a1-d4"
    rule = "agent_interruptions"
    words = WORDS[lang]
    before_points, before_score = effective(store, call, rule), call_score(store, call)
    day = call_day(store, call)
    before_day, before_week = day_rollup(store, "a1", day), week_row(store, "a1", day)
    assert before_points == -6 and before_day == before_score

    # the agent: the dispute form on their own call, one deduction chosen, a reason
    login(d, hub, "alice")
    d.get(f"{hub.url}/calls/{call}?lang={lang}")  # type: ignore[attr-defined]
    assert not d.find_elements(By.ID, "override-form") and not d.find_elements(By.ID, "calibration-form")  # type: ignore[attr-defined]
    Select(d.find_element(By.ID, "dispute-rule")).select_by_value(rule)  # type: ignore[attr-defined]
    d.find_element(By.ID, "dispute-reason").send_keys("the customer asked me to go on")  # type: ignore[attr-defined]
    d.find_element(By.ID, "dispute-submit").click()  # type: ignore[attr-defined]
    row = wait_for(d, "#my-disputes tr.my-dispute")[0]
    assert d.find_elements(By.ID, "form-sent")  # type: ignore[attr-defined]
    assert row.get_attribute("data-status") == "open" and words["open"] in row.text  # type: ignore[attr-defined]
    shot(d, f"workflow-agent-disputes-{lang}")

    # the lead: a queue badge in the nav, the dispute on the reviews page with the disputed points
    login(d, hub, "lead1")
    d.get(f"{hub.url}/reviews?lang={lang}")  # type: ignore[attr-defined]
    assert int(d.find_element(By.ID, "queue-count").text) >= 1  # type: ignore[attr-defined]
    review_id = store.db.scalar(
        "SELECT id FROM reviews WHERE call_id = ? AND kind = 'dispute' AND status = 'open'", (call,)
    )
    open_row = d.find_element(By.CSS_SELECTOR, f'tr.open-dispute[data-review="{review_id}"]')  # type: ignore[attr-defined]
    assert open_row.find_element(By.CSS_SELECTOR, "td.disputed").text == "-6"
    title = "Agent interrupted the customer" if lang == "en" else "坐席打断客户"
    assert title in open_row.text and rule not in open_row.text  # the rule's title, not its id
    form = open_row.find_element(By.CSS_SELECTOR, "form.resolve-form")
    Select(form.find_element(By.NAME, "decision")).select_by_value("upheld")
    form.find_element(By.NAME, "points").send_keys("-2")
    form.find_element(By.NAME, "note").send_keys("customer asked")
    shot(d, f"workflow-lead-queue-{lang}")
    form.find_element(By.TAG_NAME, "button").click()
    wait_for(d, "#form-sent")
    done = d.find_element(By.CSS_SELECTOR, f'#reviews tr.review[data-review="{review_id}"]')  # type: ignore[attr-defined]
    assert done.get_attribute("data-status") == "applied"
    assert words["applied"] in done.text and words["dispute"] in done.text and words["upheld"] in done.text
    assert done.find_element(By.CSS_SELECTOR, "td.disputed").text == "-6"  # what was disputed, still shown
    assert done.find_element(By.CSS_SELECTOR, "td.decided").text == "-2"
    assert done.find_element(By.CSS_SELECTOR, "td.resolved-by").text == "lead1"
    assert LOCAL_TIME.match(done.find_element(By.CSS_SELECTOR, "td.resolved-at").text)  # site-local, not UTC ISO
    assert not d.find_elements(By.CSS_SELECTOR, f'tr.open-dispute[data-review="{review_id}"]')  # type: ignore[attr-defined]
    shot(d, f"workflow-lead-resolved-{lang}")

    # the numbers: the rule, the call's score, the agent's day and week
    assert effective(store, call, rule) == -2
    assert call_score(store, call) == pytest.approx(before_score + 4)
    assert day_rollup(store, "a1", day) == pytest.approx(before_day + 4)  # one call that day
    after_week = week_row(store, "a1", day)
    assert before_week is not None and after_week is not None and after_week > before_week

    # the agent sees the outcome: on the call, and as a count in their queue
    login(d, hub, "alice")
    d.get(f"{hub.url}/calls/{call}?lang={lang}")  # type: ignore[attr-defined]
    row = d.find_element(By.CSS_SELECTOR, "#my-disputes tr.my-dispute")  # type: ignore[attr-defined]
    assert row.get_attribute("data-status") == "applied" and words["upheld"] in row.text
    assert int(d.find_element(By.ID, "queue-count").text) >= 1  # type: ignore[attr-defined]
    shot(d, f"workflow-agent-outcome-{lang}")


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_reviewer_overrides_a_rule(browser: object, hub: Hub, lang: str) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    d, store = browser, hub.store
    call = "a2-d2" if lang == "en" else "a2-d4"
    before_points, before_score = effective(store, call, "dead_air"), call_score(store, call)
    assert before_points < 0
    login(d, hub, "rev1")
    d.get(f"{hub.url}/calls/{call}?lang={lang}")  # type: ignore[attr-defined]
    assert not d.find_elements(By.ID, "dispute-form")  # type: ignore[attr-defined]  # agents only
    # bad input first: the page again, 400, one translated line
    Select(d.find_element(By.ID, "override-rule")).select_by_value("dead_air")  # type: ignore[attr-defined]
    d.find_element(By.ID, "override-points").send_keys("lots")  # type: ignore[attr-defined]
    d.find_element(By.ID, "override-reason").send_keys("hold music")  # type: ignore[attr-defined]
    d.find_element(By.ID, "override-submit").click()  # type: ignore[attr-defined]
    err = wait_for(d, "#form-error")[0]
    assert err.text == (
        "Points must be a number between -1000 and 1000." if lang == "en" else "分值须为 -1000 到 1000 之间的数字。"
    )  # type: ignore[attr-defined]
    assert effective(store, call, "dead_air") == before_points
    Select(d.find_element(By.ID, "override-rule")).select_by_value("dead_air")  # type: ignore[attr-defined]
    d.find_element(By.ID, "override-points").send_keys("0")  # type: ignore[attr-defined]
    d.find_element(By.ID, "override-reason").send_keys("hold music, not dead air")  # type: ignore[attr-defined]
    d.find_element(By.ID, "override-submit").click()  # type: ignore[attr-defined]
    wait_for(d, "#form-sent")
    assert effective(store, call, "dead_air") == 0
    assert call_score(store, call) == pytest.approx(before_score - before_points)
    shot(d, f"workflow-reviewer-override-{lang}")
    d.get(f"{hub.url}/reviews?lang={lang}")  # type: ignore[attr-defined]
    row = d.find_elements(By.CSS_SELECTOR, '#reviews tr.review[data-kind="override"]')[0]  # type: ignore[attr-defined]
    assert WORDS[lang]["override"] in row.text and WORDS[lang]["applied"] in row.text and "dead_air" not in row.text


def test_three_reviewers_calibrate_blind_then_the_agreement_report(browser: object, hub: Hub) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    d, store = browser, hub.store
    call = "a1-d6"
    entries = {  # distinctive numbers, so any leak of them on a page would show
        "rev1": {"agent_interruptions": "-7.25", "dead_air": "-1.75"},
        "rev2": {"agent_interruptions": "-5.5", "dead_air": "-2.5"},
        "rev3": {"agent_interruptions": "-6.5", "dead_air": "-2.5"},
    }

    def submit(user: str, lang: str) -> None:
        d.get(f"{hub.url}/calls/{call}?lang={lang}#calibrate")  # type: ignore[attr-defined]
        for rule_id, value in entries[user].items():
            box = d.find_element(By.CSS_SELECTOR, f'input.cal-points[data-rule="{rule_id}"]')  # type: ignore[attr-defined]
            box.clear()
            box.send_keys(value)
        d.find_element(By.ID, "calibration-submit").click()  # type: ignore[attr-defined]
        wait_for(d, "#form-sent")

    login(d, hub, "rev1")
    submit("rev1", "en")
    table = d.find_element(By.ID, "call-calibration")  # type: ignore[attr-defined]  # own points shown after
    assert "-7.25" in table.text
    # reviewer 2: the call waits in their queue; before submitting, nothing of reviewer 1's
    for n, lang in enumerate(("en", "zh-CN")):
        login(d, hub, "rev2")
        d.get(f"{hub.url}/reviews?lang={lang}")  # type: ignore[attr-defined]
        assert int(d.find_element(By.ID, "queue-count").text) == 1  # type: ignore[attr-defined]
        d.find_element(By.CSS_SELECTOR, f'#to-calibrate li[data-call="{call}"] a').click()  # type: ignore[attr-defined]
        wait_for(d, "#calibration-blind")
        page = d.page_source  # type: ignore[attr-defined]
        assert "-7.25" not in page and "-1.75" not in page and "rev1" not in page
        assert not d.find_elements(By.ID, "call-calibration")  # type: ignore[attr-defined]
        assert d.find_element(By.ID, "calibration-count").text == "1"  # type: ignore[attr-defined]
        d.get(f"{hub.url}/calibration?lang={lang}")  # type: ignore[attr-defined]
        assert "-7.25" not in d.page_source  # type: ignore[attr-defined]
        # the report counts no call they have not calibrated (a rule may show for its overrides alone)
        for row in d.find_elements(By.CSS_SELECTOR, "tr.cal-rule"):  # type: ignore[attr-defined]
            assert row.find_elements(By.TAG_NAME, "td")[1].text == "0", row.text
        shot(d, f"workflow-calibration-blind-{lang}")
        if n == 0:
            d.get(f"{hub.url}/calls/{call}?lang=zh-CN")  # type: ignore[attr-defined]
    submit("rev2", "zh-CN")
    table = d.find_element(By.ID, "call-calibration")  # type: ignore[attr-defined]
    assert "-7.25" in table.text and "-5.5" in table.text  # now reviewer 1's points show
    login(d, hub, "rev3")
    submit("rev3", "en")
    rows = {
        r.get_attribute("data-rule"): r
        for r in d.find_elements(By.CSS_SELECTOR, "#call-calibration tr.cal-row")  # type: ignore[attr-defined]
    }
    assert rows["agent_interruptions"].find_element(By.CSS_SELECTOR, "td.spread").text == "1.75"
    shot(d, "workflow-calibration-call")
    assert int(store.db.scalar("SELECT COUNT(DISTINCT reviewer) FROM calibrations WHERE call_id = ?", (call,))) == 3

    # the agreement report, against the domain's own figures
    expected = {r["rule"]: r for r in calibration.report(store, Scope(User("admin", "admin")))}
    for lang in ("en", "zh-CN"):
        login(d, hub, "lead1")
        d.get(f"{hub.url}/calibration?lang={lang}")  # type: ignore[attr-defined]
        row = d.find_element(By.CSS_SELECTOR, 'tr.cal-rule[data-rule="agent_interruptions"]')  # type: ignore[attr-defined]
        pair_mad = expected["agent_interruptions"]["pair_mad"]
        assert pair_mad == pytest.approx((1.75 + 0.75 + 1.0) / 3, abs=1e-3)
        assert row.find_element(By.CSS_SELECTOR, "td.pair-mad").text == f"{pair_mad:.2f}"
        assert row.find_element(By.CSS_SELECTOR, "td.pair-within").text.endswith("%")  # percentages throughout
        title = "Agent interrupted the customer" if lang == "en" else "坐席打断客户"
        assert row.find_element(By.TAG_NAME, "td").text == title
        assert row.find_elements(By.TAG_NAME, "td")[2].text == "3"
        shot(d, f"workflow-calibration-report-{lang}")


# --- the TestClient: roles, CSRF, bad input, on both store backends -------------------------------------------------


def session(store: Store, user: str) -> tuple[TestClient, str]:
    c = TestClient(create_app(store))
    r = c.post("/api/login", json={"username": user, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return c, c.get("/api/me").json()["csrf"]


@pytest.fixture
def world(hub_store: Store) -> Store:
    populate(hub_store)
    return hub_store


def open_dispute(store: Store, call: str = "a1-d0") -> int:
    c, csrf = session(store, "alice")
    r = c.post(f"/calls/{call}/disputes", data={"csrf": csrf, "rule_id": "dead_air", "reason": "hold music"})
    assert r.status_code == 200 and "form-sent" in r.text
    return int(store.db.scalar("SELECT MAX(id) FROM reviews"))


FORMS = [  # path, the roles allowed, a user of those roles who may use it on this call, a valid form
    ("/calls/a1-d0/disputes", {"agent"}, "alice", {"rule_id": "", "reason": "unfair"}),
    ("/calls/a1-d0/overrides", {"admin", "reviewer"}, "rev1", {"rule_id": "dead_air", "points": "-1", "reason": "r"}),
    ("/calls/a1-d0/calibration", {"admin", "reviewer", "lead"}, "lead1", {"p.dead_air": "-2"}),
    ("/reviews/{review}/resolve", {"admin", "lead"}, "lead1", {"decision": "rejected", "note": "no"}),
]


def test_each_form_route_refuses_the_wrong_role(world: Store) -> None:
    review = open_dispute(world)
    for path, roles, _, body in FORMS:
        url = path.replace("{review}", str(review))
        for user, (role, _, _) in USERS.items():
            if role in roles and user not in ("bob", "lead2"):
                continue
            c, csrf = session(world, user)
            r = c.post(url, data={**body, "csrf": csrf}, follow_redirects=False)
            # bob and lead2 (team 2) have a role that may, but not on team 1's call: 404, as if it did not exist
            expected = 404 if role in roles else 403
            assert r.status_code == expected, (url, user, r.status_code, r.text[:200])
            assert r.headers["content-type"].startswith("text/html")  # an error page, not JSON
    assert world.db.scalar("SELECT COUNT(*) FROM reviews") == 1  # nothing changed by any of them
    assert world.db.scalar("SELECT COUNT(*) FROM calibrations") == 0
    # the allowed roles get through (303 back to the page)
    for path, _, user, body in FORMS:
        c, csrf = session(world, user)
        r = c.post(path.replace("{review}", str(review)), data={**body, "csrf": csrf}, follow_redirects=False)
        assert r.status_code == 303, (path, user, r.text[:200])
    assert world.db.scalar("SELECT status FROM reviews WHERE id = ?", (review,)) == "rejected"
    assert world.db.scalar("SELECT COUNT(*) FROM calibrations WHERE reviewer = 'lead1'") == 1


def test_each_form_route_refuses_a_cookie_without_the_csrf_field(world: Store) -> None:
    review = open_dispute(world)
    for path, _, user, body in FORMS:
        c, _ = session(world, user)
        url = path.replace("{review}", str(review))
        for form in (body, {**body, "csrf": "0" * 64}):
            r = c.post(url, data=form, follow_redirects=False)
            assert r.status_code == 403 and CSRF_REFUSAL in r.text, (url, r.status_code)
    assert world.db.scalar("SELECT COUNT(*) FROM reviews") == 1
    assert world.db.scalar("SELECT status FROM reviews") == "open"


C = "/calls/a1-d0"
BAD = [  # path, user, form, the message in English and Chinese
    (
        "/calls/a1-d0/disputes",
        "alice",
        {"rule_id": "dead_air", "reason": "  "},
        "Please give a reason.",
        "请填写理由。",
    ),
    (f"{C}/disputes", "alice", {"rule_id": "nope", "reason": "x"}, "Choose a rule", "请选择本通话"),
    (f"{C}/disputes", "alice", {"reason": "x" * 2001}, "too long", "内容过长"),
    (
        "/calls/a1-d0/overrides",
        "rev1",
        {"rule_id": "dead_air", "points": "nan", "reason": "r"},
        "Points must",
        "分值须",
    ),
    (
        "/calls/a1-d0/overrides",
        "rev1",
        {"rule_id": "dead_air", "points": "1e9", "reason": "r"},
        "Points must",
        "分值须",
    ),
    (
        "/calls/a1-d0/overrides",
        "rev1",
        {"rule_id": "dead_air", "points": "-1"},
        "Please give a reason.",
        "请填写理由。",
    ),
    (f"{C}/calibration", "rev1", {"p.dead_air": ""}, "at least one rule", "至少为一条规则"),
    (f"{C}/calibration", "rev1", {"p.dead_air": "inf"}, "Points must", "分值须"),
    ("/reviews/{review}/resolve", "lead1", {"decision": "maybe"}, "Choose uphold or reject.", "请选择成立或驳回。"),
    ("/reviews/{review}/resolve", "lead1", {"decision": "rejected", "points": "-1"}, "Corrected points", "更正分值"),
]


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_bad_input_gives_the_page_again_with_one_translated_line(world: Store, lang: str) -> None:
    review = open_dispute(world)
    for path, user, form, en, zh in BAD:
        c, csrf = session(world, user)
        r = c.post(f"{path.replace('{review}', str(review))}?lang={lang}", data={**form, "csrf": csrf})
        assert r.status_code == 400, (path, form, r.status_code)
        assert r.headers["content-type"].startswith("text/html")
        errors = re.findall(r'id="form-error"[^>]*>([^<]*)<', r.text)
        assert len(errors) == 1 and (en if lang == "en" else zh) in errors[0], (path, form, errors)
        assert "Traceback" not in r.text
    assert world.db.scalar("SELECT COUNT(*) FROM reviews") == 1  # none of it stored
    assert world.db.scalar("SELECT COUNT(*) FROM calibrations") == 0
    # a dispute resolved already: the reviews page says so
    c, csrf = session(world, "lead1")
    assert c.post(f"/reviews/{review}/resolve", data={"csrf": csrf, "decision": "rejected"}).status_code == 200
    r = c.post(f"/reviews/{review}/resolve?lang={lang}", data={"csrf": csrf, "decision": "upheld"})
    assert r.status_code == 400 and ("no longer open" if lang == "en" else "已不是待处理") in r.text
    # unknown ids: 404, never a 500
    assert c.post("/reviews/99999/resolve", data={"csrf": csrf, "decision": "upheld"}).status_code == 404
    assert c.post("/reviews/x/resolve", data={"csrf": csrf, "decision": "upheld"}).status_code == 404
    assert c.post("/calls/nope/calibration", data={"csrf": csrf, "p.dead_air": "1"}).status_code == 404


def test_queues_count_what_waits_for_whom(world: Store) -> None:
    def badge(user: str) -> int:
        c, _ = session(world, user)
        m = re.search(r'id="queue-count"[^>]*>(\d+)<', c.get("/agents").text)
        return int(m.group(1)) if m else 0

    assert {u: badge(u) for u in ("admin", "lead1", "lead2", "rev1", "alice")} == dict.fromkeys(
        ("admin", "lead1", "lead2", "rev1", "alice"), 0
    )
    review = open_dispute(world)
    c, csrf = session(world, "rev1")
    assert c.post("/calls/a2-d0/calibration", data={"csrf": csrf, "p.dead_air": "-1"}).status_code == 200
    # the lead of team 1 and the admin: one dispute; team 2's lead: none; rev2 (not rev1): one call to calibrate
    assert (badge("admin"), badge("lead1"), badge("lead2"), badge("rev1"), badge("rev2")) == (1, 1, 0, 0, 1)
    c, csrf = session(world, "lead1")
    assert c.post(f"/reviews/{review}/resolve", data={"csrf": csrf, "decision": "rejected"}).status_code == 200
    assert (badge("lead1"), badge("alice"), badge("bob")) == (0, 1, 0)  # alice: an outcome to read
    # a reviewer's report counts only the calls they calibrated themselves (blind until then)
    rev2 = calibration.report(world, Scope(User("rev2", "reviewer")))
    rev1 = calibration.report(world, Scope(User("rev1", "reviewer")))
    assert [r["calls"] for r in rev2 if r["rule"] == "dead_air"] in ([], [0])
    assert [r["calls"] for r in rev1 if r["rule"] == "dead_air"] == [1]
