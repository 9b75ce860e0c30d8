"""Turn taking from per-frame activity: speech segments, talk-overs and dead air.

Each detector is a small stateful class fed (m, 2) boolean activity blocks (agent, customer) in
order; frame i of the call is at i / 100 s. Events come out as soon as they are certain.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from edge_agent.config import DeadAirConfig, TalkOverConfig
from edge_agent.events import PARTIES, DeadAir, Event, Party, Speech, TalkOver

BOOL = npt.NDArray[np.bool_]
F32 = npt.NDArray[np.float32]
FPS = 100  # frames per second


def _t(frame: int) -> float:
    return frame / FPS


class SegmentTracker:
    """Speech segments per party, emitted when each one ends."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._frame = 0
        self._start: list[int | None] = [None, None]

    def process(self, act: BOOL) -> list[Event]:
        out: list[Event] = []
        for ch in (0, 1):
            col = act[:, ch]
            d = np.diff(np.concatenate([[self._start[ch] is not None], col]).astype(np.int8))
            for i in np.flatnonzero(d):
                t = self._frame + int(i)
                if d[i] > 0:
                    self._start[ch] = t
                else:
                    s = self._start[ch]
                    if s is not None:
                        out.append(Speech(_t(s), _t(t), speaker=PARTIES[ch]))
                    self._start[ch] = None
        self._frame += len(act)
        out.sort(key=lambda e: e.end)
        return out

    @property
    def decided_s(self) -> float:
        """Call time up to which activity has been decided."""
        return _t(self._frame)

    def open_since(self) -> tuple[float | None, float | None]:
        """Start (s) of each party's segment still in progress (agent, customer); None: not speaking."""
        a, c = self._start
        return (None if a is None else _t(a), None if c is None else _t(c))

    def finish(self) -> list[Event]:
        out: list[Event] = [
            Speech(_t(s), _t(self._frame), speaker=PARTIES[ch]) for ch, s in enumerate(self._start) if s is not None
        ]
        self.reset()
        return out


@dataclass
class _Overlap:
    start: int
    by: int
    newcomer_start: int
    holder_start: int
    last_both: int
    both: int = 0
    heard: int = 0  # overlap frames in which the newcomer's speech is also heard by the independent detector
    own: int = 0  # overlap frames in which the newcomer's channel rises above the other side's leakage
    mass: float = 0.0  # the newcomer's speech probability summed over the overlap frames (where known)
    stopper: int | None = None  # 0 agent, 1 customer, 2 both, at the first frame after the overlap


