"""The rule validity page (`/validity`, hub/web/validity_pages.py, issue 22) on a hub whose calls are scored from
their events and given simulated outcomes with planted rules: in a real headless Chromium per role (admin, QA
reviewer and team lead read it, an agent is refused) and language (en, zh-CN), it shows each planted rule's
verdict, the explanation, the simulated banner, and a CSV export link that works for that user; two versions
compared side by side; bad and unknown parameters refused in one line and counted. And the outcome import page
(/outcomes) for the roles tests/test_hub_outcomes.py does not open in the browser (admin, team lead)."""

from __future__ import annotations

import csv
import html
import io
import random
import re
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hub import outcomes
from hub.auth import create_user, get_user
from hub.scorecard import DEFAULT_SCORECARD, load
from hub.scores import Scorer, get_scorecard, import_scorecard
from hub.storage import Store
from hub.web.validity_pages import REFUSED_PREFIX
from tests.hub_support import SUMMARY, Station, api_client, ingest, populated_file, store_copy
from tests.test_hub_browser import PASSWORD, Hub, browser, login, served, shot  # noqa: F401 - browser: fixture

T0 = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)
USERS = {  # name: (role, agent, team)
    "admin": ("admin", None, None),
    "rev": ("reviewer", None, None),
    "lead1": ("lead", None, "t1"),
    "alice": ("agent", "a1", None),
}
CALLS = 160
# the planted truth: slow responses (a deduction) cost satisfaction, so the rule predicts; long monologues (a
# deduction) go with *higher* satisfaction, so the rule is contrary; monotone delivery changes nothing
PLANTED = {"slow_responses": "predicts", "long_monologue": "contrary", "monotone_agent": "no_evidence"}
VERDICT_TEXT = {
    "en": {"predicts": "predicts", "contrary": "contrary", "no_evidence": "no evidence"},
    "zh-CN": {"predicts": "有预测力", "contrary": "相反", "no_evidence": "无证据"},
}
TEXTS = {  # the banner, a phrase of the explanation, the title of the slow-responses rule
    "en": (
        "These outcomes are simulated by the demo, not measured.",
        "similar length and with the same customer mood at the start",
        "Slow responses (mean over 3 s after the customer stops)",
    ),
    "zh-CN": (
        "这些通话结果是演示程序模拟的, 并非实际测量。",
        "客户开场情绪相同",
        "回应迟缓（客户说完后平均超过 3 秒）",  # noqa: RUF001 - the scorecard's own brackets
    ),
}
# version 2 turns the long monologue into a credit: the rule then agrees with the outcome
VERSION_2 = ("version: 1", "version: 2"), ("    value: 60\n    points: -3", "    value: 60\n    points: 2")


