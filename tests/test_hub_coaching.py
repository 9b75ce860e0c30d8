"""Coaching (hub/coaching.py, issue 22) on both backends: tiers and their validation, the suggestion's weakest and
best rules against an independent computation from the calls, a session's lifecycle and who may do what, the
targeted rules' trend since a session, kudos and recognition, and the JSON API's roles and scope."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hub import coaching
from hub.auth import User, create_user
from hub.storage import Store
from hub.web.app import create_app
from tests.hub_support import Station, ingest, known_call_events

PASSWORD = "coaching password"
ADMIN = User("admin", "admin")
REV = User("rev", "reviewer")
LEAD1 = User("lead1", "lead", team_id="t1")
LEAD2 = User("lead2", "lead", team_id="t2")
AG1 = User("ag1", "agent", agent_id="a1")
AG3 = User("ag3", "agent", agent_id="a3")
USERS = (ADMIN, REV, LEAD1, LEAD2, AG1, AG3)


def ts(days_ago: int, hour: int = 2) -> str:
    t = datetime.now(UTC).replace(hour=hour, minute=0, second=0, microsecond=0) - timedelta(days=days_ago)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def calls_for(st: Station, agent: str, prefix: str, days: list[int], drop_interruptions: int = 0) -> list[Any]:
    """The known call on each of `days` (days ago), with its first `drop_interruptions` interruptions left out on
    the even days, so the rule's points vary from call to call."""
    envs = []
    for i, d in enumerate(days):
        evs = known_call_events()
        if i % 2 == 0 and drop_interruptions:
            kept, dropped = [], 0
            for e in evs:
                if getattr(e, "kind", None) == "interruption" and dropped < drop_interruptions:
                    dropped += 1
                    continue
                kept.append(e)
            evs = kept
        envs += st.call(f"{prefix}{i:02d}", ts(d), agent=agent, events=evs)
    return envs


@pytest.fixture
def world(hub_store: Store) -> Store:
    s = hub_store
    s.put_site("sh", "Shanghai", "Asia/Shanghai")
    s.put_site("bj", "Beijing", "Asia/Shanghai")
    s.put_team("t1", "Team One", "sh")
    s.put_team("t2", "Team Two", "bj")
    s.put_agent("a1", "Alice", "t1")
    s.put_agent("a2", "Bob", "t1")
    s.put_agent("a3", "Chen", "t2")
    envs = calls_for(Station("sh", "s1"), "a1", "A1-", [1, 3, 6, 9, 13, 20, 26, 33, 40], drop_interruptions=2)
    envs += calls_for(Station("bj", "s3"), "a3", "A3-", [2, 5, 30])
    ingest(s, envs)
    return s


def expected_rules(store: Store, agent: str, start: str, stop: str) -> tuple[dict[str, tuple[float, int]], int, float]:
    """Independently of the rollups: per rule (points, calls it fired on) over the agent's scored, not excluded
    calls of the period, the number of those calls and the weighted mean score."""
    calls = store.db.all(
        "SELECT call_id, score, weight, excluded FROM calls WHERE agent_id = ? AND day >= ? AND day <= ?",
        (agent, start, stop),
    )
    used = [c for c, score, _, x in calls if score is not None and not x]
    wsum = sum(float(w) for _, sc, w, _ in calls if sc is not None)
    mean = round(sum(float(sc) * float(w) for _, sc, w, _ in calls if sc is not None) / wsum, 1)
    rules: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for call in used:
        for rule, pts in store.db.all("SELECT rule_id, points FROM call_rules WHERE call_id = ?", (call,)):
            rules[rule][0] += float(pts)
            rules[rule][1] += 1 if float(pts) != 0 else 0
    return {r: (p, int(n)) for r, (p, n) in rules.items()}, len(used), mean


