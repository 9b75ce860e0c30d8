"""Call outcomes (hub/outcomes.py, issue 22): imported by the JSON/CSV API and by a CSV upload in a real headless
Chromium, matched by CTI call id or by seat and time window (ambiguous = unmatched), all or nothing unless the
importer chose the rows that match, bounded and counted when refused, scoped for a team lead, shown on the call
page in both languages, and the same on PostgreSQL."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hub import outcomes
from hub.auth import User, create_user
from hub.scorecard import DEFAULT_SCORECARD, load
from hub.scores import import_scorecard
from hub.storage import Store
from hub.web.limits import COUNTER, DEFAULT_LIMIT
from tests.hub_support import Station, api_client, ingest, populated_file, store_copy
from tests.test_hub_browser import PASSWORD, Hub, browser, login, served, shot  # noqa: F401 - browser: fixture

USERS = {  # name: (role, agent, team)
    "admin": ("admin", None, None),
    "rev": ("reviewer", None, None),
    "lead1": ("lead", None, "t1"),
    "alice": ("agent", "a1", None),
}
# (call, seat, agent, end time): s03's two calls start 60 s apart, so a time between them is ambiguous
CALLS = [
    ("c1", "s01", "a1", "2026-01-05T01:10:00.000Z"),
    ("c2", "s01", "a1", "2026-01-05T01:30:00.000Z"),
    ("c3", "s02", "a3", "2026-01-05T01:10:00.000Z"),
    ("c4", "s03", "a1", "2026-01-05T02:00:00.000Z"),
    ("c5", "s03", "a1", "2026-01-05T02:01:00.000Z"),
]


def populate(store: Store) -> None:
    store.put_site("sh", "Shanghai", "Asia/Shanghai")
    store.put_team("t1", "Team One", "sh")
    store.put_team("t2", "Team Two", "sh")
    store.put_agent("a1", "Alice Wang", "t1")
    store.put_agent("a3", "Chen Jie", "t2")
    stations: dict[str, Station] = {}
    envs = []
    for call, seat, agent, end in CALLS:
        envs += stations.setdefault(seat, Station("sh", seat)).call(call, end, agent=agent)
    ingest(store, envs)
    for user, (role, agent, team) in USERS.items():
        create_user(store, user, PASSWORD, role, agent_id=agent, team_id=team)


def started(store: Store, call: str) -> float:
    return float(store.db.scalar("SELECT started FROM calls WHERE call_id = ?", (call,)))


def local(t: float) -> str:
    """A CTI export's time: Shanghai local time without an offset (the site's zone applies)."""
    return datetime.fromtimestamp(t, UTC).astimezone(outcomes.zone("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M:%S")


def to_csv(rows: list[dict[str, Any]]) -> bytes:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    out = io.StringIO()
    w = csv.DictWriter(out, columns, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return out.getvalue().encode()


def stored(store: Store) -> list[tuple[Any, ...]]:
    return store.db.all("SELECT call_id, name, value, window_days, imported_by FROM call_outcomes ORDER BY 1, 2")


def session(store: Store, user: str) -> TestClient:
    return api_client(store, user, PASSWORD)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One populated SQLite file, copied per test (ingesting and scoring the calls once)."""
    return populated_file(tmp_path_factory.mktemp("outcomes"), populate)


@pytest.fixture
def world(base: Path, tmp_path: Path) -> Iterator[Store]:
    with store_copy(base, tmp_path) as store:
        yield store


