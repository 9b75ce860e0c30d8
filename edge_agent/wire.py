"""What a call's analyzer events become on the wire: turn-taking goes out batched as `activity`.

An envelope costs ~300 bytes of header for ~10-40 bytes of information in a speech segment, talk-over or dead
air, and a lively call has 30+ of them a minute; one per event measured 10 KB per minute of call audio. So
the station sends one `activity` event per `batch_s` (180 s) of call time carrying, as compact arrays, both
parties' speech segments, the talk-overs, the dead air and the emotion changes (every field of each) that
ended inside that window (see docs/events.md). Events that stand alone (anger alerts, seat events) go out as
they are decided; the call summary flushes the open batch first, so a call's activity is complete on the wire
before its summary. `expand_activity` gives back every event a batch holds, as `analyze` printed it.
`edge-agent analyze` still prints one line per event; this is the transport's view only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from edge_agent.events import PARTIES, DeadAir, Emotion, Event, Speech, TalkOver
from edge_agent.pipeline import Pipeline
from edge_agent.schema import BATCHED_FIELDS, ModelRef, batched_form

DEFAULT_BATCH_S = 180.0
"""Scores are made from whole calls and alerts travel on their own, so a batch may wait this long; it keeps a
6-minute call under 1 KB per minute on the wire (benchmarks/bench_transport.py)."""


@dataclass(frozen=True)
class Activity(Event):
    """Speech segments, talk-overs, dead air and emotion changes that ended inside one batch window of the call."""

    type: ClassVar[str] = "activity"
    segments: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    talk_overs: list[TalkOver] = field(default_factory=list)
    dead_airs: list[DeadAir] = field(default_factory=list)
    emotions: list[Emotion] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type, "start": _r(self.start), "end": _r(self.end)}
        for party in PARTIES:
            d[party] = encode_segments(self.start, self.segments.get(party, []))
        # the confidence last, where known: a reader of the items before it keeps working
        d["talk_over"] = [
            [_r(t.start), _r(t.end), t.by, t.kind, _r(t.overlap), *_confidence(t.confidence)] for t in self.talk_overs
        ]
        d["dead_air"] = [[_r(x.start), _r(x.end), *_confidence(x.confidence)] for x in self.dead_airs]
        if self.emotions:
            # every field `analyze` prints (reason is always `change` here: alerts go on their own), so a reader
            # gets the event back whole; [start, speaker, label] first, as older stations sent only that, and the
            # calibrated confidence last, as stations before it sent seven items
            d["emotion"] = [
                [
                    _r(x.start),
                    x.speaker,
                    x.label,
                    _r(x.end),
                    dict(x.scores),
                    x.arousal,
                    x.valence,
                    x.confidence,
                    x.confident,
                ]
                for x in self.emotions
            ]
        return d


def _r(t: float) -> float:
    return round(t, 2)


def _confidence(conf: float | None) -> tuple[float, ...]:
    """A batched entry's last item: its confidence where known, nothing from a detector that had none."""
    return () if conf is None else (conf,)


def _cs(t: float) -> int:
    return round(round(t, 2) * 100)  # via the 2-decimal value analyze prints, so decoding gives it back exactly


def encode_segments(start: float, segments: Iterable[tuple[float, float]]) -> list[int]:
    """Segments as flat centisecond deltas `[gap, length, gap, length, ...]`, each gap from the previous
    segment's end (the first from the batch's `start`): 7-8 bytes a segment instead of 14 for `[s, e]`."""
    out: list[int] = []
    prev = _cs(start)
    for s, e in segments:
        s_cs, e_cs = _cs(s), _cs(e)
        out += [s_cs - prev, e_cs - s_cs]
        prev = e_cs
    return out


def decode_segments(start: float, deltas: Sequence[int]) -> list[tuple[float, float]]:
    """Inverse of `encode_segments`: `[(start, end), ...]` in seconds, 2 decimals."""
    out: list[tuple[float, float]] = []
    t = _cs(start)
    for gap, length in zip(deltas[0::2], deltas[1::2], strict=True):
        s_cs = t + gap
        t = s_cs + length
        out.append((round(s_cs / 100, 2), round(t / 100, 2)))
    return out


