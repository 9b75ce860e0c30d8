"""Event envelope, schema v1: the one contract between station and hub.

An envelope is a flat JSON object: the header fields below, then the event's own fields (`speaker`, `by`,
`kind`, `overlap`, the call-summary metrics...) at the top level, exactly as `Event.to_dict()` gives them:

    {"schema":1,"id":"<32 hex>","seat":"s01","site":"lon","seq":42,"call_id":"...","agent_id":"a7",
     "ts":"2024-05-01T09:30:12.345Z","type":"speech","start":1.0,"end":2.6,"speaker":"agent",
     "model":{"name":"speech-v1","sha256":"<64 hex>"}}

Readers validate the header and the fields of the types they know, and never reject a payload for keys they
do not know: those stay in `Envelope.fields` untouched, so a newer station works with an older hub.
Topics live here too, because both ends must agree on them.
"""

from __future__ import annotations

import json
import re
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from edge_agent.events import PARTIES, Event

SCHEMA_VERSION = 1
MAX_PAYLOAD_BYTES = 64 * 1024
"""Largest envelope a station sends and a hub accepts (a call summary is about 1.3 KB)."""
UNSEQUENCED = 0
"""`seq` of an envelope the outbox has not stamped yet; stamped ones start at 1."""
TOPIC_PREFIX = "qa/v1"
EVENT_SUBSCRIPTION = f"{TOPIC_PREFIX}/+/+/event"

HEADER = (
    "schema",
    "id",
    "seat",
    "site",
    "seq",
    "epoch",
    "call_id",
    "agent_id",
    "ts",
    "type",
    "start",
    "end",
    "model",
)
SEAT_EVENT_TYPES = frozenset({"agent_login", "agent_logout", "privacy"})
"""Events about the seat, not a call: `call_id` may be absent (null) and `start` = `end` = 0 outside a call."""

# seat and site are MQTT topic levels: no '/', '+', '#' or empty strings
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
_EPOCH = re.compile(r"[0-9a-f]{8,32}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_TYPE = re.compile(r"[a-z][a-z0-9_]{0,31}")
_KINDS = ("interruption", "backchannel")


class SchemaError(ValueError):
    """A payload or envelope that does not follow schema v1."""


class PayloadTooLarge(SchemaError):
    """A payload over MAX_PAYLOAD_BYTES, on the wire or once inflated."""


@dataclass(frozen=True)
class ModelRef:
    name: str
    sha256: str
    """Hex digest of the weights file that produced the event."""

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "sha256": self.sha256}


@dataclass(frozen=True)
class Envelope:
    id: str
    """Globally unique: 32 lowercase hex digits (uuid4) for station-made envelopes."""
    seat: str
    site: str
    seq: int
    """Per seat, from 1, +1 per event, persisted by the outbox across restarts; UNSEQUENCED before `put`."""
    call_id: str | None
    """None only for SEAT_EVENT_TYPES outside a call."""
    ts: str
    """UTC wall clock when the event was emitted, ISO-8601 with a 'Z' suffix."""
    type: str
    start: float
    """Seconds from the start of the call audio."""
    end: float
    """Seconds from the start of the call audio."""
    fields: Mapping[str, Any] = field(default_factory=dict)
    """The event's own fields (everything that is not header)."""
    agent_id: str | None = None
    model: ModelRef | None = None
    epoch: str | None = None
    """The outbox's identity (hex, made when it was created): `seq` counts within it, so a station whose outbox
    was wiped starts a new epoch instead of reusing seqs the hub has already seen. Stamped with `seq`."""
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        _check_header(self)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema": self.schema,
            "id": self.id,
            "seat": self.seat,
            "site": self.site,
            "seq": self.seq,
        }
        if self.epoch is not None:
            d["epoch"] = self.epoch
        if self.call_id is not None:
            d["call_id"] = self.call_id
        if self.agent_id is not None:
            d["agent_id"] = self.agent_id
        d.update(ts=self.ts, type=self.type, start=self.start, end=self.end)
        d.update(self.fields)
        if self.model is not None:
            d["model"] = self.model.to_dict()
        return d

    def to_json(self) -> str:
        """Compact JSON (no spaces); what goes on the wire and into the outbox."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False, allow_nan=False)

    def with_seq(self, seq: int, epoch: str | None = None) -> Envelope:
        return replace(self, seq=seq, epoch=epoch if epoch is not None else self.epoch)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id() -> str:
    return uuid.uuid4().hex


def envelope(
    event: Event | Mapping[str, Any],
    *,
    seat: str,
    site: str,
    call_id: str | None,
    agent_id: str | None = None,
    model: ModelRef | None = None,
    seq: int = UNSEQUENCED,
    ts: str | None = None,
    event_id: str | None = None,
) -> Envelope:
    """Wrap an analyzer event (or its `to_dict()`) for the wire; the outbox stamps `seq` on `put`."""
    d = dict(event.to_dict() if isinstance(event, Event) else event)
    try:
        etype, start, end = d.pop("type"), d.pop("start"), d.pop("end")
    except KeyError as exc:
        raise SchemaError(f"event lacks {exc.args[0]!r}") from None
    clash = sorted(k for k in d if k in HEADER)
    if clash:
        raise SchemaError(f"event fields clash with the envelope header: {', '.join(clash)}")
    env = Envelope(
        id=event_id or new_id(),
        seat=seat,
        site=site,
        seq=seq,
        call_id=call_id,
        ts=ts or utc_now(),
        type=etype,
        start=start,
        end=end,
        fields=d,
        agent_id=agent_id,
        model=model,
    )
    _check_fields(env.type, env.fields)
    return env


ZLIB = "zlib"
"""The one compressed wire encoding: the envelope's JSON through zlib (RFC 1950: a 2-byte header that can never
be `{`, and an Adler-32 check). Half the bytes of a call's events; a station uses it only towards a hub that
lists it in its ack's `enc`, so an older hub keeps getting plain JSON."""
ENCODINGS = (ZLIB,)
"""Encodings this reader accepts besides plain JSON (the hub advertises them in `enc`)."""


