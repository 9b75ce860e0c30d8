"""Turn-taking detectors on activity tracks whose truth is known."""

from __future__ import annotations

import numpy as np

from edge_agent.config import DeadAirConfig, TalkOverConfig
from edge_agent.events import DeadAir, Speech, TalkOver
from edge_agent.turns import DeadAirDetector, SegmentTracker, TalkOverDetector


def track(n: int, agent: list[tuple[int, int]], customer: list[tuple[int, int]]) -> np.ndarray:
    act = np.zeros((n, 2), bool)
    for col, runs in ((0, agent), (1, customer)):
        for s, e in runs:
            act[s:e, col] = True
    return act


def talk_overs(act: np.ndarray, block: int = 1000) -> list[TalkOver]:
    det = TalkOverDetector(TalkOverConfig())
    out = [e for i in range(0, len(act), block) for e in det.process(act[i : i + block])] + det.finish()
    return [e for e in out if isinstance(e, TalkOver)]


def test_backchannel_when_the_newcomer_yields_quickly() -> None:
    act = track(1000, agent=[(100, 600)], customer=[(300, 350)])
    (ev,) = talk_overs(act)
    assert (ev.by, ev.kind, ev.start, ev.end) == ("customer", "backchannel", 3.0, 3.5)


def test_interruption_when_the_speaker_yields() -> None:
    act = track(1000, agent=[(100, 400)], customer=[(300, 700)])
    (ev,) = talk_overs(act, block=7)
    assert (ev.by, ev.kind, ev.start, ev.end) == ("customer", "interruption", 3.0, 4.0)


def test_long_fight_that_the_newcomer_loses_is_still_an_interruption() -> None:
    act = track(1000, agent=[(300, 700)], customer=[(100, 900)])
    (ev,) = talk_overs(act)
    assert (ev.by, ev.kind) == ("agent", "interruption")


def test_overlap_shorter_than_minimum_is_not_a_talk_over() -> None:
    act = track(1000, agent=[(100, 500)], customer=[(480, 800)])
    assert talk_overs(act) == []


def test_brief_gap_inside_an_overlap_joins_it() -> None:
    act = track(1000, agent=[(100, 800)], customer=[(300, 320), (330, 360)])
    (ev,) = talk_overs(act)
    assert ev.start == 3.0 and ev.end == 3.6 and ev.kind == "backchannel"


def test_dead_air_only_between_speech() -> None:
    act = track(3000, agent=[(500, 800)], customer=[(1200, 1300), (1700, 2000)])
    det = DeadAirDetector(DeadAirConfig())
    evs = [e for i in range(0, 3000, 250) for e in det.process(act[i : i + 250])] + det.finish()
    # 4 s before the first word and the trailing silence are not dead air; 8->12 s (4 s) is, 13->17 s too
    assert evs == [DeadAir(8.0, 12.0), DeadAir(13.0, 17.0)]


def test_segments_per_party() -> None:
    act = track(500, agent=[(10, 50), (100, 130)], customer=[(40, 400)])
    det = SegmentTracker()
    evs = det.process(act[:120]) + det.process(act[120:]) + det.finish()
    got = sorted((e.speaker, e.start, e.end) for e in evs if isinstance(e, Speech))
    assert got == [("agent", 0.1, 0.5), ("agent", 1.0, 1.3), ("customer", 0.4, 4.0)]


def test_a_breath_pause_does_not_make_the_speaker_the_newcomer() -> None:
    # the agent pauses 0.3 s; the customer cuts in during the pause; the agent resumes over them
    act = track(1000, agent=[(100, 400), (430, 700)], customer=[(410, 800)])
    (ev,) = talk_overs(act)
    assert (ev.by, ev.kind) == ("customer", "interruption")
    # a real turn gap (0.6 s) does reset the turn: then the agent is the one cutting in
    act = track(1000, agent=[(100, 400), (460, 700)], customer=[(410, 800)])
    (ev,) = talk_overs(act)
    assert ev.by == "agent"


def test_holder_resuming_inside_the_same_turns_is_one_talk_over() -> None:
    # customer cuts in at 3 s; the agent pauses 0.25 s and resumes over the customer's same turn
    act = track(1200, agent=[(100, 340), (365, 600)], customer=[(300, 900)])
    evs = talk_overs(act)
    assert [(e.by, e.kind, e.start) for e in evs] == [("customer", "interruption", 3.0)]


