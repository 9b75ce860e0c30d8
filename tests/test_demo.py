"""The README's main job: `callqa-demo` brings up a broker, the hub and simulated stations replaying real speech,
backfills some days of past calls, serves the dashboard, and the hub scores the calls. Run as a separate
process, with the embedded broker (the fallback a machine without Mosquitto gets) and, where this test runs as
root, inside a network namespace with only loopback: the demo needs no network."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.broker import free_port


def demo_command(workdir: Path, port: int) -> list[str]:
    cmd = [str(Path(sys.executable).parent / "callqa-demo"), "--dir", str(workdir), "--stations", "2",
           "--minutes", "0.5", "--seconds", "75", "--history-days", "3", "--history-calls", "2", "--broker", "embedded",
           "--http", f"127.0.0.1:{port}"]  # fmt: skip
    if os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip"):
        return ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "demo", *cmd]
    return cmd


def test_demo_scores_real_calls_and_serves_the_dashboard(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        demo_command(tmp_path / "demo", port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    lines: list[str] = []
    url = None
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("dashboard:"):
            url = line.split()[1]
            break
    assert url == f"http://127.0.0.1:{port}/", "".join(lines)
    if "unshare" not in demo_command(tmp_path / "x", port):
        # reachable from here only when it is not in its own network namespace
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(url + "login", timeout=2) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
    lines.append(proc.stdout.read())  # to EOF: the demo stops itself after --seconds
    proc.wait(30)
    text = "".join(lines)
    assert proc.returncode == 0, text
    assert "login admin" in text
    with sqlite3.connect(tmp_path / "demo" / "hub.sqlite") as db:
        scored = db.execute("SELECT seat, COUNT(*) FROM calls WHERE score IS NOT NULL GROUP BY seat").fetchall()
        types = {r[0] for r in db.execute("SELECT DISTINCT type FROM events")}
        agents = {r[0] for r in db.execute("SELECT DISTINCT agent_id FROM calls")}
        days = {r[0] for r in db.execute("SELECT DISTINCT day FROM calls WHERE score IS NOT NULL")}
        simulated = db.execute(
            "SELECT i.source, i.filename, i.rows_imported, COUNT(DISTINCT o.call_id) FROM outcome_imports i"
            " JOIN call_outcomes o ON o.import_id = i.import_id GROUP BY i.import_id"
        ).fetchall()
    # both stations' calls reached the hub through the broker and were scored, attributed to their agents
    assert {seat for seat, _ in scored} == {"seat01", "seat02"}, text
    assert sum(n for _, n in scored) >= 4, scored
    assert {"activity", "call_summary", "agent_login"} <= types
    assert agents == {"agent01", "agent02"}
    assert f"scored {sum(n for _, n in scored)} calls" in text
    # the backfilled past calls went through the same transport and were scored on their own days
    assert "history:" in text
    assert len(days) >= 2, days
    # once the past was scored, the demo gave its calls simulated outcomes, labelled so (tests/test_demo_outcomes.py
    # checks what the validity report makes of them)
    assert len(simulated) == 1, simulated
    source, filename, imported, calls = simulated[0]
    assert source == "simulated" and "simulated by the demo" in filename, simulated
    assert imported == calls >= 4 and f"outcomes:  {imported} calls given simulated outcomes" in text, text
    assert_two_teams_and_reviews_in_flight(tmp_path / "demo" / "hub.sqlite", text)


def assert_two_teams_and_reviews_in_flight(path: Path, text: str) -> None:
    """Two teams with scored calls, disputes and calibrations already in flight, and a lead who sees only their
    own team's calls and disputes, read through the hub's own store and scoping."""
    from hub import reviews
    from hub.auth import Scope, User, get_user
    from hub.storage import Store

    for user in ("lead-a", "lead-b", "reviewer1", "reviewer2", "agent01", "agent02"):
        assert f"login {user} " in text, text
    store = Store(path)
    try:
        teams = dict(
            store.db.all(
                "SELECT a.team_id, COUNT(*) FROM calls c JOIN agents a ON a.agent_id = c.agent_id"
                " WHERE c.score IS NOT NULL GROUP BY a.team_id"
            )
        )
        assert set(teams) == {"team-a", "team-b"}, teams
        # the past calls' scores spread, so the worst and best calls differ
        low, high = store.db.one("SELECT MIN(score), MAX(score) FROM calls WHERE score IS NOT NULL")
        assert high > low, (low, high)
        every = reviews.listing(store, Scope(User("admin", "admin")))
        disputes = {r.status for r in every if r.kind == "dispute"}
        assert "open" in disputes and disputes & {"rejected", "applied"}, every
        assert any(r.kind == "override" for r in every), every
        reviewers = {r[0] for r in store.db.all("SELECT DISTINCT reviewer FROM calibrations")}
        # team A's lead coached their agent on rules that cost them points, and recognised a call of theirs
        coached = store.db.all("SELECT s.agent_id, s.opened_by, t.rule_id FROM coaching_sessions s"
                               " JOIN coaching_targets t ON t.session_id = s.id")  # fmt: skip
        assert coached and {(a, b) for a, b, _ in coached} == {("agent01", "lead-a")}, coached
        lost = {r[0] for r in store.db.all("SELECT k.rule_id FROM call_rules k JOIN calls c ON c.call_id = k.call_id"
                                           " WHERE c.agent_id = 'agent01' AND k.points < 0")}  # fmt: skip
        assert {rule for _, _, rule in coached} <= lost
        assert store.db.scalar("SELECT agent_id FROM coaching_kudos") == "agent01"
        assert reviewers == {"reviewer1", "reviewer2"}, reviewers
        lead = get_user(store, "lead-a")
        assert lead is not None and lead.team_id == "team-a"
        cond, params = Scope(lead).agents_sql("agent_id")
        sql = f"SELECT DISTINCT agent_id FROM calls WHERE 1 = 1{cond}"  # noqa: S608 - the hub's own scoping SQL
        seen = {r[0] for r in store.db.all(sql, params)}
        assert seen == {"agent01"}, seen
        mine = reviews.listing(store, Scope(lead))
        assert mine and {r.call_id for r in mine} < {r.call_id for r in every}
        assert all(store.db.scalar("SELECT agent_id FROM calls WHERE call_id = ?", (r.call_id,)) == "agent01"
                   for r in mine)  # fmt: skip
    finally:
        store.close()