def test_the_suggestion_matches_the_calls(world: Store) -> None:
    today = date.today()
    s = coaching.suggestion(world, LEAD1, "a1", today)
    start, stop = (today - timedelta(days=27)).isoformat(), today.isoformat()
    assert s["period"] == {"start": start, "end": stop}
    rules, n, mean = expected_rules(world, "a1", start, stop)
    assert n == 7 and s["scored"] == n  # the calls 33 and 40 days ago are outside the 28 days
    assert s["score"] == mean
    weakest = sorted(((r, p, c) for r, (p, c) in rules.items() if p < 0), key=lambda x: (x[1], x[0]))
    assert [(w["rule"], w["points"], w["calls"]) for w in s["weakest"]] == [(r, round(p, 2), c) for r, p, c in weakest]
    assert [w["per_call"] for w in s["weakest"]] == [round(p / n, 2) for _, p, _ in weakest]
    assert s["weakest"][0]["rule"] == "agent_interruptions"  # -3 per interruption, 3 or 1 a call
    best = sorted(((r, p, c) for r, (p, c) in rules.items() if p > 0), key=lambda x: (-x[1], x[0]))
    assert [(b["rule"], b["points"], b["calls"]) for b in s["best"]] == [(r, round(p, 2), c) for r, p, c in best]
    tier = coaching.tier_of(coaching.DEFAULT_TIERS, mean)
    assert tier is not None and s["tier"]["level"] == tier.level
    # a period of 7 days sees fewer calls; out of scope reads as no such agent
    assert (
        coaching.suggestion(world, ADMIN, "a1", today, 7)["scored"]
        == expected_rules(world, "a1", (today - timedelta(days=6)).isoformat(), stop)[1]
    )
    for user, agent in ((LEAD2, "a1"), (AG3, "a1"), (AG1, "a3"), (LEAD1, "a3"), (ADMIN, "nobody")):
        with pytest.raises(coaching.NotFound):
            coaching.suggestion(world, user, agent, today)


def test_tiers_are_validated_per_site_and_audited(world: Store) -> None:
    assert coaching.tiers_for(world, "sh") == (list(coaching.DEFAULT_TIERS), "default")
    center = [
        {"level": 3, "name_en": "Review", "name_zh": "面谈", "min_score": None},
        {"level": 2, "name_en": "Coach", "name_zh": "辅导", "min_score": 70},
        {"level": 1, "name_en": "Praise", "name_zh": "表扬", "min_score": 90},
    ]
    coaching.set_tiers(world, ADMIN, None, center)
    bj = [{**center[0]}, {"level": 1, "name_en": "Fine", "name_zh": "良好", "min_score": 50.5}]
    coaching.set_tiers(world, ADMIN, "bj", bj)
    tiers, source = coaching.tiers_for(world, "sh")
    assert source == "center" and [t.min_score for t in tiers] == [None, 70.0, 90.0]
    tiers, source = coaching.tiers_for(world, "bj")
    assert source == "site" and [(t.level, t.min_score) for t in tiers] == [(3, None), (1, 50.5)]
    assert coaching.tier_of(tiers, 50.4) == tiers[0] and coaching.tier_of(tiers, 50.5) == tiers[1]
    # a3 works at bj: the site's own tiers decide the suggestion
    assert coaching.suggestion(world, ADMIN, "a3", date.today())["tiers_source"] == "site"
    audited = world.db.all("SELECT target FROM audit WHERE action = 'coaching.tiers' ORDER BY id")
    assert [r[0] for r in audited] == ["*", "bj"]

    bad: list[tuple[User, str | None, Any, str, int]] = [
        (LEAD1, None, center, "role", 403),
        (ADMIN, None, center[:1], "tier_count", 400),
        (ADMIN, None, center * 3, "tier_count", 400),
        (ADMIN, None, [center[0], {**center[1], "min_score": 95}, center[2]], "tier_order", 400),
        (ADMIN, None, [center[0], {**center[1], "min_score": 0}], "tier_range", 400),  # at the scale's minimum
        (ADMIN, None, [center[0], {**center[1], "min_score": 101}], "tier_range", 400),
        (ADMIN, None, [center[0], {**center[1], "min_score": float("nan")}], "tier_threshold", 400),
        (ADMIN, None, [{**center[0], "min_score": 10}, center[1]], "tier_first", 400),
        (ADMIN, None, [center[0], {**center[1], "name_zh": " "}], "no_name", 400),
        (ADMIN, None, [center[0], {**center[1], "name_en": "x" * 41}], "too_long", 400),
        (ADMIN, None, [center[0], {**center[1], "level": 10}], "tier_level", 400),
        (ADMIN, None, [center[0], {**center[1], "colour": "red"}], "tier_shape", 400),
        (ADMIN, "nowhere", center, "no_site", 400),
    ]
    for user, site, tiers_raw, key, status in bad:
        with pytest.raises(coaching.CoachingError) as err:
            coaching.set_tiers(world, user, site, tiers_raw)
        assert (err.value.key, err.value.status) == (key, status), tiers_raw
    counts = coaching.refused_counts(world)
    assert counts["tier_count"] == 2 and counts["tier_range"] == 2 and counts["role"] == 1
    assert coaching.tiers_for(world, "sh")[0][1].min_score == 70.0  # nothing refused changed anything


