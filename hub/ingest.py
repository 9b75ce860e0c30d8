"""Hub ingest: every station event from the broker into the hub's store (SQLite or PostgreSQL), once by `id`.

Subscribes to `qa/v1/+/+/event` at QoS 1 with a persistent session and acknowledges a message only after
it is committed (paho manual acks), so the broker keeps anything the hub has not stored. The wire is
at-least-once; `INSERT ... ON CONFLICT (id) DO NOTHING` makes storage exactly-once (hub/storage.py). Per
seat, the highest `seq` seen and the missing ranges below it are kept: a gap is reported when it opens and
closed when a late event fills it. Malformed payloads (too big, not JSON, not schema v1, topic naming another seat) are
rejected, counted in the database and acknowledged so they are not redelivered; they never stop ingest.

End to end: after committing, the hub publishes per seat a retained QoS 1 `qa/v1/{site}/{seat}/ack` with
`{"seq": N, "max": M, "gaps": [[a, b], ...]}`: N is the highest seq stored with none missing below it, M the
highest stored, gaps the missing ranges below M. The station deletes its outbox rows only on this, not on the
broker's PUBACK, because a crashed broker loses messages it had acknowledged. Throttled to one per seat per
`ack_interval_s` (sent once things go quiet as well), so acks add a fraction of the event traffic.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.commands import CommandError, Login, Logout, parse_command
from edge_agent.mqtt_publisher import BrokerConfig, new_client
from edge_agent.schema import (
    ENCODINGS,
    EVENT_SUBSCRIPTION,
    MAX_PAYLOAD_BYTES,
    TOPIC_PREFIX,
    Envelope,
    PayloadTooLarge,
    SchemaError,
    ack_topic,
    check_value,
    decode_payload,
    from_dict,
    loads,
    parse_event_topic,
)
from hub.db import StorageError
from hub.live import LIVE_SUBSCRIPTION
from hub.scores import Scorer
from hub.storage import REJECTIONS, Gap, HubStore, Outcome, Store

__all__ = ["REJECTIONS", "Gap", "HubStore", "Ingest", "Outcome", "Store"]

log = logging.getLogger(__name__)

PENDING_SWEEP_S = 5.0
"""How often the ack loop looks for stored events no worker has counted into their seat's watermark yet."""

SCORE_POLL_S = 2.0
"""How often an idle scorer looks at its work list (`_score_loop`)."""

MAX_ACK_GAPS = 100
"""More gaps than this and an ack carries only the contiguous `seq` (keeps it small)."""

STATUS_SUBSCRIPTIONS = (f"{TOPIC_PREFIX}/+/+/status", f"{TOPIC_PREFIX}/+/+/status/health")
LOGIN_SUBSCRIPTIONS = (f"{TOPIC_PREFIX}/+/+/cmd/login", f"{TOPIC_PREFIX}/+/+/cmd/logout")
"""The CTI's login and logout commands to the seats: the hub's trusted login state (docs/trust.md). Only the `cti`
and `hub` broker users may publish them (deploy/mosquitto/provision_site.py), and the hub reads them there."""
MAX_HEALTH_BYTES = 8 * 1024
"""A health report is a few hundred bytes; a larger one is dropped (it is stored and served as it is)."""
STORE_TRIES = 2
"""Attempts at storing one message alone before it counts as unstorable: a deadlock or serialisation failure
on PostgreSQL passes on the second."""
DB_RETRY_S = 1.0
"""Pause before a batch is tried again while the database itself fails."""


class DatabaseDown(RuntimeError):
    """The database fails whatever is written (a rejection could not even be counted): the batch stays
    unacknowledged and is tried again, rather than being counted as unstorable."""


@dataclass(frozen=True)
class _Message:
    topic: str
    payload: bytes
    mid: int
    qos: int