def confirmed_talk_overs(act: np.ndarray, heard: np.ndarray, block: int = 1000) -> tuple[list[TalkOver], int]:
    det = TalkOverDetector(TalkOverConfig())
    out = [e for i in range(0, len(act), block) for e in det.process(act[i : i + block], heard[i : i + block])]
    out += det.finish()
    return [e for e in out if isinstance(e, TalkOver)], det.last_unconfirmed


def test_a_talk_over_the_independent_detector_does_not_hear_is_dropped_and_counted() -> None:
    # a 0.4 s "backchannel" of the customer's (a keystroke burst the model took for speech) and a real one
    act = track(1000, agent=[(100, 900)], customer=[(300, 340), (600, 650)])
    heard = track(1000, agent=[(100, 900)], customer=[(600, 650)])  # Silero hears only the second
    for block in (1000, 7):
        evs, dropped = confirmed_talk_overs(act, heard, block)
        assert [(e.by, e.start) for e in evs] == [("customer", 6.0)] and dropped == 1
    # without a second witness (a backend with no independent detector) both stand
    assert len(talk_overs(act)) == 2


def test_only_the_newcomers_speech_confirms() -> None:
    # Silero hears the agent, who holds the floor, throughout, but never the customer who "cut in"
    act = track(1000, agent=[(100, 900)], customer=[(300, 400)])
    heard = track(1000, agent=[(100, 900)], customer=[])
    assert confirmed_talk_overs(act, heard) == ([], 1)
    # a few heard frames are not enough: confirm_min_s (0.05 s) of the overlap must be heard
    heard = track(1000, agent=[(100, 900)], customer=[(350, 353)])
    assert confirmed_talk_overs(act, heard) == ([], 1)
    heard = track(1000, agent=[(100, 900)], customer=[(350, 355)])
    assert len(confirmed_talk_overs(act, heard)[0]) == 1


def test_an_agent_who_cuts_in_must_be_louder_than_the_customers_leak() -> None:
    """The customer's voice leaks into the headset, where Silero hears it too: the agent's "interruptions" during
    the customer's turn count only where the mic rises above that leak for at least half of the overlap."""
    act = track(1000, agent=[(300, 400), (600, 700)], customer=[(100, 900)])
    heard = act.copy()  # Silero on the mic hears speech throughout: the leaked customer, or the agent
    own = track(
        1000, agent=[(600, 650)], customer=[(100, 900)]
    )  # above the leak: half of the second, none of the first
    for block in (1000, 7):
        det = TalkOverDetector(TalkOverConfig(own_voice=("agent",)))
        out = [
            e
            for i in range(0, 1000, block)
            for e in det.process(act[i : i + block], heard[i : i + block], None, own[i : i + block])
        ]
        evs = [e for e in [*out, *det.finish()] if isinstance(e, TalkOver)]
        assert [(e.by, e.start) for e in evs] == [("agent", 6.0)] and det.last_unconfirmed == 1
    # a customer who cuts in is not held to it by default (the line carries little of the agent), nor is anyone
    # without the check or without the figures
    swapped = act[:, ::-1].copy()
    det = TalkOverDetector(TalkOverConfig(own_voice=("agent",)))
    evs = [
        e for e in [*det.process(swapped, swapped, None, np.zeros_like(own)), *det.finish()] if isinstance(e, TalkOver)
    ]
    assert len(evs) == 2
    for cfg, figures in ((TalkOverConfig(own_voice=()), own), (TalkOverConfig(own_voice=("agent",)), None)):
        det = TalkOverDetector(cfg)
        evs = [e for e in [*det.process(act, heard, None, figures), *det.finish()] if isinstance(e, TalkOver)]
        assert len(evs) == 2


def test_a_talk_over_carries_how_sure_the_model_was_of_the_newcomer() -> None:
    """`confidence` is the newcomer's mean speech probability over the overlap frames, whatever the blocks: the
    holder's probability and frames outside the overlap do not enter it."""
    act = track(1000, agent=[(100, 600)], customer=[(300, 400)])
    probs = np.full((1000, 2), 0.9, np.float32)
    probs[:, 0] = 0.2  # the holder (agent): must not count
    probs[300:340, 1] = 0.5  # the newcomer's first 0.4 s of its 1 s overlap
    probs[400:450, 1] = 0.0  # after the overlap: must not count
    for block in (1000, 37, 1):
        det = TalkOverDetector(TalkOverConfig())
        out = [e for i in range(0, 1000, block) for e in det.process(act[i : i + block], None, probs[i : i + block])]
        (ev,) = [e for e in out + det.finish() if isinstance(e, TalkOver)]
        assert ev.by == "customer" and ev.confidence == round((40 * 0.5 + 60 * 0.9) / 100, 2) == 0.74
        assert ev.to_dict()["confidence"] == 0.74
    # without the probabilities (a caller that has none) there is no confidence, and the event does not claim one
    (plain,) = talk_overs(act)
    assert plain.confidence is None and "confidence" not in plain.to_dict()