class TalkOverDetector:
    """Both parties speaking >= min_overlap_s. `by` started later; the kind depends on who yields.

    The newcomer yielding first after speaking no longer than backchannel_max_s is a backchannel
    (the other keeps the floor); the one already speaking yielding, or a long fight, is an
    interruption.

    A talk-over is a charge against a person, so it needs a second witness: where the backend runs an
    independent detector (`heard`: Silero VAD, pooled over +-100 ms), the newcomer must be heard by it for
    confirm_min_s of the overlap. A noise burst the model takes for speech on the
    listener's side (a keystroke, a click) makes a short "backchannel" Silero hears nothing of; on calls with
    noise the model never trained on, those were most of the false talk-overs. Dropped ones are counted
    (`unconfirmed`), never silently lost.

    Silero on the agent's mic also hears the customer: their voice leaks into the headset. While the customer
    talks, that leak under keyboard noise made the model hear the agent "cut in", and Silero vouched for it. So a
    newcomer of a party in `own_voice` (default: the agent) must also be louder on their own channel than the
    other side's leakage explains (`own`: the median band excess over the estimated leak, `edge_agent/crosstalk.py`,
    at least 0 dB) for at least half of the overlap: a voice of their own, not an echo of the other side.
    """

    def __init__(self, cfg: TalkOverConfig) -> None:
        self.cfg = cfg
        self.turn_gap = round(cfg.turn_gap_s * FPS)
        self.min_both = round(cfg.min_overlap_s * FPS)
        self.merge = round(cfg.merge_gap_s * FPS)
        self.bc_max = round(cfg.backchannel_max_s * FPS)
        self.min_heard = round(cfg.confirm_min_s * FPS)
        self.own_voice = tuple(PARTIES.index(p) for p in cfg.own_voice)
        self.last_unconfirmed = 0
        """The finished call's talk-overs dropped for want of confirmation (`finish` resets the live count)."""
        self.reset()

    def reset(self) -> None:
        self.unconfirmed = 0
        self._frame = 0
        self._known = True  # every block so far came with its probabilities
        # start of each party's current turn: a run resumed within turn_gap continues the turn, so
        # a speaker's breath pause does not make them the "newcomer" when the other cuts in
        self._run_start: list[int | None] = [None, None]
        self._last_end: list[int] = [-(10**9), -(10**9)]
        self._turn_start: list[int] = [0, 0]
        self._ov: _Overlap | None = None
        # (by, newcomer turn, holder turn) of the last talk-over: a holder resuming after a breath
        # inside the same two turns is the same fight, not a new talk-over
        self._last: tuple[int, int, int] | None = None

    def process(
        self, act: BOOL, heard: BOOL | None = None, probs: F32 | None = None, own: BOOL | None = None
    ) -> list[Event]:
        """act: each party's activity (m, 2); heard: the independent detector's speech in the same frames, if any;
        probs: the speech probabilities the activity was smoothed from, in the same frames, if known (they give
        each talk-over its `confidence`); own: whether each channel rises above the other side's leakage in the
        same frames, if known (without it the `own_voice` check passes)."""
        out: list[Event] = []
        confirm = act if heard is None else heard
        if probs is None:
            self._known = False
            probs = np.zeros(act.shape, np.float32)
        mine = act if own is None else own
        for (a, c), (ha, hc), (pa, pc), (oa, oc) in zip(
            act.tolist(), confirm.tolist(), probs.tolist(), mine.tolist(), strict=True
        ):
            t = self._frame
            for ch, on in ((0, a), (1, c)):
                if on and self._run_start[ch] is None:
                    self._run_start[ch] = t
                    if t - self._last_end[ch] > self.turn_gap:
                        self._turn_start[ch] = t
                elif not on and self._run_start[ch] is not None:
                    self._run_start[ch] = None
                    self._last_end[ch] = t
            ov = self._ov
            if a and c:
                if ov is None:
                    sa, sc = self._turn_start
                    if sa == sc:  # a tie in turns: the later run is the newcomer
                        ra, rc = (t if s is None else s for s in self._run_start)
                        sa, sc = (sa + 1, sc) if ra > rc else (sa, sc + 1)
                    by = 0 if sa > sc else 1
                    self._ov = _Overlap(
                        start=t, by=by, newcomer_start=max(sa, sc), holder_start=min(sa, sc), last_both=t
                    )
                    ov = self._ov
                ov.last_both = t
                ov.both += 1
                ov.heard += int(hc if ov.by else ha)
                ov.own += int(oc if ov.by else oa)
                ov.mass += pc if ov.by else pa
                ov.stopper = None
            elif ov is not None:
                if ov.stopper is None:
                    ov.stopper = 2 if not (a or c) else (1 if a else 0)
                if t - ov.last_both > self.merge or not (a or c):
                    ev = self._close(ov)
                    if ev is not None:
                        out.append(ev)
                    self._ov = None
            self._frame += 1
        return out

    def confirmed_overlap(self) -> tuple[float, Party] | None:
        """(start s, by) of the overlap in progress once it is a talk-over the record will hold: long enough and,
        where there is a second witness, heard by it. The live signal reads this, so the wall never shows a
        talk-over that the call's record then lacks."""
        ov = self._ov
        if ov is None or ov.both < self.min_both or not self._confirmed(ov):
            return None
        return _t(ov.start), PARTIES[ov.by]

    def _confirmed(self, ov: _Overlap) -> bool:
        """Heard by the second witness, and a voice of the newcomer's own where `own_voice` asks for it."""
        return ov.heard >= self.min_heard and (ov.by not in self.own_voice or 2 * ov.own >= ov.both)

    def _close(self, ov: _Overlap) -> TalkOver | None:
        if ov.both < self.min_both:
            return None
        if not self._confirmed(ov):
            self.unconfirmed += 1
            return None
        key = (ov.by, ov.newcomer_start, ov.holder_start)
        if key == self._last:
            return None
        self._last = key
        newcomer, holder = ov.by, 1 - ov.by
        newcomer_len = ov.last_both + 1 - ov.newcomer_start
        kind: Literal["interruption", "backchannel"]
        if ov.stopper == holder:
            kind = "interruption"
        else:
            kind = "backchannel" if newcomer_len <= self.bc_max else "interruption"
        by: Party = PARTIES[newcomer]
        # how sure the model was that the newcomer spoke: its mean probability over the overlap. On the held-out
        # calls of benchmarks/eval_calls.py it separates true from false talk-overs (AUC 0.80-0.90, docs/events.md),
        # so the hub can leave an unsure one out of a deduction (scorecard `min_confidence`)
        conf = round(ov.mass / ov.both, 2) if self._known else None
        return TalkOver(
            _t(ov.start), _t(ov.last_both + 1), by=by, kind=kind, overlap=round(ov.both / FPS, 2), confidence=conf
        )

    def finish(self) -> list[Event]:
        out: list[Event] = []
        if self._ov is not None:
            self._ov.stopper = 2
            ev = self._close(self._ov)
            if ev is not None:
                out.append(ev)
        self.last_unconfirmed = self.unconfirmed
        self.reset()
        return out