def test_api_imports_by_cti_id_and_by_seat_and_time(world: Store) -> None:
    c = session(world, "admin")
    c2_local = local(started(world, "c2") + 40)  # 40 s after c2 started, in the site's local time
    body = {
        "rows": [
            {"call_id": "c1", "csat": 4, "fcr": True, "custom": {"nps": 9}},
            {"seat": "s01", "ts": c2_local, "complaint": "yes", "repeat": 1, "repeat_days": 7},
        ]
    }
    r = c.post("/api/outcomes/import", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["ok"], got["imported"], got["outcomes"], got["problems"]) == (True, 2, 5, [])
    assert stored(world) == [
        ("c1", "csat", 4.0, None, "admin"),
        ("c1", "custom.nps", 9.0, None, "admin"),
        ("c1", "fcr", 1.0, None, "admin"),
        ("c2", "complaint", 1.0, None, "admin"),
        ("c2", "repeat", 1.0, 7, "admin"),
    ]
    assert {r[0] for r in world.db.all("SELECT import_id FROM call_outcomes")} == {got["import_id"]}
    assert world.db.one("SELECT rows_total, rows_imported, source FROM outcome_imports") == (2, 2, "api")
    # a second import of the same call and outcome replaces it and says where the new value came from
    r = c.post("/api/outcomes/import", content=b"call_id,csat\nc1,2\n", headers={"content-type": "text/csv"})
    assert r.status_code == 200 and r.json()["imported"] == 1, r.text
    assert world.db.one("SELECT value, import_id FROM call_outcomes WHERE call_id = 'c1' AND name = 'csat'") == (
        2.0,
        r.json()["import_id"],
    )
    # the call's outcomes through the API, with their provenance
    got_call = c.get("/api/calls/c2/outcomes").json()
    assert [(o["name"], o["value"], o["window_days"]) for o in got_call] == [
        ("repeat", 1.0, 7),
        ("complaint", 1.0, None),
    ]
    assert all(o["imported_by"] == "admin" and o["imported_at"] for o in got_call)


