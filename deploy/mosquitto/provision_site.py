#!/usr/bin/env python3
"""Make a site's broker credentials: a site CA, the broker's TLS certificate, a password per seat and for the
hub (and the CTI bridge), and the ACL that confines every seat to its own topics.

    python deploy/mosquitto/provision_site.py --site lon --seats desk-001 desk-002 ... --out /etc/mosquitto/callqa \
        [--seat-range desk-%03d:1:500] [--hub-workers 2] [--broker-host mqtt.lon.example] [--days 825]

Writes into --out: ca.key, ca.crt (give ca.crt to stations and the hub), broker.key, broker.crt, passwords
(mosquitto_passwd hashes), acl, and secrets/<user>.env with `EDGE_AGENT_MQTT_USERNAME` and
`EDGE_AGENT_MQTT_PASSWORD` for each seat, `hub.env` (and `hub-2.env`... with --hub-workers), `hub-admin.env`,
`cti.env` (mode 0600; copy each to its machine and delete). Re-running adds new seats and keeps existing
passwords and the CA (rotate by deleting a seat's env file). Needs openssl and mosquitto_passwd (Debian:
openssl, mosquitto).

mosquitto.conf sets `use_username_as_clientid true`: the broker takes a client's user name as its client id,
so nobody can connect as the hub's or another seat's id (and kick it off or take over its session), and each
user is one connection. Hence a user per hub ingest worker (`hub`, `hub-2`, ...) and one for the admin's
one-off `qa-hub update publish` (`hub-admin`): as `hub` it would replace the hub's own session.

ACL (topics under qa/v1/{site}/{seat}/, docs/events.md):
- seat user = the seat id: write event, status, status/health, live, cmd_result; read cmd/+, ack, and the
  site-wide signed updates qa/v1/{site}/update/+/+. Nothing else: it can neither publish as another seat nor
  read another seat's events or commands, nor publish an update.
- hub, hub-N: read every seat's event, status, live, cmd_result, and the CTI's cmd/login and cmd/logout (the
  hub learns who is logged in at a seat from them, docs/trust.md); write ack and cmd (it relays commands) and
  the site-wide update topics (docs/updates.md). `update` is therefore not a seat id.
- hub-admin: write the site-wide update topics and every seat's cmd/update; read cmd_result (`--wait`).
- cti: write cmd/+ of every seat; read cmd_result.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
RESERVED = ("hub", "hub-admin", "cti", "update")
"""Users of their own, and the site-wide update topic's level (qa/v1/{site}/update/...); `hub-N` too."""
HUB_WORKER = re.compile(r"^hub-[0-9]+$")


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def make_ca(out: Path, site: str, days: int) -> None:
    if (out / "ca.crt").exists():
        return
    run(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        str(out / "ca.key"),
        "-out",
        str(out / "ca.crt"),
        "-days",
        str(days),
        "-subj",
        f"/CN=callqa site CA {site}",
    )
    (out / "ca.key").chmod(0o600)


def make_broker_cert(out: Path, hosts: list[str], days: int) -> None:
    key, csr, crt, ext = (out / n for n in ("broker.key", "broker.csr", "broker.crt", "broker.ext"))
    san = ",".join(f"IP:{h}" if re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]+:[0-9a-fA-F:]*", h) else f"DNS:{h}" for h in hosts)
    ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
    run(
        "openssl",
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        f"/CN={hosts[0]}",
    )
    run(
        "openssl",
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(out / "ca.crt"),
        "-CAkey",
        str(out / "ca.key"),
        "-CAcreateserial",
        "-out",
        str(crt),
        "-days",
        str(days),
        "-extfile",
        str(ext),
    )
    key.chmod(0o640)  # mosquitto reads it (group mosquitto where installed)
    csr.unlink()
    ext.unlink()


def hub_users(workers: int) -> list[str]:
    """One broker user per hub ingest worker: with use_username_as_clientid the user is the client id."""
    return ["hub", *(f"hub-{i}" for i in range(2, workers + 1))]