class LongSpeech:
    """Each party's activity segments that last at least `frames` frames with a mean probability of at least
    `min_prob` over those first frames, marked from their start.

    A segment is judged once it has lasted `frames`, and its mark reaches back to its start, so marks come out
    `frames - 1` frames late: `process` returns the marks of the frames no segment still being judged can reach.
    """

    def __init__(self, frames: int, min_prob: float) -> None:
        self.frames, self.min_prob = frames, min_prob
        self.reset()

    def reset(self) -> None:
        self._held = np.zeros((0, 2), bool)  # marks of the last frames - 1 frames, not yet released
        self._run = [0, 0]  # frames of each party's segment in progress (0: silent)
        self._sum = [0.0, 0.0]  # its probability summed over its first `frames` frames
        self._long = [False, False]  # it has been judged long and sure

    def process(self, act: BOOL, probs: F32) -> BOOL:
        """act, probs: (m, 2) activity and the probabilities it was smoothed from. Returns the marks of the frames
        released, oldest first (as many as came in, once `frames - 1` are held)."""
        m, base = len(act), len(self._held)
        marks = np.concatenate([self._held, np.zeros((m, 2), bool)])
        for ch in (0, 1):
            col = act[:, ch]
            edges = np.flatnonzero(np.diff(np.concatenate([[self._run[ch] > 0], col]).astype(np.int8)))
            bounds = [0, *edges.tolist(), m]
            on = self._run[ch] > 0
            # walk the few segment pieces of this block, carrying the segment in progress across blocks
            for a, b in itertools.pairwise(bounds):
                if on and b > a:
                    self._piece(ch, a, b, base, probs, marks)
                elif not on:
                    self._run[ch], self._sum[ch], self._long[ch] = 0, 0.0, False
                on = not on
        keep = min(self.frames - 1, len(marks))
        self._held = marks[len(marks) - keep :]
        return marks[: len(marks) - keep]

    def _piece(self, ch: int, a: int, b: int, base: int, probs: F32, marks: BOOL) -> None:
        before = self._run[ch]
        if before < self.frames:
            k = min(self.frames - before, b - a)
            self._sum[ch] += float(probs[a : a + k, ch].sum())
            if before + k == self.frames and self._sum[ch] >= self.min_prob * self.frames:
                self._long[ch] = True
                # the segment started `before` frames before this piece: those frames are still held
                marks[base + a - before : base + a, ch] = True
        if self._long[ch]:
            marks[base + a : base + b, ch] = True
        self._run[ch] = before + b - a

    def finish(self) -> BOOL:
        """The held frames' marks (a segment still being judged at the end never reached `frames`)."""
        out = self._held
        self.reset()
        return out


