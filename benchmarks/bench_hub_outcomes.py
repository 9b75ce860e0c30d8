"""Outcome import throughput on SQLite (issue 22 target: 100,000 rows in under 10 s).

    python benchmarks/bench_hub_outcomes.py [--rows 100000] [--seat-share 0.2] [--db PATH]

Generates `--rows` calls straight into the calls table (500 seats, one call every 10 minutes per seat, each
attributed to one of 500 agents in teams of 20), then writes a CSV of `--rows` outcome rows, one per call:
`--seat-share` of them name their call by seat and time (a time 30 s after the call started, in the site's local
time without an offset, as a CTI export writes it), the rest by CTI call id; each row carries csat, fcr,
repeat + repeat_days, complaint and one custom outcome (5 outcomes a row). It times `hub.outcomes.import_csv`
as an admin: parsing, validating, matching and the one write transaction (synchronous=FULL, as the hub runs).
Prints the file size, seconds and rows/s, and checks every row was imported.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hub import outcomes  # noqa: E402
from hub.auth import User  # noqa: E402
from hub.storage import Store, local_day, zone  # noqa: E402

SEATS = 500
AGENTS = 500
START = datetime(2026, 1, 5, tzinfo=UTC).timestamp()


def generate_calls(store: Store, n: int) -> list[tuple[str, str, float]]:
    """(call id, seat, started) of `n` calls written straight into the calls table."""
    tz = zone("Asia/Shanghai")
    store.put_site("sh", "Shanghai", "Asia/Shanghai")
    with store.db.transaction():
        for t in range(0, AGENTS, 20):
            store.put_team(f"t{t // 20:02d}", f"Team {t // 20}", "sh")
        for a in range(AGENTS):
            store.put_agent(f"a{a:03d}", f"Agent {a}", f"t{a // 20:02d}")
    calls = []
    rows = []
    for i in range(n):
        seat, slot = i % SEATS, i // SEATS
        started = START + slot * 600.0 + seat % 60  # 10 minutes apart on a seat: never ambiguous at 120 s
        call = f"cti-{i:08d}"
        day, week = local_day(started, tz)
        calls.append((call, f"s{seat:03d}", started))
        rows.append((call, "sh", f"s{seat:03d}", f"a{i % AGENTS:03d}", started, day, week, 300.0))
    with store.db.transaction():
        store.db.executemany(
            "INSERT INTO calls (call_id, site, seat, agent_id, started, day, week, duration)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return calls


def outcome_csv(calls: list[tuple[str, str, float]], seat_share: float) -> bytes:
    rng = random.Random(7)  # noqa: S311 - synthetic data, not secrets
    tz = zone("Asia/Shanghai")
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["call_id", "seat", "ts", "csat", "fcr", "repeat", "repeat_days", "complaint", "custom.nps"])
    for call, seat, started in calls:
        values = [rng.randint(1, 5), rng.randint(0, 1), rng.randint(0, 1), 7, rng.randint(0, 1), rng.randint(0, 10)]
        if rng.random() < seat_share:
            ts = datetime.fromtimestamp(started + 30, tz).strftime("%Y-%m-%d %H:%M:%S")
            w.writerow(["", seat, ts, *values])
        else:
            w.writerow([call, "", "", *values])
    return out.getvalue().encode()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--seat-share", type=float, default=0.2)
    ap.add_argument("--db", type=Path, help="keep the database here (default: a temporary directory)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "outcomes.sqlite"
        store = Store(path, default_tz="Asia/Shanghai")
        try:
            t0 = time.perf_counter()
            calls = generate_calls(store, args.rows)
            data = outcome_csv(calls, args.seat_share)
            sys.stdout.write(f"generated {len(calls)} calls and a {len(data) / 1e6:.1f} MB CSV in "
                             f"{time.perf_counter() - t0:.1f} s\n")  # fmt: skip
            admin = User("bench", "admin", None, None)
            t0 = time.perf_counter()
            result = outcomes.import_csv(store, admin, data, source="bench")
            took = time.perf_counter() - t0
            imported = int(store.db.scalar("SELECT COUNT(DISTINCT call_id) FROM call_outcomes"))
            sys.stdout.write(
                f"imported {result.imported} of {result.total} rows ({result.outcomes} outcomes, "
                f"{len(result.problems)} unmatched; {args.seat_share:.0%} matched by seat and time) in {took:.2f} s: "
                f"{result.total / took:,.0f} rows/s (target: {args.rows} rows < 10 s)\n"
            )
            if result.refused is not None or imported != args.rows:
                sys.stdout.write(f"FAILED: refused={result.refused} imported calls={imported}\n")
                return 1
            return 0 if took < 10 else 2
        finally:
            store.close()


if __name__ == "__main__":
    raise SystemExit(main())
