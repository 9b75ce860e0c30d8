"""Call lifecycle at the seat: when a call starts and ends, who the agent is, and privacy.

A call starts on a command (MQTT `cmd/call_start` with the CTI's call id, or the local endpoint) or, when
nothing tells the station, automatically: while idle the same pipeline listens, and customer speech of
`start_speech_s` starts a call whose audio begins `preroll_s` before that speech (kept in memory only). An
automatic call ends when both parties have been silent for `end_silence_s`; a commanded one when told (or,
like every call, after `max_call_s`). Ending a call flushes the pipeline and emits its summary. Privacy ends
any call at once and analyses nothing until it is turned off; the audio read meanwhile is thrown away.

Everything here runs on the station's analysis thread; `feed` is the only hot path.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from edge_agent.audio import SAMPLE_RATE
from edge_agent.config import AnalyzerConfig
from edge_agent.events import Event, Speech
from edge_agent.pipeline import Pipeline
from edge_agent.wire import ActivityBatcher, AgentLogin, AgentLogout, PrivacyChanged
from firmware_py.config import LifecycleSection

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]


class State(StrEnum):
    IDLE = "idle"
    IN_CALL = "in_call"
    PRIVACY = "privacy"


@dataclass
class Call:
    call_id: str
    started_by: str
    """'command', 'local' or 'auto'."""
    batcher: ActivityBatcher
    last_speech_end: float = 0.0
    live_overlap: float | None = None
    """Start of the overlap last signalled live (each one once)."""
    live_silence: float | None = None
    """Start of the silence last signalled live as dead air."""
    live_speaking: tuple[str, ...] = ()
    """Who was speaking when it was last signalled live (each change once)."""


@dataclass
class Emitted:
    """Events for the transport with the identity they belong to."""

    events: list[Event]
    call_id: str | None
    agent_id: str | None
    extra: dict[str, object] = field(default_factory=dict)


Sink = Callable[[Emitted], None]
Live = Callable[[dict[str, object]], None]


class CallLifecycle:
    def __init__(
        self,
        cfg: LifecycleSection,
        analyzer: AnalyzerConfig,
        sink: Sink,
        *,
        batch_s: float,
        agent_id: str | None,
        live: Live | None = None,
    ) -> None:
        self.cfg, self.sink, self.batch_s, self.live = cfg, sink, batch_s, live
        self.dead_air_s = analyzer.dead_air.min_silence_s
        self.pipeline = Pipeline(analyzer)  # one model load for idle listening and calls alike
        self.agent_id = agent_id
        self.state = State.IDLE
        self.call: Call | None = None
        self.calls_started = 0
        self._preroll: deque[F32] = deque()
        self._preroll_samples = 0
        self._idle_samples = 0
        """Samples fed to the idle pipeline since it was reset: the idle time base."""
        self._keep = int((cfg.preroll_s + cfg.start_speech_s + 3.0) * SAMPLE_RATE)

    # --- audio ---------------------------------------------------------------------------------------------

    def feed(self, block: F32) -> None:
        if self.state is State.PRIVACY:
            return
        if self.state is State.IDLE:
            self._feed_idle(block)
            return
        call = self.call
        assert call is not None  # noqa: S101 - IN_CALL always has a call
        events = self.pipeline.process(block)
        for e in events:
            if isinstance(e, Speech):
                call.last_speech_end = max(call.last_speech_end, e.end)
        self._emit(call.batcher.add(events))
        segs = self.pipeline.segments
        now = segs.decided_s
        if self.live is not None:
            self._live(call, now)
        if now >= self.cfg.max_call_s:
            self.end_call("max_call_s")
        elif call.started_by == "auto" and self.cfg.auto and segs.open_since() == (None, None):
            if now - call.last_speech_end >= self.cfg.end_silence_s:
                self.end_call("silence")

    def _live(self, call: Call, now: float) -> None:
        """Signal a talk-over as soon as the detector holds it for one (both speaking min_overlap_s, the newcomer
        heard by Silero) and dead air as soon as the silence is long enough, long before the batch with the full
        record goes out."""
        assert self.live is not None  # noqa: S101 - checked by the caller
        agent, customer = self.pipeline.segments.open_since()
        # who holds the floor, on each change: a few dozen bytes every turn, so the wall's "now" can say it
        speaking = tuple(p for p, since in (("agent", agent), ("customer", customer)) if since is not None)
        if speaking != call.live_speaking:
            call.live_speaking = speaking
            self.live({"type": "speaking", "call_id": call.call_id, "start": round(now, 2), "parties": list(speaking)})
        overlap = self.pipeline.talk_over.confirmed_overlap()
        if overlap is not None and call.live_overlap != overlap[0]:
            call.live_overlap, by = overlap
            self.live({"type": "talk_over", "call_id": call.call_id, "start": round(overlap[0], 2), "by": by})
        if agent is None and customer is None and call.last_speech_end > 0:
            start = call.last_speech_end
            if now - start >= self.dead_air_s and call.live_silence != start:
                call.live_silence = start
                self.live({"type": "dead_air", "call_id": call.call_id, "start": round(start, 2)})

    def _feed_idle(self, block: F32) -> None:
        self._preroll.append(block)
        self._preroll_samples += len(block)
        while self._preroll and self._preroll_samples - len(self._preroll[0]) >= self._keep:
            self._preroll_samples -= len(self._preroll.popleft())
        self._idle_samples += len(block)
        if not self.cfg.auto:
            return
        events = self.pipeline.process(block)
        long_enough = self.cfg.start_speech_s
        spoke = [
            e.start
            for e in events
            if isinstance(e, Speech) and e.speaker == "customer" and e.end - e.start >= long_enough
        ]
        open_customer = self.pipeline.segments.open_since()[1]
        now = self.pipeline.segments.decided_s
        if open_customer is not None and now - open_customer >= self.cfg.start_speech_s:
            spoke.append(open_customer)
        if spoke:
            self._start_from_preroll(min(spoke))

    def _start_from_preroll(self, speech_start_s: float) -> None:
        buffered = np.concatenate(list(self._preroll)) if self._preroll else np.zeros((0, 2), np.float32)
        buf_start = (self._idle_samples - len(buffered)) / SAMPLE_RATE
        begin = max(buf_start, speech_start_s - self.cfg.preroll_s)
        audio = buffered[round((begin - buf_start) * SAMPLE_RATE) :]
        log.info("customer speech at %.2f s of idle: starting a call", speech_start_s)
        self.start_call(None, by="auto")
        self.feed(audio)

    # --- control -------------------------------------------------------------------------------------------

    def start_call(self, call_id: str | None, *, by: str, agent_id: str | None = None) -> str:
        if self.state is State.PRIVACY:
            raise LifecycleError("privacy is on: no call can start")
        if self.call is not None:
            self.end_call("superseded")
        if agent_id is not None and agent_id != self.agent_id:
            self.login(agent_id)
        self.pipeline.reset()
        self._clear_idle()
        self.call = Call(call_id or uuid.uuid4().hex, by, ActivityBatcher(self.batch_s))
        self.state = State.IN_CALL
        self.calls_started += 1
        log.info("call %s started (%s)", self.call.call_id, by)
        if self.live is not None:
            self.live({"type": "call", "call_id": self.call.call_id, "state": "started", "by": by})
        return self.call.call_id

    def end_call(self, reason: str, call_id: str | None = None) -> bool:
        """Close the running call (if `call_id` is given, only that one) and emit its summary."""
        call = self.call
        if call is None or (call_id is not None and call_id != call.call_id):
            return False
        events = self.pipeline.finish()  # resets the pipeline too
        self._emit(call.batcher.add(events) + call.batcher.flush())
        log.info("call %s ended (%s)", call.call_id, reason)
        if self.live is not None:
            self.live({"type": "call", "call_id": call.call_id, "state": "ended", "reason": reason})
        self.call = None
        self.state = State.IDLE
        self._clear_idle()
        return True

    def login(self, agent_id: str) -> None:
        if self.agent_id is not None and self.agent_id != agent_id:
            self.logout()
        self.agent_id = agent_id
        self._seat_event(AgentLogin(*self._now()))

    def logout(self) -> None:
        if self.agent_id is None:
            return
        self._seat_event(AgentLogout(*self._now()))
        self.agent_id = None

    def set_privacy(self, on: bool) -> bool:
        """Returns whether anything changed. On: the running call ends now, nothing more is analysed."""
        if on == (self.state is State.PRIVACY):
            return False
        if on:
            self.end_call("privacy")
            self.state = State.PRIVACY
            self._clear_idle()
        else:
            self.state = State.IDLE
        self._seat_event(PrivacyChanged(*self._now(), on=on))
        return True

    def close(self) -> None:
        """Shutting down: close the running call cleanly so its summary is not lost."""
        self.end_call("shutdown")

    # --- helpers -------------------------------------------------------------------------------------------

    def _clear_idle(self) -> None:
        self._preroll.clear()
        self._preroll_samples = 0
        self._idle_samples = 0
        if self.state is not State.IN_CALL:
            self.pipeline.reset()

    def _now(self) -> tuple[float, float]:
        t = self.pipeline.segments.decided_s if self.call is not None else 0.0
        return (t, t)

    def _seat_event(self, e: Event) -> None:
        self.sink(Emitted([e], self.call.call_id if self.call else None, self.agent_id))

    def _emit(self, events: list[Event]) -> None:
        if events and self.call is not None:
            self.sink(Emitted(events, self.call.call_id, self.agent_id))


class LifecycleError(Exception):
    """A request the lifecycle cannot honour now (e.g. a call start during privacy)."""