def test_a_dead_air_carries_how_sure_silero_was_that_nobody_spoke() -> None:
    """`confidence` is one minus the mean, over the silence only, of the louder side's speech probability, whatever
    the blocks; the speech around the silence does not enter it."""
    act = track(3000, agent=[(100, 800), (1700, 2000)], customer=[(1200, 1300), (2900, 3000)])
    probs = np.full((3000, 2), 0.95, np.float32)  # speech everywhere: frames outside the silences must not count
    probs[800:1200] = 0.0  # the first silence (4 s): nobody, except ...
    probs[900:1000, 1] = 0.5  # ... one second in which Silero half heard the customer
    probs[950:1000, 0] = 0.8  # and half a second in which it heard the agent louder still
    probs[1300:1700] = [0.1, 0.2]  # the second silence: the louder side is the customer's 0.2
    probs[2000:2900] = 0.0  # the third: a silence Silero agrees with throughout
    for block in (3000, 37, 1):
        det = DeadAirDetector(DeadAirConfig())
        evs = [e for i in range(0, 3000, block) for e in det.process(act[i : i + block], probs[i : i + block])]
        evs += det.finish()
        assert [(e.start, e.end) for e in evs] == [(8.0, 12.0), (13.0, 17.0), (20.0, 29.0)]
        first = 1 - (50 * 0.5 + 50 * 0.8) / 400
        assert [e.confidence for e in evs] == [round(first, 2), 0.8, 1.0] == [0.84, 0.8, 1.0]
        assert evs[0].to_dict()["confidence"] == 0.84
    # without the probabilities (a backend without Silero) there is no confidence, and the event does not claim one
    det = DeadAirDetector(DeadAirConfig())
    (plain, *_) = det.process(act)
    assert plain.confidence is None and "confidence" not in plain.to_dict()


def dead_airs_with_own(heard: np.ndarray, own: np.ndarray, probs: np.ndarray, block: int) -> list[DeadAir]:
    det = DeadAirDetector(DeadAirConfig())
    out = []
    for i in range(0, len(heard), block):
        out += det.process(heard[i : i + block], None, own[i : i + block], probs[i : i + block])
    out += det.finish()
    return [e for e in out if isinstance(e, DeadAir)]


def test_long_sure_speech_of_ones_own_breaks_a_silence_the_stricter_view_hears_nothing_in() -> None:
    """Silero is deaf to speech under music: the stricter view (both detectors) then shows one long silence where
    the model heard the agent speak. Such a segment breaks the silence when it lasts model_speech_s (0.8 s) with a
    mean probability of at least 0.7 over that first stretch; a short one, or an unsure one, does not."""
    n = 4000
    heard = track(n, agent=[(100, 300)], customer=[(3800, 3900)])
    own = track(n, agent=[(100, 300), (1500, 1700), (2400, 2440), (3000, 3100)], customer=[(3800, 3900)])
    probs = np.where(own, 0.9, 0.05).astype(np.float32)
    probs[3000:3100, 0] = 0.55  # long enough, but never sure
    for block in (4000, 250, 37, 1):
        evs = dead_airs_with_own(heard, own, probs, block)
        # 3 -> 15 s and 17 -> 38 s: the 2 s segment at 15 s splits the silence; the 0.4 s and the unsure 1 s do not
        assert [(e.start, e.end) for e in evs] == [(3.0, 15.0), (17.0, 38.0)], block
    # off (model_speech_s 0), the stricter view alone decides: one silence
    det = DeadAirDetector(DeadAirConfig(model_speech_s=0))
    assert [(e.start, e.end) for e in det.process(heard, None, own, probs)] == [(3.0, 38.0)]


def test_a_dead_air_closed_in_the_last_held_frames_comes_out_at_finish() -> None:
    n = 1000
    heard = track(n, agent=[(100, 200)], customer=[(700, 990)])
    evs = dead_airs_with_own(heard, heard, heard.astype(np.float32), block=n)
    assert [(e.start, e.end) for e in evs] == [(2.0, 7.0)]
    # with the speech that ends it only 0.3 s before the end (under model_speech_s), still found
    heard = track(n, agent=[(100, 200)], customer=[(970, 1000)])
    evs = dead_airs_with_own(heard, heard, heard.astype(np.float32), block=n)
    assert [(e.start, e.end) for e in evs] == [(2.0, 9.7)]
