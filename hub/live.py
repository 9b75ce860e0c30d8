"""The live wall's state: what each seat is doing now and the alerts raised on its current call.

Two feeds, both in memory only (after a restart the wall fills again as things arrive):

- stored events, from ingest after each commit (`LiveBoard.update`). Alerts: the customer's anger (an `emotion`
  event of the customer labelled angry or sent as an `anger_alert`, which the station sends at once when anger
  rises past its threshold, or its `arousal` above 0.8 with a negative label) and long dead air (a `dead_air`
  entry of at least `dead_air_alert_s`, from the 180 s `activity` batches);
- the station's `qa/v1/{site}/{seat}/live` topic (QoS 0, docs/events.md), from ingest's network thread
  (`LiveBoard.live`): a talk-over the moment it is one, dead air the moment the silence is long enough, calls
  starting and ending. These are shown as what is happening `now` and never stored: a talk-over for
  `talk_over_show_s`, dead air until speech is heard again (a talk-over on the call), the call ends, or
  `dead_air_show_s` passes (the station signals a silence's start, not its end). Malformed live messages
  are counted in `live_counts` by reason and dropped.

A seat's state on the wall is `offline` (the station's retained `offline` status, its last will: the broker
says so when the connection drops), `in_call` (a live `call` signal or an event of a call not yet finished) or
`idle`; the device statuses come from the devices table (`sync_devices`, read at most every
`devices_every_s` by whoever snapshots, so every hub worker's wall sees every seat's status). A call's alerts
are one entry per kind (its count and latest moment updated as it repeats) and are cleared when the call ends;
a customer anger alert carries how sure the station is (`confidence`, 0..1: the event's calibrated `confidence`
when it has one, `calibrated` true, else its smoothed anger score, `calibrated` false; absent when the event has
neither: `hub.tone.event_anger`);
its running time counts from the earliest moment the hub can place its start (a live signal's call offset, or
an event's end, back from when the hub heard it): the station's clock is never trusted for it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from edge_agent.schema import TOPIC_PREFIX, Envelope, SchemaError, check_name
from hub.tone import event_anger

log = logging.getLogger(__name__)

LIVE_SUBSCRIPTION = f"{TOPIC_PREFIX}/+/+/live"
MAX_LIVE_BYTES = 4096
"""A live message is a few dozen bytes; anything near this is not one."""
LIVE_REJECTIONS = ("oversized", "bad_topic", "bad_json", "bad_schema")
SILENT_S = 600.0
"""Nothing heard from a seat this long (no event, no health report: 20 missed reports at the station's default
30 s) and it counts as offline, whatever its retained status says: a station that hangs sends no last will."""


class _Signal(BaseModel):
    # a newer station may add fields: ignored, as the hub keeps unknown event fields (docs/events.md)
    model_config = ConfigDict(extra="ignore", frozen=True)
    call_id: str = Field(pattern=r"^[A-Za-z0-9_.:\-]{1,128}$")
    ts: str

    @field_validator("ts")
    @classmethod
    def _utc(cls, v: str) -> str:
        if not v.endswith("Z"):
            raise ValueError("ts: ISO-8601 UTC ending in Z")
        datetime.fromisoformat(v[:-1] + "+00:00")
        return v


class TalkOverSignal(_Signal):
    type: Literal["talk_over"]
    start: float = Field(ge=0, allow_inf_nan=False)
    by: Literal["agent", "customer"]


class DeadAirSignal(_Signal):
    type: Literal["dead_air"]
    start: float = Field(ge=0, allow_inf_nan=False)


class SpeakingSignal(_Signal):
    """Who holds the floor from `start` (call seconds) on: none, one party or both."""

    type: Literal["speaking"]
    start: float = Field(ge=0, allow_inf_nan=False)
    parties: tuple[Literal["agent", "customer"], ...] = Field(max_length=2)


class CallSignal(_Signal):
    type: Literal["call"]
    state: Literal["started", "ended"]


AnySignal = TalkOverSignal | DeadAirSignal | CallSignal | SpeakingSignal
Signal = Annotated[AnySignal, Field(discriminator="type")]
_SIGNAL: TypeAdapter[AnySignal] = TypeAdapter(Signal)
_KNOWN = frozenset(("talk_over", "dead_air", "call", "speaking"))


def parse_live_topic(topic: str) -> tuple[str, str]:
    """`qa/v1/{site}/{seat}/live` -> (site, seat); SchemaError for any other topic."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != TOPIC_PREFIX or parts[4] != "live":
        raise SchemaError(f"not a live topic: {topic!r}")
    return check_name("site", parts[2]), check_name("seat", parts[3])


