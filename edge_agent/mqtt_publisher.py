"""MQTT side of the station: sends outbox rows to the broker and deletes each only once the hub has it.

    Outbox --pending--> pump thread --publish QoS 1--> paho network thread --PUBACK--> on_publish --> mark_sent
    hub --retained qa/v1/{site}/{seat}/ack {"seq": N}--> on_message --> confirm (delete seq <= N)

A PUBACK alone is not enough: a broker that is killed before it saved or forwarded a message loses it, and it
had already acknowledged it. So by default (`hub_confirm=True`) a PUBACK only marks the row sent; the hub
publishes, per seat, the seqs it has committed, and only those rows are deleted. Rows sent but unconfirmed for
`resend_s`, and all of them after a reconnect, are published again (the hub deduplicates by `id`).
With `hub_confirm=False` a row is deleted on its PUBACK (for a hub that publishes no acks). An ack for this
outbox's epoch above the last seq it issued means the outbox is an older copy of itself: the pump thread numbers
this process's unsent rows above the hub's seq (`Outbox.resync`) before taking the ack, so nothing is deleted
that the hub does not hold and no new event reuses a seq the hub holds another event under.

One paho 2.x client per seat: a stable client id and `clean_session=False`, so the broker keeps the session
over reconnects; paho itself re-sends unacknowledged messages after a reconnect, and the outbox re-sends
them after a process restart (the hub deduplicates by `id`). `qa/v1/{site}/{seat}/status` is retained:
`online` on every connect, `offline` as the last will and on a clean stop. `.../status/health` (retained
JSON) carries the outbox backlog and the drop count.

Locks: callbacks run on paho's network thread while it holds paho's own message lock, so they never wait
for a lock that is held around a `publish` call; they record, ack and wake the pump thread, nothing more.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.commands import (
    Command,
    CommandError,
    cmd_result_topic,
    cmd_subscription,
    cmd_topic,
    command_result,
    parse_command,
    update_subscription,
)
from edge_agent.outbox import Outbox
from edge_agent.schema import (
    ZLIB,
    ack_topic,
    check_name,
    encode_payload,
    event_topic,
    live_topic,
    status_topic,
    utc_now,
)

log = logging.getLogger(__name__)

PASSWORD_ENV = "EDGE_AGENT_MQTT_PASSWORD"  # noqa: S105 - the variable name, not a secret
"""Where the broker password comes from when the URL has none (keeps it out of argv and shell history)."""


class BrokerUrlError(ValueError):
    """A --broker value that is not mqtt[s]://[user[:password]@]host[:port]."""


@dataclass(frozen=True)
class BrokerConfig:
    host: str
    port: int = 1883
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_certs: str | None = None
    """CA bundle for TLS; None means the system's."""
    certfile: str | None = None
    """Client certificate (optional, TLS only)."""
    keyfile: str | None = None
    keepalive_s: int = 30
    reconnect_max_s: int = 30

    @classmethod
    def from_url(cls, url: str, **kw: Any) -> BrokerConfig:
        """mqtt://host[:1883] or mqtts://host[:8883], optionally with user[:password]@."""
        try:
            u = urlsplit(url)
            port = u.port
        except ValueError as exc:
            raise BrokerUrlError(f"broker {url!r}: {exc}") from None
        if u.scheme not in ("mqtt", "mqtts") or not u.hostname or u.path not in ("", "/"):
            raise BrokerUrlError(f"broker {url!r}: expected mqtt://HOST:PORT or mqtts://HOST:PORT")
        tls = u.scheme == "mqtts"
        password = unquote(u.password) if u.password else os.environ.get(PASSWORD_ENV)
        return cls(
            host=u.hostname,
            port=port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(u.username) if u.username else None,
            password=password if u.username else None,
            **kw,
        )