def test_any_bad_row_imports_nothing_unless_partial(world: Store) -> None:
    c = session(world, "rev")
    between = started(world, "c4") + 30  # within 120 s of both s03 calls
    far = started(world, "c1") + 3600  # an hour after c1: no call on s01 then
    data = to_csv([
        {"call_id": "c1", "seat": "", "ts": "", "csat": "5", "fcr": "1"},  # line 2: good
        {"call_id": "", "seat": "s03", "ts": local(between), "csat": "3", "fcr": ""},  # 3: ambiguous
        {"call_id": "nope", "seat": "", "ts": "", "csat": "4", "fcr": ""},  # 4: no such call
        {"call_id": "c2", "seat": "", "ts": "", "csat": "7", "fcr": ""},  # 5: out of range
        {"call_id": "", "seat": "s01", "ts": local(far), "csat": "2", "fcr": ""},  # 6: nothing in the window
        {"call_id": "c1", "seat": "", "ts": "", "csat": "", "fcr": "maybe"},  # 7: not a yes/no
        {"call_id": "c1", "seat": "", "ts": "", "csat": "1", "fcr": ""},  # 8: c1 again
    ])  # fmt: skip
    r = c.post("/api/outcomes/import", content=data, headers={"content-type": "text/csv"})
    assert r.status_code == 422, r.text
    got = r.json()
    assert (got["ok"], got["refused"], got["imported"], got["total"]) == (False, "bad_rows", 0, 7)
    reasons = {p["line"]: p["reason"] for p in got["problems"]}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8]
    assert reasons[3].startswith("ambiguous: 2 calls on seat 's03'") and "c4" in reasons[3] and "c5" in reasons[3]
    assert reasons[4] == "no call 'nope'"
    assert "outside its range 1..5" in reasons[5]
    assert reasons[6].startswith("no call on seat 's01'")
    assert "not yes/no" in reasons[7]
    assert reasons[8].startswith("the same call as line 2")
    assert stored(world) == [] and world.db.scalar("SELECT COUNT(*) FROM outcome_imports") == 0
    assert world.counters()["outcome_import_refused.bad_rows"] == 1

    r = c.post("/api/outcomes/import?partial=true", content=data, headers={"content-type": "text/csv"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["ok"], got["imported"], got["unmatched"], got["partial"]) == (True, 1, 6, True)
    assert stored(world) == [("c1", "csat", 5.0, None, "rev"), ("c1", "fcr", 1.0, None, "rev")]
    assert world.counters()["outcome_rows_skipped"] == 6
    assert world.db.one("SELECT rows_total, rows_imported, rows_unmatched, partial FROM outcome_imports") == (
        7,
        1,
        6,
        1,
    )


def test_seat_window_matches_the_one_call_and_the_window_is_the_importers(world: Store) -> None:
    c = session(world, "admin")
    t = started(world, "c4") - 50  # 50 s before c4, 110 s before c5
    rows = {"rows": [{"seat": "s03", "site": "sh", "ts": datetime.fromtimestamp(t, UTC).isoformat(), "csat": 3}]}
    r = c.post("/api/outcomes/import?window_s=60", json=rows)
    assert r.status_code == 200 and r.json()["imported"] == 1, r.text
    assert stored(world) == [("c4", "csat", 3.0, None, "admin")]
    r = c.post("/api/outcomes/import", json=rows)  # the default 120 s window holds both: ambiguous
    assert r.status_code == 422 and r.json()["problems"][0]["reason"].startswith("ambiguous"), r.text
    r = c.post("/api/outcomes/import?window_s=99999", json=rows)
    assert r.status_code == 400 and r.json()["refused"] == "bad_window", r.text


def test_a_lead_imports_only_for_their_team_and_an_agent_not_at_all(world: Store) -> None:
    lead = session(world, "lead1")
    body = {"rows": [{"call_id": "c1", "csat": 5}, {"call_id": "c3", "csat": 1}, {"call_id": "zz", "csat": 1}]}
    r = lead.post("/api/outcomes/import", json=body)
    assert r.status_code == 422, r.text
    # another team's call reads exactly like a call that does not exist
    assert [p["reason"] for p in r.json()["problems"]] == ["no call 'c3'", "no call 'zz'"]
    r = lead.post("/api/outcomes/import", json={**body, "partial": True})
    assert r.status_code == 200 and r.json()["imported"] == 1, r.text
    assert stored(world) == [("c1", "csat", 5.0, None, "lead1")]
    assert lead.get("/api/calls/c3/outcomes").status_code == 404

    agent = session(world, "alice")
    r = agent.post("/api/outcomes/import", json={"rows": [{"call_id": "c1", "csat": 1}]})
    assert r.status_code == 403
    assert agent.get("/outcomes").status_code == 403
    assert stored(world) == [("c1", "csat", 5.0, None, "lead1")]
    assert agent.get("/api/calls/c1/outcomes").json()[0]["value"] == 5.0  # she sees her own call's outcomes


def test_oversize_and_bad_input_are_refused_and_counted(world: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    c = session(world, "admin")
    csv_type = {"content-type": "text/csv"}
    big = b"call_id,csat\n" + b"c1,4\n" * (outcomes.MAX_BYTES // 5 + 1)
    assert len(big) > outcomes.MAX_BYTES
    r = c.post("/api/outcomes/import", content=big, headers=csv_type)
    assert r.status_code == 413 and r.json()["refused"] == "oversize", r.text[:200]
    monkeypatch.setattr(outcomes, "MAX_ROWS", 3)
    r = c.post("/api/outcomes/import", content=b"call_id,csat\n" + b"c1,4\n" * 4, headers=csv_type)
    assert r.status_code == 413 and r.json()["refused"] == "too_many_rows", r.text
    r = c.post("/api/outcomes/import", content=b"call_id,csta\nc1,4\n", headers=csv_type)  # a misspelt column
    assert r.status_code == 400 and r.json()["refused"] == "bad_columns", r.text
    assert "'csta'" in r.json()["problems"][0]["reason"]
    r = c.post("/api/outcomes/import", content=b"\x00\x01\xff\xfe" * 10, headers=csv_type)
    assert r.status_code == 400 and r.json()["refused"] == "bad_csv", r.text
    r = c.post("/api/outcomes/import", content=b'call_id,csat\n"c1,4\n', headers=csv_type)  # unterminated quote
    assert r.status_code in (400, 422), r.text
    r = c.post("/api/outcomes/import", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["refused"] == "bad_json", r.text
    counters = world.counters()
    assert {k: counters.get(f"outcome_import_refused.{k}") for k in
            ("oversize", "too_many_rows", "bad_columns", "bad_csv", "bad_json")} == dict.fromkeys(
        ("oversize", "too_many_rows", "bad_columns", "bad_csv", "bad_json"), 1)  # fmt: skip
    assert stored(world) == []


def test_every_request_body_is_capped_before_it_is_parsed(world: Store) -> None:
    """The upload page's form is parsed (and its file spooled to disk) by the CSRF check before the route runs, and
    `/api/scorecards` reads its whole body: the app's BodyLimit refuses what is over the path's cap first, by
    Content-Length or, for a chunked body, as the bytes arrive; each refusal is counted."""
    c = session(world, "admin")
    cards = world.db.scalar("SELECT COUNT(*) FROM scorecards")
    over = b"x" * (DEFAULT_LIMIT + 1)
    r = c.post("/api/scorecards", content=over, headers={"content-type": "text/yaml"})
    assert r.status_code == 413 and "request body over" in r.text, r.text[:200]

    def chunks() -> Iterator[bytes]:  # no Content-Length: httpx sends it chunked
        for _ in range(DEFAULT_LIMIT // 65536 + 2):
            yield b"y" * 65536

    r = c.post("/api/scorecards", content=chunks(), headers={"content-type": "text/yaml"})
    assert r.status_code == 413, r.text[:200]
    upload = b"z" * (outcomes.MAX_BYTES + 128 * 1024)  # over the file cap plus the form's own overhead
    r = c.post("/outcomes/import", files={"file": ("big.csv", upload, "text/csv")})
    assert r.status_code == 413, r.text[:200]
    assert world.counters().get(COUNTER) == 3
    assert world.db.scalar("SELECT COUNT(*) FROM scorecards") == cards and stored(world) == []
    # under the cap, the same routes answer for themselves
    assert c.post("/api/scorecards", content=b"name: [", headers={"content-type": "text/yaml"}).status_code == 400


def test_the_call_page_shows_the_outcomes_in_both_languages(world: Store) -> None:
    c = session(world, "admin")
    row = {"call_id": "c1", "csat": 4.5, "complaint": False, "repeat": True, "repeat_days": 3, "custom": {"nps": 8}}
    r = c.post("/api/outcomes/import", json={"rows": [row]})
    assert r.status_code == 200, r.text
    en = c.get("/calls/c1?lang=en").text
    for text in (
        "Customer satisfaction (1\u20135)",
        "Repeat contact within 3 days",
        "Complaint",
        "nps",
        'data-value="4.5"',
    ):
        assert text in en, text
    zh = c.get("/calls/c1?lang=zh-CN").text
    for text in ("客户满意度 (1\u20135)", "3 天内重复来电", "投诉", ">是<", ">否<"):
        assert text in zh, text
    assert "No outcomes imported for this call." in c.get("/calls/c2?lang=en").text


def test_outcomes_on_postgresql(pg_dsn: str) -> None:
    store = Store(pg_dsn, default_tz="Asia/Shanghai")
    try:
        import_scorecard(store, load(DEFAULT_SCORECARD)[1])
        populate(store)
        admin = User("admin", "admin", None, None)
        t = started(store, "c2") + 10
        rows = [
            (2, {"call_id": "c1", "csat": "4", "custom.nps": "9"}),
            (3, {"seat": "s01", "site": "sh", "ts": local(t), "fcr": "no"}),
            (4, {"seat": "s03", "ts": local(started(store, "c4") + 30), "csat": "2"}),
        ]
        result = outcomes.import_rows(store, admin, rows)
        assert result.refused == "bad_rows" and [p.line for p in result.problems] == [4]
        assert stored(store) == []
        result = outcomes.import_rows(store, admin, rows, partial=True)
        assert (result.refused, result.imported, result.outcomes) == (None, 2, 3)
        again = outcomes.import_rows(store, admin, [(2, {"call_id": "c1", "csat": "3"})])
        assert again.imported == 1
        assert stored(store) == [
            ("c1", "csat", 3.0, None, "admin"),
            ("c1", "custom.nps", 9.0, None, "admin"),
            ("c2", "fcr", 0.0, None, "admin"),
        ]
        assert store.counters()["outcome_import_refused.bad_rows"] == 1
        assert store.counters()["outcome_rows_skipped"] == 1
    finally:
        store.close()


# --- in a real browser ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def outcome_hub(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    path = tmp_path_factory.mktemp("outcomes-browser") / "hub.sqlite"
    path.write_bytes(base.read_bytes())
    with served(Store(path, default_tz="Asia/Shanghai")) as h:
        yield h


@pytest.mark.parametrize(
    ("lang", "call", "nothing", "done", "csat"),
    [
        ("en", "c1", "Nothing was imported.", "Imported 1 of 2 rows (2 outcomes).", "Customer satisfaction"),
        ("zh-CN", "c2", "未导入任何数据。", "已导入 2 行中的 1 行(2 项结果)。", "客户满意度"),
    ],
)
def test_a_reviewer_uploads_a_csv_in_the_browser(
    browser: Any,  # noqa: F811
    outcome_hub: Hub,
    tmp_path: Path,
    lang: str,
    call: str,
    nothing: str,
    done: str,
    csat: str,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def after_submit(element_id: str) -> Any:
        """The result page's element once the browser has it: a click returns before the response is loaded."""
        WebDriverWait(d, 15).until(lambda drv: drv.find_elements(By.ID, element_id))  # type: ignore[arg-type]
        return d.find_element(By.ID, element_id)

    d, hub = browser, outcome_hub
    upload = tmp_path / f"outcomes-{lang}.csv"
    upload.write_bytes(
        to_csv([{"call_id": call, "csat": "4", "fcr": "是"}, {"call_id": "missing", "csat": "3", "fcr": "0"}])
    )
    login(d, hub, "rev")
    d.get(f"{hub.url}/outcomes?lang={lang}")
    d.find_element(By.ID, "oc-file").send_keys(str(upload))
    d.find_element(By.ID, "oc-submit").click()
    refused = after_submit("oc-refused")
    assert refused.text == nothing and refused.get_attribute("data-reason") == "bad_rows"
    row = d.find_element(By.CSS_SELECTOR, "tr.oc-problem")
    assert row.get_attribute("data-line") == "3" and "no call 'missing'" in row.text
    assert hub.store.db.scalar("SELECT COUNT(*) FROM call_outcomes WHERE call_id = ?", (call,)) == 0

    d.find_element(By.ID, "oc-file").send_keys(str(upload))
    d.find_element(By.ID, "oc-partial").click()
    d.find_element(By.ID, "oc-submit").click()
    assert after_submit("oc-done").text == done
    assert d.find_element(By.ID, "oc-unmatched-count").text == "1"
    assert d.find_elements(By.CSS_SELECTOR, "tr.oc-import td")[2].text == upload.name
    shot(d, f"outcomes-import-{lang}")

    d.get(f"{hub.url}/calls/{call}?lang={lang}")
    cells = {
        r.get_attribute("data-name"): r.find_element(By.CSS_SELECTOR, "td.oc-name").text
        for r in d.find_elements(By.CSS_SELECTOR, "#call-outcomes tr.outcome")
    }
    assert set(cells) == {"csat", "fcr"} and cells["csat"].startswith(csat)
    shot(d, f"outcomes-call-{lang}")

    login(d, hub, "alice")  # an agent: no link, and the page is refused
    d.get(f"{hub.url}/outcomes?lang={lang}")
    assert d.find_element(By.ID, "error-status").text == "403"
    assert not d.find_elements(By.ID, "oc-form") and not d.find_elements(By.ID, "nav-outcomes")