class ActivityBatcher:
    """Streams a call's analyzer events into wire events; one instance per call (`flush` ends it)."""

    def __init__(self, batch_s: float = DEFAULT_BATCH_S) -> None:
        if batch_s <= 0:
            raise ValueError("batch_s must be positive")
        self.batch_s = batch_s
        self._segments: dict[str, list[tuple[float, float]]] = {p: [] for p in PARTIES}
        self._talk_overs: list[TalkOver] = []
        self._dead_airs: list[DeadAir] = []
        self._emotions: list[Emotion] = []
        self._window_end = batch_s

    def add(self, events: Iterable[Event]) -> list[Event]:
        out: list[Event] = []
        for e in events:
            batched_emotion = isinstance(e, Emotion) and e.reason != "anger_alert"  # alerts go at once
            if isinstance(e, Speech | TalkOver | DeadAir) or batched_emotion:
                if e.end >= self._window_end:
                    out += self.flush()
                    # windows are fixed slots of call time, so a batch never spans more than batch_s
                    self._window_end = (e.end // self.batch_s + 1) * self.batch_s
                if isinstance(e, Speech):
                    self._segments[e.speaker].append((e.start, e.end))
                elif isinstance(e, TalkOver):
                    self._talk_overs.append(e)
                elif isinstance(e, Emotion):
                    self._emotions.append(e)
                elif isinstance(e, DeadAir):
                    self._dead_airs.append(e)
            elif e.type == "call_summary":
                out += self.flush()
                out.append(e)
            else:
                out.append(e)
        return out

    def flush(self) -> list[Event]:
        """The open batch as one `activity` event (none if it is empty)."""
        spans = [s for segs in self._segments.values() for s in segs]
        spans += [(x.start, x.end) for x in (*self._talk_overs, *self._dead_airs, *self._emotions)]
        if not spans:
            return []
        batch = Activity(
            min(s for s, _ in spans),
            max(e for _, e in spans),
            segments=self._segments,
            talk_overs=self._talk_overs,
            dead_airs=self._dead_airs,
            emotions=self._emotions,
        )
        self._segments, self._talk_overs, self._dead_airs = {p: [] for p in PARTIES}, [], []
        self._emotions = []
        return [batch]


def to_wire(events: Iterable[Event], batch_s: float = DEFAULT_BATCH_S) -> list[Event]:
    """A whole call's events (ending with its summary) as they go on the wire."""
    batcher = ActivityBatcher(batch_s)
    out = batcher.add(events)
    return out + batcher.flush()


def expand_activity(fields: Mapping[str, Any]) -> list[dict[str, Any]]:
    """An `activity` event's fields (with its `start`) back into one dict per speech segment, talk-over, dead
    air and emotion change, shaped as `edge-agent analyze` prints them (for readers that want events: the hub's
    scoring, timeline). Entries appear in the order they were batched; each keeps its index in its list as
    `index`. ValueError (or KeyError, TypeError) for a malformed batch."""
    out: list[dict[str, Any]] = []
    for party in PARTIES:
        out += [
            {"type": "speech", "start": s, "end": e, "speaker": party, "index": i}
            for i, (s, e) in enumerate(decode_segments(fields["start"], fields.get(party, [])))
        ]
    for etype in BATCHED_FIELDS:
        out += [_confident_entry(etype, entry, i) for i, entry in enumerate(fields.get(etype, []))]
    out += [_emotion_entry(entry, i) for i, entry in enumerate(fields.get("emotion", []))]
    return out


def _confident_entry(etype: str, entry: Sequence[Any], index: int) -> dict[str, Any]:
    """One batched talk-over or dead air as the event it was. An older station's entry has no confidence (its last
    item, schema.BATCHED_FIELDS)."""
    names = BATCHED_FIELDS[etype]
    if not isinstance(entry, list | tuple) or len(entry) not in (len(names), len(names) + 1):
        raise ValueError(f"activity: a {etype} entry is {batched_form(etype)}")
    out: dict[str, Any] = {"type": etype, **dict(zip(names, entry, strict=False))}
    if len(entry) > len(names):
        out["confidence"] = entry[-1]
    out["index"] = index
    return out


def _emotion_entry(entry: Sequence[Any], index: int) -> dict[str, Any]:
    """One batched emotion change as the `emotion` event it was. An entry of an older station has only
    `[start, speaker, label]` (its end is its start and it has no scores) or no confidence (seven items)."""
    if not isinstance(entry, list | tuple) or len(entry) not in (3, 7, 9):
        raise ValueError(
            "activity: an emotion entry is [start, speaker, label, end, scores, arousal, valence, confidence,"
            " confident]"
        )
    start, speaker, label = entry[:3]
    e: dict[str, Any] = {"type": "emotion", "start": start, "end": start, "speaker": speaker, "label": label}
    e["reason"] = "change"
    if len(entry) >= 7:
        end, scores, arousal, valence = entry[3:7]
        if not isinstance(scores, dict):
            raise ValueError("activity: an emotion entry's scores are not an object")
        e.update(end=end, scores=scores, arousal=arousal, valence=valence)
    if len(entry) == 9:
        e.update(confidence=entry[7], confident=entry[8])
    e["index"] = index
    return e


@dataclass(frozen=True)
class AgentLogin(Event):
    """Seat event: `agent_id` (in the envelope header) logged in at this seat."""

    type: ClassVar[str] = "agent_login"


@dataclass(frozen=True)
class AgentLogout(Event):
    """Seat event: the agent in the envelope header logged out."""

    type: ClassVar[str] = "agent_logout"


@dataclass(frozen=True)
class PrivacyChanged(Event):
    """Seat event: listening stopped (`on`) or resumed."""

    type: ClassVar[str] = "privacy"
    on: bool = True


SPEECH_MODEL_TYPES = ("speech", "talk_over", "dead_air", "activity", "call_summary")
"""Decided by the speech-activity model (the summary's emotion section names the emotion model itself)."""


def model_refs(pipeline: Pipeline) -> dict[str, ModelRef]:
    """Event type -> the model whose output it is, for the envelope's `model` (absent: no model decided it)."""
    refs: dict[str, ModelRef] = {}
    card = getattr(getattr(pipeline.backend, "model", None), "card", None)
    if card is not None:
        refs.update(dict.fromkeys(SPEECH_MODEL_TYPES, ModelRef(card.name, card.sha256)))
    if pipeline.emotion is not None:
        emo = pipeline.emotion.model.card
        refs["emotion"] = ModelRef(emo.name, emo.sha256)
    return refs