@dataclass
class SeatState:
    site: str
    seat: str
    agent_id: str | None = None
    call_id: str | None = None
    in_call: bool = False
    last_event: float = 0.0
    alerts: list[dict[str, Any]] = field(default_factory=list)
    now: list[dict[str, Any]] = field(default_factory=list)
    """Live signals in progress: {"kind": "talk_over"|"dead_air", "start": call seconds, "ts", "by"?, "since":
    when the hub heard it (POSIX s)}; snapshots add `age_s`."""
    speaking: list[str] = field(default_factory=list)
    """Who holds the floor in the current call now (the station's `speaking` signal): [], one party or both."""
    call_started: float | None = None
    """When the current call began (POSIX s, the hub's clock): the earliest the hub can place it."""
    status: str | None = None
    """The device's retained availability (`online`/`offline`) from the devices table; None: never reported."""
    status_at: float | None = None
    last_seen: float | None = None
    """When the hub last had a health report from the seat (POSIX s)."""


class LiveBoard:
    def __init__(
        self,
        dead_air_alert_s: float = 10.0,
        *,
        talk_over_show_s: float = 4.0,
        dead_air_show_s: float = 30.0,
        agent_of: Callable[[str, str], str | None] | None = None,
        devices_every_s: float = 2.0,
    ) -> None:
        self.agent_of = agent_of
        """Who the hub holds as logged in at (site, seat) now (`Store.agent_at`, docs/trust.md). Set, the wall
        shows that agent, never the one a seat's event names: a seat must not put itself on another agent's (or
        another team's) wall. Unset (a board without a store), the seat's own login events are shown."""
        self.dead_air_alert_s = dead_air_alert_s
        self.talk_over_show_s = talk_over_show_s
        self.dead_air_show_s = dead_air_show_s
        self._seats: dict[tuple[str, str], SeatState] = {}
        self._ended: dict[tuple[str, str], deque[str]] = {}  # calls each seat has finished, latest last
        self._lock = threading.Lock()
        self._version = 0
        self.devices_every_s = devices_every_s
        self._devices_read = -devices_every_s - 1.0
        self.live_counts: dict[str, int] = dict.fromkeys(("accepted", "unknown_type", *LIVE_REJECTIONS), 0)
        """Live messages since start: accepted, of a type this hub does not know (dropped), or rejected by reason."""

    @property
    def version(self) -> int:
        """Bumped on every change, including live signals running out: the stream sends a snapshot when it moves."""
        with self._lock:
            self._expire(time.time())
            return self._version

    # --- stored events -------------------------------------------------------------------------------------------

    def update(self, env: Envelope) -> None:
        key = (env.site, env.seat)
        known = self._seats.get(key)
        trusted: str | None = None
        resolve = self.agent_of is not None and (
            env.type in ("agent_login", "agent_logout") or known is None or env.call_id != known.call_id
        )
        if resolve and self.agent_of is not None:
            # looked up outside the lock (a query), and only when the seat's state can change: a login or
            # logout, or a call the wall has not seen
            trusted = self.agent_of(env.site, env.seat)
        with self._lock:
            s = self._seats.setdefault(key, SeatState(env.site, env.seat))
            s.last_event = time.time()
            if resolve:
                s.agent_id = trusted
            if env.type == "agent_login":
                if self.agent_of is None:
                    s.agent_id = env.agent_id
            elif env.type == "agent_logout":
                s.agent_id, s.in_call, s.now = None, False, []
            elif env.call_id is not None:
                ended = self._ended.setdefault(key, deque(maxlen=8))
                if env.call_id != s.call_id:
                    if env.call_id in ended:
                        self._version += 1
                        return  # a late batch of a call the seat has finished: not the call on the wall now
                    s.call_id, s.alerts, s.now, s.call_started, s.speaking = env.call_id, [], [], None, []
                if env.type == "call_summary":
                    ended.append(env.call_id)
                    s.in_call, s.now, s.alerts, s.call_started = False, [], [], None
                elif env.call_id not in ended:
                    s.in_call = True
                    self._started(s, s.last_event - env.end)
                    for alert in self._alerts(env):
                        self._raise(s, alert)
                if env.agent_id is not None and self.agent_of is None:
                    s.agent_id = env.agent_id
            self._version += 1

    @staticmethod
    def _started(s: SeatState, at: float) -> None:
        # an event (or signal) `x` seconds into the call heard at `t` says the call began by `t - x`
        s.call_started = at if s.call_started is None else min(s.call_started, at)

    @staticmethod
    def _raise(s: SeatState, alert: dict[str, Any]) -> None:
        """One entry per kind per call: a repeat updates it (count, latest moment, longest dead air)."""
        old = next((a for a in s.alerts if a["kind"] == alert["kind"]), None)
        if old is None:
            s.alerts.append({**alert, "count": 1, "last_at": alert["at"], "raised": s.last_event})
            return
        old["count"] += 1
        old["last_at"], old["event_id"], old["raised"] = (
            max(old["last_at"], alert["at"]),
            alert["event_id"],
            s.last_event,
        )
        if "seconds" in alert:
            old["seconds"] = max(old.get("seconds", 0.0), alert["seconds"])
        if "confidence" in alert:  # the latest anger event's: how sure the station is now
            old["confidence"], old["calibrated"] = alert["confidence"], alert["calibrated"]

    def _alerts(self, env: Envelope) -> list[dict[str, Any]]:
        f = env.fields
        out: list[dict[str, Any]] = []
        if env.type == "emotion":
            party = f.get("party", f.get("speaker"))
            label = f.get("label", f.get("emotion"))
            arousal = f.get("arousal")
            hot = isinstance(arousal, int | float) and arousal > 0.8 and label in ("angry", "sad")
            if party == "customer" and (label == "angry" or hot or f.get("reason") == "anger_alert"):
                alert: dict[str, Any] = {"kind": "customer_anger", "at": env.start, "event_id": env.id}
                anger = event_anger(f)
                if anger is not None:  # how sure the station is: the wall shows it beside the alert
                    alert["confidence"], alert["calibrated"] = anger
                out.append(alert)
        gaps: list[tuple[float, float]] = []
        if env.type == "dead_air":
            gaps.append((env.start, env.end))
        elif env.type == "activity" and isinstance(f.get("dead_air"), list):
            gaps += [(float(x[0]), float(x[1])) for x in f["dead_air"] if isinstance(x, list) and len(x) == 2]
        out += [
            {"kind": "dead_air", "at": a, "seconds": round(b - a, 1), "event_id": env.id}
            for a, b in gaps
            if b - a >= self.dead_air_alert_s
        ]
        return out

    # --- the live topic ------------------------------------------------------------------------------------------

    def live(self, topic: str, payload: bytes | bytearray) -> str:
        """One message from a seat's live topic (called on ingest's network thread: cheap, never raises for
        anything a message can contain). Returns what became of it: 'accepted', 'unknown_type' or a rejection."""
        outcome, site_seat, sig = self._classify(topic, payload)
        with self._lock:
            self.live_counts[outcome] += 1
            n = self.live_counts[outcome]
            if sig is not None and site_seat is not None:
                self._apply(site_seat, sig, time.time())
        if outcome in LIVE_REJECTIONS and n & (n - 1) == 0:  # the 1st, 2nd, 4th... of each kind: a flood stays quiet
            log.warning("dropped a live message on %s: %s (%d so far)", topic, outcome, n)
        return outcome

    def _classify(self, topic: str, payload: bytes | bytearray) -> tuple[str, tuple[str, str] | None, AnySignal | None]:
        if len(payload) > MAX_LIVE_BYTES:
            return "oversized", None, None
        try:
            site_seat = parse_live_topic(topic)
        except SchemaError:
            return "bad_topic", None, None
        try:
            data = json.loads(bytes(payload).decode())
        except ValueError:  # UnicodeDecodeError and JSONDecodeError both are
            return "bad_json", None, None
        if isinstance(data, dict) and isinstance(data.get("type"), str) and data["type"] not in _KNOWN:
            return "unknown_type", None, None  # a newer station's signal: not an error, nothing to show
        try:
            return "accepted", site_seat, _SIGNAL.validate_python(data)
        except ValidationError as exc:
            log.debug("bad live message on %s: %s", topic, exc.errors()[:1])
            return "bad_schema", None, None

    def _apply(self, key: tuple[str, str], sig: AnySignal, now: float) -> None:
        s = self._seats.setdefault(key, SeatState(*key))
        ended = self._ended.setdefault(key, deque(maxlen=8))
        s.last_event = now
        if sig.call_id != s.call_id:
            if sig.call_id in ended:
                return  # a straggler of a finished call (QoS 0 has no order across reconnects)
            # a new call; its `started` may have been lost (QoS 0): any signal of it says it runs
            s.call_id, s.alerts, s.now, s.call_started, s.speaking = sig.call_id, [], [], None, []
        if isinstance(sig, CallSignal):
            s.speaking = []
            if sig.state == "ended":
                ended.append(sig.call_id)
                s.alerts, s.call_started = [], None
            s.in_call = sig.state == "started" and sig.call_id not in ended
            s.now = []
            if s.in_call:
                self._started(s, now)
        elif sig.call_id not in ended:
            s.in_call = True
            self._started(s, now - sig.start)
            if isinstance(sig, SpeakingSignal):
                s.speaking = list(sig.parties)
            elif isinstance(sig, TalkOverSignal):
                # both speak: whatever silence was running is over, and one talk-over shows at a time
                s.now = [{"kind": "talk_over", "start": sig.start, "by": sig.by, "ts": sig.ts, "since": now}]
            else:
                s.now = [{"kind": "dead_air", "start": sig.start, "ts": sig.ts, "since": now}]
        self._version += 1

    def _expire(self, now: float) -> None:
        for s in self._seats.values():
            if s.now:
                keep = [x for x in s.now if now - x["since"] < self._show_s(x["kind"])]
                if len(keep) != len(s.now):
                    s.now = keep
                    self._version += 1

    def _show_s(self, kind: str) -> float:
        return self.talk_over_show_s if kind == "talk_over" else self.dead_air_show_s

    # --- device status ------------------------------------------------------------------------------------------

    def sync_devices(
        self, read: Callable[[], Iterable[tuple[str, str, str | None, float | None, float | None]]]
    ) -> None:
        """Take the devices table's (site, seat, status, status_at, last_seen) rows, at most every
        `devices_every_s` however many streams ask: a changed status bumps `version`, so the stream sends it.
        `read` runs outside the board's lock (a query); a failing one leaves the statuses as they were."""
        with self._lock:
            t = time.monotonic()
            if t - self._devices_read < self.devices_every_s:
                return
            self._devices_read = t
        try:
            rows = list(read())
        except Exception:
            log.warning("could not read the device statuses for the live wall", exc_info=True)
            return
        with self._lock:
            for site, seat, status, status_at, last_seen in rows:
                s = self._seats.get((site, seat))
                if s is None:
                    s = self._seats[(site, seat)] = SeatState(site, seat)  # a seat known only by its status
                    self._version += 1
                if (s.status, s.status_at, s.last_seen) != (status, status_at, last_seen):
                    s.status, s.status_at, s.last_seen = status, status_at, last_seen
                    self._version += 1

    def snapshot(self) -> list[dict[str, Any]]:
        """Every seat, by site and seat: its `SeatState` plus `state` (offline, in_call or idle), `call_s` (the
        call's running time, s), `alert` (the latest raised of the call's alerts, or None) and the live
        signals' `age_s`."""
        with self._lock:
            t = time.time()
            self._expire(t)
            out = []
            for s in sorted(self._seats.values(), key=lambda s: (s.site, s.seat)):
                d = asdict(s)
                offline = s.status == "offline" or (s.last_seen is not None and t - s.last_seen > SILENT_S)
                d["state"] = "offline" if offline else "in_call" if s.in_call else "idle"
                # an offline station sends nothing: what it last said is not happening now
                d["now"] = [] if offline else [{**x, "age_s": round(t - x["since"], 1)} for x in s.now]
                d["speaking"] = s.speaking if s.in_call and not offline else []
                started = s.call_started if s.in_call else None
                d["call_s"] = None if started is None else round(max(0.0, t - started), 1)
                d["alert"] = max(s.alerts, key=lambda a: a["raised"]) if s.alerts else None
                out.append(d)
            return out