def encode_payload(text: str, encoding: str | None) -> bytes:
    """An envelope's JSON as sent on the event topic: plain UTF-8, or zlib when the hub accepts it."""
    raw = text.encode()
    if encoding == ZLIB:
        return zlib.compress(raw, 9)
    if encoding is not None:
        raise ValueError(f"unknown payload encoding {encoding!r}")
    return raw


def decode_payload(payload: bytes | bytearray) -> str:
    """The JSON text of an event-topic payload, plain or zlib (told apart by the zlib header).

    PayloadTooLarge when it inflates past MAX_PAYLOAD_BYTES (a compression bomb never inflates further than that);
    another SchemaError, or UnicodeDecodeError, for one that does not inflate or is not UTF-8.
    """
    if not _is_zlib(payload):
        return bytes(payload).decode()
    d = zlib.decompressobj()
    try:
        raw = d.decompress(payload, MAX_PAYLOAD_BYTES + 1)
    except zlib.error as exc:
        raise SchemaError(f"neither JSON nor zlib: {exc}") from None
    if len(raw) > MAX_PAYLOAD_BYTES or d.unconsumed_tail:
        raise PayloadTooLarge(f"payload inflates past {MAX_PAYLOAD_BYTES} bytes")
    if not d.eof or d.unused_data:
        raise SchemaError("truncated zlib payload, or bytes after its end")
    return raw.decode()


def _is_zlib(payload: bytes | bytearray) -> bool:
    # RFC 1950 header: deflate method in the low nibble and the 16-bit header a multiple of 31. Its first byte
    # (0x08, 0x18 ... 0x78) is never whitespace or a character a JSON text can start with.
    return len(payload) >= 2 and payload[0] & 0x0F == 8 and ((payload[0] << 8) | payload[1]) % 31 == 0


def from_json(payload: str | bytes) -> Envelope:
    """Parse and validate one envelope; raises SchemaError with the reason on anything invalid."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise SchemaError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        d = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SchemaError(f"not JSON: {exc}") from None
    return from_dict(d)


def from_dict(d: object) -> Envelope:
    if not isinstance(d, dict):
        raise SchemaError("payload is not a JSON object")
    schema = d.get("schema")
    if schema != SCHEMA_VERSION or isinstance(schema, bool):
        raise SchemaError(f"unsupported schema {schema!r} (this reader knows {SCHEMA_VERSION})")
    required = ("id", "seat", "site", "seq", "ts", "type", "start", "end")
    missing = [k for k in required if k not in d]
    if "call_id" not in d and d.get("type") not in SEAT_EVENT_TYPES:
        missing.append("call_id")
    if missing:
        raise SchemaError(f"missing {', '.join(missing)}")
    model = d.get("model")
    if model is not None:
        if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not _is_sha256(model.get("sha256")):
            raise SchemaError("model must be an object with a name and a 64-hex-digit sha256")
        model = ModelRef(model["name"], model["sha256"])
    fields = {k: v for k, v in d.items() if k not in HEADER}
    try:
        env = Envelope(
            id=d["id"],
            seat=d["seat"],
            site=d["site"],
            seq=d["seq"],
            epoch=d.get("epoch"),
            call_id=d.get("call_id"),
            ts=d["ts"],
            type=d["type"],
            start=d["start"],
            end=d["end"],
            fields=fields,
            agent_id=d.get("agent_id"),
            model=model,
        )
    except TypeError as exc:  # a str method on a non-str, say: still the payload's fault
        raise SchemaError(str(exc)) from None
    if env.seq < 1:
        raise SchemaError(f"seq {env.seq} is not a stamped sequence number")
    _check_fields(env.type, env.fields)
    return env


def event_topic(site: str, seat: str) -> str:
    return f"{TOPIC_PREFIX}/{site}/{seat}/event"


def status_topic(site: str, seat: str) -> str:
    return f"{TOPIC_PREFIX}/{site}/{seat}/status"


def live_topic(site: str, seat: str) -> str:
    """QoS 0, not retained, not in the outbox: what is happening on the call right now, for the hub's live wall
    (`{"type": "talk_over"|"dead_air"|"call", ...}`, docs/events.md). The durable record is the events."""
    return f"{TOPIC_PREFIX}/{site}/{seat}/live"


def ack_topic(site: str, seat: str) -> str:
    """Retained, from the hub: `{"seq": N, ...}`, the seat's events the hub has stored (see hub/ingest.py)."""
    return f"{TOPIC_PREFIX}/{site}/{seat}/ack"


