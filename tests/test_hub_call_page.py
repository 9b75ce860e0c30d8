"""The call page explains its score: the base and every rule's points add up to the score on screen, a rule inside
its allowance or not applicable says so (before and after review), evidence reads as sentences with units in
both languages, the timeline has a legend, the agent is named, and the score's history and calibrations are
listed. TestClient on both store backends; one real headless Chromium test clicks a deduction and sees its
moment marked on the timeline (screenshots in test-artifacts/hub/)."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest
from fastapi.testclient import TestClient

from edge_agent.events import CallSummary, Event, Speech, TalkOver
from hub import auth, calibration, reviews
from hub.scorecard import DEFAULT_SCORECARD, load
from hub.scores import Scorer, get_scorecard
from hub.storage import Store
from hub.web.app import create_app
from hub.web.charts import COLORS
from tests.hub_support import SUMMARY, Station, ingest
from tests.test_hub_browser import Hub, browser, hub, login, shot  # noqa: F401 - the fixtures

PASSWORD = "call page password"
END = "2026-01-05T01:10:00.000Z"  # 09:10 in Shanghai
RAW_OPERATOR = re.compile(r"\((?:lt|le|gt|ge|eq|ne) |\b(?:lt|gt) \d|agent_response_latency_mean|talk_ratio =")


def one_interruption() -> list[Event]:
    """A call whose only talk-over is one agent interruption: inside the rule's allowance (the first is free)."""
    evs: list[Event] = [
        Speech(1.0, 20.0, "customer"),
        TalkOver(15.0, 16.0, "agent", "interruption", 1.0),
        Speech(15.0, 40.0, "agent"),
    ]
    return [*evs, CallSummary(0.0, 60.0, dict(SUMMARY, duration=60.0, agent_response_latency_mean=0.85))]


@pytest.fixture
def site(hub_store: Store) -> Store:
    """Three calls of Alice Wang (a1, team t1): the known call (K), one inside the interruption allowance (A) and
    one with an angry customer (X, so the calm-under-anger credit applies); users of every role."""
    store = hub_store
    store.put_site("sh", "Shanghai", "Asia/Shanghai")
    store.put_team("t1", "Team One", "sh")
    store.put_agent("a1", "Alice Wang", "t1")
    st = Station("sh", "s01")
    envs = st.call("K", END, agent="a1")
    envs += st.call("A", "2026-01-05T02:10:00.000Z", agent="a1", events=one_interruption())
    envs += st.call("X", "2026-01-05T03:10:00.000Z", agent="a1")
    envs.append(st.env({"type": "emotion", "start": 20, "end": 24, "party": "customer", "label": "angry"},
                       "X", "2026-01-05T03:10:00.000Z", "a1"))  # fmt: skip
    ingest(store, envs)
    for user, role, team, agent in (("admin", "admin", None, None), ("rev", "reviewer", None, None),
                                    ("lead1", "lead", "t1", None), ("alice", "agent", None, "a1")):  # fmt: skip
        auth.create_user(store, user, PASSWORD, role, team_id=team, agent_id=agent)
    return store


def client(store: Store, user: str) -> TestClient:
    c = TestClient(create_app(store))
    assert c.post("/api/login", json={"username": user, "password": PASSWORD}).status_code == 200
    return c


def page(c: TestClient, call_id: str, lang: str = "en") -> str:
    r = c.get(f"/calls/{call_id}?lang={lang}")
    assert r.status_code == 200, r.text[:300]
    return r.text


def row(html: str, rule: str) -> str:
    m = re.search(rf'<tr class="rule[^"]*" data-rule="{rule}".*?</tr>', html, re.S)
    assert m, rule
    return m.group(0)


def cell(tr: str, cls: str) -> str:
    m = re.search(rf'<td class="num {cls}[^"]*"[^>]*>(.*?)</td>', tr, re.S)
    assert m, cls
    return re.sub(r"<[^>]+>", "", m.group(1)).strip()


def adds_up(html: str) -> tuple[float, float]:
    """(base + every rule's points after review as the page shows them, the score the page shows)."""
    table = html[html.index('<table id="breakdown">') : html.index("</table>", html.index('<table id="breakdown">'))]
    points = [float(p) for p in re.findall(r'class="num eff[^"]*" data-points="([-0-9.e]+)"', table)]
    assert re.search(r'<tr id="base-row">.*?data-points="80.0"', table, re.S)  # the shipped scorecard's base
    shown = float(re.search(r'<span id="score">([-0-9.]+)</span>', html).group(1))  # type: ignore[union-attr]
    assert len(points) == 1 + 10  # the base and the shipped scorecard's ten rules
    return round(sum(points), 2), shown


