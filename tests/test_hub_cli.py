"""`qa-hub`: admin commands, one-line errors, and `serve` end to end (station -> Mosquitto -> hub -> HTTP API)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx  # the maintained successor; starlette.testclient prefers it too

from edge_agent.mqtt_publisher import BrokerConfig, Publisher
from edge_agent.outbox import Outbox
from tests.broker import Mosquitto, free_port, mosquitto, port_open  # noqa: F401 - the fixture
from tests.hub_support import ROOT, Station

PASSWORD = "a long enough password"


def qa_hub(db: Path | str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", "--db", str(db), "--tz", "Asia/Shanghai", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def error_line(r: subprocess.CompletedProcess[str]) -> str:
    """The one-line error (after any INFO logging), checked to be the only line that says so."""
    lines = [line for line in r.stderr.splitlines() if line.startswith("qa-hub: ")]
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def test_admin_commands_and_errors(tmp_path: Path) -> None:
    db = tmp_path / "hub.sqlite"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nversion: 1\nrules:\n - {id: a, title: t, kind: nope, points: 1}\n")
    r = qa_hub(db, "scorecard", "import", str(bad))
    assert "kind" in error_line(r)
    r = qa_hub(db, "serve", "--alert-dead-air-s", "-3")
    assert r.returncode == 2 and "--alert-dead-air-s" in r.stderr.strip().splitlines()[-1]
    r = qa_hub(db, "scorecard", "import", str(tmp_path / "missing.yaml"))
    assert "cannot read" in error_line(r)
    r = qa_hub(db, "user", "create", "bob", "--role", "agent", stdin=PASSWORD + "\n")
    assert "--agent-id" in error_line(r)
    r = qa_hub(db, "user", "create", "bob", "--role", "agent", "--agent-id", "a1", stdin="short\n")
    assert "8 characters" in error_line(r)
    assert qa_hub(db, "user", "create", "bob", "--role", "agent", "--agent-id", "a1", stdin=PASSWORD).returncode == 0
    assert qa_hub(db, "site", "set", "sh", "--name", "Shanghai", "--tz", "Asia/Shanghai").returncode == 0
    r = qa_hub(db, "site", "set", "xx", "--name", "X", "--tz", "Mars/Olympus")
    assert "unknown time zone" in error_line(r)
    assert qa_hub(db, "team", "set", "t1", "--name", "One", "--site", "sh").returncode == 0
    assert qa_hub(db, "agent", "set", "a1", "--name", "Alice", "--team", "t1").returncode == 0
    r = qa_hub(db, "rescore", "default", "9")
    assert "import it first" in error_line(r)
    r = qa_hub("postgresql://nobody@127.0.0.1:1/x", "rescore", "default", "1")
    assert error_line(r).startswith("qa-hub: cannot open the database postgresql://nobody@127.0.0.1:1/x")


def test_serve_end_to_end(tmp_path: Path, mosquitto: Mosquitto) -> None:  # noqa: F811
    db = tmp_path / "hub.sqlite"
    assert qa_hub(db, "user", "create", "admin", "--role", "admin", stdin=PASSWORD).returncode == 0
    from hub.storage import Store

    directory = Store(db)
    directory.put_agent("a1", "Agent One", None)  # a seat's login attributes calls only to known agents
    directory.close()
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "--db", str(db), "--tz", "Asia/Shanghai", "serve", "--broker",
         mosquitto.url, "--http", f"127.0.0.1:{port}"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not port_open(port):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
        st = Station("sh", "s01", stamp=False)
        envs = [st.login("a1", "2026-01-05T01:00:00.000Z"), *st.call("cti-9", "2026-01-05T01:10:00.000Z")]
        with Outbox(tmp_path / "ob.sqlite") as ob:
            ob.put_many(envs)
            with Publisher(ob, site="sh", seat="s01", broker=BrokerConfig.from_url(mosquitto.url)) as pub:
                assert pub.drain(30), mosquitto.log_tail()
        base = f"http://127.0.0.1:{port}"
        token = httpx.post(f"{base}/api/login", json={"username": "admin", "password": PASSWORD}).json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 10
        calls: list[dict[str, object]] = []
        while time.monotonic() < deadline and not (calls and calls[0]["score"] is not None):
            calls = httpx.get(f"{base}/api/calls", headers=auth).json()
            time.sleep(0.2)
        assert [(c["call_id"], c["agent_id"], c["score"]) for c in calls] == [("cti-9", "a1", 79.0)]
        detail = httpx.get(f"{base}/api/calls/cti-9", headers=auth).json()
        assert detail["score"]["scorecard"] == "default"  # a fresh hub scores with the shipped scorecard
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        log.close()
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text()
    r = qa_hub(db, "rescore", "default", "1")
    assert r.returncode == 0 and "rescored 1 calls" in r.stderr