class DeadAirDetector:
    """Both parties silent >= min_silence_s between speech (not before the first or after the last).

    Silence is where the activity given (with the model backend: speech both the model and Silero hear) shows
    nobody, except, when each party's own activity is given too, its long and sure segments (`LongSpeech`): under
    noise Silero was never made for (music, some babble) it hears nothing of speech the model is sure of for
    seconds, and each such turn would read as dead air. Such segments are judged `model_speech_s` late, so with them
    dead air is decided that much later.
    """

    def __init__(self, cfg: DeadAirConfig) -> None:
        self.min_frames = round(cfg.min_silence_s * FPS)
        frames = round(cfg.model_speech_s * FPS)
        self._long = LongSpeech(frames, cfg.model_speech_min_prob) if frames > 0 else None
        self.reset()

    def reset(self) -> None:
        self._frame = 0
        self._heard = False
        self._silence_start: int | None = None
        self._mass = 0.0  # the silence's speech probability (the louder side's, per frame) summed so far
        self._known = True  # every block so far came with the probabilities
        # frames held while LongSpeech judges the segments around them: activity, then the probabilities (NaN: none)
        self._held = np.zeros((0, 4), np.float32)
        if self._long is not None:
            self._long.reset()

    def process(
        self, act: BOOL, speech_probs: F32 | None = None, own: BOOL | None = None, own_probs: F32 | None = None
    ) -> list[Event]:
        """act: each party's activity (m, 2); speech_probs: an independent detector's speech probability for each
        party in the same frames, if known (they give each dead air its `confidence`); own, own_probs: each party's
        own activity and the probabilities it was smoothed from (without them, segments are judged on length)."""
        if self._long is None or own is None:
            return self._silences(act, speech_probs)
        probs = np.full((len(act), 2), np.nan, np.float32) if speech_probs is None else speech_probs
        self._held = np.vstack([self._held, np.hstack([act, probs]).astype(np.float32)])
        marks = self._long.process(own, np.ones(own.shape, np.float32) if own_probs is None else own_probs)
        return self._release(marks)

    def _release(self, marks: BOOL) -> list[Event]:
        rows, self._held = self._held[: len(marks)], self._held[len(marks) :]
        heard = (rows[:, :2] > 0.5) | marks
        probs = rows[:, 2:]
        return self._silences(heard, None if np.isnan(probs).any() else probs)

    def _silences(self, act: BOOL, speech_probs: F32 | None) -> list[Event]:
        out: list[Event] = []
        any_on = act[:, 0] | act[:, 1]
        if speech_probs is None:
            self._known = False
            louder = np.zeros(len(act), np.float64)
        else:
            louder = speech_probs.max(axis=1).astype(np.float64)
        # mass[i] = the louder side's probability summed over this block's frames before i
        mass = np.concatenate([[0.0], np.cumsum(louder)])
        was_on = self._heard and self._silence_start is None
        d = np.diff(np.concatenate([[was_on], any_on]).astype(np.int8))
        for i in np.flatnonzero(d):
            t = self._frame + int(i)
            if d[i] < 0:  # speech stopped
                self._silence_start = t
                self._mass = -float(mass[i])  # so that adding mass at the restart leaves the silence's own sum
            else:  # speech (re)started
                s = self._silence_start
                if self._heard and s is not None and t - s >= self.min_frames:
                    out.append(DeadAir(_t(s), _t(t), confidence=self._confidence(self._mass + float(mass[i]), t - s)))
                self._heard = True
                self._silence_start = None
        if self._silence_start is not None:
            # carry the silence's sum into the next block, which counts its own frames from 0
            self._mass += float(mass[-1])
        self._frame += len(act)
        return out

    def _confidence(self, mass: float, frames: int) -> float | None:
        # on the held-out calls of benchmarks/eval_calls.py this separates true from false dead air (AUC 0.70-0.85
        # per noise source, docs/events.md), so the hub can leave an unsure one out of a deduction
        return round(min(max(1.0 - mass / frames, 0.0), 1.0), 2) if self._known else None

    def finish(self) -> list[Event]:
        # a silence still open at the end is not dead air; one that the held frames close is
        out = self._release(self._long.finish()) if self._long is not None and len(self._held) else []
        self.reset()
        return out