def test_a_session_from_open_to_closed(world: Store) -> None:
    today = date.today()
    with pytest.raises(coaching.NotFound):  # another team's lead
        coaching.open_session(world, LEAD2, "a1", ["dead_air"], "less dead air")
    with pytest.raises(coaching.CoachingError) as err:
        coaching.open_session(world, AG1, "a1", ["dead_air"], "less dead air")
    assert err.value.status == 403
    for rules, goals, key in (
        ([], "g", "no_rules"),
        (["dead_air", "x_rule"], "g", "bad_rule"),
        (["a", "b", "c", "d", "e", "f"], "g", "no_rules"),
        (["dead_air"], "   ", "no_goals"),
        (["dead_air"], "g" * 2001, "too_long"),
        (["dead_air"], "bell\x07", "bad_text"),
    ):
        with pytest.raises(coaching.CoachingError) as err:
            coaching.open_session(world, LEAD1, "a1", rules, goals)
        assert err.value.key == key
    with pytest.raises(coaching.CoachingError) as err:
        coaching.open_session(world, LEAD1, "a1", ["dead_air"], "g", tier_level=7)
    assert err.value.key == "bad_tier"
    assert world.db.scalar("SELECT COUNT(*) FROM coaching_sessions") == 0

    sid = coaching.open_session(
        world, LEAD1, "a1", ["agent_interruptions", "dead_air"], "Let the customer finish", "talked 1:1", None, today
    )
    s = coaching.get_session(world, AG1, sid)
    suggested = coaching.suggestion(world, LEAD1, "a1", today)
    assert s["tier_level"] == suggested["tier"]["level"] and s["score"] == suggested["score"]
    assert [r["rule"] for r in s["rules"]] == ["agent_interruptions", "dead_air"]
    assert s["rules"][0]["per_call"] == suggested["weakest"][0]["per_call"]
    assert s["can_acknowledge"] and s["can_comment"] and not s["can_close"]
    # who sees it: the agent, their lead, QA; not another agent or another team's lead
    for user in (ADMIN, REV, LEAD1, AG1):
        assert [x["id"] for x in coaching.sessions(world, user)] == [sid]
    for user in (LEAD2, AG3):
        assert coaching.sessions(world, user) == []
        with pytest.raises(coaching.NotFound):
            coaching.get_session(world, user, sid)
        with pytest.raises(coaching.NotFound):
            coaching.acknowledge(world, user, sid)
        with pytest.raises(coaching.NotFound):
            coaching.add_note(world, user, sid, "hello")
    # only the agent acknowledges, once
    with pytest.raises(coaching.CoachingError) as err:
        coaching.acknowledge(world, LEAD1, sid)
    assert err.value.status == 403
    when = coaching.acknowledge(world, AG1, sid)
    assert coaching.get_session(world, LEAD1, sid)["acknowledged_at"] == when
    with pytest.raises(coaching.CoachingError) as err:
        coaching.acknowledge(world, AG1, sid)
    assert (err.value.key, err.value.status) == ("acknowledged", 409)
    assert coaching.get_session(world, LEAD1, sid)["acknowledged_at"] == when
    # comments and follow-ups, then closing (once, and never by the agent)
    coaching.add_note(world, AG1, sid, "I will try")
    coaching.add_note(world, LEAD1, sid, "Better this week")
    with pytest.raises(coaching.CoachingError):
        coaching.add_note(world, AG1, sid, "")
    with pytest.raises(coaching.CoachingError) as err:
        coaching.close(world, AG1, sid)
    assert err.value.status == 403
    coaching.close(world, LEAD1, sid, "Done")
    with pytest.raises(coaching.CoachingError) as err:
        coaching.close(world, ADMIN, sid)
    assert err.value.status == 409
    s = coaching.get_session(world, AG1, sid)
    assert s["status"] == "closed" and s["closed_by"] == "lead1"
    assert [(n["author"], n["kind"], n["body"]) for n in s["notes_list"]] == [
        ("ag1", "comment", "I will try"),
        ("lead1", "followup", "Better this week"),
        ("lead1", "followup", "Done"),
    ]
    assert coaching.sessions(world, ADMIN, status="open") == []
    actions = [r[0] for r in world.db.all("SELECT action FROM audit WHERE target = ? ORDER BY id", (str(sid),))]
    assert actions == [f"coaching.{a}" for a in ("open", "acknowledge", "comment", "followup", "close")]