def new_client(
    broker: BrokerConfig, client_id: str, *, manual_ack: bool = False, clean_session: bool = False
) -> mqtt.Client:
    """A paho client with a persistent session (unless `clean_session`: one-off tools), credentials, TLS and
    reconnect backoff set."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session, manual_ack=manual_ack
    )
    if broker.username is not None:
        client.username_pw_set(broker.username, broker.password)
    if broker.tls:
        client.tls_set(ca_certs=broker.ca_certs, certfile=broker.certfile, keyfile=broker.keyfile)
    # paho backs off exponentially (min, 2 min, 4 min ... max) and has no jitter of its own: a per-process random
    # min and max put every step of a whole site's reconnects after a broker restart at a different moment
    jittered_min = random.uniform(0.5, 1.5)  # noqa: S311 - not crypto
    jittered_max = broker.reconnect_max_s * random.uniform(0.7, 1.0)  # noqa: S311
    # paho annotates the delays as int but sleeps on floats (it adds them to time.monotonic())
    client.reconnect_delay_set(min_delay=jittered_min, max_delay=max(2.0, jittered_max))  # type: ignore[arg-type]
    return client


def _rc_ok(rc: MQTTErrorCode) -> bool:
    # NO_CONN: paho keeps a QoS 1 message and sends it after the reconnect
    return rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)


@dataclass(frozen=True)
class HubAck:
    top: int
    """Highest seq covered."""
    gaps: list[tuple[int, int]]
    """Inclusive seq ranges below `top` the hub does not have."""
    epoch: str | None
    """The outbox epoch the seqs count in; None from a hub that does not say (then only `top` is checked)."""
    enc: tuple[str, ...] = ()
    """Payload encodings the hub reads besides plain JSON (`schema.ENCODINGS`); none from an older hub."""


def parse_ack(payload: bytes | bytearray) -> HubAck:
    """A hub ack `{"seq": N, "epoch": E}`: covers 1..N of epoch E.

    With `"max": M, "gaps": [[a, b], ...]` it covers 1..M except the gaps, which lets the station delete rows
    above a gap the hub will never fill (rows the station's budget dropped). ValueError for anything else.
    """
    data = json.loads(payload)
    if not isinstance(data, dict) or not _is_seq(data.get("seq")):
        raise ValueError("no integer 'seq'")
    epoch = data.get("epoch")
    if epoch is not None and not isinstance(epoch, str):
        raise ValueError("'epoch' is not a string")
    top, gaps = int(data["seq"]), []
    raw = data.get("gaps")
    if _is_seq(data.get("max")) and isinstance(raw, list):
        if not all(isinstance(g, list) and len(g) == 2 and all(_is_seq(x) for x in g) for g in raw):
            raise ValueError("malformed 'gaps'")
        top, gaps = int(data["max"]), [(int(a), int(b)) for a, b in raw]
    enc = data.get("enc")
    encodings = tuple(e for e in enc if isinstance(e, str)) if isinstance(enc, list) else ()
    return HubAck(top, gaps, epoch, encodings)


def _is_seq(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


class Publisher:
    """Publishes one seat's outbox rows at QoS 1; rows leave the outbox once the hub (or broker) has them."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        site: str,
        seat: str,
        broker: BrokerConfig,
        client_id: str | None = None,
        window: int = 1000,
        inflight: int = 100,
        health_interval_s: float = 60.0,
        hub_confirm: bool = True,
        resend_s: float = 30.0,
        resend_max_s: float = 600.0,
    ) -> None:
        self.outbox, self.site, self.seat, self.broker = (
            outbox,
            check_name("site", site),
            check_name("seat", seat),
            broker,
        )
        self.window = window
        """Rows handed to paho and not yet acknowledged, at most (bounds memory, keeps mids unique)."""
        self.health_interval_s = health_interval_s
        self.hub_confirm = hub_confirm
        """Delete rows only on the hub's ack (end to end), not on the broker's PUBACK."""
        self.resend_s = resend_s
        """Publish a row again when the hub has not confirmed it this long after its PUBACK."""
        self.resend_max_s = resend_max_s
        self._resend_wait = resend_s
        """Doubles (up to resend_max_s) each time rows go again with no confirmation in between: a hub that is
        down is not sent the same backlog every 30 s by every seat."""
        self._ack_topic = ack_topic(site, seat)
        self._cmd_prefix = cmd_subscription(site, seat)[:-1]
        self._update_prefix = update_subscription(site)[:-3]
        self.health_extra: Callable[[], dict[str, Any]] | None = None
        """More health for `status/health` (the station runtime's: device, call state, temperature...)."""
        self._health_due = threading.Event()
        self.on_command: Callable[[Command], None] | None = None
        """Called on paho's network thread with each valid command: hand it over (a queue), do not act there.
        The runtime answers with `reply`. Unset, commands are refused with an error result."""
        self.client = new_client(broker, client_id or f"callqa-station-{site}-{seat}")
        self.client.max_inflight_messages_set(inflight)
        self.client.will_set(status_topic(site, seat), "offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self._map_lock = threading.Lock()  # guards _by_mid and _early; never held across a paho call
        self._by_mid: dict[int, str | None] = {}  # mid -> outbox id (None: a status message)
        self._early: set[int] = set()  # PUBACKs that beat publish() returning its mid
        self._cursor = 0  # outbox `n` of the last row handed to paho
        self._resync_ack: HubAck | None = None  # an ack beyond this outbox's seqs, for the pump (`_resync`)
        self._resend_before: float | None = None  # set on reconnect: resend rows PUBACKed before it
        self._next_resend_scan = 0.0
        self._wake = threading.Event()
        self._progress = threading.Condition()
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._pump_thread: threading.Thread | None = None
        self.acked = 0
        """Events acknowledged by the broker since start."""
        self.confirmed = 0
        """Events the hub confirmed (and the outbox deleted) since start."""
        self.resent = 0
        """Events published again since start because the hub had not confirmed them."""
        self.encoding: str | None = None
        """How event payloads go out: None (plain JSON) until the hub's ack says it reads zlib."""
        self.connects = 0
        """Successful connections since start (more than one: it reconnected)."""
        self.commands = 0
        """Valid commands received since start."""
        self.commands_rejected = 0
        """Messages on the cmd topics that were not valid commands (answered with an error, not acted on)."""
        self.resyncs = 0
        """Hub acks of this outbox's epoch beyond its last seq (a restored outbox) since start (`Outbox.resync`)."""

    # --- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> None:
        log.info("station %s/%s: connecting to %s:%d", self.site, self.seat, self.broker.host, self.broker.port)
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=self.broker.keepalive_s)
        self.client.loop_start()  # paho's thread: network I/O, callbacks, reconnects with backoff
        self._pump_thread = threading.Thread(target=self._pump_loop, name=f"outbox-pump-{self.seat}", daemon=True)
        self._pump_thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Say `offline` (the will covers unclean exits), disconnect; unacknowledged rows stay in the outbox."""
        self._stopping.set()
        self._wake.set()
        if self._pump_thread is not None:
            self._pump_thread.join(timeout)
        if self._connected.is_set():
            info = self.client.publish(status_topic(self.site, self.seat), "offline", qos=1, retain=True)
            if _rc_ok(info.rc):
                info.wait_for_publish(timeout)
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Publisher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def request_health(self) -> None:
        """Something the hub shows changed (privacy, call state, a device): publish health now."""
        self._health_due.set()
        self._wake.set()

    def notify(self) -> None:
        """New rows were put into the outbox: send them now rather than at the next poll."""
        self._wake.set()

    def drain(self, timeout: float) -> bool:
        """Wait until this seat's outbox is empty (every event confirmed by the hub, or with `hub_confirm=False`
        acknowledged by the broker, or dropped by the budget); False if `timeout` runs out."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._progress:
            while self.outbox.count(self.seat) > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._progress.wait(min(remaining, 0.25))
        return True

    # --- pumping -------------------------------------------------------------------------------------------

    def _pump_loop(self) -> None:
        next_health = 0.0
        while not self._stopping.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            if self._stopping.is_set() or not self._connected.is_set():
                continue
            try:
                self._resync()
                self._pump()
                if time.monotonic() >= next_health or self._health_due.is_set():
                    self._health_due.clear()
                    self.publish_health()
                    next_health = time.monotonic() + self.health_interval_s
            except Exception:
                # supervised: log with the traceback and retry after a pause; the rows are safe on disk
                log.exception("outbox pump failed; retrying in 1 s")
                self._stopping.wait(1.0)

    def _pump(self) -> None:
        with self._map_lock:
            room = self.window - len(self._by_mid)
        if room <= 0:
            return
        if self.hub_confirm:
            room = self._resend(room)
            if room <= 0:
                return
        for row in self.outbox.pending(room, seat=self.seat, after=self._cursor):
            if not self._publish(
                event_topic(row.site, row.seat), self._wire(row.payload), retain=False, event_id=row.id
            ):
                return  # paho refused it (queue full, say): retry this row at the next wake
            self._cursor = row.n
            self.outbox.note_handed(row.n)  # paho delivers it even if the budget evicts the row now

    def _resend(self, room: int) -> int:
        """Publish again rows PUBACKed long ago (or before a reconnect) that the hub has not confirmed."""
        now = time.time()
        resend_before, reconnect = self._resend_before, self._resend_before is not None
        if resend_before is None:
            if now < self._next_resend_scan:
                return room
            resend_before = now - self._resend_wait
        # only rows at or below the cursor: those above it go out for the first time anyway
        rows = self.outbox.sent_before(resend_before, room, seat=self.seat, upto=self._cursor)
        for row in rows:
            self.outbox.mark_sent(row.id, now)  # touched first: no second resend while this one is in flight
            if not self._publish(
                event_topic(row.site, row.seat), self._wire(row.payload), retain=False, event_id=row.id
            ):
                return 0
            self.resent += 1
        if len(rows) < room:  # caught up; a reconnect resend continues over the next pumps until it is
            self._next_resend_scan = now + min(1.0, self.resend_s / 4)
            if reconnect:
                self._resend_before = None
        if rows:
            log.info("re-published %d events the hub has not confirmed", len(rows))
            if not reconnect:
                self._resend_wait = min(self._resend_wait * 2, self.resend_max_s)
        return room - len(rows)

    def _wire(self, payload: str) -> bytes:
        # the outbox keeps JSON: the encoding is chosen at each (re-)send, for the hub that is there now
        return encode_payload(payload, self.encoding)

    def _publish(self, topic: str, payload: str | bytes, *, retain: bool, event_id: str | None) -> bool:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if not _rc_ok(info.rc):
            log.warning("publish to %s refused by the client: %s", topic, mqtt.error_string(info.rc))
            return False
        with self._map_lock:
            early = info.mid in self._early
            if early:
                self._early.discard(info.mid)
            else:
                self._by_mid[info.mid] = event_id
        if early:
            self._acked(event_id)
        return True

    def publish_health(self) -> None:
        health = {
            "ts": utc_now(),
            "pending": self.outbox.count(self.seat),
            "dropped": self.outbox.dropped,
            "evicted_unconfirmed": self.outbox.evicted_unconfirmed,
            "commands_rejected": self.commands_rejected,
        }
        if self.health_extra is not None:
            health.update(self.health_extra())
        self._publish(
            status_topic(self.site, self.seat) + "/health",
            json.dumps(health, separators=(",", ":")),
            retain=True,
            event_id=None,
        )

    def _acked(self, event_id: str | None) -> None:
        if event_id is not None:
            if self.hub_confirm:
                self.outbox.mark_sent(event_id)  # kept until the hub confirms it
            else:
                self.outbox.ack(event_id)
            self.acked += 1
        with self._progress:
            self._progress.notify_all()

    # --- paho callbacks (network thread) -------------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags, rc: ReasonCode, props: object
    ) -> None:
        if rc.is_failure:
            log.error("broker refused the connection: %s", rc)
            return
        log.info("connected (session present: %s)", flags.session_present)
        if self.hub_confirm:
            if self.connects > 0:
                # a broker that went away may have lost what it acknowledged: send all unconfirmed rows again
                self._resend_before = time.time()
            client.subscribe(self._ack_topic, qos=1)  # the retained ack comes straight back
        client.subscribe(cmd_subscription(self.site, self.seat), qos=1)
        client.subscribe(update_subscription(self.site), qos=1)  # retained: the latest comes at once
        self.connects += 1
        self._publish(status_topic(self.site, self.seat), "online", retain=True, event_id=None)
        self._connected.set()
        self._wake.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: mqtt.DisconnectFlags, rc: ReasonCode, props: object
    ) -> None:
        self._connected.clear()
        if not self._stopping.is_set():
            log.warning("disconnected from the broker (%s); reconnecting with backoff", rc)

    def publish_live(self, payload: dict[str, Any]) -> None:
        """A live-wall signal: QoS 0 and never queued (stale the moment it is late); dropped when offline."""
        if self._connected.is_set():
            body = json.dumps({"ts": utc_now(), **payload}, separators=(",", ":"))
            self.client.publish(live_topic(self.site, self.seat), body, qos=0)

    def reply(self, cmd: Command | None, name: str, error: str | None = None) -> None:
        """Tell the sender whether the seat acted on a command (QoS 1, not retained, not kept in the outbox)."""
        self.client.publish(cmd_result_topic(self.site, self.seat), command_result(cmd, name, error), qos=1)

    def _on_command(self, topic: str, payload: bytes | bytearray) -> None:
        name = topic[len(self._cmd_prefix) :]
        try:
            cmd = parse_command(topic, payload)
        except CommandError as exc:
            self.commands_rejected += 1
            log.warning("rejected a command: %s", exc)
            self.reply(None, name, str(exc))
            return
        self.commands += 1
        if self.on_command is None:
            self.reply(cmd, name, "this station takes no commands")
            return
        try:
            self.on_command(cmd)
        except Exception as exc:  # the runtime's bug must not take down the network thread
            log.exception("command handler failed on %s", name)
            self.reply(cmd, name, f"handler failed: {exc}")

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.startswith(self._cmd_prefix):
            self._on_command(msg.topic, msg.payload)
            return
        if msg.topic.startswith(self._update_prefix):
            if msg.payload:  # empty: the hub cleared the retained update
                self._on_command(cmd_topic(self.site, self.seat, "update"), msg.payload)
            return
        if msg.topic != self._ack_topic:
            return
        try:
            ack = parse_ack(msg.payload)
        except ValueError as exc:
            log.warning("ignored a malformed hub ack on %s: %s", msg.topic, exc)
            return
        encoding = ZLIB if ZLIB in ack.enc else None
        if encoding != self.encoding:
            log.info("hub reads %s: event payloads go out as %s", ack.enc or "plain JSON", encoding or "JSON")
            self.encoding = encoding
        if ack.epoch is not None and ack.epoch != self.outbox.epoch:
            # seqs of an earlier outbox of this seat (wiped, replaced): they say nothing about these rows
            log.info("hub ack is for outbox epoch %s, this one is %s: ignored", ack.epoch, self.outbox.epoch)
            return
        top, last = ack.top, self.outbox.last_seq(self.seat)
        if top > last and ack.epoch is None:
            # a hub that does not name the epoch: this may be a new outbox the ack knows nothing of; trusting
            # the ack would delete events the hub never got, so keep everything and say so
            log.error("hub ack covers seq %d but this outbox has issued only %d: ignored", top, last)
            return
        if top > last:
            # the hub holds seqs of this very epoch that this outbox never issued: an older copy of itself
            # (restored with its lock file, so the open could not tell). The pump thread renumbers and then takes
            # the ack (`_resync`): it alone hands rows out, so no row goes out under the seq it is leaving
            with self._map_lock:
                self._resync_ack = ack
            self._wake.set()
            return
        self._confirm(ack)

    def _resync(self) -> None:
        """On the pump thread: number this process's unsent rows above the hub's seq, then take its ack (it
        covers the copy's rows, which the hub holds under the same ids and seqs, and rows already sent)."""
        with self._map_lock:
            ack, self._resync_ack = self._resync_ack, None
        if ack is None:
            return
        last = self.outbox.last_seq(self.seat)
        if ack.top > last:
            moved = self.outbox.resync(self.seat, ack.top)
            self.resyncs += 1
            log.error(
                "hub ack covers seq %d but this outbox has issued only %d (restored from an older copy): "
                "seq counting continues above it, %d unsent rows renumbered",
                ack.top,
                last,
                moved,
            )
        self._confirm(ack)

    def _confirm(self, ack: HubAck) -> None:
        deleted = self.outbox.confirm(self.seat, ack.top, ack.gaps)
        self.confirmed += deleted
        if deleted:
            self._resend_wait = self.resend_s  # the hub is back: resend at the normal pace
            with self._progress:
                self._progress.notify_all()

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, rc: ReasonCode, props: object) -> None:
        if rc.is_failure:
            # MQTT 5 brokers may refuse a message in its PUBACK: keep the row; it goes again later
            log.error("broker refused message %d: %s", mid, rc)
            with self._map_lock:
                event_id = self._by_mid.pop(mid, None)
            if self.hub_confirm and event_id is not None:
                self.outbox.mark_sent(event_id)  # so the resend timer tries it again
            return
        with self._map_lock:
            if mid not in self._by_mid:
                self._early.add(mid)
                return
            event_id = self._by_mid.pop(mid)
        self._acked(event_id)
