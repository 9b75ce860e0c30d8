"""The whole pipeline on real-speech calls: accuracy against truth, streaming exactness, summary content."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.compose import compose_calls
from benchmarks.eval_calls import true_ones
from edge_agent.audio import read_call
from edge_agent.config import AnalyzerConfig
from edge_agent.pipeline import Pipeline
from tests.conftest import ROOT, SHARED, shared_or_skip, shared_scorer, truth


def events_for(wav: Path, block_seconds: float, cfg: AnalyzerConfig | None = None) -> list[dict]:  # type: ignore[type-arg]
    pipe = Pipeline(cfg)
    return [e.to_dict() for e in pipe.run(read_call(wav, block_seconds=block_seconds))]


def test_live_sized_blocks_give_the_same_events_as_a_file(real_calls: list[Path]) -> None:
    """10 ms blocks (live capture) and 10 s blocks (a file) run the same code to the same result.

    Each kind of event comes out in the same order either way; dead air is decided dead_air.model_speech_s after it
    ends (turns.LongSpeech), so where it falls among the other kinds depends on the blocks around that moment."""
    wav = real_calls[0]
    big = events_for(wav, 10.0)
    small = events_for(wav, 0.01)
    for kind in ("speech", "talk_over", "dead_air", "emotion"):
        assert [e for e in big if e["type"] == kind] == [e for e in small if e["type"] == kind], kind
    assert len(big) == len(small)
    assert any(e["type"] == "dead_air" for e in big)  # the delayed kind is there to compare
    assert big[-1]["talk_overs"] == small[-1]["talk_overs"]


def score(calldir: Path, system: str) -> dict:  # type: ignore[type-arg]
    out = subprocess.run(
        [sys.executable, str(SHARED / "tools" / "score_calls.py"), str(calldir), system],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    result: dict = json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[type-arg]
    return result


def test_real_speech_calls_score_above_plain_webrtcvad(real_calls: list[Path]) -> None:
    """The shared scorer on our CLI beside plain webrtcvad, on calls the default weights never trained on.

    RAVDESS speech over NOIZEUS babble and street noise: neither corpus is in the commercial weights' training
    (models/shipped/MODEL_CARD.md), so these are held-out figures; the floor is the plain VAD beside it.
    """
    ours = score(real_calls[0].parent, f"cmd:{sys.executable} -m edge_agent.cli analyze")
    plain = score(real_calls[0].parent, "webrtc")
    for key in ("activity_f1_agent", "activity_f1_customer", "talkover_f1"):
        assert ours[key] >= plain[key] + 0.05, (key, ours, plain)
    # the customer's floor is what the default's Silero veto on the line costs here: babble on the line leaves
    # Silero deaf to much of the customer (0.66 with `vad.silero_gate: [customer]`, 0.77 without); the default
    # takes that for the veto on ring tones, hold music and echo the model hears as speech (MODEL_CARD.md)
    assert ours["activity_f1_agent"] >= 0.6 and ours["activity_f1_customer"] >= 0.62
    assert ours["kind_accuracy"] >= 0.75


def test_a_talk_over_needs_silero_to_hear_the_newcomer(real_calls: list[Path]) -> None:
    """The second witnesses are wired through the real pipeline: what the default checks drop (Silero deaf to the
    newcomer, or an agent no louder than the customer's leak) is counted in `quality.talk_overs_unconfirmed`, and on
    these calls every talk-over they drop is a false one by the shared scorer; asked for more heard overlap than
    any has, they drop them all, none silently lost."""
    score_calls = shared_scorer()
    found = unchecked = dropped = 0
    for wav in real_calls:
        unchecked_cfg = {"talk_over": {"confirm_min_s": 0, "own_voice": []}}
        plain = events_for(wav, 1.0, AnalyzerConfig.model_validate(unchecked_cfg))
        checked = events_for(wav, 1.0)
        strict = events_for(wav, 1.0, AnalyzerConfig.model_validate({"talk_over": {"confirm_min_s": 5}}))
        n_plain = sum(1 for e in plain if e["type"] == "talk_over")
        n_checked = sum(1 for e in checked if e["type"] == "talk_over")
        assert checked[-1]["quality"]["talk_overs_unconfirmed"] == n_plain - n_checked
        assert plain[-1]["quality"]["talk_overs_unconfirmed"] == 0
        assert not [e for e in strict if e["type"] == "talk_over"]
        det = [e for e in plain if e["type"] == "talk_over"]
        kept = {(e["by"], e["start"]) for e in checked if e["type"] == "talk_over"}
        tp, _ = score_calls.match(det, truth(wav)["talk_over"], 0.5)
        for e, true in zip(det, true_ones(det, truth(wav)["talk_over"], 0.5, tp), strict=True):
            if (e["by"], e["start"]) not in kept:
                assert not true, e
        unchecked, found, dropped = (
            unchecked + n_plain,
            found + n_checked,
            dropped + strict[-1]["quality"]["talk_overs_unconfirmed"],
        )
    assert unchecked >= 2 and found >= 1 and dropped == unchecked


def test_an_agent_heard_only_through_the_customers_leak_is_not_charged_with_cutting_in(tmp_path: Path) -> None:
    """The attack the `own_voice` check answers, on the real parts: real speech with real keyboard noise on the
    agent's mic, where the customer's voice leaks in at -19 dB (composer seed 2). Silero on the mic hears that leak,
    so without the check the agent is charged with talk-overs they never made; with it (the default) those are
    dropped and counted, and every true one stays. (With speech-mlp-v3 the attack made 4 false agent talk-overs and
    the check dropped 3; the v4 ensemble makes 3 of them, and the check drops 1.)"""
    shared = shared_or_skip()
    score_calls = shared_scorer()
    wavs = compose_calls(tmp_path, 2, 1, 2, sorted((shared / "data" / "noise-typing").glob("*.flac")))
    found = {(): [0, 0], ("agent",): [0, 0]}  # true, false agent talk-overs
    counted = 0
    for wav in wavs:
        t = truth(wav)
        assert -20 < t["conditions"]["leak_customer_into_agent_db"] < -18
        for own in found:
            evs = events_for(wav, 1.0, AnalyzerConfig.model_validate({"talk_over": {"own_voice": list(own)}}))
            det = [e for e in evs if e["type"] == "talk_over"]
            tp, _ = score_calls.match(det, t["talk_over"], 0.5)
            for e, true in zip(det, true_ones(det, t["talk_over"], 0.5, tp), strict=True):
                if e["by"] == "agent":
                    found[own][0 if true else 1] += 1
            if own:
                counted += evs[-1]["quality"]["talk_overs_unconfirmed"]
    (true_off, false_off), (true_on, false_on) = found[()], found[("agent",)]
    assert true_on == true_off >= 1, found
    assert false_off >= 2 and false_on < false_off and counted >= false_off - false_on, found


def test_summary_reflects_the_call(real_calls: list[Path]) -> None:
    # metrics given activity the default weights get mostly right (the other calls' agents are mostly missed);
    # without the line's Silero veto, which on this call's babbly line cuts most of the customer (see above)
    wav = real_calls[0]
    evs = events_for(wav, 1.0, AnalyzerConfig.model_validate({"vad": {"type": "model", "silero_gate": []}}))
    s = evs[-1]
    t = truth(wav)
    assert s["type"] == "call_summary" and s["duration"] == pytest.approx(t["duration"], abs=0.05)
    for party in ("agent", "customer"):
        # talk time is what the speech events add up to (their accuracy is the test above's business)
        talk = sum(e["end"] - e["start"] for e in evs if e["type"] == "speech" and e["speaker"] == party)
        assert s[party]["talk_time"] == pytest.approx(talk, abs=0.05)
        assert 0 < s[party]["talk_time"] < sum(e - b for b, e in t["activity"][party]) * 1.15
        assert -60 < s[party]["loudness_dbfs"] < 0
        assert 60 < s[party]["pitch_median_hz"] < 400
        assert 1.0 < s[party]["speaking_rate_sps"] < 8.0
    # composed SNRs are 3-20 dB (agent) and 12-30 dB (customer); the estimate must land near them
    assert s["agent"]["snr_db"] == pytest.approx(t["conditions"]["snr_agent_db"], abs=4)
    assert s["customer"]["snr_db"] == pytest.approx(t["conditions"]["snr_customer_db"], abs=4)
    n_to = sum(1 for e in evs if e["type"] == "talk_over")
    assert s["talk_overs"] == n_to
    assert s["dead_air_count"] == sum(1 for e in evs if e["type"] == "dead_air")


def test_swapped_channels_swap_the_parties(real_calls: list[Path], tmp_path: Path) -> None:
    import soundfile as sf

    wav = real_calls[2]
    x, sr = sf.read(wav)
    swapped = tmp_path / "swapped.wav"
    sf.write(swapped, np.ascontiguousarray(x[:, ::-1]), sr, subtype="PCM_16")
    a = [e.to_dict() for e in Pipeline().run(read_call(wav))]
    b = [e.to_dict() for e in Pipeline().run(read_call(swapped, agent_channel=1))]
    assert [e for e in a if e["type"] == "speech"] == [e for e in b if e["type"] == "speech"]