def test_base_and_items_add_up_to_the_score(site: Store) -> None:
    store = site
    card = get_scorecard(store)
    assert card is not None
    admin = client(store, "admin")
    for call_id in ("K", "A", "X"):
        for lang in ("en", "zh-CN"):
            html = page(admin, call_id, lang)
            total, shown = adds_up(html)
            assert total == shown == store.db.scalar("SELECT score FROM calls WHERE call_id = ?", (call_id,))
            assert f'data-points="{card.base}"' in html  # the base (80) is on the page
    total, shown = adds_up(page(admin, "K"))
    assert shown == 79.0  # 80 - 6 (interruptions) + 2 (backchannels) - 2 (dead air) + 5 (quick responses)
    # after a reviewer turns the interruptions' -6 into -1 and a lead upholds a dispute with +3 on dead air
    rev = auth.user_for_token(store, auth.login(store, "rev", PASSWORD)[0])
    lead = auth.user_for_token(store, auth.login(store, "lead1", PASSWORD)[0])
    alice = auth.user_for_token(store, auth.login(store, "alice", PASSWORD)[0])
    assert rev and lead and alice
    reviews.override(store, rev, "K", "agent_interruptions", -1.0, "the second was the customer's pause")
    d = reviews.dispute(store, alice, "K", "dead_air", "the system was down")
    reviews.resolve(store, lead, d.id, "upheld", "outage", points=3.0)
    html = page(admin, "K")
    total, shown = adds_up(html)
    assert total == shown == 80 - 1 + 2 + 3 + 5 == store.db.scalar("SELECT score FROM calls WHERE call_id = 'K'")
    assert cell(row(html, "agent_interruptions"), "auto") == "-6 (3\u00d7)"
    assert cell(row(html, "agent_interruptions"), "eff").startswith("-1")
    assert "changed by a review" in row(html, "dead_air")


def test_a_rule_inside_its_allowance_says_so(site: Store) -> None:
    admin = client(site, "admin")
    en = row(page(admin, "A"), "agent_interruptions")
    assert 'data-state="within_allowance"' in en
    assert cell(en, "auto") == "within allowance" and cell(en, "eff") == "within allowance"
    assert "1 of 1 free" in en and "-0" not in en and "+0" not in en
    zh = row(page(admin, "A", "zh-CN"), "agent_interruptions")
    assert cell(zh, "auto") == "免扣范围内" and "-0" not in zh
    # the known call's three interruptions pass the allowance: two of them cost points
    k = row(page(admin, "K"), "agent_interruptions")
    assert 'data-state="applied"' in k and "3 found · first 1 free" in k and "-3 each · first 1 free" in k


def test_not_applicable_stays_not_applicable_after_review(site: Store) -> None:
    store = site
    admin = client(store, "admin")
    before = row(page(admin, "K"), "calm_with_angry_customer")
    assert cell(before, "auto") == cell(before, "eff") == "not applicable"
    rev = auth.user_for_token(store, auth.login(store, "rev", PASSWORD)[0])
    lead = auth.user_for_token(store, auth.login(store, "lead1", PASSWORD)[0])
    alice = auth.user_for_token(store, auth.login(store, "alice", PASSWORD)[0])
    assert rev and lead and alice
    reviews.override(store, rev, "K", "dead_air", 0.0, "the pause was a hold")  # another rule reviewed
    d = reviews.dispute(store, alice, "K", "calm_with_angry_customer", "I was calm")
    reviews.resolve(store, lead, d.id, "rejected", "the customer was not angry")
    html = page(admin, "K")
    after = row(html, "calm_with_angry_customer")
    assert cell(after, "auto") == cell(after, "eff") == "not applicable"
    assert "+0" not in after and 'data-applicable="0"' in after
    zh = row(page(admin, "K", "zh-CN"), "calm_with_angry_customer")
    assert cell(zh, "eff") == "不适用"
    # a reviewer who does give it points makes it count, and the page says so
    reviews.override(store, rev, "K", "calm_with_angry_customer", 2.0, "calm in the recording")
    html = page(admin, "K")
    given = row(html, "calm_with_angry_customer")
    assert cell(given, "auto") == "not applicable" and cell(given, "eff").startswith("+2")
    assert adds_up(html)[0] == adds_up(html)[1]


