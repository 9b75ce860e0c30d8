"""The analysis pipeline: audio blocks in, events out. The same object serves files and live capture.

    samples -> (dropouts zeroed) -> Framer -> CallFeatures (log-mel, noise floor, leakage) -> VAD backend -> Smoother
            -> SegmentTracker / TalkOverDetector / DeadAirDetector -> CallMetrics -> CallSummary
            -> EmotionTracker (each party's own speech: emotion events, summary section)

Stages keep their own state and do no I/O. The VAD backend and the smoother run a fixed number of
frames late; per-frame levels and samples wait in a short queue so metrics see them in step.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_agent.audio import FRAME, Framer
from edge_agent.config import AnalyzerConfig
from edge_agent.emotion import EmotionTracker
from edge_agent.emotion_model import EmotionModel
from edge_agent.events import CallSummary, Event
from edge_agent.features import N_CHANNEL_FEATURES, N_MELS, CallFeatures
from edge_agent.metrics import CallMetrics
from edge_agent.selfcheck import SelfCheck
from edge_agent.silero_stream import HEARD
from edge_agent.turns import DeadAirDetector, SegmentTracker, TalkOverDetector
from edge_agent.vad import Smoother, VadBackend, make_backend

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]


OWN_VOICE_DB = 0.0
"""A channel whose median band excess over the other side's estimated leak is at least this is a voice of its own
there (the `talk_over.own_voice` check): at 0 dB the leak alone explains no more than the channel holds."""


class _Queue:
    """FIFO of per-frame rows (levels, own voice) and their samples, popped as activity catches up."""

    def __init__(self) -> None:
        self.levels = np.zeros((0, 2), np.float32)
        self.own = np.zeros((0, 2), bool)
        self.samples = np.zeros((0, 2), np.float32)

    def push(self, levels: F32, own: npt.NDArray[np.bool_], samples: F32) -> None:
        self.levels = np.vstack([self.levels, levels])
        self.own = np.vstack([self.own, own])
        self.samples = np.vstack([self.samples, samples])

    def pop(self, n: int) -> tuple[F32, npt.NDArray[np.bool_], F32]:
        lv, own, sm = self.levels[:n], self.own[:n], self.samples[: n * FRAME]
        self.levels, self.own, self.samples = self.levels[n:], self.own[n:], self.samples[n * FRAME :]
        return lv, own, sm


class Pipeline:
    def __init__(
        self, cfg: AnalyzerConfig | None = None, backend: VadBackend | None = None, emotion: EmotionModel | None = None
    ) -> None:
        self.cfg = cfg or AnalyzerConfig()
        self.backend = backend or make_backend(self.cfg.vad)
        emo = self.cfg.emotion
        if emo.enabled and emotion is None:
            card = Path(emo.card) if emo.card else None
            emotion = EmotionModel(card, emo.backend, emo.precision, emo.threads)
        self.emotion = EmotionTracker(emo, emotion) if emo.enabled and emotion is not None else None
        self.last_checks: dict[str, Any] = {}
        """The last finished call's self-check figures (edge_agent/selfcheck.py), for tools and logs."""
        self.reset()

    def reset(self) -> None:
        """Start a new call (the VAD model stays loaded)."""
        self.framer = Framer()
        self.features = CallFeatures()
        self.backend.reset()
        self.smoother = Smoother(self.cfg.smoothing)
        # dead air's own view of the same frames, when the backend gives one (VadBackend.dead_air_view)
        self.quiet_smoother = Smoother(self.cfg.smoothing) if self.backend.dead_air_view else None
        self.segments = SegmentTracker()
        self.talk_over = TalkOverDetector(self.cfg.talk_over)
        self.dead_air = DeadAirDetector(self.cfg.dead_air)
        self.metrics = CallMetrics(self.cfg.metrics, self.cfg.dead_air.min_silence_s)
        self.self_check = SelfCheck(self.cfg.self_check)
        self._queue = _Queue()
        self.frames_in = 0
        if self.emotion is not None:
            self.emotion.reset()

    @property
    def latency_frames(self) -> int:
        """Frames between audio entering and its activity being decided."""
        return self.backend.delay + self.smoother.delay

    def process(self, block: F32) -> list[Event]:
        """block: (n, 2) float32 at 16 kHz, agent then customer, any n.

        NaN or Inf samples (a failing driver) are dropouts: zeroed here, before anything keeps state,
        and counted for the summary. Files and live capture both pass through here, so this is the
        one place that does it.
        """
        finite = np.isfinite(block)
        if not finite.all():
            self.metrics.add_dropouts((~finite).sum(axis=0))
            block = np.where(finite, block, np.float32(0))
        samples = self.framer.process(block)
        if len(samples) == 0:
            return []
        feats, levels, _ = self.features.process(samples)
        self.frames_in += len(feats)
        wanted = self.backend.uses_excess or bool(self.cfg.talk_over.own_voice)
        excess = self._broadband_excess(feats) if wanted else np.zeros((len(feats), 2), np.float32)
        # a channel louder than the other side's leak explains: the talk-over check of a voice of one's own
        self._queue.push(levels, excess >= OWN_VOICE_DB, samples)
        probs = self.backend.process(samples, feats, excess)
        self.self_check.process_probs(probs)
        return self._activity(*self._smooth(probs))

    def finish(self) -> list[Event]:
        """End of the call: flush every stage and append the call summary."""
        probs = self.backend.finish()
        self.self_check.process_probs(probs)
        events = self._activity(*self._smooth(probs))
        act = self.smoother.finish()
        events += self._activity(act, act if self.quiet_smoother is None else self.quiet_smoother.finish())
        tail: list[Event] = []
        for stage in (self.segments, self.talk_over, self.dead_air):
            tail += stage.finish()
        self.metrics.add_events(tail)
        events += sorted(tail, key=lambda e: e.end)
        summary = self.metrics.summary()
        flags, checks = self.self_check.summary()
        quality = summary["quality"]
        quality["flags"] = [*quality["flags"], *flags]
        quality["talk_overs_unconfirmed"] = self.talk_over.last_unconfirmed
        quality["low_confidence"] = bool(quality["flags"])
        # the figures behind the flags stay at the seat (the summary has a 1.5 KB budget on the wire)
        self.last_checks = checks
        log.debug("self-check %s: %s", flags, checks)
        if self.emotion is not None:
            summary["emotion"] = self.emotion.summary()
        events.append(CallSummary(0.0, summary["duration"], metrics=summary))
        self.reset()
        return events

    def run(self, blocks: Iterable[F32]) -> Iterable[Event]:
        """Analyse a whole call from an iterable of blocks, yielding events as they are decided."""
        for block in blocks:
            yield from self.process(block)
        yield from self.finish()

    def _smooth(self, probs: F32) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        act = self.smoother.process(probs[:, :2])
        if self.quiet_smoother is None:
            return act, act
        # both smoothers run the same delay, so their outputs stay the same length
        return act, self.quiet_smoother.process(probs[:, 2:4])

    def _activity(self, act: npt.NDArray[np.bool_], heard: npt.NDArray[np.bool_]) -> list[Event]:
        """act: each party's speech; heard: the speech dead air counts (the backend's stricter view, or act)."""
        if len(act) == 0:
            return []
        levels, own, samples = self._queue.pop(len(act))
        self.metrics.process(act, levels, samples)
        # the self-check pairs Silero's frames with the activity for its own checks; the same frames confirm talk-overs
        # and say how sure a dead air is
        silero, probs = self.self_check.process(act)
        events: list[Event] = self.segments.process(act)
        events += self.talk_over.process(act, None if silero is None else silero >= HEARD, probs, own)
        # dead air: nobody speaks in the stricter view, unless a party's own activity there is long and sure
        stricter = self.quiet_smoother is not None
        events += self.dead_air.process(heard, silero, act if stricter else None, probs)
        if self.emotion is not None:
            events += self.emotion.process(act, samples)
        self.metrics.add_events([e for e in events if e.type != "speech"])
        events.sort(key=lambda e: e.end)
        return events

    @staticmethod
    def _broadband_excess(feats: F32) -> F32:
        """Median band excess over leakage per channel (dB), for the gated single-channel VADs."""
        out = np.empty((len(feats), 2), np.float32)
        for ch in (0, 1):
            base = ch * N_CHANNEL_FEATURES + N_MELS
            out[:, ch] = np.median(feats[:, base : base + N_MELS], axis=1) * 10.0
        return out
