"""Agents page and agent API latency with a million stored calls (SQLite), over real HTTP.

    python benchmarks/bench_hub_api.py [--calls 1000000] [--agents 500] [--requests 200] [--db PATH]

Generates `--calls` scored calls for `--agents` agents in teams of 20 over the last 365 days straight into the
calls table (as ingest and scoring leave them: agent, local day, score, weight, low-confidence flag), builds the
per-agent daily rollups from them with the same SQL the scorer uses (`hub.scores.refresh_agent_day`, here as
one GROUP BY over everything) plus per-rule rollups, and the weekly rows and running totals above them
(`hub.rollups.rebuild_all`; with `--db`, running totals left stale are settled first), then serves the hub
with uvicorn on a free port and times
`--requests` requests of each: the agents API and the agents page for an admin (all 500 agents), for a team
lead, the agent API (trend, worst/best/recent calls), and
one call's API and page (timeline, breakdown). Prints p50/p95/max per endpoint (target: p95 < 150 ms).
`--db` keeps the generated database for another run. `cpu` is this process's CPU time per request (server
and client together): what a request costs whatever else the machine is running, unlike the latencies.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx2 as httpx  # noqa: E402
import uvicorn  # noqa: E402

from hub.auth import create_user  # noqa: E402
from hub.rollups import rebuild_all, settle_all  # noqa: E402
from hub.scorecard import DEFAULT_SCORECARD, load  # noqa: E402
from hub.scores import import_scorecard  # noqa: E402
from hub.storage import Store, local_day, zone  # noqa: E402
from hub.web.app import create_app  # noqa: E402
from tests.broker import free_port, port_open  # noqa: E402
from tests.hub_support import Station, ingest  # noqa: E402

PASSWORD = "benchmark password"  # noqa: S105 - a throwaway database
RULES = ("agent_interruptions", "dead_air", "agent_talk_ratio", "slow_responses", "long_monologue")


def generate(store: Store, n_calls: int, n_agents: int) -> None:
    rng = random.Random(7)  # noqa: S311 - synthetic data, not secrets
    tz = zone(store.default_tz)
    now = datetime.now(UTC).timestamp()
    db = store.db
    with db.transaction():
        for t in range(0, n_agents, 20):
            store.put_team(f"t{t // 20:02d}", f"Team {t // 20}", "bench")
        for a in range(n_agents):
            store.put_agent(f"a{a:03d}", f"Agent {a}", f"t{a // 20:02d}")
    chunk = 50_000
    for start in range(0, n_calls, chunk):
        rows = []
        for i in range(start, min(n_calls, start + chunk)):
            agent = f"a{i % n_agents:03d}"
            started = now - rng.random() * 365 * 86400
            day, week = local_day(started, tz)
            low = rng.random() < 0.05
            score = max(0.0, min(100.0, rng.gauss(78 + (i % n_agents) % 15, 9)))
            rows.append(
                (f"call{i:07d}", "bench", f"s{i % n_agents:03d}", agent, "event", started, day, week,
                 rng.uniform(60, 600), f"sum{i}", int(low), "low_snr" if low else "", 8, "default", 1,
                 score, score, 0.5 if low else 1.0)
            )  # fmt: skip
        with db.transaction():
            db.executemany(
                "INSERT INTO calls (call_id, site, seat, agent_id, agent_source, started, day, week, duration,"
                " summary_id, low_confidence, flags, n_events, scorecard, scorecard_version, auto_score, score,"
                " weight) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        print(f"  {min(n_calls, start + chunk):,} calls", file=sys.stderr)
    with db.transaction():
        db.execute(
            "INSERT INTO agent_daily SELECT agent_id, day, MAX(week), COUNT(*),"
            " SUM(CASE WHEN score IS NOT NULL AND excluded = 0 THEN 1 ELSE 0 END), SUM(excluded),"
            " SUM(CASE WHEN score IS NOT NULL THEN weight ELSE 0 END),"
            " SUM(CASE WHEN score IS NOT NULL THEN score * weight ELSE 0 END), SUM(COALESCE(duration, 0))"
            " FROM calls GROUP BY agent_id, day"
        )
        days = db.all("SELECT agent_id, day, calls FROM agent_daily")
        db.executemany(
            "INSERT INTO agent_rule_daily VALUES (?, ?, ?, ?, ?, ?)",
            [
                (a, d, r, -float(rng.randint(0, 3 * int(c))), int(c), rng.randint(0, int(c)))
                for a, d, c in days
                for r in RULES
            ],
        )
    t = time.perf_counter()
    n = rebuild_all(store)
    print(f"  weekly rows and running totals of {n} agents in {time.perf_counter() - t:.1f} s", file=sys.stderr)


def timed(client: httpx.Client, url: str, headers: dict[str, str], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = client.get(url, headers=headers)
        out.append((time.perf_counter() - t) * 1000)
        if r.status_code != 200:
            raise SystemExit(f"{url}: HTTP {r.status_code} {r.text[:200]}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--agents", type=int, default=500)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--db", help="keep the database here (reused when it already holds the calls)")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    path = Path(args.db) if args.db else Path(tmp.name) / "hub.sqlite"
    fresh = not path.exists()
    store = Store(path, default_tz="Asia/Shanghai")
    if fresh:
        import_scorecard(store, load(DEFAULT_SCORECARD)[1])
        t = time.perf_counter()
        generate(store, args.calls, args.agents)
        print(f"generated {args.calls:,} calls in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        create_user(store, "admin", PASSWORD, "admin")
        create_user(store, "lead", PASSWORD, "lead", team_id="t03")
        create_user(store, "agent", PASSWORD, "agent", agent_id="a042")
        # one call ingested and scored from real events, so the call page has a timeline and a breakdown to draw
        ingest(store, Station("bench", "s999").call("bench-call", datetime.now(UTC).isoformat()[:23] + "Z", "a042"))
    else:
        t = time.perf_counter()
        n = settle_all(store)  # a database from before the running totals: the migration left them stale
        print(f"settled the running totals of {n} agents in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    stored = int(store.db.scalar("SELECT COUNT(*) FROM calls"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not port_open(port):
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    print(f"{stored:,} calls stored, {args.agents} agents; {args.requests} sequential requests each over HTTP")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with httpx.Client(base_url=base, timeout=30) as client:
        tokens = {
            u: client.post("/api/login", json={"username": u, "password": PASSWORD}).json()["token"]
            for u in ("admin", "lead", "agent")
        }
        end = (datetime.now(zone("Asia/Shanghai")) - timedelta(days=0)).date().isoformat()
        cases = [
            ("agents API, admin, week (500 rows)", "/api/agents?period=week", "admin"),
            ("agents API, admin, month", "/api/agents?period=month", "admin"),
            ("agents API, team lead", "/api/agents", "lead"),
            ("agents page (HTML), admin", "/agents", "admin"),
            ("agent API (90-day trend, worst/best/recent)", "/api/agents/a042", "admin"),
            ("agent API as the agent", "/api/agents/a042", "agent"),
            ("agent page (HTML)", "/agents/a042", "admin"),
            ("calls API, agent's last 100", f"/api/calls?agent_id=a042&end={end}", "admin"),
            ("call API (score, evidence, reviews)", "/api/calls/bench-call", "admin"),
            ("call page (HTML, timeline, breakdown)", "/calls/bench-call", "admin"),
        ]
        for label, url, user in cases:
            h = {"Authorization": f"Bearer {tokens[user]}"}
            timed(client, url, h, 3)  # warm-up
            cpu0 = time.process_time()
            ms = sorted(timed(client, url, h, args.requests))
            cpu = (time.process_time() - cpu0) * 1000 / args.requests
            p95 = ms[int(len(ms) * 0.95) - 1]
            print(
                f"{label:48s} p50 {statistics.median(ms):6.1f} ms  p95 {p95:6.1f} ms  max {ms[-1]:6.1f} ms"
                f"  cpu {cpu:5.1f} ms/request"
            )
    server.should_exit = True
    thread.join(10)
    store.close()
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
