"""The analyzer's self-check: it names what makes a call's activity untrustworthy, and stays quiet on good calls."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edge_agent.audio import read_call
from edge_agent.config import SelfCheckConfig
from edge_agent.pipeline import Pipeline
from edge_agent.selfcheck import SelfCheck
from tests.conftest import SHARED, shared_or_skip

MINUTES = 2
FRAMES = MINUTES * 6000


def conversation() -> np.ndarray:
    """Activity as a conversation has it: turns of 2-6 s taking turns, a short overlap now and then."""
    rng = np.random.default_rng(3)
    act = np.zeros((FRAMES, 2), bool)
    t, who = 100, 0
    while t < FRAMES:
        n = int(rng.integers(200, 600))
        act[t : t + n, who] = True
        t += n + int(rng.integers(-30, 80))
        who = 1 - who
    return act


def chopped(act: np.ndarray, ch: int) -> np.ndarray:
    """The same call with one party's channel turned into keystroke-like 0.1 s bursts every 0.5 s."""
    out = act.copy()
    out[:, ch] = (np.arange(FRAMES) % 50) < 10
    return out


def check(act: np.ndarray, probs: np.ndarray | None = None, block: int = FRAMES) -> list[str]:
    sc = SelfCheck(SelfCheckConfig())
    for i in range(0, FRAMES, block):
        sc.process(act[i : i + block])
        sc.process_probs(
            (act[i : i + block] * 0.9 + 0.05).astype(np.float32) if probs is None else probs[i : i + block]
        )
    return sc.summary()[0]


def test_a_plausible_conversation_raises_no_flag() -> None:
    assert check(conversation()) == []


def test_each_check_names_its_party() -> None:
    act = conversation()
    flags = check(chopped(act, 0))
    assert "fragmented_activity:agent" in flags and not [f for f in flags if f.endswith(":customer")]
    held = act.copy()
    held[:, 1] = True  # the customer "speaking" for the whole call: noise taken for speech
    flags = check(held)
    assert "implausible_talk_share:customer" in flags and "implausible_overlap" in flags
    missed = act.copy()
    missed[FRAMES // 20 :, 0] = False  # the agent heard only in the first few seconds: speech missed since
    assert check(missed) == ["scant_activity:agent"]
    undecided = np.full((FRAMES, 2), 0.5, np.float32)
    assert check(act, undecided) == ["uncertain_activity:agent", "uncertain_activity:customer"]


def test_counts_do_not_depend_on_block_size() -> None:
    act = chopped(conversation(), 1)
    one = SelfCheck(SelfCheckConfig())
    one.process(act)
    many = SelfCheck(SelfCheckConfig())
    for i in range(0, FRAMES, 7):
        many.process(act[i : i + 7])
    assert one.summary() == many.summary()
    assert one.segments[1] == FRAMES // 50


def test_short_calls_are_not_judged() -> None:
    act = chopped(conversation(), 0)[:3000]
    sc = SelfCheck(SelfCheckConfig())
    sc.process(act)
    flags, figures = sc.summary()
    assert flags == [] and figures["agent"]["segments_per_min"] > 30


def test_real_calls_carry_the_checks_the_events_show(real_calls: list[Path]) -> None:
    """On real calls the self-check's figures are those of the events the call produced, and its flags count."""
    for wav in real_calls:
        pipe = Pipeline()
        events = [e.to_dict() for e in pipe.run(read_call(wav))]
        summary = events[-1]
        quality = summary["quality"]
        checks = pipe.last_checks
        for party in ("agent", "customer"):
            segs = [e for e in events if e["type"] == "speech" and e["speaker"] == party]
            share = sum(e["end"] - e["start"] for e in segs) / summary["duration"]
            assert abs(checks[party]["talk_share"] - share) < 0.01
            assert checks[party]["segments_per_min"] == pytest.approx(len(segs) / summary["duration"] * 60, abs=0.1)
        assert quality["low_confidence"] == bool(quality["flags"])


def test_a_party_the_model_misses_is_flagged(real_calls: list[Path], tmp_path: Path) -> None:
    """A real call whose customer line is 40 dB too quiet to be heard: scant activity, not a silent customer."""
    x, rate = sf.read(real_calls[0], dtype="float32")
    x[:, 1] *= 0.01
    wav = tmp_path / "quiet_line.wav"
    sf.write(wav, x, rate, subtype="FLOAT")
    quality = [e.to_dict() for e in Pipeline().run(read_call(wav))][-1]["quality"]
    assert quality["low_confidence"]
    assert {"scant_activity:customer", "one_sided"} & set(quality["flags"]), quality["flags"]


def test_keyboard_chatter_alone_is_flagged_not_scored(tmp_path: Path) -> None:
    """Two minutes of real typing on the agent mic and nobody speaking: whatever activity comes out is distrusted."""
    shared_or_skip()
    keys = sorted((SHARED / "data" / "noise-typing").glob("*.flac"))[:8]
    typing = np.concatenate([sf.read(p, dtype="float32")[0] for p in keys])
    n = FRAMES * 160
    mic = np.tile(typing, n // len(typing) + 1)[:n] * 0.5
    line = np.random.default_rng(0).standard_normal(n).astype(np.float32) * 1e-4
    wav = tmp_path / "typing.wav"
    sf.write(wav, np.stack([mic, line], axis=1), 16000, subtype="PCM_16")
    summary = [e.to_dict() for e in Pipeline().run(read_call(wav))][-1]
    quality = summary["quality"]
    assert quality["low_confidence"]
    # either the typing is not taken for speech, or the speech "found" in it is named as untrustworthy
    found = summary["agent"]["talk_share_of_call"]
    assert found < 0.05 or any(f.endswith(":agent") for f in quality["flags"]), (found, quality)


def test_speech_the_model_misses_is_heard_by_the_independent_detector(real_calls: list[Path]) -> None:
    """Real speech with no activity decided on it (a model deaf to this voice): webrtcvad hears it, the check says."""
    x = np.concatenate(list(read_call(real_calls[0])))
    frames = len(x) // 160
    deaf = SelfCheck(SelfCheckConfig())
    deaf.process(np.zeros((frames, 2), bool), x[: frames * 160])
    flags, figures = deaf.summary()
    assert "detectors_disagree:agent" in flags
    # the customer's line is quieter to webrtcvad: whatever of it it heard, the deaf model missed all
    assert figures["agent"]["webrtc_speech_missed"] == figures["customer"]["webrtc_speech_missed"] == 1.0
    # the same audio with the activity the pipeline decided: no disagreement worth a flag
    pipe = Pipeline()
    list(pipe.run([x]))
    assert pipe.last_checks["agent"]["webrtc_speech_missed"] < 0.7