def acl(site: str, seats: list[str], workers: int = 1) -> str:
    lines = ["# made by deploy/mosquitto/provision_site.py; one block per user", ""]
    p = f"qa/v1/{site}"
    for user in hub_users(workers):
        lines += [
            f"user {user}",
            f"topic read {p}/+/event",
            f"topic read {p}/+/status",
            f"topic read {p}/+/status/health",
            f"topic read {p}/+/live",
            f"topic read {p}/+/cmd_result",
            f"topic read {p}/+/cmd/login",
            f"topic read {p}/+/cmd/logout",
            f"topic write {p}/+/ack",
            f"topic write {p}/+/cmd/+",
            f"topic write {p}/update/+/+",
            "",
        ]
    lines += [
        "user hub-admin",
        f"topic write {p}/update/+/+",
        f"topic write {p}/+/cmd/update",
        f"topic read {p}/+/cmd_result",
        "",
    ]
    lines += ["user cti", f"topic write {p}/+/cmd/+", f"topic read {p}/+/cmd_result", ""]
    for seat in seats:
        s = f"{p}/{seat}"
        lines += [
            f"user {seat}",
            f"topic write {s}/event",
            f"topic write {s}/status",
            f"topic write {s}/status/health",
            f"topic write {s}/live",
            f"topic write {s}/cmd_result",
            f"topic read {s}/cmd/+",
            f"topic read {s}/ack",
            f"topic read {p}/update/+/+",
            "",
        ]
    return "\n".join(lines)


def passwords(out: Path, users: list[str]) -> None:
    """Keep existing secrets; make new ones; rebuild the mosquitto password file from all of them."""
    sdir = out / "secrets"
    sdir.mkdir(mode=0o700, exist_ok=True)
    pwfile = out / "passwords"
    pwfile.write_text("")
    for user in users:
        env = sdir / f"{user}.env"
        if env.exists():
            pw = next(
                x.split("=", 1)[1] for x in env.read_text().splitlines() if x.startswith("EDGE_AGENT_MQTT_PASSWORD=")
            )
        else:
            pw = secrets.token_urlsafe(24)
            fd = os.open(env, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"EDGE_AGENT_MQTT_USERNAME={user}\nEDGE_AGENT_MQTT_PASSWORD={pw}\n")
        run("mosquitto_passwd", "-b", str(pwfile), user, pw)
    pwfile.chmod(0o640)


def seat_names(args: argparse.Namespace) -> list[str]:
    seats = list(args.seats or [])
    if args.seat_range:
        fmt, first, last = args.seat_range.rsplit(":", 2)
        seats += [fmt % i for i in range(int(first), int(last) + 1)]
    bad = [s for s in [args.site, *seats] if not NAME.fullmatch(s) or s in RESERVED or HUB_WORKER.fullmatch(s)]
    if bad:
        raise SystemExit(
            f"provision_site: bad site/seat names {bad}: 1-64 of A-Z a-z 0-9 _ . - (not hub, hub-N, hub-admin, cti,"
            " update)"
        )
    return sorted(set(seats))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--site", required=True)
    ap.add_argument("--seats", nargs="*", help="seat ids")
    ap.add_argument("--seat-range", help="printf format and range, e.g. desk-%%03d:1:500")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--broker-host", nargs="+", default=["localhost", "127.0.0.1"])
    ap.add_argument("--days", type=int, default=825)
    ap.add_argument("--hub-workers", type=int, default=1, help="hub ingest workers: users hub, hub-2, ... (1-32)")
    args = ap.parse_args()
    if not 1 <= args.hub_workers <= 32:
        print("provision_site: --hub-workers must be 1-32", file=sys.stderr)
        return 2
    for tool in ("openssl", "mosquitto_passwd"):
        if shutil.which(tool) is None:
            print(f"provision_site: {tool} is not installed", file=sys.stderr)
            return 2
    seats = seat_names(args)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    make_ca(out, args.site, args.days)
    if not (out / "broker.crt").exists():
        make_broker_cert(out, args.broker_host, args.days)
    passwords(out, [*hub_users(args.hub_workers), "hub-admin", "cti", *seats])
    (out / "acl").write_text(acl(args.site, seats, args.hub_workers))
    print(f"site {args.site}: {len(seats)} seats; CA {out / 'ca.crt'}; secrets in {out / 'secrets'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
