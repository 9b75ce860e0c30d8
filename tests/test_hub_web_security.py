"""Web login and sessions against the real parts (docs/trust.md "Web login and sessions").

A real hub process (`qa-hub serve`, uvicorn, the real Argon2 parameters, a real Mosquitto) for what timing,
memory and TLS decide: login throttling (429 + Retry-After), unknown users answered as slowly as known ones,
bounded memory under a login flood, `Secure` cookies over TLS and behind a trusted proxy. The TestClient on
both store backends for the rest: every state-changing route refuses a cookie-only request without the CSRF
token, pages and event lists stay small whatever a seat once stored, stored junk (lone surrogates, NaN)
never makes a 500, and devices follow the role rules of calls.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import math
import re
import secrets
import signal
import ssl
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from hub import auth
from hub.storage import Store
from hub.web.app import create_app
from hub.web.deps import CSRF_EXEMPT, UNSAFE_METHODS
from hub.web.views import EVENTS_PAGE, EVENTS_PAGE_MAX
from tests.broker import Mosquitto, free_port, mosquitto_binary, port_open
from tests.hub_support import ROOT, Station, ingest

pytestmark = pytest.mark.abuse  # the abuse and chaos suite (pyproject markers)

PASSWORD = "a long enough password"
MiB = 1 << 20
CSRF_REFUSAL = "not sent from this dashboard"


# --- a real hub process ------------------------------------------------------------------------------------------


def qa_hub(db: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", "--db", str(db), "--tz", "Asia/Shanghai", *args],
        input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip


@dataclass
class HubProcess:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def post_login(self, client: httpx.Client, user: str, password: str, addr: str) -> httpx.Response:
        """A login as if from `addr`: the hub trusts 127.0.0.1 as a reverse proxy (the default), so it takes
        X-Forwarded-For as the client's address, which lets one test be many clients."""
        return client.post(
            f"{self.url}/api/login", json={"username": user, "password": password}, headers={"X-Forwarded-For": addr}
        )


def start_hub(base: Path, broker: Mosquitto, *extra: str, scheme: str = "http") -> HubProcess:
    db = base / "hub.sqlite"
    for user in ("admin", "victim", "resetme", "timer"):
        r = qa_hub(db, "user", "create", user, "--role", "admin", stdin=PASSWORD)
        assert r.returncode == 0, r.stderr
    port = free_port()
    log = base / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "--db", str(db), "serve", "--broker", broker.url,
             "--http", f"127.0.0.1:{port}", "--client-id", f"hub-{port}", *extra],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while not port_open(port):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return HubProcess(f"{scheme}://127.0.0.1:{port}", proc, log)


