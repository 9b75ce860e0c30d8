"""Coaching in a real headless Chromium (tests/test_hub_browser.py's fixture), in English and in Chinese: a team
lead opens a session for their agent from the suggestion and recognises a call, the agent acknowledges it and
sees the targeted rules' trend and the recognition on their page, another team's lead cannot see it, a QA
reviewer can, and an admin sets the score tiers (a refused form first). One hub for the module; screenshots in
test-artifacts/hub/coaching-*.png."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from hub import coaching
from hub.auth import User, create_user
from hub.live import LiveBoard
from hub.storage import Store
from hub.web import i18n
from tests.hub_support import Station, ingest
from tests.test_hub_browser import PASSWORD, Hub, browser, login, served, shot  # noqa: F401 - browser: fixture
from tests.test_hub_coaching import calls_for

WAIT_S = 15


@pytest.fixture(scope="module")
def coaching_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    from hub.scorecard import DEFAULT_SCORECARD, load
    from hub.scores import import_scorecard

    store = Store(tmp_path_factory.mktemp("coaching") / "hub.sqlite", default_tz="Asia/Shanghai")
    import_scorecard(store, load(DEFAULT_SCORECARD)[1])
    store.put_site("sh", "Shanghai", "Asia/Shanghai")
    store.put_team("t1", "Team One", "sh")
    store.put_team("t2", "Team Two", "sh")
    store.put_agent("a1", "Alice Wang", "t1")
    store.put_agent("a3", "Chen Jie", "t2")
    envs = calls_for(Station("sh", "s1"), "a1", "A1-", [1, 3, 6, 9, 13, 20, 26], drop_interruptions=2)
    envs += calls_for(Station("sh", "s3"), "a3", "A3-", [2, 5])
    ingest(store, envs)
    for name, role, agent, team in (
        ("admin", "admin", None, None),
        ("rev", "reviewer", None, None),
        ("lead1", "lead", None, "t1"),
        ("lead2", "lead", None, "t2"),
        ("alice", "agent", "a1", None),
    ):
        create_user(store, name, PASSWORD, role, agent_id=agent, team_id=team)
    with served(store, LiveBoard()) as h:
        yield h


def _wait(d: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(d, WAIT_S).until(lambda drv: drv.find_elements(By.CSS_SELECTOR, css))[0]


@pytest.mark.parametrize(("lang", "goals", "kudos"),
                         [("en", "Let the customer finish before answering", "Calm and clear"),
                          ("zh-CN", "等客户说完再回答", "耐心清楚")])  # fmt: skip
def test_a_coaching_session_per_role(browser: Any, coaching_hub: Hub, lang: str, goals: str, kudos: str) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    d, hub, t = browser, coaching_hub, i18n.STRINGS[lang]
    store = hub.store
    titles = coaching.rule_titles(store, lang)
    lead = User("lead1", "lead", team_id="t1")
    expected = coaching.suggestion(store, lead, "a1", date.today(), lang=lang)
    weakest = expected["weakest"][0]["rule"]

    # the team lead: the suggestion, then a session from it
    login(d, hub, "lead1")
    d.get(f"{hub.url}/coaching/agents/a1?lang={lang}")
    rows = d.find_elements(By.CSS_SELECTOR, "#co-weakest tr.co-weak")
    assert [r.get_attribute("data-rule") for r in rows] == [w["rule"] for w in expected["weakest"]]
    assert rows[0].find_elements(By.TAG_NAME, "td")[0].text == titles[weakest]
    tier = d.find_element(By.ID, "co-tier")
    assert tier.text == expected["tier"]["name_zh" if lang == "zh-CN" else "name_en"]
    assert d.find_element(By.ID, f"co-rule-{weakest}").is_selected()  # the weakest rules come ticked
    d.find_element(By.ID, "co-goals").send_keys(goals)
    d.find_element(By.ID, "co-open-submit").click()
    _wait(d, "#form-sent")
    assert d.find_element(By.ID, "co-goals-text").text == goals
    sid = int(d.current_url.split("/coaching/sessions/")[1].split("?")[0])
    row = store.db.one("SELECT agent_id, opened_by, goals, acknowledged_at FROM coaching_sessions WHERE id = ?", (sid,))
    assert row == ("a1", "lead1", goals, None)
    trend_rules = [r.get_attribute("data-rule") for r in d.find_elements(By.CSS_SELECTOR, "tr.co-trend-row")]
    assert weakest in trend_rules
    shot(d, f"coaching-session-lead-{lang}")
    # ... and recognises the agent's best call on the agent page
    d.get(f"{hub.url}/agents/a1?lang={lang}")
    best = d.find_elements(By.CSS_SELECTOR, "#co-best-calls tr.co-best")[0]
    call = best.get_attribute("data-call")
    best.find_element(By.NAME, "note").send_keys(kudos)
    best.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _wait(d, "#kudos-sent")
    assert store.db.scalar("SELECT note FROM coaching_kudos WHERE call_id = ? AND author = 'lead1'", (call,)) == kudos

    # the agent: sees it, acknowledges it (no close form for them), sees the trend and the recognition
    login(d, hub, "alice")
    d.get(f"{hub.url}/coaching/sessions/{sid}?lang={lang}")
    assert d.find_element(By.ID, "co-ack").get_attribute("data-acknowledged") == "0"
    assert not d.find_elements(By.ID, "co-close-form")
    d.find_element(By.ID, "co-ack-submit").click()
    _wait(d, "#form-sent")
    assert d.find_element(By.ID, "co-ack").get_attribute("data-acknowledged") == "1"
    assert not d.find_elements(By.ID, "co-ack-submit")  # once
    assert store.db.scalar("SELECT acknowledged_at FROM coaching_sessions WHERE id = ?", (sid,)) is not None
    shot(d, f"coaching-session-agent-{lang}")
    d.get(f"{hub.url}/agents/a1?lang={lang}")
    card = d.find_element(By.CSS_SELECTOR, f'.co-session[data-session="{sid}"]')
    assert goals in card.text and t["co_acknowledged"] in card.text
    assert [r.get_attribute("data-rule") for r in card.find_elements(By.CSS_SELECTOR, "tr.co-trend-row")] == sorted(
        set(trend_rules)
    )
    credited = {r.get_attribute("data-rule") for r in d.find_elements(By.CSS_SELECTOR, "#co-credited tr.co-credit")}
    assert credited == {b["rule"] for b in expected["best"]}
    assert kudos in d.find_element(By.ID, "co-kudos").text
    assert not d.find_elements(By.CSS_SELECTOR, ".kudos-form")  # an agent does not recognise calls
    shot(d, f"coaching-agent-page-{lang}")

    # another team's lead: no such session; a QA reviewer: listed
    login(d, hub, "lead2")
    d.get(f"{hub.url}/coaching/sessions/{sid}?lang={lang}")
    assert d.find_element(By.ID, "error-status").text == "404" and goals not in d.page_source
    d.get(f"{hub.url}/coaching?lang={lang}")
    assert not d.find_elements(By.CSS_SELECTOR, f'tr.co-row[data-session="{sid}"]')
    login(d, hub, "rev")
    d.get(f"{hub.url}/coaching?lang={lang}")
    assert d.find_elements(By.CSS_SELECTOR, f'tr.co-row[data-session="{sid}"]')
    assert t["co_title"] in d.find_element(By.TAG_NAME, "h1").text

    # the admin sets the tiers: a refused form (bounds not increasing) says why in the page's language
    site = "" if lang == "en" else "sh"
    login(d, hub, "admin")
    d.get(f"{hub.url}/coaching/tiers?site={site}&lang={lang}")
    for i, (name_en, name_zh, low) in enumerate(
        (("Review", "面谈", None), ("Coach", "辅导", "80"), ("Praise", "表扬", "70"))
    ):
        for field, value in ((f"co-name-en-{i}", name_en), (f"co-name-zh-{i}", name_zh), (f"co-min-{i}", low)):
            if value is None:
                continue
            box = d.find_element(By.ID, field)
            box.clear()
            box.send_keys(value)
    d.find_element(By.ID, "co-tiers-submit").click()
    assert _wait(d, "#form-error").text == t["co_err_tier_order"]
    box = d.find_element(By.ID, "co-min-2")
    box.clear()
    box.send_keys("90")
    d.find_element(By.ID, "co-tiers-submit").click()
    _wait(d, "#form-sent")
    tiers, source = coaching.tiers_for(store, site or None)
    assert source == ("center" if lang == "en" else "site")
    assert [(x.name_en, x.min_score) for x in tiers] == [("Review", None), ("Coach", 80.0), ("Praise", 90.0)]
    cells = [r.text for r in d.find_elements(By.CSS_SELECTOR, "#co-tiers tr.co-tier-row td:nth-child(2)")]
    assert cells == (["Review", "Coach", "Praise"] if lang == "en" else ["面谈", "辅导", "表扬"])
    shot(d, f"coaching-tiers-{lang}")
