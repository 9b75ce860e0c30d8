"""The hub admin's side of signed updates (docs/updates.md): make the signing key, sign and publish an update.

    qa-hub update keygen --out DIR
    qa-hub update publish --kind model|config --name NAME --version V --file F --key PRIVATE --site SITE
        [--seat SEAT] --broker mqtt[s]://[user@]HOST:PORT [--ca-certs CA] [--wait S]

The private key stays on the admin's machine (mode 0600); stations get only the public key. With `--seat` the
update goes to that seat's `cmd/update` (QoS 1, not retained: a canary); without it to the site-wide
`qa/v1/{site}/update/{kind}/{name}`, retained, so every seat, including one that is off now, takes it.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from edge_agent.commands import cmd_result_topic, cmd_topic, update_topic
from edge_agent.config import first_error
from edge_agent.mqtt_publisher import BrokerConfig, BrokerUrlError, new_client
from edge_agent.schema import check_name, utc_now
from edge_agent.updates import Kind, UpdateManifest, key_id, public_key_text, sign

PRIVATE_NAME = "update-signing.key"
PUBLIC_NAME = "update-signing.pub"


def keygen(out: Path) -> tuple[Path, Path, str]:
    """A new Ed25519 key pair in `out`: (private key PEM, 0600; public key base64; its key id). Never overwrites."""
    out.mkdir(parents=True, exist_ok=True)
    priv, pub = out / PRIVATE_NAME, out / PUBLIC_NAME
    if priv.exists() or pub.exists():
        raise ValueError(f"{out} already holds {PRIVATE_NAME} or {PUBLIC_NAME}: not overwritten")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(priv, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others, not even briefly
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub.write_text(public_key_text(key.public_key()) + "\n")
    return priv, pub, key_id(key.public_key())


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the signing key ({exc.strerror})") from None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 key")
    return key


@dataclass(frozen=True)
class Prepared:
    topic: str
    retain: bool
    body: str
    manifest: UpdateManifest
    command_id: str
    result_topic: str | None
    """Where the seat answers (a seat-targeted update); None for the site-wide topic."""


def prepare(
    kind: Kind, name: str, version: str, payload: bytes, key: Ed25519PrivateKey, site: str, seat: str | None
) -> Prepared:
    """The signed update message and where it goes; ValueError with one line for a bad name or version."""
    check_name("site", site)
    if seat is not None:
        check_name("seat", seat)
    try:
        manifest = sign(kind, name, version, payload, key)
    except ValidationError as exc:
        raise ValueError(f"update: {first_error(exc)}") from None
    cid = f"update-{uuid.uuid4().hex[:12]}"
    body = {
        "id": cid,
        "ts": utc_now(),
        "manifest": manifest.model_dump(),
        "payload": base64.b64encode(payload).decode(),
    }
    text = json.dumps(body, separators=(",", ":"))
    if seat is None:
        return Prepared(update_topic(site, kind, name), True, text, manifest, cid, None)
    return Prepared(cmd_topic(site, seat, "update"), False, text, manifest, cid, cmd_result_topic(site, seat))


HUB_USER = re.compile(r"hub(-[0-9]+)?")
"""The hub's ingest broker users (deploy/mosquitto/provision_site.py `--hub-workers`)."""