class _ReadAhead:
    """The hub client's socket, read ahead. paho reads a packet as its first byte, then its length a byte at a
    time, then the rest: three or four recv() calls for every message. This reads what the socket has (up to
    64 KiB) at once and serves paho from it; `pending()`, which paho's loop asks of a TLS socket too, keeps the
    loop from waiting in select() while whole messages sit here."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, n: int) -> bytes:
        if self._pos >= len(self._buf):
            data: bytes = self._sock.recv(max(n, _READ_AHEAD))
            if len(data) <= n:
                return data
            self._buf, self._pos = data, 0
        out = self._buf[self._pos : self._pos + n]
        self._pos += len(out)
        return out

    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def pending(self) -> int:
        inner = getattr(self._sock, "pending", None)
        return self.buffered() + (int(inner()) if inner is not None else 0)

    def send(self, data: bytes | bytearray) -> int:
        return int(self._sock.send(data))

    def close(self) -> None:
        self._sock.close()

    def fileno(self) -> int:
        return int(self._sock.fileno())

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


_READ_AHEAD = 65536


def _read_ahead(client: mqtt.Client) -> None:
    """Give `client` a read-ahead socket (`_ReadAhead`) and a loop that reads every whole message it holds before
    waiting on the network again. Left as it is when this paho lacks the hook (it is not public API)."""
    create = getattr(client, "_create_socket", None)
    if create is None:  # pragma: no cover - a paho without it: plain reads, only slower
        log.info("paho has no _create_socket: hub MQTT reads are not read ahead")
        return
    read = client.loop_read

    def create_socket() -> _ReadAhead:
        return _ReadAhead(create())

    def loop_read(max_packets: int = 1) -> MQTTErrorCode:
        rc = read(max_packets)
        for _ in range(1000):  # then back to the loop, which also writes the acks queued meanwhile
            sock = getattr(client, "_sock", None)
            if rc != mqtt.MQTT_ERR_SUCCESS or not isinstance(sock, _ReadAhead) or not sock.buffered():
                break
            rc = read(max_packets)
        return rc

    client._create_socket = create_socket  # type: ignore[method-assign]
    client.loop_read = loop_read  # type: ignore[method-assign]


_OUTCOMES = {str(o): o for o in Outcome}
_SEQ_COUNTED = frozenset((Outcome.STORED, Outcome.DUPLICATE, Outcome.FOREIGN_CALL))
"""Outcomes whose event is stored (its seq counts in the seat's watermark): the seat gets an ack for them."""


def _seat_of(m: _Message) -> tuple[str, str]:
    parts = m.topic.split("/")
    return (parts[2], parts[3]) if len(parts) > 3 else ("", "")


class Ingest:
    """The MQTT consumer in front of a store: group commit, acks after commit, scoring after that.

    paho's network thread only queues messages; one writer thread takes whatever has queued (up to
    `max_batch`), stores it in one transaction (one fsync for the lot, which is what makes thousands of events
    a second possible with `synchronous=FULL`), then acknowledges each message in arrival order, and
    finally scores the calls whose summaries arrived. A batch the database refuses is retried message by
    message, each in its own transaction, so one bad row cannot hold back the others; a message that still fails
    is counted `unstorable` and acknowledged all the same. Only when the database itself fails (counting that
    rejection fails too) does a batch stay unacknowledged, to be tried again.
    """

    def __init__(
        self,
        store: Store,
        broker: BrokerConfig,
        client_id: str = "callqa-hub-ingest",
        *,
        ack_interval_s: float = 0.2,
        max_batch: int = 500,
        scorer: Scorer | None = None,
        score_interval_s: float = 0.5,
        on_stored: Callable[[Envelope], None] | None = None,
        share_group: str | None = None,
        on_live: Callable[[str, bytes], object] | None = None,
    ) -> None:
        self.store, self.broker = store, broker
        self.share_group = share_group
        """Scale-out: subscribe through the MQTT shared subscription `$share/{group}/...`, so the broker hands
        each message to one of the workers in the group (they must share one database, `Store(shared=True)`)."""
        self.ack_interval_s = ack_interval_s
        self.max_batch = max_batch
        self.scorer = scorer
        self.score_interval_s = score_interval_s
        """Completed calls are scored at most this long after their summary is stored."""
        self.on_stored = on_stored
        """Called in the writer thread for each newly stored event after its commit (the live wall)."""
        self.on_live = on_live
        """Given each message of the stations' live topic (QoS 0, never stored or acked; the live wall): set, it
        subscribes to them, unshared, on paho's thread, so it must be quick (hub.live.LiveBoard.live)."""
        self._dirty: set[tuple[str, str]] = set()  # seats with events since their last ack
        self._dirty_lock = threading.Lock()
        self._stopping = threading.Event()
        self._acker: threading.Thread | None = None
        self._writer: threading.Thread | None = None
        self._scorer_thread: threading.Thread | None = None
        self._to_score = threading.Event()
        self._inbox: queue.Queue[_Message] = queue.Queue()
        self.acks_sent = 0
        self.client = new_client(broker, client_id, manual_ack=True)
        _read_ahead(self.client)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._subscribed = threading.Event()
        self.outcomes: dict[Outcome, int] = dict.fromkeys(Outcome, 0)
        """Messages handled since start, by outcome."""
        self.connects = 0
        self._stored: list[Envelope] = []  # this batch's new events, for on_stored after the commit

    def handle(self, topic: str, payload: bytes | bytearray) -> Outcome:
        """Validate and store one message; no exception escapes for anything the payload can contain."""
        parsed = self._classify(topic, payload)
        if isinstance(parsed, Outcome):
            return self._rejected(topic, parsed)
        return self._count(self.store.add(*parsed), parsed[0])

    def _rejected(self, topic: str, outcome: Outcome, why: object = None) -> Outcome:
        n = self.store.count_reject(outcome)
        self.outcomes[outcome] += 1
        if n & (n - 1) == 0:  # log the 1st, 2nd, 4th, 8th... of each kind: a flood must not flood the log
            log.warning("rejected a message on %s: %s (%d so far)%s", topic, outcome, n, f": {why}" if why else "")
        return outcome

    def _count(self, outcome: Outcome, env: Envelope) -> Outcome:
        self.outcomes[outcome] += 1
        if outcome is Outcome.STORED and self.on_stored is not None:
            self._stored.append(env)
        elif outcome in REJECTIONS:  # counted in the database by the store, in the event's own transaction
            n = self.outcomes[outcome]
            if n & (n - 1) == 0:
                log.warning("rejected an event from %s/%s: %s (%d since start)", env.site, env.seat, outcome, n)
        return outcome

    def _classify(self, topic: str, payload: bytes | bytearray) -> tuple[Envelope, str] | Outcome:
        """The envelope and its JSON text, or why the message is rejected."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            return Outcome.OVERSIZED
        try:
            site, seat = parse_event_topic(topic)
        except SchemaError:
            return Outcome.BAD_TOPIC
        try:
            text = decode_payload(payload)  # plain JSON, or zlib from a station that saw this hub's `enc`
        except PayloadTooLarge:
            return Outcome.OVERSIZED
        except ValueError:  # UnicodeDecodeError and a bad zlib stream both are
            return Outcome.BAD_JSON
        try:
            env = from_dict(loads(text))  # bounded: no NaN, no 1e400, no 30,000-deep nesting gets past here
        except SchemaError as exc:
            log.debug("schema error on %s: %s", topic, exc)
            return _OUTCOMES.get(exc.reason, Outcome.BAD_SCHEMA)
        if (env.site, env.seat) != (site, seat):
            return Outcome.TOPIC_MISMATCH
        return env, text

    def handle_status(self, topic: str, payload: bytes | bytearray) -> None:
        """`.../status` (online/offline, the last will) and `.../status/health` (JSON) into the devices table; the
        CTI's `.../cmd/login` and `.../cmd/logout` into the seat's login state (`Store.cti_login`).

        A health report is the seat's own word: bounded here (size, finite numbers, nesting) and stored as it is;
        the agent or call it names is never taken as the hub's record (the devices API scopes by the calls
        table, docs/trust.md). A malformed one is dropped (logged at debug: the seat's own device row only)."""
        parts = topic.split("/")
        if len(parts) == 6 and parts[4] == "cmd":
            self._cti_command(parts[2], parts[3], parts[5], payload)
            return
        if len(parts) not in (5, 6) or parts[4] != "status":
            return
        site, seat = parts[2], parts[3]
        try:
            if len(parts) == 6:
                if len(payload) > MAX_HEALTH_BYTES:
                    raise SchemaError(f"health report of {len(payload)} bytes")
                health = loads(bytes(payload))
                check_value(health, "health")
                if isinstance(health, dict):
                    self.store.set_status(site, seat, health=health)
            else:
                text = bytes(payload).decode()
                if text in ("online", "offline"):
                    self.store.set_status(site, seat, status=text)
        except ValueError as exc:  # SchemaError and UnicodeDecodeError are
            log.debug("ignored a malformed status message on %s: %s", topic, exc)

    def _cti_command(self, site: str, seat: str, name: str, payload: bytes | bytearray) -> None:
        """A login or logout the CTI (or the hub) sent the seat: the broker's ACL lets only those users publish
        there, so this is the trusted login state. Malformed ones are ignored (the station refuses them too)."""
        try:
            cmd = parse_command(f"{TOPIC_PREFIX}/{site}/{seat}/cmd/{name}", payload)
        except CommandError as exc:
            log.debug("ignored a malformed %s command for %s/%s: %s", name, site, seat, exc)
            return
        if isinstance(cmd, Login | Logout):
            at = None
            if cmd.ts is not None:
                ts = cmd.ts if cmd.ts.tzinfo else cmd.ts.replace(tzinfo=UTC)
                at = ts.timestamp()
            agent = cmd.agent_id if isinstance(cmd, Login) else None
            # a redelivered command must not count twice; one without `ts` or `id` is told apart by its arrival
            key = bytes(payload) if (cmd.ts or cmd.id) else bytes(payload) + repr(time.time()).encode()
            self.store.cti_login(site, seat, agent, at=at, key=hashlib.sha256(key).hexdigest())

    # --- MQTT ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        if not self.store.shared:
            # events scale-out workers stored here and did not count yet (a single writer counts its own inline,
            # with a cache that must not see the seats move under it: so once, before it starts)
            leftover = self.store.pending_seats()
            if leftover:
                self.store.settle_seqs(leftover)
                self._dirty |= leftover
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=self.broker.keepalive_s)
        self.client.loop_start()
        self._stopping.clear()
        self._writer = threading.Thread(target=self._write_loop, name="hub-writer", daemon=True)
        self._writer.start()
        if self.scorer is not None:
            self._scorer_thread = threading.Thread(target=self._score_loop, name="hub-scorer", daemon=True)
            self._scorer_thread.start()
        self._acker = threading.Thread(target=self._ack_loop, name="hub-acks", daemon=True)
        self._acker.start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self._stopping.set()
        for t in (self._writer, self._scorer_thread, self._acker):
            if t is not None:
                t.join(10)
        if self.scorer is not None:
            self.scorer.close()  # its scoring processes, if any (a restart starts them again)

    def _write_loop(self) -> None:
        while True:
            try:
                first = self._inbox.get(timeout=0.1)
            except queue.Empty:
                if self._stopping.is_set():
                    return
                continue
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            while True:
                try:
                    self._write(batch)
                    break
                except Exception:
                    # the database itself fails (DatabaseDown): the same batch again once it is back, still
                    # unacknowledged; on stop it is left to the broker, which redelivers it after the reconnect
                    log.exception("the ingest writer failed on a batch of %d; retrying", len(batch))
                    if self._stopping.wait(DB_RETRY_S):
                        return

    def _write(self, batch: list[_Message]) -> None:
        """Store a batch and acknowledge every message in it, stored or rejected; DatabaseDown (nothing acked)
        only when the database refuses everything."""
        done: list[tuple[_Message, Outcome | None]] = []
        self._stored = []
        try:
            parsed = [self._classify(m.topic, m.payload) if m.topic.endswith("/event") else None for m in batch]
            if self.store.shared:
                # the rows both workers' batches write (calls, agents, devices) in a short transaction first, so
                # that neither batch's transaction holds them until its commit (Store.prepare); the statuses in
                # one more, in seat order (device rows: each transaction takes them in one order, no deadlock)
                self.store.prepare([p for p in parsed if isinstance(p, tuple)])
                statuses = sorted((m for m, p in zip(batch, parsed, strict=True) if p is None), key=_seat_of)
                if statuses:
                    with self.store.db.transaction():
                        for m in statuses:
                            self.handle_status(m.topic, m.payload)
            with self.store.batch():
                outcomes = self._store_batch(batch, parsed, statuses=not self.store.shared)
            done = list(zip(batch, outcomes, strict=True))
        except Exception:  # StorageError, or whatever one message's content set off: find which
            log.warning("a batch of %d failed to commit; storing its messages one by one", len(batch), exc_info=True)
            done = self._write_one_by_one(batch)
        stored, self._stored = self._stored, []
        seats = set()
        for m, outcome in done:
            self.client.ack(m.mid, m.qos)
            if outcome in _SEQ_COUNTED:
                # a duplicate too: the station re-sends when it has not seen an ack, which may have been lost;
                # and a foreign call's event, kept under its seat's scoped id: unacked, its station would re-send
                # it every resend_s
                seats.add(m.topic)
        with self._dirty_lock:
            self._dirty.update(parse_event_topic(t) for t in seats)
        if self.on_stored is not None:
            for env in stored:
                try:
                    self.on_stored(env)
                except Exception:
                    log.exception("an on_stored listener failed")
        if self.scorer is not None:
            self._to_score.set()

    def _write_one_by_one(self, batch: list[_Message]) -> list[tuple[_Message, Outcome | None]]:
        """Each message in a transaction of its own (`Store.add`: all of it or nothing), so a poison message
        stores nothing half-way. One that fails STORE_TRIES times is counted `unstorable` and acknowledged:
        left unacknowledged it would hold one of the broker's in-flight slots to the hub for good, and a
        thousand of them stop every seat. Counting it is a write too: when even that fails, the database is
        down, not the message (DatabaseDown: the batch stays unacknowledged and is retried)."""
        done: list[tuple[_Message, Outcome | None]] = []
        self._stored = []
        for m in batch:
            error: Exception | None = None
            for _ in range(STORE_TRIES):
                try:
                    done.append((m, self._store_one(m)))
                    error = None
                    break
                except Exception as exc:
                    error = exc
            if error is None:
                continue
            try:
                done.append((m, self._rejected(m.topic, Outcome.UNSTORABLE, error)))
            except StorageError as exc:
                raise DatabaseDown(f"cannot store nor count a message from {m.topic}: {exc}") from error
        return done

    def _store_batch(
        self, batch: list[_Message], parsed: list[tuple[Envelope, str] | Outcome | None], *, statuses: bool
    ) -> list[Outcome | None]:
        """Inside the batch's transaction: the valid events (`parsed`: `_classify`'s, None for a status message)
        stored together (`Store.add_many`), then, with `statuses`, the status messages; each message's outcome
        (None: status)."""
        outcomes: list[Outcome | None] = []
        valid: list[tuple[Envelope, str]] = []
        at: list[int] = []  # where each valid event's outcome goes
        for m, p in zip(batch, parsed, strict=True):
            outcomes.append(None)
            if isinstance(p, Outcome):
                outcomes[-1] = self._rejected(m.topic, p)
            elif p is not None:
                at.append(len(outcomes) - 1)
                valid.append(p)
        for i, (env, _), outcome in zip(at, valid, self.store.add_many(valid), strict=True):
            outcomes[i] = self._count(outcome, env)
        if statuses:
            for m, p in zip(batch, parsed, strict=True):
                if p is None:
                    self.handle_status(m.topic, m.payload)
        return outcomes

    def _score_loop(self) -> None:
        # scoring runs beside the writer, so acknowledging events never waits for it. Its work list is durable
        # (Store.take_pending): the first pass scores what a stopped hub left queued, and an idle hub still
        # passes every SCORE_POLL_S, for calls whose last attempt failed and calls a crashed worker had claimed
        assert self.scorer is not None  # noqa: S101 - started only with a scorer
        self._to_score.set()
        last = 0.0
        while not self._stopping.is_set() or self._to_score.is_set():
            if not self._to_score.wait(0.2) and time.monotonic() - last < SCORE_POLL_S:
                continue
            # gather for a moment: one scoring transaction (one fsync) for many calls, not one per ingest commit
            self._stopping.wait(self.score_interval_s)
            self._to_score.clear()
            last = time.monotonic()
            try:
                self.scorer.score_pending()
            except Exception:
                log.exception("a scoring pass failed; its calls stay queued for the next one")
                self._stopping.wait(1.0)

    def _store_one(self, m: _Message) -> Outcome | None:
        if m.topic.endswith("/event"):
            return self.handle(m.topic, m.payload)
        with self.store.db.transaction():  # a status or login: its writes all or nothing, as an event's
            self.handle_status(m.topic, m.payload)
        return None

    def _ack_loop(self) -> None:
        # one timer for all seats: each dirty seat gets at most one ack per interval, and the last one
        # follows the last event by at most an interval
        swept = 0.0
        while not self._stopping.wait(self.ack_interval_s):
            try:
                if self.store.shared and time.monotonic() - swept > PENDING_SWEEP_S:
                    # events another worker stored and did not count (it crashed or stopped in between): the
                    # watermark would stay below them, and their stations would keep re-sending them
                    swept = time.monotonic()
                    pending = self.store.pending_seats()
                    with self._dirty_lock:
                        self._dirty |= pending
                self.publish_acks()
            except Exception:
                log.exception("publishing acks failed; retrying")

    def publish_acks(self) -> int:
        """Publish the current watermark of every seat that stored (or was re-sent) events since its last ack,
        after counting the seats' stored events into it (`Store.settle_seqs`: scale-out workers defer that to
        here; a single writer has none left)."""
        if not self.client.is_connected():
            return 0  # kept dirty: sent after the reconnect
        with self._dirty_lock:
            seats, self._dirty = self._dirty, set()
        try:
            busy = self.store.settle_seqs(seats) if self.store.shared else set()  # a single writer's are counted
        except StorageError:
            with self._dirty_lock:
                self._dirty |= seats
            raise
        if busy:  # another worker is settling these right now: their ack next time
            with self._dirty_lock:
                self._dirty |= busy
            seats -= busy
        if self.scorer is not None and self.store.recheck_waiting():
            self._to_score.set()  # late events of summarised calls (settle_seqs)
        for (site, seat), (seq, top, gaps, epoch) in sorted(self.store.watermarks(sorted(seats)).items()):
            # `enc`: the payload encodings this hub reads, so a station may compress (schema.encode_payload)
            ack: dict[str, object] = {"seq": seq, "enc": list(ENCODINGS)}
            if epoch is not None:
                ack["epoch"] = epoch  # the station ignores an ack for another outbox than its own
            if gaps and len(gaps) <= MAX_ACK_GAPS:
                ack |= {"max": top, "gaps": [list(g) for g in gaps]}
            info = self.client.publish(
                ack_topic(site, seat), json.dumps(ack, separators=(",", ":")), qos=1, retain=True
            )
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                with self._dirty_lock:
                    self._dirty.add((site, seat))
                log.warning("could not publish the ack for %s/%s: %s", site, seat, mqtt.error_string(info.rc))
            else:
                self.acks_sent += 1
        return len(seats)

    def wait_subscribed(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

    def __enter__(self) -> Ingest:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags, rc: ReasonCode, props: object
    ) -> None:
        if rc.is_failure:
            log.error("broker refused the hub connection: %s", rc)
            return
        topics = [self._shared(t) for t in (EVENT_SUBSCRIPTION, *STATUS_SUBSCRIPTIONS, *LOGIN_SUBSCRIPTIONS)]
        log.info("hub connected (session present: %s); subscribing to %s", flags.session_present, topics[0])
        self.connects += 1
        live = [(LIVE_SUBSCRIPTION, 0)] if self.on_live is not None else []  # every worker's wall sees all
        client.subscribe([(t, 1) for t in topics] + live)

    def _shared(self, topic: str) -> str:
        return topic if self.share_group is None else f"$share/{self.share_group}/{topic}"

    def _on_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, rcs: list[ReasonCode], props: object
    ) -> None:
        if rcs and rcs[0].is_failure:
            log.error("subscription to %s refused: %s", EVENT_SUBSCRIPTION, rcs)
            return
        if any(rc.is_failure for rc in rcs):
            # a broker whose ACL predates the hub's read of cmd/login and cmd/logout: events still flow, and
            # attribution rests on the seats' own logins for known agents (docs/trust.md)
            log.warning("some hub subscriptions were refused (%s): check the broker ACL", rcs)
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if self.on_live is not None and msg.topic.endswith("/live"):
            try:
                self.on_live(msg.topic, bytes(msg.payload))
            except Exception:
                log.exception("the live listener failed on %s", msg.topic)
            return
        self._inbox.put(_Message(msg.topic, bytes(msg.payload), msg.mid, msg.qos))
