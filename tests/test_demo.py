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
           "--minutes", "0.5", "--seconds", "75", "--history-days", "3", "--broker", "embedded",
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
    # both stations' calls reached the hub through the broker and were scored, attributed to their agents
    assert {seat for seat, _ in scored} == {"seat01", "seat02"}, text
    assert sum(n for _, n in scored) >= 4, scored
    assert {"activity", "call_summary", "agent_login"} <= types
    assert agents == {"agent01", "agent02"}
    assert f"scored {sum(n for _, n in scored)} calls" in text
    # the backfilled past calls went through the same transport and were scored on their own days
    assert "history:" in text
    assert len(days) >= 2, days