def publish(broker: BrokerConfig, p: Prepared, wait_s: float = 0.0) -> str | None:
    """Publish at QoS 1 and wait for the broker's PUBACK; with `wait_s` and a seat, also up to `wait_s` for the
    seat's cmd_result for this update (its JSON, or None). ValueError when the broker does not take it, or when
    `broker` names a hub ingest user."""
    if broker.username is not None and HUB_USER.fullmatch(broker.username):
        # the production broker makes the user name the client id: connecting (with a clean session) as the
        # running hub's user would disconnect the hub and throw away its persistent session
        raise ValueError(
            f"broker user {broker.username!r} is a hub ingest user: publish updates as 'hub-admin'"
            " (deploy/mosquitto/provision_site.py)"
        )
    client = new_client(broker, f"callqa-hub-update-{uuid.uuid4().hex[:8]}", clean_session=True)
    where = f"broker {broker.host}:{broker.port}"
    connected, subscribed, answered = threading.Event(), threading.Event(), threading.Event()
    result: list[str] = []

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(body, dict) and body.get("id") == p.command_id:
            result.append(msg.payload.decode())
            answered.set()

    client.on_connect = lambda c, u, flags, rc, props: None if rc.is_failure else connected.set()
    client.on_subscribe = lambda c, u, mid, rcs, props: subscribed.set()
    client.on_message = on_message
    try:
        client.connect(broker.host, broker.port, keepalive=30)
    except OSError as exc:
        raise ValueError(f"{where}: {exc}") from None
    client.loop_start()
    try:
        if not connected.wait(10):
            raise ValueError(f"{where}: connection refused or timed out")
        listen = p.result_topic if wait_s > 0 else None
        if listen is not None:
            client.subscribe(listen, qos=1)
            if not subscribed.wait(10):  # the result must not come before we listen
                raise ValueError(f"{where}: no SUBACK for {listen}")
        info = client.publish(p.topic, p.body, qos=1, retain=p.retain)
        info.wait_for_publish(30)
        if not info.is_published():
            raise ValueError(f"{where}: the update was not acknowledged")
        if listen is not None and answered.wait(wait_s):
            return result[0]
        return None
    finally:
        client.disconnect()
        client.loop_stop()


# --- `qa-hub update ...` ------------------------------------------------------------------------------------


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser("update", help="signed model/config updates for stations").add_subparsers(
        dest="action", required=True
    )
    kg = up.add_parser("keygen", help="make the signing key pair (the private key stays on this machine)")
    kg.add_argument("--out", required=True, type=Path)
    pb = up.add_parser("publish", help="sign an update and publish it to a seat or the whole site")
    pb.add_argument("--kind", required=True, choices=("model", "config"))
    pb.add_argument("--name", required=True, help="e.g. emotion (model) or station (config)")
    pb.add_argument("--version", required=True, help="dotted integers, newer than the stations' current")
    pb.add_argument("--file", required=True, type=Path, help="the model file, or the config document (YAML)")
    pb.add_argument("--key", required=True, type=Path, help=f"the private key ({PRIVATE_NAME})")
    pb.add_argument("--site", required=True)
    pb.add_argument("--seat", help="one seat (its cmd/update); default: the whole site (retained)")
    pb.add_argument("--broker", default=os.environ.get("QA_HUB_BROKER", "mqtt://127.0.0.1:1883"))
    pb.add_argument("--ca-certs", help="the site CA for mqtts://")
    pb.add_argument("--wait", type=float, default=0.0, metavar="S", help="with --seat: wait S s for its result")


def run_cli(args: argparse.Namespace) -> int:
    """0 when done (and, with --wait, the seat applied it); 1 when the seat refused it; ValueError: exit 2."""
    if args.action == "keygen":
        priv, pub, kid = keygen(args.out)
        print(f"private key {priv} (keep it here, 0600); public key {pub} (key id {kid}) for the stations")
        return 0
    try:
        payload = args.file.read_bytes()
    except OSError as exc:
        raise ValueError(f"{args.file}: {exc.strerror}") from None
    try:
        broker = BrokerConfig.from_url(args.broker, ca_certs=args.ca_certs)
    except BrokerUrlError as exc:
        raise ValueError(str(exc)) from None
    p = prepare(args.kind, args.name, args.version, payload, load_private_key(args.key), args.site, args.seat)
    answer = publish(broker, p, args.wait)
    print(f"published {p.manifest.label} sha256 {p.manifest.sha256} to {p.topic}{' (retained)' if p.retain else ''}")
    if args.wait > 0 and p.result_topic is not None:
        if answer is None:
            print(
                f"qa-hub: no result from {args.seat} in {args.wait:g} s (the broker keeps it for the seat)",
                file=sys.stderr,
            )
            return 3
        print(answer)
        return 0 if json.loads(answer).get("ok") else 1
    return 0