def test_evidence_reads_as_sentences_with_units(site: Store) -> None:
    admin = client(site, "admin")
    en = page(admin, "A")
    quick = row(en, "quick_responses")
    assert "Agent answered in 0.85 s on average after the customer stopped (credit when under 1.0 s)" in quick
    talk = row(en, "agent_talk_ratio")
    assert "Agent talked 55 % of the time (deduction when over 70 %)" in talk
    assert "Longest agent monologue: 20.0 s (deduction when over 60.0 s)" in row(en, "long_monologue")
    assert "Agent did not shout" in row(en, "agent_shouting")
    assert "15.0\u201316.0 s · 1.0 s" in row(en, "agent_interruptions")
    zh = page(admin, "A", "zh-CN")
    assert "客户说完后坐席平均 0.85秒 回应 (低于 1.0秒 时加分)" in row(zh, "quick_responses")
    assert "坐席说话时间占 55% (超过 70% 时扣分)" in row(zh, "agent_talk_ratio")
    assert "15.0\u201316.0秒 · 1.0秒" in row(zh, "agent_interruptions")
    x = page(admin, "X")
    assert "20.0\u201324.0 s · Customer angry" in row(x, "calm_with_angry_customer")
    for html in (en, zh, x, page(admin, "K"), page(admin, "X", "zh-CN")):
        table = html[html.index('<table id="breakdown">') : html.index("</table>", html.index('id="breakdown"'))]
        assert not RAW_OPERATOR.search(table), RAW_OPERATOR.search(table)
        evidence = re.findall(r'<td class="evidence">(.*?)</td>', table, re.S)
        words = [unescape(re.sub(r"<[^>]+>", "", e)) for e in evidence]
        assert words and all(re.search(r"\d( s|秒|%| %)", e) or not re.search(r"\d", e) for e in words), words


def test_legend_agent_name_and_site_time(site: Store) -> None:
    admin = client(site, "admin")
    for lang, words in (("en", ("Agent speaking", "Dead air (nobody speaking)")), ("zh-CN", ("坐席说话", "冷场"))):
        html = page(admin, "K", lang)
        legend = re.search(r'<ul class="legend" id="legend">(.*?)</ul>', html, re.S)
        assert legend
        keys = re.findall(r'data-key="([a-z_]+)"', legend.group(1))
        assert set(keys) >= set(COLORS) and "mark" in keys  # every colour the timeline draws, explained
        assert all(COLORS[k] in legend.group(1) for k in COLORS)
        assert all(w in legend.group(1) for w in words)
        assert re.search(r'<a id="agent" href="/agents/a1"[^>]*>Alice Wang</a>', html)
        assert "2026-01-05 09:07" in html  # started in Shanghai time (UTC+8), not UTC
    api = admin.get("/api/calls/K").json()
    assert api["call"]["agent_name"] == "Alice Wang" and api["score"]["base"] == 80


def test_history_lists_rescores_reviews_and_disputes(site: Store) -> None:
    store = site
    rev = auth.user_for_token(store, auth.login(store, "rev", PASSWORD)[0])
    lead = auth.user_for_token(store, auth.login(store, "lead1", PASSWORD)[0])
    alice = auth.user_for_token(store, auth.login(store, "alice", PASSWORD)[0])
    assert rev and lead and alice
    card = load(DEFAULT_SCORECARD)[0]
    Scorer(store).rescore(card)
    reviews.override(store, rev, "K", "dead_air", 0.0, "a hold")
    d = reviews.dispute(store, alice, "K", None, "the whole call was fine")
    reviews.resolve(store, lead, d.id, "rejected", "it was not")
    reviews.dispute(store, alice, "K", "agent_interruptions", "the line lagged")  # still open
    html = page(client(store, "lead1"), "K")
    hist = html[html.index('<table id="history">') :]
    kinds = re.findall(r'<tr class="h-[a-z]+" data-kind="([a-z]+)">', hist)
    assert kinds.count("score") == 2 and kinds.count("override") == 1 and kinds.count("dispute") == 2
    assert kinds[0] == "score"  # the first score comes first
    assert "Scored automatically" in hist and "Re-scored" in hist
    assert 'data-status="rejected"' in hist and 'data-status="open"' in hist and 'data-status="applied"' in hist
    assert "resolved by lead1" in hist and "it was not" in hist and "the line lagged" in hist
    assert re.search(r"<td>\d{4}-\d\d-\d\d \d\d:\d\d</td>", hist) and not re.search(r"<td>\d{4}-\d\d-\d\dT", hist)
    zh = page(client(store, "lead1"), "K", "zh-CN")
    assert "申诉驳回" in zh and "待处理" in zh and "重新评分" in zh


