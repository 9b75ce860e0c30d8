"""Analysis events: what the pipeline emits. Times are seconds from the start of the call audio.

Frozen dataclasses with a type constant and `to_dict`; the transport layer wraps them with ids,
sequence numbers and seat identity.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

Party = Literal["agent", "customer"]
PARTIES: tuple[Party, Party] = ("agent", "customer")


@dataclass(frozen=True)
class Event:
    type: ClassVar[str] = "event"
    start: float
    """Seconds from the start of the call."""
    end: float
    """Seconds from the start of the call."""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type}
        for k, v in asdict(self).items():
            d[k] = round(v, 2) if isinstance(v, float) and k in ("start", "end") else v
        # a detector given no probabilities claims no confidence: the field is left out, never sent as null
        if "confidence" in d and d["confidence"] is None:
            del d["confidence"]
        return d


@dataclass(frozen=True)
class Speech(Event):
    type: ClassVar[str] = "speech"
    speaker: Party = "agent"


@dataclass(frozen=True)
class TalkOver(Event):
    type: ClassVar[str] = "talk_over"
    by: Party = "agent"
    """The party who started while the other was already speaking."""
    kind: Literal["interruption", "backchannel"] = "interruption"
    overlap: float = 0.0
    """Seconds both parties spoke inside [start, end]."""
    confidence: float | None = None
    """The speech model's mean probability that the newcomer spoke, over the overlap (0-1; not calibrated);
    None where the detector was not given the probabilities."""


@dataclass(frozen=True)
class DeadAir(Event):
    type: ClassVar[str] = "dead_air"
    confidence: float | None = None
    """How sure the independent detector (Silero) was that nobody spoke: one minus the mean, over the silence, of the
    higher of the two sides' speech probabilities (0-1; not calibrated); None where it was not given them."""


@dataclass(frozen=True)
class Emotion(Event):
    """A party's smoothed emotional state changed, or the customer's anger crossed the alert threshold.

    [start, end] is the span of the last scored window (one second of that party's own speech, pauses excluded).
    """

    type: ClassVar[str] = "emotion"
    speaker: Party = "agent"
    label: str = "neutral"
    """The smoothed state: neutral, happy, angry or sad."""
    reason: Literal["change", "anger_alert"] = "change"
    scores: dict[str, float] = field(default_factory=dict)
    """Smoothed class probabilities, 2 decimals."""
    arousal: float = 0.0
    """-1 (low) .. 1 (high), from the class probabilities on a fixed circumplex mapping."""
    valence: float = 0.0
    """-1 (negative) .. 1 (positive), likewise."""
    confidence: float = 0.0
    """Calibrated probability of `label` (the card's temperature scaling, then smoothing), 2 decimals."""
    confident: bool = True
    """Whether `confidence` clears the card's abstention threshold (angry states and alerts need it)."""


@dataclass(frozen=True)
class CallSummary(Event):
    type: ClassVar[str] = "call_summary"
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "start": round(self.start, 2), "end": round(self.end, 2), **self.metrics}