def stop_hub(h: HubProcess) -> None:
    h.proc.send_signal(signal.SIGTERM)
    try:
        h.proc.wait(20)
    except subprocess.TimeoutExpired:
        h.proc.kill()
        h.proc.wait(10)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    binary = mosquitto_binary()
    if binary is None:
        pytest.fail("mosquitto is not installed: apt-get install mosquitto (.ci/run does)")
    b = Mosquitto(tmp_path_factory.mktemp("broker"), binary)
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="module")
def plain_hub(broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    h = start_hub(tmp_path_factory.mktemp("hub"), broker)
    try:
        yield h
    finally:
        stop_hub(h)


def self_signed(base: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made here (cryptography), as an operator's would be."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "callqa hub test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = base / "hub.crt", base / "hub.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def rss(pid: int) -> int:
    """A process's resident memory in bytes (Linux: /proc, so no extra package)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def cookie_attrs(r: httpx.Response) -> set[str]:
    """The attributes of the session cookie the response sets, lower-cased (`secure`, `httponly`, ...)."""
    (header,) = [h for h in r.headers.get_list("set-cookie") if h.startswith("qa_session=")]
    out = set()
    for part in header.split(";")[1:]:
        name, _, value = part.strip().lower().partition("=")
        out.add(f"{name}={value}" if name == "samesite" else name)
    return out


# --- throttling, timing, memory (real process) ---------------------------------------------------------------------


def test_failed_logins_are_throttled_per_user_and_per_address(plain_hub: HubProcess) -> None:
    with httpx.Client(timeout=30) as c:
        # per user: five failures, then 429 whatever the password and wherever from
        codes = [plain_hub.post_login(c, "victim", "wrong password", f"10.1.0.{i}").status_code for i in range(7)]
        assert codes == [401] * 5 + [429, 429], codes
        locked = plain_hub.post_login(c, "victim", PASSWORD, "10.1.1.1")
        retry = int(locked.headers["retry-after"])
        assert locked.status_code == 429 and 800 < retry <= 900, (locked.status_code, locked.headers)
        print(f"\nlogin throttle: 429 after 5 failures for one user; Retry-After {retry} s")
        # an unknown username is throttled alike, so the 429 does not name the real users either
        codes = [plain_hub.post_login(c, "nobody-here", "x", f"10.2.0.{i}").status_code for i in range(6)]
        assert codes == [401] * 5 + [429]
        # a success clears the user's failures
        codes = [plain_hub.post_login(c, "resetme", "wrong", f"10.3.0.{i}").status_code for i in range(4)]
        assert plain_hub.post_login(c, "resetme", PASSWORD, "10.3.1.1").status_code == 200
        codes += [plain_hub.post_login(c, "resetme", "wrong", f"10.3.2.{i}").status_code for i in range(6)]
        assert codes == [401] * 9 + [429], codes
        # per address: twenty failures a minute over any usernames, then 429 for that address only
        codes = [plain_hub.post_login(c, f"guess{i}", "wrong", "10.4.0.1").status_code for i in range(21)]
        assert codes == [401] * 20 + [429], codes
        r = plain_hub.post_login(c, "admin", PASSWORD, "10.4.0.1")
        assert r.status_code == 429 and 0 < int(r.headers["retry-after"]) <= 60
        assert plain_hub.post_login(c, "admin", PASSWORD, "10.4.0.2").status_code == 200


def test_unknown_users_take_as_long_as_known_ones(plain_hub: HubProcess) -> None:
    known: list[float] = []
    unknown: list[float] = []
    with httpx.Client(timeout=30) as c:
        plain_hub.post_login(c, "timer", PASSWORD, "10.5.0.1")  # warm up the connection and the dummy hash
        for i in range(24):
            if i % 4 == 3:  # clear the failures before the fifth: a throttled answer would be quick
                assert plain_hub.post_login(c, "timer", PASSWORD, f"10.5.1.{i}").status_code == 200
            for who, out in (("timer", known), (f"ghost-{secrets.token_hex(4)}", unknown)):
                t0 = time.perf_counter()
                r = plain_hub.post_login(c, who, "not the password", f"10.5.2.{i}")
                out.append(time.perf_counter() - t0)
                assert r.status_code == 401 and r.json()["detail"] == "unknown user or wrong password"
    mk, mu = statistics.median(known), statistics.median(unknown)
    print(f"\nlogin answer, median of {len(known)}: known user {mk * 1000:.1f} ms, unknown user {mu * 1000:.1f} ms")
    assert mk > 0.005, "the real Argon2 parameters: a verification takes milliseconds"
    assert abs(mk - mu) / max(mk, mu) < 0.30, (known, unknown)


def test_a_login_flood_keeps_the_hub_small_and_serving(plain_hub: HubProcess) -> None:
    pid = plain_hub.proc.pid
    with httpx.Client(timeout=30) as c:
        token = plain_hub.post_login(c, "admin", PASSWORD, "10.6.0.1").json()["token"]
    base = rss(pid)
    peak = base
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    done = threading.Event()
    api_ms: list[float] = []
    api_codes: set[int] = set()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss(pid))
            time.sleep(0.01)

    def flood(n: int) -> None:
        with httpx.Client(timeout=60) as c:
            for i in range(6):  # distinct users and addresses: no throttle stops them before the hashing
                r = plain_hub.post_login(c, f"flood-{n}-{i}", "x" * 20, f"10.7.{n}.{i}")
                with lock:
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

    def read_api() -> None:
        with httpx.Client(timeout=60) as c:
            while not done.is_set():
                t0 = time.perf_counter()
                r = c.get(f"{plain_hub.url}/api/calls", headers={"Authorization": f"Bearer {token}"})
                api_ms.append((time.perf_counter() - t0) * 1000)
                api_codes.add(r.status_code)
                time.sleep(0.05)

    helpers = [threading.Thread(target=sample), threading.Thread(target=read_api)]
    workers = [threading.Thread(target=flood, args=(n,)) for n in range(60)]
    t0 = time.monotonic()
    for t in helpers + workers:
        t.start()
    for t in workers:
        t.join()
    elapsed = time.monotonic() - t0
    done.set()
    for t in helpers:
        t.join()
    grew = (peak - base) / MiB
    print(
        f"\nlogin flood: {sum(statuses.values())} logins from 60 clients at once in {elapsed:.1f} s: {statuses};"
        f" hub RSS {base / MiB:.0f} -> peak {peak / MiB:.0f} MiB (+{grew:.0f});"
        f" GET /api/calls meanwhile: median {statistics.median(api_ms):.0f} ms, max {max(api_ms):.0f} ms"
    )
    assert set(statuses) <= {401, 429} and statuses.get(429, 0) > 0, statuses  # never a 500
    assert grew < 400, "at most two 64 MiB verifications at once (forty took 2.5 GiB)"
    assert api_codes == {200} and statistics.median(api_ms) < 1000
    with httpx.Client(timeout=30) as c:
        assert plain_hub.post_login(c, "admin", PASSWORD, "10.6.0.2").status_code == 200


# --- cookies: TLS and the reverse proxy (real process) -------------------------------------------------------------


def test_session_cookie_is_secure_over_tls(broker: Mosquitto, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    bad = qa_hub(tmp_path / "x.sqlite", "serve", "--ssl-certfile", str(key), "--ssl-keyfile", str(key))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("qa-hub: --ssl-certfile/--ssl-keyfile: cannot load them")
    # trusts no proxy: a client's own X-Forwarded-Proto cannot talk the hub out of Secure
    h = start_hub(tmp_path, broker, "--ssl-certfile", str(cert), "--ssl-keyfile", str(key),
                  "--forwarded-allow-ips", "10.255.255.1", scheme="https")  # fmt: skip
    try:
        with httpx.Client(verify=ssl.create_default_context(cafile=str(cert)), timeout=30) as c:
            r = c.post(f"{h.url}/api/login", json={"username": "admin", "password": PASSWORD},
                       headers={"X-Forwarded-Proto": "http"})  # fmt: skip
            assert r.status_code == 200
            assert {"secure", "httponly", "samesite=strict"} <= cookie_attrs(r), r.headers.get_list("set-cookie")
            form = c.post(f"{h.url}/login", data={"username": "admin", "password": PASSWORD}, follow_redirects=False)
            assert form.status_code == 303 and "secure" in cookie_attrs(form)
            # the browser sends it back over https: the session works
            c.cookies.clear()
            c.cookies.set("qa_session", r.json()["token"])
            me = c.get(f"{h.url}/api/me")
            assert me.status_code == 200 and me.json()["username"] == "admin"
    finally:
        stop_hub(h)


def test_secure_behind_a_trusted_proxy_only_when_it_says_https(plain_hub: HubProcess) -> None:
    body = {"username": "admin", "password": PASSWORD}
    with httpx.Client(timeout=30) as c:
        r = c.post(f"{plain_hub.url}/api/login", json=body, headers={"X-Forwarded-For": "10.8.0.1"})
        assert r.status_code == 200 and "secure" not in cookie_attrs(r)  # plain http: a Secure cookie would be lost
        r = c.post(
            f"{plain_hub.url}/api/login", json=body,
            headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.8.0.2"},
        )  # fmt: skip
        assert r.status_code == 200 and {"secure", "httponly", "samesite=strict"} <= cookie_attrs(r)


# --- CSRF (TestClient, every route) ---------------------------------------------------------------------------------


def admin_client(store: Store) -> tuple[TestClient, str]:
    auth.create_user(store, "admin", PASSWORD, "admin")
    c = TestClient(create_app(store))
    r = c.post("/api/login", json={"username": "admin", "password": PASSWORD})
    assert r.status_code == 200 and "qa_session" in c.cookies
    return c, r.json()["token"]


def test_every_state_change_refuses_a_cookie_without_the_token(hub_store: Store) -> None:
    c, _ = admin_client(hub_store)
    csrf = c.get("/api/me").json()["csrf"]
    routes = sorted(
        (method, route.path)
        for route in c.app.routes  # type: ignore[attr-defined]
        if isinstance(route, APIRoute)
        for method in (route.methods or set()) & UNSAFE_METHODS
        if route.path not in CSRF_EXEMPT
    )
    paths = {p for _, p in routes}
    assert {"/api/scorecards", "/api/users/{username}", "/admin/users", "/api/logout"} <= paths
    assert len(routes) >= 25, routes
    last = [r for r in routes if r[1] == "/api/logout"]  # with the token it logs out: last
    for method, path in [r for r in routes if r[1] != "/api/logout"] + last:
        url = re.sub(r"\{[^}]+\}", "1", path)
        for ctype in ("application/json", "text/plain", "application/x-www-form-urlencoded"):
            r = c.request(method, url, content=b"", headers={"content-type": ctype}, follow_redirects=False)
            assert r.status_code == 403 and CSRF_REFUSAL in r.text, (method, path, ctype, r.status_code)
        r = c.request(method, url, data={"csrf": "0" * 64}, follow_redirects=False)
        assert r.status_code == 403 and CSRF_REFUSAL in r.text, (method, path, "wrong form token")
        r = c.request(method, url, content=b"", headers={"X-CSRF-Token": csrf}, follow_redirects=False)
        assert CSRF_REFUSAL not in r.text and r.status_code != 500, (method, path, r.status_code, r.text[:200])


def test_a_cookie_only_text_plain_scorecard_import_is_refused(hub_store: Store) -> None:
    from hub.scorecard import DEFAULT_SCORECARD, load

    c, token = admin_client(hub_store)
    text = load(DEFAULT_SCORECARD)[1]

    def card(version: int) -> str:
        return text.replace("\nversion: 1\n", f"\nversion: {version + 1}\n")

    def versions() -> int:
        return int(hub_store.db.scalar("SELECT COUNT(*) FROM scorecards"))

    before = versions()
    r = c.post("/api/scorecards", content=card(1), headers={"content-type": "text/plain"})
    assert r.status_code == 403 and versions() == before  # what another site's page could make a browser send
    csrf = c.get("/api/me").json()["csrf"]
    r = c.post("/api/scorecards", content=card(2), headers={"content-type": "text/plain", "X-CSRF-Token": csrf})
    assert r.status_code == 201 and versions() == before + 1
    c.cookies.clear()
    r = c.post("/api/scorecards", content=card(3), headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201 and versions() == before + 2  # a bearer token needs no CSRF token
    # the form token of another session does not pass
    other = TestClient(c.app)
    assert other.post("/api/login", json={"username": "admin", "password": PASSWORD}).status_code == 200
    r = other.post("/api/scorecards", content=card(4), headers={"X-CSRF-Token": csrf})
    assert r.status_code == 403


def test_the_login_form_is_throttled_too(hub_store: Store) -> None:
    c, _ = admin_client(hub_store)
    c.cookies.clear()
    codes = [c.post("/login", data={"username": "admin", "password": "wrong"}, follow_redirects=False).status_code
             for _ in range(5)]  # fmt: skip
    assert codes == [303] * 5
    r = c.post("/login", data={"username": "admin", "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0 and 'id="login-throttled"' in r.text
    assert "qa_session" not in r.headers.get("set-cookie", "")


def test_throttle_memory_is_bounded(hub_store: Store) -> None:
    guard = auth.LoginGuard(keys=50, addr_limit=10**6)
    for i in range(400):
        with pytest.raises(auth.AuthError):
            guard.login(hub_store, f"user-{i}", "wrong", f"10.9.{i // 250}.{i % 250}")
    assert guard.tracked() == (50, 50)


# --- bounded pages and robust serving (TestClient, both backends) ---------------------------------------------------


def add_rows(store: Store, call_id: str, rows: list[tuple[str, str, int, float, float, str]]) -> None:
    """Events written straight into the table, as rows an older hub stored before ingest bounded them."""
    store.db.executemany(
        "INSERT INTO events (id, site, seat, seq, epoch, call_id, agent_id, type, ts, start_s, end_s, payload,"
        " received) VALUES (?, 'sh', ?, ?, NULL, ?, 'a1', ?, '2026-01-05T01:10:00.000Z', ?, ?, ?, 0)",
        [(f"{call_id}-{seat}-{seq}", seat, seq, call_id, typ, s, e, p) for typ, seat, seq, s, e, p in rows],
    )


def stored_call(store: Store, call_id: str) -> TestClient:
    store.put_site("sh", "Shanghai", "Asia/Shanghai")
    store.put_team("t1", "Team One", "sh")
    store.put_agent("a1", "Alice", "t1")
    ingest(store, Station("sh", "s01").call(call_id, "2026-01-05T01:10:00.000Z", agent="a1"))
    c, _ = admin_client(store)
    return c


def test_a_huge_call_keeps_its_page_and_api_small(hub_store: Store) -> None:
    store = hub_store
    c = stored_call(store, "HUGE")
    n = 50_000
    rows = []
    for i in range(n):
        t = i * 2000.0
        ev: dict[str, Any] = {"id": f"x{i}", "type": "speech", "speaker": "agent" if i % 2 else "customer",
                              "start": t, "end": t + 1.5}  # fmt: skip
        if i % 5 == 0:
            ev = {"id": f"x{i}", "type": "talk_over", "kind": "interruption", "by": "agent", "start": t, "end": t + 1}
        rows.append((str(ev["type"]), "s99", i + 1, t, t + 1.5, json.dumps(ev)))
    add_rows(store, "HUGE", rows)
    # the stored summary now claims 1e8 s
    row = store.db.one("SELECT id, payload FROM events WHERE call_id = 'HUGE' AND type = 'call_summary'")
    assert row is not None
    sid, payload = row
    summary = json.loads(payload)
    summary["duration"] = 1e8
    store.db.execute("UPDATE events SET payload = ? WHERE id = ?", (json.dumps(summary), sid))
    store.db.execute("UPDATE calls SET duration = 1e8 WHERE call_id = 'HUGE'")
    # and its stored score cites every one of 20,000 talk-overs (as a scorer would for such a call)
    row = store.db.one("SELECT s.id, s.items FROM scores s JOIN calls c ON c.score_id = s.id WHERE c.call_id = 'HUGE'")
    assert row is not None
    items = json.loads(row[1])
    items[0]["evidence"] = [{"event_id": f"x{i}", "start": i, "end": i + 1, "index": None, "detail": "1.00 s"}
                            for i in range(20_000)]  # fmt: skip
    store.db.execute("UPDATE scores SET items = ? WHERE id = ?", (json.dumps(items), row[0]))

    t0 = time.perf_counter()
    page = c.get("/calls/HUGE")
    took = time.perf_counter() - t0
    assert page.status_code == 200 and "<svg" in page.text and "</html>" in page.text
    assert len(page.content) < 1_000_000
    bars = page.text.count("<rect class=")
    detail = c.get("/api/calls/HUGE")
    assert detail.status_code == 200 and len(detail.content) < 1_000_000
    shown = detail.json()["score"]["items"][0]
    assert len(shown["evidence"]) == 50 and shown["evidence_total"] == 20_000
    first = c.get("/api/calls/HUGE/events")
    assert first.status_code == 200 and len(first.json()) == EVENTS_PAGE and "x-next-after" in first.headers
    assert len(c.get("/api/calls/HUGE/events?limit=1000000").json()) == EVENTS_PAGE_MAX
    # walking the pages gives every event once
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        r = c.get("/api/calls/HUGE/events", params={"limit": EVENTS_PAGE_MAX, **({"after": after} if after else {})})
        assert r.status_code == 200 and len(r.content) < 1_100_000
        seen += [e["id"] for e in r.json()]
        pages += 1
        after = r.headers.get("x-next-after")
        if after is None:
            break
    total = store.db.scalar("SELECT COUNT(*) FROM events WHERE call_id = 'HUGE'")
    assert len(seen) == len(set(seen)) == total > n
    assert c.get("/api/calls/HUGE/events?after=nonsense").status_code == 422
    print(
        f"\ncall with duration 1e8 s and {total} events: page {len(page.content) / 1000:.0f} kB ({bars} bars,"
        f" {took:.2f} s), GET /api/calls/HUGE {len(detail.content) / 1000:.1f} kB, events in {pages} pages of"
        f" <= {EVENTS_PAGE_MAX}"
    )


def test_stored_junk_never_makes_a_500(hub_store: Store) -> None:
    store = hub_store
    c = stored_call(store, "JUNK")
    bad = '{"id": "bad1", "type": "speech", "speaker": "agent", "start": 1, "end": 2, "note": "\\ud800 lone"}'
    nan = '{"id": "bad2", "type": "dead_air", "start": NaN, "end": Infinity, "len": -Infinity}'
    odd = '{"id": "bad3", "type": "emotion", "start": "soon", "end": null, "label": "' + "x" * 5000 + '"}'
    add_rows(store, "JUNK", [("speech", "s98", 1, 1, 2, bad), ("dead_air", "s98", 2, 0, 0, nan),
                             ("emotion", "s98", 3, 0, 0, odd)])  # fmt: skip
    row = store.db.one("SELECT id, payload FROM events WHERE call_id = 'JUNK' AND type = 'call_summary'")
    assert row is not None
    sid, payload = row
    store.db.execute("UPDATE events SET payload = ? WHERE id = ?", (payload[:-1] + ', "x": NaN, "y": 1e999}', sid))

    def strict(text: str) -> Any:
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in a JSON response"))

    r = c.get("/api/calls/JUNK/events")
    assert r.status_code == 200
    events = {e["id"]: e for e in strict(r.text)}
    assert events["bad1"]["note"].endswith(" lone") and events["bad2"]["start"] is None
    assert c.get("/api/calls/JUNK").status_code == 200
    page = c.get("/calls/JUNK")
    assert page.status_code == 200 and "x" * 100 not in page.text  # a long label is cut in the tooltip
    assert c.get("/api/export/calls.csv?period=month&end=2026-01-06").status_code == 200


# --- devices follow the role rules of calls (TestClient, both backends) ----------------------------------------------


def test_devices_are_scoped_like_calls(hub_store: Store) -> None:
    store = hub_store
    store.put_site("sh", "Shanghai", "Asia/Shanghai")
    store.put_team("t1", "Team One", "sh")
    store.put_team("t2", "Team Two", "sh")
    store.put_agent("a1", "Alice", "t1")
    store.put_agent("a3", "Chen", "t2")
    ingest(store, Station("sh", "s01").call("C1", "2026-01-05T01:10:00.000Z", agent="a1")
           + Station("sh", "s02").call("C3", "2026-01-05T01:10:00.000Z", agent="a3"))  # fmt: skip
    store.set_status("sh", "s01", status="online", health={"agent_id": "a3", "call_id": "C3", "pending": 1})
    store.set_status("sh", "s02", status="online", health={"agent_id": "a3", "call_id": "C3", "pending": 2})
    store.set_status("sh", "s03", status="online", health={"agent_id": "a1", "call_id": "C1", "pending": 0})
    for user, role, team, agent in (("admin", "admin", None, None), ("lead1", "lead", "t1", None),
                                    ("lead2", "lead", "t2", None), ("ag1", "agent", None, "a1")):  # fmt: skip
        auth.create_user(store, user, PASSWORD, role, team_id=team, agent_id=agent)
    c = TestClient(create_app(store))

    def devices(user: str) -> tuple[int, Any, str]:
        token = c.post("/api/login", json={"username": user, "password": PASSWORD}).json()["token"]
        c.cookies.clear()
        h = {"Authorization": f"Bearer {token}"}
        r = c.get("/api/devices", headers=h)
        page = c.get("/devices", headers=h)
        csv = c.get("/api/export/devices.csv", headers=h)
        assert page.status_code == csv.status_code == r.status_code
        return r.status_code, r.json(), page.text + csv.text

    code, rows, _ = devices("admin")
    assert code == 200 and [d["seat"] for d in rows] == ["s01", "s02", "s03"]
    assert rows[0]["health"]["call_id"] == "C3"  # QA staff see what the seats report
    code, rows, text = devices("lead1")
    # s01: its last call is a1's (team 1); its report names a3 of team 2, blanked. s03: no call stored, the
    # seat's own claim is not enough. s02: team 2's.
    assert code == 200 and [(d["seat"], d["agent_id"]) for d in rows] == [("s01", "a1")]
    assert rows[0]["health"]["agent_id"] is None and rows[0]["health"]["call_id"] is None
    assert rows[0]["outbox"] == 1
    assert "C3" not in text and '"a3"' not in text and "s02" not in text
    code, rows, text = devices("lead2")
    assert [(d["seat"], d["health"]["call_id"]) for d in rows] == [("s02", "C3")] and "s01" not in text
    assert devices("ag1")[0] == 403


def test_nonfinite_helper_is_exact() -> None:
    from hub.web.deps import dumps

    assert json.loads(dumps({"a": [math.nan, 1.5, math.inf], "b": "\ud800"})) == {"a": [None, 1.5, None], "b": "?"}


def test_the_timeline_is_drawn_at_bounded_resolution() -> None:
    """Crafted to defeat merging (every segment 2.05 px from the last of its colour, eleven colours): the
    timeline still stops at MAX_BARS bars and says how many it left out."""
    from hub.scoring import call_view
    from hub.web import charts

    duration = 1e6
    px = duration / (960 - 100)
    evs: list[dict[str, Any]] = [{"id": "sum", "type": "call_summary", "duration": duration, "start": 0, "end": 0}]
    lanes: list[dict[str, Any]] = [{"type": "speech", "speaker": "agent"}, {"type": "speech", "speaker": "customer"},
                                   {"type": "dead_air"}, *({"type": "talk_over", "kind": k, "by": "agent"}
                                   for k in ("interruption", "backchannel", "other")),
                                   *({"type": "emotion", "label": lab, "party": "customer"}
                                   for lab in ("angry", "happy", "sad", "neutral", "odd"))]  # fmt: skip
    for n, lane in enumerate(lanes):
        evs += [{**lane, "id": f"{n}-{i}", "start": i * 2.05 * px, "end": i * 2.05 * px + 0.1} for i in range(1000)]
    svg = charts.timeline(call_view(evs), {})  # type: ignore[arg-type]
    bars = svg.count("<rect class=")
    assert bars == charts.MAX_BARS and 'class="more"' in svg and len(svg) < 1_000_000
    assert svg.count("<line ") <= charts.MAX_TICKS + 1
