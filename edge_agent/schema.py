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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, cast

from edge_agent.events import PARTIES, Event

SCHEMA_VERSION = 1
MAX_PAYLOAD_BYTES = 64 * 1024
"""Largest envelope a station sends and a hub accepts (a call summary is about 1.3 KB)."""

# Bounds every reader enforces (docs/events.md, "Bounds"): a value outside them is refused before anything stores
# or draws it, so one seat cannot make a page huge, a column overflow or a score NaN.
MAX_SEQ = 2**53 - 1
"""Largest `seq`: an exact integer in every JSON reader (JavaScript's too) and in a signed 64-bit column."""
MAX_NUMBER = 2**53
"""Any number anywhere in an envelope stays below this in magnitude (and is finite: no NaN, no infinity)."""
MAX_CALL_S = 24 * 3600.0
"""Longest call: `start`, `end`, `duration` and the other call-time fields stay within 0..this (seconds)."""
TS_YEARS = (2000, 2100)
"""`ts` must fall in these years (inclusive): a clock outside them is broken, and its calls would sort to the
ends of every report."""
MAX_DEPTH = 8
"""Nesting of objects and lists, the envelope itself being level 1 (an activity's emotion scores reach 4)."""
MAX_LIST = 10_000
"""Items in one list (an activity batch's segments hold a few hundred)."""
MAX_STRING = 1024
"""Characters in any string value (labels, flags); ids and names have their own, shorter patterns."""
MAX_KEY = 64
"""Characters in an object key."""
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

    reason = "bad_schema"
    """What a hub counts it as (hub/storage.py `Outcome`)."""


class PayloadTooLarge(SchemaError):
    """A payload over MAX_PAYLOAD_BYTES, on the wire or once inflated."""

    reason = "oversized"


class NotJson(SchemaError):
    """Not a JSON text (or not UTF-8)."""

    reason = "bad_json"


class OutOfRange(SchemaError):
    """A number that is NaN, infinite or outside its bound, or a time outside TS_YEARS."""

    reason = "out_of_range"


class TooDeep(SchemaError):
    """Nested deeper than MAX_DEPTH (or so deep that the JSON parser itself gives up)."""

    reason = "too_deep"