def test_calibrations_are_listed_blind_like_the_calibration(site: Store) -> None:
    store = site
    lead = auth.user_for_token(store, auth.login(store, "lead1", PASSWORD)[0])
    assert lead
    calibration.submit(store, lead, "K", {"agent_interruptions": -3.0, "dead_air": -2.0})
    # a reviewer who has not calibrated the call sees how many did, not their points (API and page)
    rev = client(store, "rev")
    k = rev.get("/api/calls/K").json()["calibrations"]
    assert k == {"reviewers": 1, "visible": False, "scores": []}
    # the agent sees the count on the page, never the points
    html = page(client(store, "alice"), "K")
    assert re.search(r'<p id="calibrators">Reviewers who calibrated this call: 1</p>', html)
    assert 'id="calibrations"' not in html
    # an admin sees every reviewer's points
    k = client(store, "admin").get("/api/calls/K").json()["calibrations"]
    assert k["visible"] and {(s["reviewer"], s["rule_id"], s["points"]) for s in k["scores"]} == {
        ("lead1", "agent_interruptions", -3.0),
        ("lead1", "dead_air", -2.0),
    }


def test_the_page_loads_nothing_from_another_host(site: Store) -> None:
    html = page(client(site, "admin"), "K")
    refs = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert refs and not [r for r in refs if r.startswith(("http:", "https:", "//"))]
    assert "<script src" not in html and "@import" not in html


# --- real Chromium: a click on a deduction marks its moment on the timeline ----------------------------------------


def test_clicking_a_deduction_marks_its_moment(browser: Any, hub: Hub) -> None:  # noqa: F811 - the fixtures
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    d = browser
    login(d, hub, "admin")
    for lang in ("en", "zh-CN"):
        d.get(f"{hub.url}/calls/fixed-time?lang={lang}")
        svg = d.find_element(By.CSS_SELECTOR, "#timeline svg")
        assert not svg.find_elements(By.CSS_SELECTOR, "rect.mark") and svg.get_attribute("data-marked") is None
        left, scale = float(svg.get_attribute("data-left")), float(svg.get_attribute("data-scale"))
        rule = d.find_element(By.CSS_SELECTOR, 'tr.rule[data-rule="agent_interruptions"]')
        rule.find_element(By.CSS_SELECTOR, "td").click()
        WebDriverWait(d, 5).until(lambda drv: len(drv.find_elements(By.CSS_SELECTOR, "#timeline rect.mark")) == 3)
        assert svg.get_attribute("data-marked") == "15.0-16.0 50.0-51.0 130.0-131.0"
        assert "selected" in (rule.get_attribute("class") or "")
        marks = svg.find_elements(By.CSS_SELECTOR, "rect.mark")
        assert abs(float(marks[0].get_attribute("x")) - (left + 15.0 * scale - 2)) < 0.2  # at 15 s on the axis
        shot(d, f"call-marked-{lang}")
        # one piece of evidence of another rule: only its moment, and that rule's row is the selected one
        dead = d.find_element(By.CSS_SELECTOR, 'tr.rule[data-rule="dead_air"]')
        dead.find_element(By.CSS_SELECTOR, "a.ev").click()
        WebDriverWait(d, 5).until(
            lambda drv: drv.find_element(By.CSS_SELECTOR, "#timeline svg").get_attribute("data-marked") == "30.0-36.0"
        )
        assert len(svg.find_elements(By.CSS_SELECTOR, "rect.mark")) == 1
        assert "selected" in (dead.get_attribute("class") or "") and "selected" not in (
            rule.get_attribute("class") or ""
        )
        assert len(d.find_elements(By.CSS_SELECTOR, "#legend li")) == len(COLORS) + 1
