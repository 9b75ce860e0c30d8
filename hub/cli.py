"""`qa-hub`: run the hub (ingest + API + dashboard) and administer it.

    qa-hub serve --broker mqtt://HOST:PORT --db URL --http HOST:PORT [--tz Asia/Shanghai]
                 [--share GROUP --client-id UNIQUE [--no-http]]   (scale-out workers, docs/scale.md)
                 [--update-key KEY --update-broker mqtts://hub-admin@HOST:PORT]   (tone page's send, docs/hub.md)
    qa-hub user create NAME --role admin|reviewer|lead|agent [--agent-id A] [--team-id T]   (password: stdin/prompt)
    qa-hub scorecard import FILE [--no-activate]
    qa-hub rescore NAME VERSION [--since YYYY-MM-DD]
    qa-hub site set ID --name N --tz ZONE
    qa-hub team set ID --name N [--site S]
    qa-hub agent set ID --name N [--team T]
    qa-hub update keygen --out DIR   |   qa-hub update publish ...   (signed station updates, docs/updates.md)
    qa-hub backup OUT [--keep N]   |   qa-hub restore IN   (the database, deploy/hub/README.md)
    qa-hub validity rebuild   |   qa-hub validity report --version V [--scorecard S --outcome O --csv]   (issue 22)

`--db` (or `QA_HUB_DB`) is a SQLite path (default `hub.sqlite`) or a `postgresql://` DSN. Errors are one line
on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from hub import backup, updates, validity
from hub.db import StorageError
from hub.scorecard import DEFAULT_SCORECARD, ScorecardError, load
from hub.scores import Scorer, get_scorecard, import_scorecard
from hub.storage import Store
from hub.tone import ConfigSigner

log = logging.getLogger("hub")


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: use HOST:PORT")
    return host, int(port)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r}: seconds, above 0 and at most 3600")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qa-hub", description="callqa site hub")
    p.add_argument("--db", default=os.environ.get("QA_HUB_DB", "hub.sqlite"), help="SQLite path or postgresql:// DSN")
    p.add_argument("--tz", default=os.environ.get("QA_HUB_TZ", "UTC"), help="default site time zone (IANA name)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("serve", help="ingest from the broker and serve the API and dashboard")
    s.add_argument("--broker", default=os.environ.get("QA_HUB_BROKER", "mqtt://127.0.0.1:1883"))
    s.add_argument("--http", type=_host_port, default=("127.0.0.1", 8080))
    s.add_argument("--client-id", default="callqa-hub-ingest", help="unique per worker")
    s.add_argument(
        "--share",
        metavar="GROUP",
        default=os.environ.get("QA_HUB_SHARE"),
        help="scale-out: one of several workers sharing ingest through `$share/GROUP/...` (PostgreSQL)",
    )
    s.add_argument("--no-http", action="store_true", help="ingest only: no API or dashboard in this worker")
    s.add_argument("--ssl-certfile", default=os.environ.get("QA_HUB_SSL_CERTFILE"), help="serve https (PEM chain)")
    s.add_argument("--ssl-keyfile", default=os.environ.get("QA_HUB_SSL_KEYFILE"), help="its private key (PEM)")
    s.add_argument(
        "--forwarded-allow-ips",
        default=os.environ.get("QA_HUB_FORWARDED_ALLOW_IPS", "127.0.0.1"),
        help="reverse proxies whose X-Forwarded-Proto/-For are believed (comma-separated; default 127.0.0.1):"
        " https there makes the session cookie Secure, and login throttling counts the client's address",
    )
    s.add_argument(
        "--alert-dead-air-s",
        type=_positive_seconds,
        default=os.environ.get("QA_HUB_ALERT_DEAD_AIR_S", "10"),
        help="the live wall alerts on dead air at least this long (default 10 s)",
    )

    s.add_argument(
        "--update-key",
        default=os.environ.get("QA_HUB_UPDATE_KEY"),
        help="the update signing key: with it an admin may send a site's fitted anger alert threshold to its"
        " stations from the dashboard (docs/updates.md: a key on the hub server is a choice, not the default)",
    )
    s.add_argument(
        "--update-broker",
        default=os.environ.get("QA_HUB_UPDATE_BROKER"),
        help="with --update-key: mqtt[s]://hub-admin@HOST:PORT (password: QA_HUB_UPDATE_PASSWORD)",
    )
    s.add_argument("--update-ca-certs", default=os.environ.get("QA_HUB_UPDATE_CA_CERTS"), help="the site CA")

    u = sub.add_parser("user", help="users").add_subparsers(dest="action", required=True)
    uc = u.add_parser("create")
    uc.add_argument("username")
    uc.add_argument("--role", required=True, choices=("admin", "reviewer", "lead", "agent"))
    uc.add_argument("--agent-id")
    uc.add_argument("--team-id")

    sc = sub.add_parser("scorecard", help="scorecards").add_subparsers(dest="action", required=True)
    si = sc.add_parser("import")
    si.add_argument("file")
    si.add_argument("--no-activate", action="store_true")

    r = sub.add_parser("rescore", help="re-apply a stored scorecard version to past calls (history is kept)")
    r.add_argument("name")
    r.add_argument("version", type=int)
    r.add_argument("--since", help="only calls from this local day (YYYY-MM-DD)")

    updates.add_parser(sub)
    backup.add_parser(sub)
    validity.add_parser(sub)

    for what in ("site", "team", "agent"):
        d = sub.add_parser(what, help=f"{what}s").add_subparsers(dest="action", required=True)
        ds = d.add_parser("set")
        ds.add_argument("id")
        ds.add_argument("--name", required=True)
        if what == "site":
            ds.add_argument("--tz", dest="site_tz", required=True)
        elif what == "team":
            ds.add_argument("--site")
        else:
            ds.add_argument("--team")
    return p


def ensure_scorecard(store: Store) -> None:
    """A fresh hub scores with the shipped scorecard until an admin imports another."""
    if get_scorecard(store) is None:
        _, text = load(DEFAULT_SCORECARD)
        import_scorecard(store, text)


def serve(store: Store, args: argparse.Namespace) -> int:
    import uvicorn

    from edge_agent.mqtt_publisher import BrokerConfig, BrokerUrlError
    from hub.ingest import Ingest
    from hub.live import LiveBoard
    from hub.rollups import settle_all
    from hub.web.app import create_app

    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise ValueError("--ssl-certfile and --ssl-keyfile go together")
    if args.ssl_certfile:
        import ssl

        try:  # here, for a one-line error: uvicorn would fail later, with a traceback, after ingest started
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(args.ssl_certfile, args.ssl_keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"--ssl-certfile/--ssl-keyfile: cannot load them: {exc}") from None
    try:
        broker = BrokerConfig.from_url(args.broker)
    except BrokerUrlError as exc:
        raise ValueError(str(exc)) from None
    signer = config_signer(args)
    ensure_scorecard(store)
    settle_all(store)  # running rollup totals a migration or an interrupted re-score left stale (hub/rollups.py)
    # the wall names the agent the hub holds as logged in at the seat, never the one a seat claims
    board = LiveBoard(args.alert_dead_air_s, agent_of=lambda site, seat: store.agent_at(site, seat, time.time()))
    scorer = Scorer(store, processes=1)  # scoring's computation off the GIL ingest's threads need (hub/scores.py)
    ingest = Ingest(
        store, broker, args.client_id, scorer=scorer, on_stored=board.update, share_group=args.share,
        on_live=None if args.no_http else board.live,
    )  # fmt: skip
    ingest.start()
    host, port = args.http

    def shutdown(signum: int, frame: object) -> None:
        raise _Shutdown(signum)

    # uvicorn stops gracefully on SIGTERM/SIGINT and then re-raises the signal to the handler it found: ours,
    # so ingest is stopped (its session closed, acks flushed) before the process exits 0
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, shutdown)
    try:
        if args.no_http:
            log.info("ingest-only worker %s (group %s)", args.client_id, args.share)
            threading.Event().wait()  # until a signal
        else:
            uvicorn.run(
                create_app(store, board, signer), host=host, port=port, log_level="info", access_log=False,
                ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile,
                proxy_headers=True, forwarded_allow_ips=args.forwarded_allow_ips,
            )  # fmt: skip
    except _Shutdown as stop:
        log.info("stopping on signal %d", stop.signum)
    finally:
        ingest.stop()
    return 0


def config_signer(args: argparse.Namespace) -> ConfigSigner | None:
    """The key and broker `hub.tone.send` signs and publishes with, when `--update-key` is given; ValueError."""
    if not args.update_key:
        return None
    if not args.update_broker:
        raise ValueError("--update-key needs --update-broker mqtt[s]://hub-admin@HOST:PORT")
    from edge_agent.mqtt_publisher import BrokerConfig, BrokerUrlError

    try:
        broker = BrokerConfig.from_url(args.update_broker, ca_certs=args.update_ca_certs)
    except BrokerUrlError as exc:
        raise ValueError(str(exc)) from None
    if broker.username is not None and urlsplit(args.update_broker).password is None:
        # from_url took the ingest broker's password variable, which is the hub's own user's: not hub-admin's
        broker = dataclasses.replace(broker, password=os.environ.get("QA_HUB_UPDATE_PASSWORD"))
    if broker.username is not None and updates.HUB_USER.fullmatch(broker.username):
        raise ValueError(f"--update-broker: {broker.username!r} is a hub ingest user: use 'hub-admin'")
    return ConfigSigner(updates.load_private_key(Path(args.update_key)), broker)


class _Shutdown(BaseException):  # not Exception: nothing on the way out may swallow it
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def run(args: argparse.Namespace) -> int:
    shared = args.cmd == "serve" and bool(args.share)
    store = Store(args.db, default_tz=args.tz, shared=shared)
    try:
        if args.cmd == "serve":
            return serve(store, args)
        if args.cmd == "user":
            from hub.auth import create_user

            password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass()
            create_user(store, args.username, password, args.role, agent_id=args.agent_id, team_id=args.team_id)
            log.info("created %s (%s)", args.username, args.role)
        elif args.cmd == "scorecard":
            card, text = load(args.file)
            import_scorecard(store, text, activate=not args.no_activate)
            log.info("imported scorecard %s version %d (%d rules)", card.name, card.version, len(card.rules))
        elif args.cmd == "rescore":
            stored = get_scorecard(store, args.name, args.version)
            if stored is None:
                raise ValueError(f"no stored scorecard {args.name} version {args.version}: import it first")
            n = Scorer(store).rescore(stored, since_day=args.since, actor="cli")
            log.info("rescored %d calls under %s version %d", n, stored.name, stored.version)
        elif args.cmd == "site":
            store.put_site(args.id, args.name, args.site_tz)
        elif args.cmd == "team":
            store.put_team(args.id, args.name, args.site)
        elif args.cmd == "validity":
            return validity.run_cli(store, args, sys.stdout)
        elif args.cmd == "agent":
            store.put_agent(args.id, args.name, args.team)
        return 0
    finally:
        store.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.cmd in ("backup", "restore"):
            return backup.run_cli(args)  # the database as it is: neither created nor migrated
        return updates.run_cli(args) if args.cmd == "update" else run(args)  # updates need no database
    except (StorageError, ScorecardError, ValueError) as exc:
        print(f"qa-hub: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