class BadText(SchemaError):
    """A string or key that is too long, holds a lone surrogate (a `\\ud800` escape) or a NUL."""

    reason = "bad_text"


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
    check_value(d, "fields")  # what the hub would refuse, the station never sends
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
        raise PayloadTooLarge(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    return from_dict(loads(payload))


def loads(text: str | bytes) -> Any:
    """`json.loads` for untrusted text: NotJson for anything that is not JSON; OutOfRange for NaN, Infinity and
    numbers that overflow to infinity (`1e400`), which Python's parser accepts; TooDeep for nesting that
    exhausts the parser's recursion (tens of thousands of `[`)."""
    try:
        # 1e400 parses as inf: check_value (from_dict) refuses it, as it does every out-of-range number
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise TooDeep("nested too deep to parse") from None
    except SchemaError:
        raise
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of more than 4300 digits
        raise NotJson(f"not JSON: {exc}") from None


def _no_constant(name: str) -> Any:
    raise OutOfRange(f"{name} is not a number JSON allows")


def check_value(value: object, what: str = "payload") -> None:
    """Bound a decoded JSON value whatever it holds: every number finite and below MAX_NUMBER, every string
    at most MAX_STRING characters (keys MAX_KEY) with no lone surrogate or NUL, lists at most MAX_LIST items,
    nesting at most MAX_DEPTH. Iterative, so no input can exhaust the stack. Raises the SchemaError subclass
    that names the reason.

    It runs on every event the hub reads, so the common leaves are checked inline (a function call per leaf
    doubled the hub's parse cost) and only containers go on the stack."""
    stack: list[tuple[object, int]] = [([value], 0)]
    push = stack.append
    while stack:
        x, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise TooDeep(f"{what}: nested deeper than {MAX_DEPTH}")
        values: Iterable[object]
        if isinstance(x, dict):
            for k in x:
                if type(k) is not str or len(k) > MAX_KEY or not k.isascii() or "\x00" in k:
                    _check_key(k, what)
            values = x.values()
        elif isinstance(x, list | tuple):
            if len(x) > MAX_LIST:
                raise OutOfRange(f"{what}: a list of {len(x)} items (at most {MAX_LIST})")
            values = x
        else:
            raise SchemaError(f"{what}: {type(x).__name__} is not a JSON value")
        for v in values:
            t = type(v)
            if t is str:
                s = cast(str, v)
                if len(s) > MAX_STRING or not s.isascii() or "\x00" in s:  # isascii reads a flag: most pass on it
                    _check_text(s, MAX_STRING, what)
            elif t is float or t is int:
                if not -MAX_NUMBER < cast(float, v) < MAX_NUMBER:  # False for NaN too
                    raise OutOfRange(f"{what}: {v!r:.40} is not a finite number in range")
            elif t is dict or t is list:
                push((v, depth + 1))
            elif v is not None and t is not bool:
                _check_other(v, depth + 1, stack, what)


def _check_other(v: object, depth: int, stack: list[tuple[object, int]], what: str) -> None:
    """The rare leaf: a subclass of str, int or float, or a tuple (a Python-made envelope, not parsed JSON)."""
    if isinstance(v, bool):
        return
    if isinstance(v, str):
        _check_text(str(v), MAX_STRING, what)
    elif isinstance(v, int | float):
        if not -MAX_NUMBER < float(v) < MAX_NUMBER:
            raise OutOfRange(f"{what}: {v!r:.40} is not a finite number in range")
    elif isinstance(v, dict | list | tuple):
        stack.append((v, depth))
    else:
        raise SchemaError(f"{what}: {type(v).__name__} is not a JSON value")


def _check_key(k: object, what: str) -> None:
    if not isinstance(k, str):
        raise SchemaError(f"{what}: key {k!r:.40} is not a string")
    _check_text(k, MAX_KEY, what)


_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


def _check_text(s: str, limit: int, what: str) -> None:
    if len(s) > limit:
        raise BadText(f"{what}: a string of {len(s)} characters (at most {limit})")
    if _BAD_CHARS.search(s) is not None:
        # a lone surrogate cannot be encoded as UTF-8 (storing or serving it fails); NUL ends C strings
        raise BadText(f"{what}: a string holds a lone surrogate or NUL")


def from_dict(d: object) -> Envelope:
    if not isinstance(d, dict):
        raise SchemaError("payload is not a JSON object")
    schema = d.get("schema")
    if type(schema) is not int or schema != SCHEMA_VERSION:  # not 1.0, not true
        raise SchemaError(f"unsupported schema {schema!r} (this reader knows {SCHEMA_VERSION})")
    check_value(d)
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
    if env.seq > MAX_SEQ:
        raise OutOfRange(f"seq {env.seq} is above {MAX_SEQ}")
    if not isinstance(env.type, str) or not _TYPE.fullmatch(env.type):
        raise SchemaError(f"type {env.type!r} is not a lowercase identifier")
    for what, t in (("start", env.start), ("end", env.end)):
        if not isinstance(t, int | float) or isinstance(t, bool):
            raise SchemaError(f"{what} {t!r} is not a number of seconds")
        _check_call_time(what, t)
    if env.end < env.start:
        raise SchemaError(f"end {env.end} before start {env.start}")
    _check_ts(env.ts)
    if env.model is not None and not (
        isinstance(env.model.name, str) and 0 < len(env.model.name) <= 128 and _is_sha256(env.model.sha256)
    ):
        raise SchemaError(f"model {env.model!r}: needs a name and a 64-hex-digit sha256")
    if env.model is not None:
        _check_text(env.model.name, 128, "model name")


def _check_fields(etype: str, f: Mapping[str, Any]) -> None:
    """Type-specific fields of the types this reader knows; other types pass as they are (bounded by
    `check_value` like everything else)."""
    if etype == "speech":
        if f.get("speaker") not in PARTIES:
            raise SchemaError(f"speech: speaker {f.get('speaker')!r} is not one of {PARTIES}")
    elif etype == "talk_over":
        if f.get("by") not in PARTIES or f.get("kind") not in _KINDS or not _is_number(f.get("overlap")):
            raise SchemaError("talk_over: needs by (agent|customer), kind (interruption|backchannel), overlap")
        _check_call_time("talk_over overlap", f["overlap"])
        if "confidence" in f:
            _check_share("talk_over confidence", f["confidence"])
    elif etype == "dead_air":
        if "confidence" in f:
            _check_share("dead_air confidence", f["confidence"])
    elif etype == "activity":
        for party in PARTIES:
            segs = f.get(party)
            if not isinstance(segs, list) or len(segs) % 2 or not all(_is_int(x) and x >= 0 for x in segs):
                raise SchemaError(f"activity: {party} must be a list of centisecond [gap, length, ...] pairs")
            if sum(segs) > MAX_CALL_S * 100:
                raise OutOfRange(f"activity: {party}'s segments reach past {MAX_CALL_S:.0f} s")
        times: list[object] = []  # each entry's [start, end, ...] (an emotion's end is its 4th item)
        for key in ("talk_over", "dead_air", "emotion"):
            entries = f.get(key, [])
            if not isinstance(entries, list) or not all(isinstance(x, list) and len(x) >= 2 for x in entries):
                raise SchemaError(f"activity: {key} must be a list of [start, ...] entries")
            if key in BATCHED_FIELDS:
                # its fields and, from newer stations, the confidence (a share) last
                width = len(BATCHED_FIELDS[key])
                if not all(len(x) in (width, width + 1) for x in entries):
                    raise SchemaError(f"activity: a {key} entry is {batched_form(key)}")
                for x in entries:
                    if len(x) > width:
                        _check_share(f"activity {key} confidence", x[-1])
            if key == "emotion":
                times += [x[0] for x in entries] + [x[3] for x in entries if len(x) > 3]
            else:
                times += [x[0] for x in entries] + [x[1] for x in entries]
        if times:  # all at once: a lively batch holds hundreds (finite and bounded already: check_value)
            if not all(type(t) is float or type(t) is int for t in times):
                raise SchemaError("activity: an entry lacks its times")
            _check_call_time("activity entry time", min(cast(list[float], times)))
            _check_call_time("activity entry time", max(cast(list[float], times)))
    elif etype == "call_summary":
        if not _is_number(f.get("duration")):
            raise SchemaError("call_summary: needs duration")
        _check_call_time("call_summary duration", f["duration"])
        for key in ("longest_agent_monologue", "agent_response_latency_mean"):
            if _is_number(f.get(key)):
                _check_call_time(f"call_summary {key}", f[key])
        for party in PARTIES:
            stats = f.get(party)
            if isinstance(stats, dict) and _is_number(stats.get("talk_time")):
                _check_call_time(f"call_summary {party} talk_time", stats["talk_time"])


BATCHED_FIELDS: dict[str, tuple[str, ...]] = {
    "talk_over": ("start", "end", "by", "kind", "overlap"),
    "dead_air": ("start", "end"),
}
"""The items of a batched `activity` entry of these types, in order; newer stations append the confidence."""


def batched_form(etype: str) -> str:
    """How a batched entry of `etype` reads, for error messages: "[start, end, confidence]"."""
    return f"[{', '.join((*BATCHED_FIELDS[etype], 'confidence'))}]"


def _check_share(what: str, v: object) -> None:
    """A number within 0..1 (NaN fails the comparisons and is refused too)."""
    if not _is_number(v):
        raise SchemaError(f"{what} {v!r:.40} is not a number")
    if not 0 <= cast(float, v) <= 1:
        raise OutOfRange(f"{what} {v!r} is not within 0..1")


def _check_call_time(what: str, t: float) -> None:
    """Seconds within a call: 0..MAX_CALL_S (NaN fails both comparisons and is refused too)."""
    if not 0 <= t <= MAX_CALL_S:
        raise OutOfRange(f"{what} {t!r} is not within 0..{MAX_CALL_S:.0f} s")


def _check_ts(ts: object) -> None:
    if not isinstance(ts, str) or not ts.endswith("Z") or len(ts) > 40:
        raise SchemaError(f"ts {ts!r:.60} is not a UTC ISO-8601 time ending in 'Z'")
    try:
        t = datetime.fromisoformat(ts)
    except ValueError:
        raise SchemaError(f"ts {ts!r} is not ISO-8601") from None
    if not TS_YEARS[0] <= t.year <= TS_YEARS[1]:
        raise OutOfRange(f"ts {ts!r} is outside the years {TS_YEARS[0]}..{TS_YEARS[1]}")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v and v not in (float("inf"), float("-inf"))


def _is_sha256(v: object) -> bool:
    return isinstance(v, str) and _SHA256.fullmatch(v) is not None
