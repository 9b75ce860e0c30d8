"""Per-party emotion over a call: the pipeline feeds each block's samples and decided activity; out come
`emotion` events and the summary's `emotion` section.

Only frames where a party speaks alone reach its model (never silence, never both-talking frames, where the
other side's voice leaks in). Each party collects those frames into windows of one second of speech; a new
window is scored every `hop_s` (default 2 s) of further speech, and speech in no window is never analysed,
which keeps the station's budget (the whole pipeline stays above 150x real time on one core). Scores are
smoothed over windows, so one odd window does not flip a party's state; an event is emitted when the smoothed
state changes, and for the customer when anger crosses the alert threshold on the way up.

Scores are calibrated probabilities (the model card's temperature scaling). A smoothed state is confident when
its top probability clears the card's abstention threshold (or `emotion.min_confidence`): an angry state is only
announced, and an anger alert only raised, on confident anger, since both reach the supervisor's live wall and
the agent's score ("stayed calm with an angry customer"); the other states are announced either way, with their
confidence.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from edge_agent.audio import FRAME
from edge_agent.config import EmotionConfig
from edge_agent.emotion_features import WINDOW_FRAMES, EmotionFrontend
from edge_agent.emotion_model import AROUSAL_VALENCE, CLASSES, EmotionModel
from edge_agent.events import PARTIES, Emotion, Party

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
BOOL = npt.NDArray[np.bool_]
FPS = 100
_AV = np.array([AROUSAL_VALENCE[c] for c in CLASSES], np.float32)  # (classes, 2)
_ANGRY = CLASSES.index("angry")


def _r(x: float, nd: int = 2) -> float:
    return round(float(x), nd)


class PartyEmotion:
    """One party's speech windows, smoothed state and per-window history (about 0.2 KB per scored window: under
    1 MB for a four-hour call at the default hop)."""

    def __init__(self, party: Party, cfg: EmotionConfig, min_confidence: float = 0.0) -> None:
        self.party = party
        self.cfg = cfg
        self.min_confidence = min_confidence
        self.hop = max(round(cfg.hop_s * FPS), 1)
        self.min_windows = max(round((cfg.min_speech_s * FPS - WINDOW_FRAMES) / self.hop) + 1, 1)
        self.frontend = EmotionFrontend()
        self._rows = np.zeros((0, 0), np.float32)
        self._times = np.zeros(0, np.int64)  # frame index of each kept row
        self._spoken = 0  # own-speech frames so far
        self.smooth: F32 | None = None
        self.state: str | None = None
        self.alerted = False
        self.history: list[tuple[float, float, F32]] = []  # (start s, end s, probs)
        self.confident: list[bool] = []  # whether the smoothed state after each window was confident

    def collect(self, samples: F32, own: BOOL, first_frame: int) -> list[tuple[F32, float, float]]:
        """Adds own-speech frames; returns the windows now due as (model input rows, start s, end s).

        Windows end at the j-th own-speech frame for j = W, W + hop, W + 2 hop, ... (W = WINDOW_FRAMES); with a
        hop longer than W, frames in no window are skipped before any feature is computed.
        """
        idx = np.flatnonzero(own[: len(samples) // FRAME])
        j = self._spoken + 1 + np.arange(len(idx))  # 1-based count of each own-speech frame
        self._spoken += len(idx)
        needed = (j - 1) % self.hop < WINDOW_FRAMES if self.hop > WINDOW_FRAMES else np.ones(len(j), bool)
        keep = np.zeros(len(own), bool)
        keep[idx[needed]] = True
        rows = self.frontend.process(samples, keep)  # the frontend sees every sample, so its history stays right
        if len(rows) == 0:
            return []
        self._rows = np.vstack([self._rows, rows]) if len(self._rows) else rows
        self._times = np.concatenate([self._times, first_frame + idx[needed]])
        ends = j[needed]
        due: list[tuple[F32, float, float]] = []
        for i in np.flatnonzero((ends >= WINDOW_FRAMES) & ((ends - WINDOW_FRAMES) % self.hop == 0)):
            end = len(self._rows) - len(rows) + int(i) + 1
            t = self._times[end - WINDOW_FRAMES : end]
            due.append((self._rows[end - WINDOW_FRAMES : end], float(t[0]) / FPS, float(t[-1] + 1) / FPS))
        tail = WINDOW_FRAMES - 1
        self._rows, self._times = self._rows[-tail:], self._times[-tail:]
        return due

    def update(self, probs: F32, start: float, end: float) -> list[Emotion]:
        self.history.append((start, end, probs))
        a = self.cfg.smoothing
        self.smooth = probs.copy() if self.smooth is None else ((1 - a) * probs + a * self.smooth).astype(np.float32)
        top = int(np.argmax(self.smooth))
        label = CLASSES[top]
        confident = bool(self.smooth[top] >= self.min_confidence)
        self.confident.append(confident)
        events: list[Emotion] = []
        reason: Literal["change", "anger_alert"] | None = None
        if len(self.history) < self.min_windows:
            return []  # too little speech yet to announce a state
        changed = self.state is None or (
            label != self.state and self.smooth[top] - self.smooth[CLASSES.index(self.state)] >= self.cfg.switch_margin
        )
        # anger is announced only when the model is sure: it alerts the supervisor and scores the agent
        if changed and (label != "angry" or confident):
            self.state, reason = label, "change"
        anger = float(self.smooth[_ANGRY])
        if self.party == "customer":
            if not self.alerted and label == "angry" and confident and anger >= self.cfg.anger_alert:
                self.alerted, reason = True, "anger_alert"
            elif self.alerted and anger < self.cfg.anger_alert - 0.15:
                self.alerted = False  # re-arms once the customer has calmed down
        if reason is not None and self.state is not None:
            ar, va = self.smooth @ _AV
            state_p = float(self.smooth[CLASSES.index(self.state)])
            events.append(
                Emotion(
                    start,
                    end,
                    speaker=self.party,
                    label=self.state,
                    reason=reason,
                    scores={c: _r(p) for c, p in zip(CLASSES, self.smooth, strict=True)},
                    arousal=_r(ar),
                    valence=_r(va),
                    confidence=_r(state_p),
                    confident=state_p >= self.min_confidence,
                )
            )
        return events

    def probs(self) -> F32:
        """(windows, classes) scores of every scored window, in time order."""
        return np.stack([p for _, _, p in self.history]) if self.history else np.zeros((0, len(CLASSES)), np.float32)

    def peak_anger(self) -> tuple[float, float] | None:
        """(end time s, calibrated anger) of the angriest window whose own scores are confidently angry; None
        when no window was."""
        probs = self.probs()
        if len(probs) == 0:
            return None
        sure = (probs.argmax(axis=1) == _ANGRY) & (probs[:, _ANGRY] >= self.min_confidence)
        if not sure.any():
            return None
        i = int(np.argmax(np.where(sure, probs[:, _ANGRY], -1.0)))
        return self.history[i][1], float(probs[i, _ANGRY])


def _pct(x: F32) -> list[int]:
    return [round(float(v) * 100) for v in x]


class EmotionTracker:
    """Both parties' emotion for one call; `process` is fed in step with the decided activity."""

    def __init__(self, cfg: EmotionConfig, model: EmotionModel) -> None:
        self.cfg = cfg
        self.model = model
        self.reset()

    def reset(self) -> None:
        c = self.cfg.min_confidence
        self.min_confidence = self.model.calibration.window_min_confidence if c is None else c
        self.parties = {p: PartyEmotion(p, self.cfg, self.min_confidence) for p in PARTIES}
        self.frame = 0

    def process(self, act: BOOL, samples: F32) -> list[Emotion]:
        """act: (n, 2) decided activity, agent then customer; samples: (n * FRAME, 2) at 16 kHz."""
        n = len(act)
        if n == 0:
            return []
        pending: list[tuple[PartyEmotion, F32, float, float]] = []
        for ch, p in enumerate(PARTIES):
            own = act[:, ch] & ~act[:, 1 - ch]
            state = self.parties[p]
            for win, s, e in state.collect(np.ascontiguousarray(samples[:, ch]), own, self.frame):
                pending.append((state, win, s, e))
        self.frame += n
        if not pending:
            return []
        # one batched inference per block for both parties
        probs = self.model.predict(self.model.inputs(np.stack([w for _, w, _, _ in pending])))
        events: list[Emotion] = []
        for (state, _, s, e), pr in zip(pending, probs, strict=True):
            events += state.update(pr, s, e)
        return events

    def summary(self) -> dict[str, Any]:
        """The call summary's `emotion` section: in percent and positional, as it must fit a summary of 1.5 KB.

        `agent` / `customer`: mean calibrated class probabilities over the party's scored speech (neutral, happy,
        angry, sad; null without a scored window); arousal and valence follow from them through the card's fixed
        mapping. `conf`: the share of each party's scored windows (agent, customer) after which its smoothed state
        was confident (null without one). `ang`: the customer's mean calibrated anger in the first and the last
        third of their speech; `peak`: end time (whole s) of the customer's angriest confidently angry window,
        absent when no window was.
        """
        card = self.model.card
        out: dict[str, Any] = {"model": f"{card.name}:{card.sha256[:8]}"}
        for p in PARTIES:
            probs = self.parties[p].probs()
            out[p] = _pct(probs.mean(axis=0)) if len(probs) else None
        shares = [self.parties[p].confident for p in PARTIES]
        out["conf"] = [round(100 * float(np.mean(c))) if c else None for c in shares]
        cust = self.parties["customer"].probs()
        if len(cust):
            third = max(len(cust) // 3, 1)
            out["ang"] = _pct(np.array([cust[:third, _ANGRY].mean(), cust[-third:, _ANGRY].mean()]))
        peak = self.parties["customer"].peak_anger()
        if peak is not None:
            out["peak"] = round(peak[0])  # whole seconds: a window is at least one
        return out