def test_the_trend_since_a_session_against_the_calls(world: Store) -> None:
    today = date.today()
    opened = today - timedelta(days=15)
    trend = coaching.rule_trend(world, "a1", ["agent_interruptions", "quick_responses"], opened, today)
    weeks = trend["_weeks"]
    assert [w["since"] for w in weeks] == [False] * 4 + [True] * 3
    assert weeks[4]["start"] == opened.isoformat() and weeks[-1]["start"] == (opened + timedelta(days=14)).isoformat()
    for w, i in zip(weeks, range(len(weeks)), strict=True):
        rules, n, _ = expected_rules(world, "a1", w["start"], w["end"])
        assert w["scored"] == n
        lost = trend["agent_interruptions"]["lost"][i]
        assert lost == (round(-rules["agent_interruptions"][0] / n, 2) if n else None)
    # before and since: every call in the buckets, weighted by calls, not a mean of weekly means
    before_start, since_end = weeks[0]["start"], weeks[-1]["end"]
    r_before, n_before, _ = expected_rules(world, "a1", before_start, (opened - timedelta(days=1)).isoformat())
    r_since, n_since, _ = expected_rules(world, "a1", opened.isoformat(), since_end)
    ai = trend["agent_interruptions"]
    assert ai["before"] == round(-r_before["agent_interruptions"][0] / n_before, 2)
    assert ai["since"] == round(-r_since["agent_interruptions"][0] / n_since, 2)
    # planted: 1 interruption on the even calls (free: 0 points), 3 on the odd ones (-6); since the session: calls
    # 0..4 (two odd: -12 over 5 calls), before: calls 5..8 (two odd: -12 over 4)
    assert (ai["before"], ai["since"], ai["verdict"]) == (3.0, 2.4, "better")
    assert trend["quick_responses"]["before"] is not None and trend["quick_responses"]["before"] < 0  # a credit


def test_kudos_and_recognition(world: Store) -> None:
    today = date.today()
    with pytest.raises(coaching.CoachingError) as err:
        coaching.give_kudos(world, AG1, "A1-00", "me")
    assert err.value.status == 403
    with pytest.raises(coaching.NotFound):
        coaching.give_kudos(world, LEAD2, "A1-00", "nice")
    with pytest.raises(coaching.CoachingError) as err:
        coaching.give_kudos(world, LEAD1, "A1-00", "x" * 281)
    assert err.value.key == "too_long"
    coaching.give_kudos(world, LEAD1, "A1-01", "Calm and clear")
    coaching.give_kudos(world, REV, "A1-01", "Textbook")
    coaching.give_kudos(world, LEAD1, "A1-01", "Calm, clear and kind")  # the same author: replaced
    rec = coaching.recognition(world, AG1, "a1", today)
    got = sorted((k["author"], k["note"]) for k in rec["kudos"])
    assert got == [("lead1", "Calm, clear and kind"), ("rev", "Textbook")]
    start, stop = rec["period"]["start"], rec["period"]["end"]
    top = world.db.all(
        "SELECT score FROM calls WHERE agent_id = 'a1' AND day >= ? AND day <= ? AND excluded = 0"
        " AND score IS NOT NULL ORDER BY score DESC LIMIT 5",
        (start, stop),
    )
    assert [c["score"] for c in rec["best_calls"]] == [r[0] for r in top]
    rules, _, _ = expected_rules(world, "a1", start, stop)
    assert {c["rule"]: (c["points"], c["calls"]) for c in rec["credited"]} == {
        r: (round(p, 2), n) for r, (p, n) in rules.items() if p > 0
    }
    with pytest.raises(coaching.NotFound):
        coaching.recognition(world, AG3, "a1", today)
    assert coaching.recognition(world, AG3, "a3", today)["kudos"] == []


# --- the API --------------------------------------------------------------------------------------------------------


def clients(store: Store) -> dict[str, TestClient]:
    for u in USERS:
        create_user(store, u.username, PASSWORD, u.role, agent_id=u.agent_id, team_id=u.team_id)
    app = create_app(store)
    out = {}
    for u in USERS:
        c = TestClient(app)
        r = c.post("/api/login", json={"username": u.username, "password": PASSWORD})
        assert r.status_code == 200, r.text
        c.headers["authorization"] = f"Bearer {r.json()['token']}"
        c.cookies.clear()
        out[u.username] = c
    return out