def parse_event_topic(topic: str) -> tuple[str, str]:
    """`qa/v1/{site}/{seat}/event` -> (site, seat); SchemaError for any other topic."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != TOPIC_PREFIX or parts[4] != "event":
        raise SchemaError(f"not an event topic: {topic!r}")
    return parts[2], parts[3]


def check_name(what: str, value: object) -> str:
    """A seat or site id: it becomes an MQTT topic level."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise SchemaError(f"{what} {value!r}: use 1-64 letters, digits, '_', '.' or '-'")
    return value


def _check_header(env: Envelope) -> None:
    if env.schema != SCHEMA_VERSION:
        raise SchemaError(f"unsupported schema {env.schema!r}")
    check_name("seat", env.seat)
    check_name("site", env.site)
    for what, value in (("id", env.id), ("call_id", env.call_id)):
        if value is None and what == "call_id" and env.type in SEAT_EVENT_TYPES:
            continue
        if not isinstance(value, str) or not _ID.fullmatch(value):
            raise SchemaError(f"{what} {value!r}: 1-128 characters of letters, digits and _.:-")
    if env.epoch is not None and (not isinstance(env.epoch, str) or not _EPOCH.fullmatch(env.epoch)):
        raise SchemaError(f"epoch {env.epoch!r}: 8-32 lowercase hex digits")
    if env.agent_id is not None and (not isinstance(env.agent_id, str) or not _ID.fullmatch(env.agent_id)):
        raise SchemaError(f"agent_id {env.agent_id!r}: 1-128 characters of letters, digits and _.:-")
    if not _is_int(env.seq) or env.seq < 0:
        raise SchemaError(f"seq {env.seq!r} is not a non-negative integer")
    if not isinstance(env.type, str) or not _TYPE.fullmatch(env.type):
        raise SchemaError(f"type {env.type!r} is not a lowercase identifier")
    for what, t in (("start", env.start), ("end", env.end)):
        if not _is_number(t) or t < 0:
            raise SchemaError(f"{what} {t!r} is not a non-negative number of seconds")
    if env.end < env.start:
        raise SchemaError(f"end {env.end} before start {env.start}")
    _check_ts(env.ts)
    if env.model is not None and not (
        isinstance(env.model.name, str) and 0 < len(env.model.name) <= 128 and _is_sha256(env.model.sha256)
    ):
        raise SchemaError(f"model {env.model!r}: needs a name and a 64-hex-digit sha256")


def _check_fields(etype: str, f: Mapping[str, Any]) -> None:
    """Type-specific fields of the types this reader knows; other types pass as they are."""
    if etype == "speech":
        if f.get("speaker") not in PARTIES:
            raise SchemaError(f"speech: speaker {f.get('speaker')!r} is not one of {PARTIES}")
    elif etype == "talk_over":
        if f.get("by") not in PARTIES or f.get("kind") not in _KINDS or not _is_number(f.get("overlap")):
            raise SchemaError("talk_over: needs by (agent|customer), kind (interruption|backchannel), overlap")
    elif etype == "activity":
        for party in PARTIES:
            segs = f.get(party)
            if not isinstance(segs, list) or len(segs) % 2 or not all(_is_int(x) and x >= 0 for x in segs):
                raise SchemaError(f"activity: {party} must be a list of centisecond [gap, length, ...] pairs")
    elif etype == "call_summary" and not _is_number(f.get("duration")):
        raise SchemaError("call_summary: needs duration")


def _check_ts(ts: object) -> None:
    if not isinstance(ts, str) or not ts.endswith("Z"):
        raise SchemaError(f"ts {ts!r} is not a UTC ISO-8601 time ending in 'Z'")
    try:
        datetime.fromisoformat(ts)
    except ValueError:
        raise SchemaError(f"ts {ts!r} is not ISO-8601") from None


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v and v not in (float("inf"), float("-inf"))


def _is_sha256(v: object) -> bool:
    return isinstance(v, str) and _SHA256.fullmatch(v) is not None
