"""The analyzer's own judgement of whether a call's activity can be trusted: reasons, not a guess.

Speech activity that went wrong leaves traces no ground truth is needed to see: a speech model that meets a
noise unlike its training either chops the noise into many short "speech" bursts (keystrokes, clatter, tones)
or holds one party "speaking" through most of the call, both parties seem to talk at once far more than people
do, one party is heard for only a few percent of the call (speech missed), the model's probability hovers
between its thresholds instead of deciding, or the model and Silero VAD (which the model backend runs anyway)
disagree: much of a party's speech that Silero hears nothing of within 100 ms (`speech_unconfirmed`), or much of
what Silero hears that the model calls silence (`speech_missed`). Each check is a counter over the call (memory
flat in call length) and names the party it concerns; `summary` returns the flags that feed `quality.flags` and so
`quality.low_confidence`, and the figures behind them (kept at the seat: `Pipeline.last_checks`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.config import SelfCheckConfig
from edge_agent.events import PARTIES
from edge_agent.silero_stream import HEARD

F32 = npt.NDArray[np.float32]
BOOL = npt.NDArray[np.bool_]
FPS = 100
AMBIGUOUS = (0.2, 0.8)  # speech probabilities the model has not made its mind up about
SHORT_FRAMES = 30  # segments under 0.3 s: a syllable or a keystroke, rarely a whole utterance


class SelfCheck:
    """Per-call reliability counters over the VAD probabilities and the smoothed activity."""

    def __init__(self, cfg: SelfCheckConfig) -> None:
        self.cfg = cfg
        self.reset()

    def reset(self) -> None:
        self.frames = 0
        self.prob_frames = 0
        self.ambiguous = np.zeros(2, np.int64)
        self.speech = np.zeros(2, np.int64)
        self.overlap = 0
        self.segments = np.zeros(2, np.int64)
        self.short = np.zeros(2, np.int64)
        self._run = np.zeros(2, np.int64)  # length of the segment in progress
        self._prev = np.zeros(2, bool)
        self.heard = np.zeros(2, np.int64)  # frames Silero hears as speech (pooled over +-100 ms)
        self.missed = np.zeros(2, np.int64)  # ... that the model's activity calls silence
        self.unconfirmed = np.zeros(2, np.int64)  # activity frames Silero hears nothing of
        # the backend's frames not yet paired with activity: its two activity probabilities, then Silero's two
        # pooled ones (NaN from a backend without Silero)
        self._rows = np.zeros((0, 4), np.float32)

    def process_probs(self, probs: F32) -> None:
        """The backend's per-frame output (any delay: activity pairs with it by frame count).

        Columns 0-1 are the activity probabilities; a backend that runs Silero gives its pooled probability in
        columns 4-5 (`vad.ModelVad`), which the `speech_*` checks compare with the activity.
        """
        if len(probs) == 0:
            return
        self.prob_frames += len(probs)
        lo, hi = AMBIGUOUS
        act = probs[:, :2]
        self.ambiguous += ((act > lo) & (act < hi)).sum(axis=0)
        silero = probs[:, 4:6] if probs.shape[1] >= 6 else np.full((len(probs), 2), np.nan, np.float32)
        self._rows = np.concatenate([self._rows, np.hstack([act, silero]).astype(np.float32)])

    def process(self, act: BOOL) -> tuple[F32 | None, F32 | None]:
        """Smoothed activity (k, 2), in order. Returns Silero's pooled speech probability on the same frames (its
        verdict, >= HEARD, is the talk-over detector's second witness; the probability itself each dead air's
        confidence) and the probabilities the activity was smoothed from (its talk-overs' confidence); each None
        unless every frame has one (a backend without Silero gives no Silero columns)."""
        n = len(act)
        if n == 0:
            return None, None
        k = min(n, len(self._rows))
        rows, self._rows = self._rows[:k], self._rows[k:]
        silero = None
        if k and not np.isnan(rows[0, 2]):
            silero = rows[:, 2:4]
            sil, a = silero >= HEARD, act[:k]
            self.heard += sil.sum(axis=0)
            self.missed += (sil & ~a).sum(axis=0)
            self.unconfirmed += (a & ~sil).sum(axis=0)
        self.frames += n
        self.speech += act.sum(axis=0)
        self.overlap += int((act[:, 0] & act[:, 1]).sum())
        for ch in (0, 1):
            col = act[:, ch]
            edges = np.flatnonzero(np.diff(np.concatenate([[self._prev[ch]], col]).astype(np.int8)))
            # walk the few edges of this block, carrying the run in progress across blocks
            pos, on, run = 0, bool(self._prev[ch]), int(self._run[ch])
            for e in edges.tolist():
                if on:
                    run += e - pos
                    self._close(ch, run)
                    run = 0
                on = not on
                pos = e
            if on:
                run += n - pos
            self._run[ch], self._prev[ch] = run, col[-1]
        if k < n:
            return None, None
        return silero, rows[:, :2]

    def _close(self, ch: int, run: int) -> None:
        self.segments[ch] += 1
        self.short[ch] += int(run < SHORT_FRAMES)

    def summary(self) -> tuple[list[str], dict[str, Any]]:
        """(flags, figures): flags name the check and the party, e.g. `fragmented_activity:agent`."""
        for ch in (0, 1):
            if self._prev[ch]:
                self._close(ch, int(self._run[ch]))
                self._prev[ch], self._run[ch] = False, 0
        cfg = self.cfg
        minutes = max(self.frames / FPS / 60.0, 1e-9)
        flags: list[str] = []
        figures: dict[str, Any] = {}
        long_enough = self.frames / FPS >= cfg.min_call_s
        for ch, party in enumerate(PARTIES):
            per_min = float(self.segments[ch]) / minutes
            short = float(self.short[ch]) / max(int(self.segments[ch]), 1)
            share = float(self.speech[ch]) / max(self.frames, 1)
            amb = float(self.ambiguous[ch]) / max(self.prob_frames, 1)
            heard = int(self.heard[ch])
            missed = float(self.missed[ch]) / max(heard, 1)
            unconfirmed = float(self.unconfirmed[ch]) / max(int(self.speech[ch]), 1)
            figures[party] = {
                "segments_per_min": round(per_min, 1),
                "short_segments": round(short, 2),
                "talk_share": round(share, 2),
                "uncertain": round(amb, 3),
                "silero_speech_missed": round(missed, 2),
                "speech_unconfirmed": round(unconfirmed, 2),
            }
            if not long_enough:
                continue
            if per_min > cfg.max_segments_per_min and short > cfg.max_short_share:
                flags.append(f"fragmented_activity:{party}")
            if share > cfg.max_talk_share:
                flags.append(f"implausible_talk_share:{party}")
            elif 0 < share < cfg.min_talk_share:
                # heard, but hardly: most often a party's speech the model missed (silence is `one_sided`)
                flags.append(f"scant_activity:{party}")
            if amb > cfg.max_uncertain:
                flags.append(f"uncertain_activity:{party}")
            # judged only once Silero has heard enough speech on this channel (or the model has, for unconfirmed)
            if heard / FPS >= cfg.min_independent_s and missed > cfg.max_silero_missed[ch]:
                flags.append(f"speech_missed:{party}")
            if self.speech[ch] / FPS >= cfg.min_independent_s and unconfirmed > cfg.max_unconfirmed:
                flags.append(f"speech_unconfirmed:{party}")
        talk = max(int(self.speech.sum()) - self.overlap, 1)
        overlap = self.overlap / talk
        figures["overlap_share"] = round(overlap, 3)
        if long_enough and overlap > cfg.max_overlap_share:
            flags.append("implausible_overlap")
        return flags, figures