def test_the_api_roles_and_scope(world: Store) -> None:
    c = clients(world)
    body = {"rules": ["agent_interruptions"], "goals": "<script>alert(1)</script> fewer interruptions"}
    assert c["ag1"].post("/api/coaching/agents/a1/sessions", json=body).status_code == 403
    assert c["lead2"].post("/api/coaching/agents/a1/sessions", json=body).status_code == 404
    r = c["lead1"].post("/api/coaching/agents/a1/sessions", json={**body, "rules": ["nope"]})
    assert r.status_code == 400 and "scorecard" in r.json()["detail"]
    r = c["lead1"].post("/api/coaching/agents/a1/sessions", json=body)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert r.json()["rules"][0]["trend"]["before"] is not None
    for user, status in (("admin", 200), ("rev", 200), ("lead1", 200), ("ag1", 200), ("lead2", 404), ("ag3", 404)):
        assert c[user].get(f"/api/coaching/sessions/{sid}").status_code == status, user
        listed = [s["id"] for s in c[user].get("/api/coaching/sessions").json()]
        assert listed == ([sid] if status == 200 else []), user
    assert c["lead1"].post(f"/api/coaching/sessions/{sid}/acknowledge").status_code == 403
    assert c["ag3"].post(f"/api/coaching/sessions/{sid}/acknowledge").status_code == 404
    assert c["ag1"].post(f"/api/coaching/sessions/{sid}/acknowledge").status_code == 200
    assert c["ag1"].post(f"/api/coaching/sessions/{sid}/acknowledge").status_code == 409
    assert c["ag1"].post(f"/api/coaching/sessions/{sid}/notes", json={"body": "ok"}).status_code == 201
    assert c["ag1"].post(f"/api/coaching/sessions/{sid}/close", json={}).status_code == 403
    assert c["lead1"].post(f"/api/coaching/sessions/{sid}/close", json={"note": "done"}).status_code == 200
    assert c["lead1"].post(f"/api/coaching/sessions/{sid}/close", json={}).status_code == 409
    assert c["admin"].get("/api/coaching/sessions/99999").status_code == 404
    # tiers: admins set them, staff read them, refusals are 400 with the reason
    tiers = [
        {"level": 3, "name_en": "Review", "name_zh": "面谈", "min_score": None},
        {"level": 1, "name_en": "Praise", "name_zh": "表扬", "min_score": 80},
    ]
    assert c["rev"].put("/api/coaching/tiers", json={"tiers": tiers}).status_code == 403
    assert c["ag1"].get("/api/coaching/tiers").status_code == 403
    r = c["admin"].put("/api/coaching/tiers", json={"tiers": [tiers[1], tiers[0]]})
    assert r.status_code == 400 and "lowest band" in r.json()["detail"]
    r = c["admin"].put("/api/coaching/tiers", json={"site": "sh", "tiers": tiers})
    assert r.status_code == 200 and r.json()["source"] == "site"
    assert c["lead1"].get("/api/coaching/tiers?site=sh").json()["tiers"][1]["min_score"] == 80
    assert c["lead1"].get("/api/coaching/tiers?site=zz").status_code == 404
    # suggestion and recognition: scoped; kudos by staff only, on a call they see
    assert c["ag1"].get("/api/coaching/agents/a1/suggestion").status_code == 200
    assert c["ag1"].get("/api/coaching/agents/a3/suggestion").status_code == 404
    assert c["lead1"].get("/api/coaching/agents/a1/suggestion?days=3").status_code == 422
    assert c["ag1"].post("/api/calls/A1-00/kudos", json={"note": "me"}).status_code == 403
    assert c["lead2"].post("/api/calls/A1-00/kudos", json={"note": "hi"}).status_code == 404
    assert c["lead1"].post("/api/calls/A1-00/kudos", json={"note": "Well handled"}).status_code == 200
    assert c["ag1"].get("/api/coaching/agents/a1/recognition").json()["kudos"][0]["note"] == "Well handled"
    # what a user typed is text on the pages, never markup
    page = TestClient(create_app(world))
    assert page.post("/login", data={"username": "ag1", "password": PASSWORD}).status_code == 200
    html = page.get(f"/coaching/sessions/{sid}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert coaching.refused_counts(world)["bad_rule"] == 1
