"""Hub ingest: every station event from the broker into SQLite, exactly once by `id`.

Subscribes to `qa/v1/+/+/event` at QoS 1 with a persistent session and acknowledges a message only after
it is committed (paho manual acks), so the broker keeps anything the hub has not stored. The wire is
at-least-once; `INSERT OR IGNORE` on the envelope id makes storage exactly-once. Per seat, the highest
`seq` seen and the missing ranges below it are kept: a gap is reported when it opens and closed when a
late event fills it. Malformed payloads (too big, not JSON, not schema v1, topic naming another seat) are
rejected, counted in the database and acknowledged so they are not redelivered; they never stop ingest.

End to end: after committing, the hub publishes per seat a retained QoS 1 `qa/v1/{site}/{seat}/ack` with
`{"seq": N, "max": M, "gaps": [[a, b], ...]}`: N is the highest seq stored with none missing below it, M the
highest stored, gaps the missing ranges below M. The station deletes its outbox rows only on this, not on the
broker's PUBACK, because a crashed broker loses messages it had acknowledged. Throttled to one per seat per
`ack_interval_s` (sent once things go quiet as well), so acks add a fraction of the event traffic.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.mqtt_publisher import BrokerConfig, new_client
from edge_agent.schema import (
    EVENT_SUBSCRIPTION,
    MAX_PAYLOAD_BYTES,
    Envelope,
    SchemaError,
    ack_topic,
    from_dict,
    parse_event_topic,
)

log = logging.getLogger(__name__)

MAX_ACK_GAPS = 100
"""More gaps than this and an ack carries only the contiguous `seq` (keeps it small)."""

_DDL = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    seat TEXT NOT NULL,
    seq INTEGER NOT NULL,
    call_id TEXT NOT NULL,
    agent_id TEXT,
    type TEXT NOT NULL,
    ts TEXT NOT NULL,
    payload TEXT NOT NULL,  -- as received: fields this hub does not know yet are kept for later
    received REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_seat_seq ON events (site, seat, seq);
CREATE INDEX IF NOT EXISTS events_call ON events (call_id);
CREATE TABLE IF NOT EXISTS seats (site TEXT, seat TEXT, max_seq INTEGER NOT NULL, PRIMARY KEY (site, seat));
CREATE TABLE IF NOT EXISTS gaps (site TEXT, seat TEXT, first INTEGER, last INTEGER, PRIMARY KEY (site, seat, first));
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class Outcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    OVERSIZED = "oversized"
    BAD_JSON = "bad_json"
    BAD_SCHEMA = "bad_schema"
    BAD_TOPIC = "bad_topic"
    TOPIC_MISMATCH = "topic_mismatch"


REJECTIONS = frozenset(o for o in Outcome if o not in (Outcome.STORED, Outcome.DUPLICATE))


@dataclass(frozen=True)
class Gap:
    site: str
    seat: str
    first: int
    last: int
    """Inclusive: seq first..last have not arrived."""


class HubStore:
    """SQLite event store; safe to share between paho's thread and readers."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: the broker forgets a message once we ack it, so the commit must survive power loss
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_DDL)

    def add(self, env: Envelope, payload: str) -> Outcome:
        """Store one event idempotently and update the seat's seq bookkeeping, in one transaction."""
        with self._transaction():
            cur = self._db.execute(
                "INSERT OR IGNORE INTO events (id, site, seat, seq, call_id, agent_id, type, ts, payload, received) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    env.id,
                    env.site,
                    env.seat,
                    env.seq,
                    env.call_id,
                    env.agent_id,
                    env.type,
                    env.ts,
                    payload,
                    time.time(),
                ),
            )
            if cur.rowcount == 0:
                return Outcome.DUPLICATE
            self._track_seq(env.site, env.seat, env.seq)
        return Outcome.STORED

    def _track_seq(self, site: str, seat: str, seq: int) -> None:
        row = self._db.execute("SELECT max_seq FROM seats WHERE site = ? AND seat = ?", (site, seat)).fetchone()
        top = row[0] if row else 0
        if seq > top + 1:
            self._db.execute("INSERT INTO gaps VALUES (?, ?, ?, ?)", (site, seat, top + 1, seq - 1))
            log.warning("seat %s/%s: seq gap %d..%d (events missing so far)", site, seat, top + 1, seq - 1)
        elif seq <= top:
            gap = self._db.execute(
                "SELECT first, last FROM gaps WHERE site = ? AND seat = ? AND first <= ? AND last >= ?",
                (site, seat, seq, seq),
            ).fetchone()
            if gap is None:
                # a new id with an old seq: the station lost its outbox database and started again from 1
                self._bump("seq_regressions")
                log.warning(
                    "seat %s/%s: seq %d at or below %d and not missing: station seq reset?", site, seat, seq, top
                )
            else:
                first, last = gap
                self._db.execute("DELETE FROM gaps WHERE site = ? AND seat = ? AND first = ?", (site, seat, first))
                for a, b in ((first, seq - 1), (seq + 1, last)):
                    if a <= b:
                        self._db.execute("INSERT INTO gaps VALUES (?, ?, ?, ?)", (site, seat, a, b))
        self._db.execute(
            "INSERT INTO seats VALUES (?, ?, ?) ON CONFLICT(site, seat) DO UPDATE SET max_seq = max(max_seq, ?)",
            (site, seat, max(seq, top), seq),
        )

    def watermark(self, site: str, seat: str) -> tuple[int, int, list[tuple[int, int]]]:
        """(highest seq with none missing below it, highest seq stored, the missing ranges below that)."""
        with self._lock:
            row = self._db.execute("SELECT max_seq FROM seats WHERE site = ? AND seat = ?", (site, seat)).fetchone()
            gaps = self._db.execute(
                "SELECT first, last FROM gaps WHERE site = ? AND seat = ? ORDER BY first", (site, seat)
            ).fetchall()
        top = int(row[0]) if row else 0
        gap_list = [(int(a), int(b)) for a, b in gaps]
        return (gap_list[0][0] - 1 if gap_list else top), top, gap_list

    def count_reject(self, outcome: Outcome) -> int:
        with self._transaction():
            return self._bump(f"rejected.{outcome}")

    def _bump(self, name: str) -> int:
        row = self._db.execute(
            "INSERT INTO counters VALUES (?, 1) ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value",
            (name,),
        ).fetchone()
        return int(row[0])

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {str(k): int(v) for k, v in self._db.execute("SELECT name, value FROM counters")}

    def rejected(self) -> dict[str, int]:
        return {k.removeprefix("rejected."): v for k, v in self.counters().items() if k.startswith("rejected.")}

    def gaps(self) -> list[Gap]:
        with self._lock:
            rows = self._db.execute("SELECT site, seat, first, last FROM gaps ORDER BY site, seat, first").fetchall()
        return [Gap(*r) for r in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def seqs(self, site: str, seat: str) -> list[int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq FROM events WHERE site = ? AND seat = ? ORDER BY seq", (site, seat)
            ).fetchall()
        return [int(r[0]) for r in rows]

    def payloads(self) -> list[dict[str, object]]:
        with self._lock:
            rows = self._db.execute("SELECT payload FROM events ORDER BY site, seat, seq").fetchall()
        return [json.loads(r[0]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")


class Ingest:
    """The MQTT consumer in front of a HubStore."""

    def __init__(
        self,
        store: HubStore,
        broker: BrokerConfig,
        client_id: str = "callqa-hub-ingest",
        *,
        ack_interval_s: float = 0.2,
    ) -> None:
        self.store, self.broker = store, broker
        self.ack_interval_s = ack_interval_s
        self._dirty: set[tuple[str, str]] = set()  # seats with events since their last ack
        self._dirty_lock = threading.Lock()
        self._stopping = threading.Event()
        self._acker: threading.Thread | None = None
        self.acks_sent = 0
        self.client = new_client(broker, client_id, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._subscribed = threading.Event()
        self.outcomes: dict[Outcome, int] = dict.fromkeys(Outcome, 0)
        """Messages handled since start, by outcome."""
        self.connects = 0

    def handle(self, topic: str, payload: bytes | bytearray) -> Outcome:
        """Validate and store one message; no exception escapes for anything the payload can contain."""
        outcome = self._classify(topic, payload)
        self.outcomes[outcome] += 1
        if outcome in REJECTIONS:
            n = self.store.count_reject(outcome)
            if n & (n - 1) == 0:  # log the 1st, 2nd, 4th, 8th... of each kind: a flood must not flood the log
                log.warning("rejected a message on %s: %s (%d so far)", topic, outcome, n)
        return outcome

    def _classify(self, topic: str, payload: bytes | bytearray) -> Outcome:
        if len(payload) > MAX_PAYLOAD_BYTES:
            return Outcome.OVERSIZED
        try:
            site, seat = parse_event_topic(topic)
        except SchemaError:
            return Outcome.BAD_TOPIC
        try:
            text = payload.decode()
            data = json.loads(text)
        except ValueError:  # UnicodeDecodeError and JSONDecodeError both are
            return Outcome.BAD_JSON
        try:
            env = from_dict(data)
        except SchemaError as exc:
            log.debug("schema error on %s: %s", topic, exc)
            return Outcome.BAD_SCHEMA
        if (env.site, env.seat) != (site, seat):
            return Outcome.TOPIC_MISMATCH
        return self.store.add(env, text)

    # --- MQTT ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=self.broker.keepalive_s)
        self.client.loop_start()
        self._stopping.clear()
        self._acker = threading.Thread(target=self._ack_loop, name="hub-acks", daemon=True)
        self._acker.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._acker is not None:
            self._acker.join(5)
        self.client.disconnect()
        self.client.loop_stop()

    def _ack_loop(self) -> None:
        # one timer for all seats: each dirty seat gets at most one ack per interval, and the last one
        # follows the last event by at most an interval
        while not self._stopping.wait(self.ack_interval_s):
            try:
                self.publish_acks()
            except Exception:
                log.exception("publishing acks failed; retrying")

    def publish_acks(self) -> int:
        """Publish the current watermark of every seat that stored (or was re-sent) events since its last ack."""
        if not self.client.is_connected():
            return 0  # kept dirty: sent after the reconnect
        with self._dirty_lock:
            seats, self._dirty = self._dirty, set()
        for site, seat in sorted(seats):
            seq, top, gaps = self.store.watermark(site, seat)
            ack: dict[str, object] = {"seq": seq}
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
        log.info("hub connected (session present: %s); subscribing to %s", flags.session_present, EVENT_SUBSCRIPTION)
        self.connects += 1
        client.subscribe(EVENT_SUBSCRIPTION, qos=1)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, rcs: list[ReasonCode], props: object
    ) -> None:
        if any(rc.is_failure for rc in rcs):
            log.error("subscription to %s refused: %s", EVENT_SUBSCRIPTION, rcs)
            return
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            outcome = self.handle(msg.topic, msg.payload)
        except (sqlite3.Error, OSError):
            # not acked: the broker redelivers it after the next reconnect (persistent session)
            log.exception("could not store a message from %s; left unacknowledged", msg.topic)
            return
        client.ack(msg.mid, msg.qos)
        if outcome in (Outcome.STORED, Outcome.DUPLICATE):
            # a duplicate too: the station re-sends when it has not seen an ack, which may have been lost
            with self._dirty_lock:
                self._dirty.add(parse_event_topic(msg.topic))