def populate(store: Store) -> None:
    store.put_site("sh", "Shanghai", "Asia/Shanghai")
    store.put_team("t1", "Team One", "sh")
    store.put_team("t2", "Team Two", "sh")
    store.put_agent("a1", "Alice Wang", "t1")
    store.put_agent("a3", "Chen Jie", "t2")
    rng = random.Random(22)  # noqa: S311 - synthetic test data
    stations = [Station("sh", f"s{i:02d}") for i in range(8)]
    envs, csat = [], {}
    for i in range(CALLS):
        slow, mono, monologue = rng.random() < 0.5, rng.random() < 0.5, rng.random() < 0.5
        summary = dict(SUMMARY, duration=300.0, agent_response_latency_mean=3.5 if slow else 1.5,
                       monotone_agent=mono, longest_agent_monologue=90.0 if monologue else 20.0)  # fmt: skip
        call = f"call-{i:03d}"
        end = (T0 + timedelta(minutes=i)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        envs += stations[i % 8].call(call, end, agent=("a1", "a3")[i % 2], summary=summary)
        csat[call] = min(5.0, max(1.0, round(3.5 - 1.2 * slow + 1.0 * monologue + rng.gauss(0, 0.5), 1)))
    ingest(store, envs)
    for user, (role, agent, team) in USERS.items():
        create_user(store, user, PASSWORD, role, agent_id=agent, team_id=team)
    admin = get_user(store, "admin")
    assert admin is not None
    rows: list[tuple[int, dict[str, object]]] = [
        (n, {"call_id": c, "csat": y}) for n, (c, y) in enumerate(csat.items(), 2)
    ]
    result = outcomes.import_rows(store, admin, rows, source="simulated", filename="simulated by the test")
    assert result.imported == CALLS, result.to_dict()
    # a second version, imported without activating it, and every past call re-scored with it
    text = store.db.scalar("SELECT body FROM scorecards WHERE name = 'default' AND version = 1")
    for old, new in VERSION_2:
        assert old in text
        text = text.replace(old, new)
    card = import_scorecard(store, text, activate=False)
    Scorer(store).rescore(card)
    assert get_scorecard(store) is not None and get_scorecard(store).version == 1  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One populated SQLite file (ingesting, scoring and re-scoring the calls once), copied per use."""
    return populated_file(tmp_path_factory.mktemp("validity-pages"), populate)


@pytest.fixture
def world(base: Path, tmp_path: Path) -> Iterator[Store]:
    with store_copy(base, tmp_path) as store:
        yield store


@pytest.fixture(scope="module")
def validity_hub(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    path = tmp_path_factory.mktemp("validity-browser") / "hub.sqlite"
    path.write_bytes(base.read_bytes())
    with served(Store(path, default_tz="Asia/Shanghai")) as h:
        yield h


def verdicts(html_rows: list[Any]) -> dict[str, str]:
    return {r.get_attribute("data-rule"): r.get_attribute("data-verdict") for r in html_rows}


# --- in a real browser ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_the_page_per_role_and_language(browser: Any, validity_hub: Hub, lang: str) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    d, hub = browser, validity_hub
    banner, explained, slow_title = TEXTS[lang]
    for user in ("admin", "rev", "lead1"):
        login(d, hub, user)
        d.get(f"{hub.url}/agents?lang={lang}")
        d.find_element(By.ID, "nav-validity").click()  # the nav leads there
        WebDriverWait(d, 15).until(lambda drv: drv.find_elements(By.ID, "va-rules"))
        assert d.current_url.endswith("/validity")
        rows = d.find_elements(By.CSS_SELECTOR, "#va-rules tr.va-rule")
        got = verdicts(rows)
        assert {rule: got[rule] for rule in PLANTED} == PLANTED, got
        for row in rows:
            rule = row.get_attribute("data-rule")
            if rule in PLANTED:  # the verdict in words, in the page's language, not only its colour
                assert VERDICT_TEXT[lang][PLANTED[rule]] in row.find_element(By.CSS_SELECTOR, ".verdict").text
        slow = d.find_element(By.CSS_SELECTOR, 'tr.va-rule[data-rule="slow_responses"]')
        assert slow.find_element(By.CSS_SELECTOR, "td").text == slow_title
        assert d.find_element(By.ID, "va-simulated").text == banner
        assert explained in d.find_element(By.ID, "va-explain-adj").text
        assert d.find_element(By.ID, "va-admin-link").get_attribute("href").endswith("/admin/scorecards")
        assert d.find_element(By.ID, "va-total").get_attribute("data-verdict") in ("predicts", "no_evidence")
        strata = {c.get_attribute("data-bin"): int(c.text) for c in d.find_elements(By.CSS_SELECTOR, "td.stratum")}
        assert sum(int(c.text) for c in d.find_elements(By.CSS_SELECTOR, "td.stratum")) == CALLS and strata
        # the CSV export link works for this user's session
        href = d.find_element(By.ID, "va-csv").get_attribute("href")
        cookie = "; ".join(f"{c['name']}={c['value']}" for c in d.get_cookies())
        with urllib.request.urlopen(urllib.request.Request(href, headers={"Cookie": cookie}), timeout=30) as r:
            assert r.status == 200 and r.headers["content-type"].startswith("text/csv")
            body = r.read()
        table = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
        assert len(table) > len(PLANTED) and any(slow_title in cell for row in table for cell in row)
        shot(d, f"validity-{user}-{lang}")

    # the compare view: version 1 beside version 2, where the monologue rule became a credit
    d.get(f"{hub.url}/validity?version=1&compare=2&lang={lang}")
    WebDriverWait(d, 15).until(lambda drv: drv.find_elements(By.ID, "va-compare-rules"))
    row = d.find_element(By.CSS_SELECTOR, 'tr.va-compare-rule[data-rule="long_monologue"]')
    cells = row.find_elements(By.CSS_SELECTOR, ".verdict")
    assert [c.get_attribute("data-verdict") for c in cells] == ["contrary", "predicts"]
    assert d.find_element(By.ID, "va-compare-other").get_attribute("data-verdict")
    shot(d, f"validity-compare-{lang}")

    login(d, hub, "alice")  # an agent: no link, and the page is refused
    d.get(f"{hub.url}/validity?lang={lang}")
    assert d.find_element(By.ID, "error-status").text == "403"
    assert not d.find_elements(By.ID, "va-rules") and not d.find_elements(By.ID, "nav-validity")


@pytest.mark.parametrize(
    ("lang", "title", "all_done", "some_done"),
    [
        ("en", "Import call outcomes", "Imported 2 of 2 rows", "Imported 1 of 2 rows"),
        ("zh-CN", "导入通话结果", "已导入 2 行中的 2 行", "已导入 2 行中的 1 行"),
    ],
)
def test_the_outcome_page_for_admin_and_lead(
    browser: Any,  # noqa: F811
    validity_hub: Hub,
    tmp_path: Path,
    lang: str,
    title: str,
    all_done: str,
    some_done: str,
) -> None:
    """tests/test_hub_outcomes.py walks the upload as a QA reviewer and refuses an agent, in both languages; here
    the admin and a team lead, whose import takes their own team's call and reports the other team's as not
    found, exactly like a call that does not exist."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    d, hub = browser, validity_hub
    upload = tmp_path / "outcomes.csv"
    # call-000 is Alice's (team 1), call-001 Chen's (team 2)
    upload.write_text("call_id,fcr\ncall-000,1\ncall-001,0\n")
    for user, reason in (("admin", None), ("lead1", "no call 'call-001'")):
        login(d, hub, user)
        d.get(f"{hub.url}/agents?lang={lang}")
        d.find_element(By.ID, "nav-outcomes").click()
        WebDriverWait(d, 15).until(lambda drv: drv.find_elements(By.ID, "oc-form"))
        assert d.find_element(By.TAG_NAME, "h1").text == title
        d.find_element(By.ID, "oc-file").send_keys(str(upload))
        d.find_element(By.ID, "oc-partial").click()
        d.find_element(By.ID, "oc-submit").click()
        WebDriverWait(d, 15).until(lambda drv: drv.find_elements(By.ID, "oc-done"))
        assert d.find_element(By.ID, "oc-done").text.startswith(all_done if reason is None else some_done)
        if reason is not None:
            problem = d.find_element(By.CSS_SELECTOR, "tr.oc-problem")
            assert problem.get_attribute("data-line") == "3" and reason in problem.text
        shot(d, f"outcomes-{user}-{lang}")


# --- the page's parameters (the app through TestClient) -----------------------------------------------------------


def test_bad_and_unknown_parameters_are_refused_in_one_line_and_counted(world: Store) -> None:
    c = api_client(world, "rev", PASSWORD)
    before = sum(v for k, v in world.counters().items() if k.startswith(REFUSED_PREFIX))
    cases = [
        ("version=abc", 422, None),
        ("version=99999999999", 422, None),
        ("better=up&outcome=custom.nps", 422, None),
        ("outcome=DROP%20TABLE", 422, None),
        ("scorecard=" + "x" * 200, 422, None),
        ("version=7", 404, "no version 7"),
        ("outcome=complaint", 404, "no outcome 'complaint'"),
        ("scorecard=other", 404, "no scorecard 'other'"),
        ("version=1&compare=1", 404, "no other version 1"),
        ("compare=9", 404, "no other version 9"),
    ]
    for query, status, text in cases:
        r = c.get(f"/validity?{query}&lang=en")
        assert r.status_code == status, (query, r.status_code)
        assert 'id="error-status"' in r.text and 'id="va-rules"' not in r.text
        if text is not None:
            assert text in html.unescape(r.text), query
    after = sum(v for k, v in world.counters().items() if k.startswith(REFUSED_PREFIX))
    assert after - before == len(cases)
    page = c.get("/validity?lang=en").text  # the count is on the page
    assert f'<span id="va-refused-count">{after}</span>' in page


def test_the_page_reads_the_report_of_the_version_asked_for(world: Store) -> None:
    c = api_client(world, "lead1", PASSWORD)
    v1 = c.get("/validity?version=1&lang=en").text
    v2 = c.get("/validity?version=2&lang=en").text
    assert 'data-rule="long_monologue" data-verdict="contrary"' in v1
    assert 'data-rule="long_monologue" data-verdict="predicts"' in v2
    # the explanation names how many rules the intervals were widened for, and by how much (the report's own z)
    rep = c.get("/api/validity/default/1?outcome=csat").json()
    tested = sum(x["verdict"] in ("predicts", "no_evidence", "contrary") for x in rep["rules"])
    assert f"Because {tested} rules are tested at once" in v1 and f"(z = {rep['z']:.2f} instead of 1.96)" in v1
    assert 3 <= tested < len(rep["rules"])  # rules that never fire here (interruptions...) are not counted
    # the export links name the version shown and the page's language
    assert 'href="/api/validity/default/2?outcome=csat&amp;lang=en&amp;format=csv"' in v2
    zh = c.get("/validity?version=2&lang=zh-CN").text
    assert "lang=zh-CN&amp;format=csv" in zh and "如何阅读本页" in zh


def test_a_custom_outcome_takes_the_direction_asked_for(world: Store) -> None:
    """A custom outcome has no direction of its own: the form offers it, the report reads it, the links keep it."""
    admin = get_user(world, "admin")
    assert admin is not None
    calls = [str(c) for (c,) in world.db.all("SELECT call_id FROM calls ORDER BY call_id")]
    # handle time in minutes: the slow responders' calls run longer (lower is better)
    rows: list[tuple[int, dict[str, object]]] = []
    for n, call in enumerate(calls, 2):
        slow = world.db.scalar(
            "SELECT COUNT(*) FROM call_rules WHERE call_id = ? AND rule_id = 'slow_responses' AND auto_points <> 0",
            (call,),
        )
        rows.append((n, {"call_id": call, "custom.aht": 6.0 + 3.0 * bool(slow) + (n % 5) / 10}))
    assert outcomes.import_rows(world, admin, rows, source="test").imported == len(calls)
    c = api_client(world, "rev", PASSWORD)
    page = c.get("/validity?outcome=custom.aht&better=lower&lang=en").text
    assert '<select name="better" id="va-better">' in page and '<option value="lower" selected>' in page
    assert '<strong id="va-direction">lower</strong>' in page
    assert 'data-rule="slow_responses" data-verdict="predicts"' in page  # a deduction with longer calls
    assert "outcome=custom.aht&amp;lang=en&amp;better=lower&amp;format=csv" in page
    higher = c.get("/validity?outcome=custom.aht&better=higher&lang=en").text
    assert 'data-rule="slow_responses" data-verdict="contrary"' in higher
    # a standard outcome has its own direction: no choice offered, and a `better` sent is not applied
    csat = c.get("/validity?outcome=csat&better=lower&lang=en").text
    assert 'id="va-better"' not in csat and '<strong id="va-direction">higher</strong>' in csat


def test_the_page_on_both_backends(hub_store: Store) -> None:
    """The same hub built on SQLite and PostgreSQL: the page shows the planted verdicts on both."""
    populate(hub_store)
    page = api_client(hub_store, "lead1", PASSWORD).get("/validity?lang=zh-CN").text
    for rule, verdict in PLANTED.items():
        assert f'data-rule="{rule}" data-verdict="{verdict}"' in page, rule
    assert 'id="va-simulated"' in page
    # every call is 5 minutes long with no anger measured: one stratum holds them all, the other 14 cells are 0
    cells = [int(n) for n in re.findall(r'<td class="num stratum" data-bin="\d" data-anger="\d">(\d+)</td>', page)]
    assert len(cells) == 15 and sorted(cells)[-2:] == [0, CALLS]


def test_a_hub_without_outcomes_says_so(tmp_path: Path) -> None:
    store = Store(tmp_path / "hub.sqlite", default_tz="Asia/Shanghai")
    try:
        import_scorecard(store, load(DEFAULT_SCORECARD)[1])
        create_user(store, "rev", PASSWORD, "reviewer")
        for lang, text in (("en", "No outcomes imported"), ("zh-CN", "尚未导入结果")):
            r = api_client(store, "rev", PASSWORD).get(f"/validity?lang={lang}")
            assert r.status_code == 200 and 'id="va-none"' in r.text and text in r.text
            assert 'id="va-rules"' not in r.text
    finally:
        store.close()


def test_an_agent_gets_403_and_no_session_the_login(world: Store) -> None:
    assert api_client(world, "alice", PASSWORD).get("/validity").status_code == 403
    anon = TestClient(api_client(world, "admin", PASSWORD).app)
    r = anon.get("/validity", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
