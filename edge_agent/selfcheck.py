"""The analyzer's own judgement of whether a call's activity can be trusted: reasons, not a guess.

Speech activity that went wrong leaves traces no ground truth is needed to see: a speech model that meets a
noise unlike its training either chops the noise into many short "speech" bursts (keystrokes, clatter, tones)
or holds one party "speaking" through most of the call, both parties seem to talk at once far more than people
do, one party is heard for only a few percent of the call (speech missed), the model's probability hovers
between its thresholds instead of deciding, or an independent detector (plain webrtcvad, on every other 30 ms
of each channel: a few percent of the pipeline's time) hears speech where the model hears none for most of
what it hears. Each check is a counter over the call (memory flat in call
length) and names the party it concerns; `summary` returns the flags that feed `quality.flags` and so
`quality.low_confidence`, and the figures behind them (kept at the seat: `Pipeline.last_checks`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.audio import FRAME, SAMPLE_RATE
from edge_agent.config import SelfCheckConfig
from edge_agent.events import PARTIES

F32 = npt.NDArray[np.float32]
BOOL = npt.NDArray[np.bool_]
FPS = 100
AMBIGUOUS = (0.2, 0.8)  # speech probabilities the model has not made its mind up about
SHORT_FRAMES = 30  # segments under 0.3 s: a syllable or a keystroke, rarely a whole utterance
CHECK_FRAMES = 3  # webrtcvad's 30 ms frame, in 10 ms activity frames
CHECK_EVERY = 2  # of each CHECK_EVERY 30 ms frames, one is checked: half the cost, the same share in expectation


class _Independent:
    """Plain webrtcvad (mode 3) on a sample of each channel's 30 ms frames, beside the model's activity."""

    def __init__(self) -> None:
        import webrtcvad  # a core dependency (the webrtc backend uses it too)

        self._vads = [webrtcvad.Vad(3), webrtcvad.Vad(3)]
        self.heard = np.zeros(2, np.int64)  # checked frames webrtcvad calls speech
        self.missed = np.zeros(2, np.int64)  # ... of which the model's activity has none
        self._act = np.zeros((0, 2), bool)
        self._samples = np.zeros((0, 2), np.float32)
        self._n = 0

    def process(self, act: BOOL, samples: F32) -> None:
        self._act = np.concatenate([self._act, act])
        self._samples = np.concatenate([self._samples, samples[: len(act) * FRAME]])
        groups = len(self._act) // CHECK_FRAMES
        pcm = (np.clip(self._samples[: groups * CHECK_FRAMES * FRAME], -1.0, 1.0) * 32767).astype("<i2")
        for g in range(groups):
            self._n += 1
            if self._n % CHECK_EVERY:
                continue
            a = self._act[g * CHECK_FRAMES : (g + 1) * CHECK_FRAMES]
            chunk = pcm[g * CHECK_FRAMES * FRAME : (g + 1) * CHECK_FRAMES * FRAME]
            for ch in (0, 1):
                if self._vads[ch].is_speech(np.ascontiguousarray(chunk[:, ch]).tobytes(), SAMPLE_RATE):
                    self.heard[ch] += 1
                    self.missed[ch] += int(not a[:, ch].any())
        self._act = self._act[groups * CHECK_FRAMES :]
        self._samples = self._samples[groups * CHECK_FRAMES * FRAME :]


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
        self.independent = _Independent()

    def process_probs(self, probs: F32) -> None:
        """The backend's per-frame probabilities (any delay: only their counts matter)."""
        if len(probs) == 0:
            return
        self.prob_frames += len(probs)
        lo, hi = AMBIGUOUS
        self.ambiguous += ((probs > lo) & (probs < hi)).sum(axis=0)

    def process(self, act: BOOL, samples: F32 | None = None) -> None:
        """Smoothed activity (k, 2), in order, and the (k * FRAME, 2) samples it was decided on."""
        n = len(act)
        if n == 0:
            return
        if samples is not None:
            self.independent.process(act, samples)
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
            heard = int(self.independent.heard[ch])
            missed = float(self.independent.missed[ch]) / max(heard, 1)
            figures[party] = {
                "segments_per_min": round(per_min, 1),
                "short_segments": round(short, 2),
                "talk_share": round(share, 2),
                "uncertain": round(amb, 3),
                "webrtc_speech_missed": round(missed, 2),
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
            # webrtcvad also fires on noise, so it missing little says nothing; the model missing most of what
            # webrtcvad hears (over enough of it) is the trace of speech the model does not recognise
            checked_s = heard * CHECK_FRAMES / FPS * CHECK_EVERY
            if checked_s >= cfg.min_independent_s and missed > cfg.max_independent_missed:
                flags.append(f"detectors_disagree:{party}")
        talk = max(int(self.speech.sum()) - self.overlap, 1)
        overlap = self.overlap / talk
        figures["overlap_share"] = round(overlap, 3)
        if long_enough and overlap > cfg.max_overlap_share:
            flags.append("implausible_overlap")
        return flags, figures
