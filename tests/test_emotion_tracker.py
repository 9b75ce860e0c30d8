"""Emotion in the pipeline: only a party's own speech is scored, events and the summary section, config switch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_agent.audio import read_call
from edge_agent.config import AnalyzerConfig, EmotionConfig
from edge_agent.emotion import EmotionTracker
from edge_agent.emotion_features import WINDOW_FRAMES
from edge_agent.emotion_model import CLASSES, EmotionModel
from edge_agent.events import Emotion
from edge_agent.pipeline import Pipeline
from models.emotion.dataset import ravdess_clips, read_mono16k
from tests.conftest import shared_or_skip


@pytest.fixture(scope="module")
def model() -> EmotionModel:
    return EmotionModel()


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """Twenty seconds of one real held-out speaker, 16 kHz."""
    clips = ravdess_clips(shared_or_skip() / "data" / "ravdess", aux=False)
    x = np.concatenate([read_mono16k(c.path) for c in clips if c.speaker == "ravdess_09"][:8])
    return np.resize(x, 20 * 16000).astype(np.float32)


def test_only_solo_speech_reaches_the_model(model: EmotionModel, speech: np.ndarray) -> None:
    """Frames where both talk, or the party is silent, are never collected; windows need 1 s of own speech."""
    tracker = EmotionTracker(EmotionConfig(), model)
    n = len(speech) // 160
    act = np.zeros((n, 2), bool)
    act[:, 0] = True  # the agent speaks throughout ...
    act[n // 2 :, 1] = True  # ... and the customer talks over the second half
    stereo = np.stack([speech, speech[::-1].copy()], axis=1)
    for i in range(0, n, 100):  # 1 s blocks
        tracker.process(act[i : i + 100], stereo[i * 160 : (i + 100) * 160])
    agent, customer = tracker.parties["agent"], tracker.parties["customer"]
    assert customer.history == []  # the customer never spoke alone
    # the agent alone: the first half only; a window once the first second is in, then one per hop
    solo_s = (n // 2) / 100
    hop_s = EmotionConfig().hop_s
    assert len(agent.history) == int((solo_s - WINDOW_FRAMES / 100) / hop_s) + 1 >= 4
    assert max(end for _, end, _ in agent.history) <= solo_s + 1e-6
    summ = tracker.summary()
    assert summ["customer"] is None and "ang" not in summ
    assert len(summ["agent"]) == 4 and abs(sum(summ["agent"]) - 100) <= 2


def test_events_follow_state_changes_and_anger_alerts(model: EmotionModel, speech: np.ndarray) -> None:
    tracker = EmotionTracker(EmotionConfig(), model)
    state = tracker.parties["customer"]
    calm = np.array([0.9, 0.05, 0.03, 0.02], np.float32)
    angry = np.array([0.05, 0.05, 0.85, 0.05], np.float32)
    events: list[Emotion] = []
    for t, p in enumerate([calm] * 6 + [angry] * 6 + [calm] * 6):
        events += state.update(p, float(t), t + 1.0)
    kinds = [(e.label, e.reason) for e in events]
    assert kinds[0] == ("neutral", "change")
    assert ("angry", "change") in kinds and ("angry", "anger_alert") in kinds
    assert kinds[-1] == ("neutral", "change")
    assert len(events) <= 5  # smoothing: no flicker
    for e in events:
        assert set(e.scores) == set(CLASSES) and abs(sum(e.scores.values()) - 1) < 0.02
        assert -1 <= e.arousal <= 1 and -1 <= e.valence <= 1
    summ = tracker.summary()
    assert summ["agent"] is None
    assert summ["ang"] == [3, 3]  # calm first and last third, the anger in between
    assert isinstance(summ["peak"], int) and 7 <= summ["peak"] <= 12
    assert summ["customer"] == [62, 5, 30, 3]  # mean scores over the 18 windows, percent
    # confident after most windows: all but any where the smoothed scores pass from one state to the other
    smooth, sure = None, []
    for p in [calm] * 6 + [angry] * 6 + [calm] * 6:
        smooth = p if smooth is None else 0.4 * p + 0.6 * smooth
        sure.append(smooth.max() >= model.calibration.window_min_confidence)
    assert summ["conf"] == [None, round(100 * np.mean(sure))] and 50 < summ["conf"][1] <= 100


def test_unconfident_anger_raises_no_alert_and_no_angry_state(model: EmotionModel) -> None:
    """Anger that is the top class but below the calibrated confidence threshold: no alert, the state stays."""
    cfg = EmotionConfig(anger_alert=0.4, min_confidence=0.6)
    tracker = EmotionTracker(cfg, model)
    state = tracker.parties["customer"]
    calm = np.array([0.9, 0.05, 0.03, 0.02], np.float32)
    unsure = np.array([0.25, 0.15, 0.45, 0.15], np.float32)  # angry on top, over anger_alert, under 0.6
    sure = np.array([0.05, 0.05, 0.85, 0.05], np.float32)
    events: list[Emotion] = []
    for t, p in enumerate([calm] * 4 + [unsure] * 10):
        events += state.update(p, float(t), t + 1.0)
    assert state.smooth is not None and int(np.argmax(state.smooth)) == CLASSES.index("angry")
    assert [(e.label, e.reason) for e in events] == [("neutral", "change")]
    assert state.state == "neutral" and not state.alerted
    assert tracker.summary()["conf"][1] < 50 and "peak" not in tracker.summary()
    for t, p in enumerate([sure] * 6, start=14):
        events += state.update(p, float(t), t + 1.0)
    kinds = [(e.label, e.reason) for e in events]
    # once sure, the state turns angry and the alert goes (one event: the alert carries the new state)
    assert state.state == "angry" and state.alerted and ("angry", "anger_alert") in kinds
    alert = next(e for e in events if e.reason == "anger_alert")
    assert alert.confident and alert.confidence >= 0.6 and alert.confidence == alert.scores["angry"]
    assert tracker.summary()["peak"] >= 15


def test_the_threshold_defaults_to_the_cards(model: EmotionModel) -> None:
    tracker = EmotionTracker(EmotionConfig(), model)
    assert tracker.min_confidence == model.calibration.window_min_confidence > 0.25
    assert tracker.parties["customer"].min_confidence == tracker.min_confidence


def test_pipeline_emits_emotion_and_a_compact_summary(real_calls: list[Path], model: EmotionModel) -> None:
    # call 1: both parties heard (on call 0's babbly line the default's Silero veto misses most of the customer)
    wav = real_calls[1]
    events = [e.to_dict() for e in Pipeline(AnalyzerConfig(), emotion=model).run(read_call(wav))]
    speech = {
        p: [(e["start"], e["end"]) for e in events if e["type"] == "speech" and e["speaker"] == p]
        for p in ("agent", "customer")
    }
    emotions = [e for e in events if e["type"] == "emotion"]
    assert emotions, "a minute of real speech gives at least each party's first state"
    assert {e["speaker"] for e in emotions} == {"agent", "customer"}
    for e in emotions:
        assert e["label"] in CLASSES and e["reason"] in ("change", "anger_alert")
        assert e["confidence"] == e["scores"][e["label"]]
        threshold = model.calibration.window_min_confidence
        if abs(e["confidence"] - threshold) > 0.005:  # the event's confidence is rounded to 2 decimals
            assert e["confident"] == (e["confidence"] >= threshold), e
        if e["label"] == "angry":
            assert e["confident"], "an angry state is only announced when confident"
        # the window ends inside (or at the edge of) one of that party's speech segments
        assert any(s - 0.05 <= e["end"] <= t + 0.05 for s, t in speech[e["speaker"]]), e
    summary = events[-1]
    assert summary["type"] == "call_summary"
    emo = summary["emotion"]
    name, sha = emo["model"].split(":")
    assert name == model.card.name and model.card.sha256.startswith(sha) and len(sha) == 8
    for p in ("agent", "customer"):
        assert len(emo[p]) == 4 and abs(sum(emo[p]) - 100) <= 2
    assert len(emo["ang"]) == 2 and 0 <= emo.get("peak", 0) <= summary["duration"]
    assert all(c is None or 0 <= c <= 100 for c in emo["conf"])
    # the section's share of the summary's 1.5 KB budget
    assert len(json.dumps(emo, separators=(",", ":"))) <= 130


def test_emotion_can_be_switched_off(real_calls: list[Path]) -> None:
    cfg = AnalyzerConfig(emotion=EmotionConfig(enabled=False))
    pipe = Pipeline(cfg)
    assert pipe.emotion is None
    events = [e.to_dict() for e in pipe.run(read_call(real_calls[1]))]
    assert not [e for e in events if e["type"] == "emotion"] and "emotion" not in events[-1]
