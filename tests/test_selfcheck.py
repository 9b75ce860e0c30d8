"""The analyzer's self-check: it names what makes a call's activity untrustworthy, and stays quiet on good calls."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from edge_agent.audio import read_call
from edge_agent.config import SelfCheckConfig
from edge_agent.pipeline import Pipeline
from edge_agent.selfcheck import SelfCheck
from edge_agent.silero_stream import PooledGate, SileroStream
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
        # the pipeline's order: the backend's frames first, the (delayed) activity decided on them after
        sc.process_probs(
            (act[i : i + block] * 0.9 + 0.05).astype(np.float32) if probs is None else probs[i : i + block]
        )
        sc.process(act[i : i + block])
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


POOL = 10  # frames either side over which ModelVad pools Silero (vad.silero_gate_ms: 100 ms)


def silero_heard(x: np.ndarray) -> np.ndarray:
    """Silero VAD's pooled per-frame probability of a (n, 2) call, as `ModelVad` puts it in columns 4-5."""
    stream, gate = SileroStream(), PooledGate((), POOL, POOL)
    sil = np.concatenate([stream.process(x), stream.finish()])
    gate.push(sil)
    return gate.apply(np.zeros_like(sil))[2]


def with_silero(act: np.ndarray, silero: np.ndarray) -> np.ndarray:
    """A model backend's six columns: activity probabilities, the same as dead air's view, Silero's pooled one."""
    p = (act * 0.9 + 0.05).astype(np.float32)
    return np.hstack([p, p, silero]).astype(np.float32)


def judge(act: np.ndarray, silero: np.ndarray, cfg: SelfCheckConfig | None = None) -> tuple[list[str], dict]:  # type: ignore[type-arg]
    sc = SelfCheck(cfg or SelfCheckConfig())
    sc.process_probs(with_silero(act, silero))
    sc.process(act)
    return sc.summary()


def long_real_call(real_calls: list[Path]) -> np.ndarray:
    """The three real 1-minute calls back to back: over a minute of each party's speech, more than
    `min_independent_s` (20 s) of it heard by Silero on either channel (one call alone is too near that)."""
    return np.concatenate([np.concatenate(list(read_call(w))) for w in real_calls])


def noise_call(seconds: float) -> np.ndarray:
    """Real noise with no speech in it: keyboard typing on the agent mic, NOIZEUS car noise on the line."""
    data = shared_or_skip() / "data"
    n = int(seconds * 100) * 160
    keys = sorted((data / "noise-typing").glob("*.flac"))[:8]
    typing = np.concatenate([sf.read(p, dtype="float32")[0] for p in keys])
    car, rate = sf.read(data / "noise" / "car.flac", dtype="float32")
    car = soxr.resample(car, rate, 16000).astype(np.float32)
    return np.stack([np.resize(typing, n) * 0.5, np.resize(car, n)], axis=1)


def test_speech_the_model_misses_is_heard_by_silero(real_calls: list[Path]) -> None:
    """Real speech with no activity decided on it (a model deaf to these voices): Silero hears it, the check says."""
    x = long_real_call(real_calls)
    silero = silero_heard(x)
    assert ((silero >= 0.5).sum(axis=0) / 100 > SelfCheckConfig().min_independent_s).all()
    flags, figures = judge(np.zeros((len(silero), 2), bool), silero)
    assert "speech_missed:agent" in flags and "speech_missed:customer" in flags, flags
    assert figures["agent"]["silero_speech_missed"] == figures["customer"]["silero_speech_missed"] == 1.0
    # no activity at all: nothing of it can be unconfirmed
    assert not [f for f in flags if f.startswith("speech_unconfirmed")]


def test_speech_found_in_noise_is_not_confirmed_by_silero() -> None:
    """A plausible-looking conversation decided on real noise alone (typing, car): only Silero can tell, and does."""
    act = conversation()
    silero = silero_heard(noise_call(MINUTES * 60))
    assert (silero < 0.5).all()  # Silero hears none of this noise as speech
    flags, figures = judge(act, silero)
    # the activity's shape is a conversation's (no other check fires): Silero's silence is the only trace
    assert flags == ["speech_unconfirmed:agent", "speech_unconfirmed:customer"], flags
    assert figures["agent"]["speech_unconfirmed"] == figures["customer"]["speech_unconfirmed"] == 1.0
    assert figures["agent"]["silero_speech_missed"] == 0.0


def test_the_pipeline_on_real_calls_agrees_with_silero(real_calls: list[Path]) -> None:
    """The same real speech with the activity the pipeline decides: no disagreement worth a flag either way."""
    x = long_real_call(real_calls)
    pipe = Pipeline()
    flags = [e.to_dict() for e in pipe.run([x])][-1]["quality"]["flags"]
    assert not [f for f in flags if f.startswith(("speech_missed", "speech_unconfirmed"))], (flags, pipe.last_checks)
    cfg = SelfCheckConfig()
    for ch, party in enumerate(("agent", "customer")):
        checks = pipe.last_checks[party]
        assert checks["silero_speech_missed"] <= cfg.max_silero_missed[ch], (party, checks)
        assert checks["speech_unconfirmed"] <= cfg.max_unconfirmed, (party, checks)


def test_too_little_speech_is_not_judged(real_calls: list[Path]) -> None:
    """Under `min_independent_s` of speech on a channel, neither Silero check flags it, however one-sided."""
    speech = np.concatenate(list(read_call(real_calls[0])))[: 25 * 16000]  # 25 s of a real call
    x = np.concatenate([speech, noise_call(MINUTES * 60 - 25)])  # then typing and car noise: a 2-minute call
    silero = silero_heard(x)
    n = len(silero)
    heard = (silero >= 0.5).sum(axis=0) / 100
    assert (heard > 3).all() and (heard < SelfCheckConfig().min_independent_s).all(), heard
    # the agent deaf throughout; the customer "speaking" for 15 s of the noise, which Silero hears nothing of
    act = np.zeros((n, 2), bool)
    act[6000:7500, 1] = True
    assert not (silero[6000:7500, 1] >= 0.5).any()
    flags, figures = judge(act, silero)
    assert figures["agent"]["silero_speech_missed"] == 1.0 and figures["customer"]["speech_unconfirmed"] == 1.0
    assert not [f for f in flags if f.startswith(("speech_missed", "speech_unconfirmed"))], flags
    # the same amounts with a lower minimum are judged: the minimum is what kept them quiet
    flags, _ = judge(act, silero, SelfCheckConfig(min_independent_s=3.0))
    assert {"speech_missed:agent", "speech_missed:customer", "speech_unconfirmed:customer"} <= set(flags), flags


def test_silero_pairs_with_the_activity_by_frame_count() -> None:
    """The backend's frames arrive ahead of the activity (the smoother's delay), in any blocks: same counts."""
    act = conversation()
    silero = np.roll(act, 40, axis=0).astype(np.float32)  # Silero hearing the same turns 0.4 s late
    probs = with_silero(act, silero)
    whole = judge(act, silero)
    sc = SelfCheck(SelfCheckConfig())
    lag = 23
    for i in range(0, FRAMES + lag, 7):
        sc.process_probs(probs[i : i + 7])
        sc.process(act[max(i - lag, 0) : max(min(i + 7 - lag, FRAMES), 0)])
    assert sc.summary() == whole
    heard = silero >= 0.5
    assert (sc.missed == (heard & ~act).sum(axis=0)).all() and (sc.unconfirmed == (act & ~heard).sum(axis=0)).all()
