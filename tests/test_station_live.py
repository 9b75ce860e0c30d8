"""The station's live signals agree with the call's record: the wall never shows a talk-over the record lacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from edge_agent.config import AnalyzerConfig
from edge_agent.wire import Activity
from firmware_py.config import LifecycleSection
from firmware_py.lifecycle import CallLifecycle, Emitted


def live_and_record(wav: Path, analyzer: AnalyzerConfig) -> tuple[list[tuple[float, str]], list[tuple[float, str]]]:
    """A real call fed as live capture would (100 ms blocks): (live talk-over signals, the record's talk-overs)."""
    live: list[dict[str, object]] = []
    emitted: list[Emitted] = []
    station = CallLifecycle(
        LifecycleSection(auto=False), analyzer, emitted.append, batch_s=30.0, agent_id=None, live=live.append
    )
    station.start_call("c1", by="test")
    x, _ = sf.read(wav, dtype="float32")
    for i in range(0, len(x), 1600):
        station.feed(np.ascontiguousarray(x[i : i + 1600], np.float32))
    station.end_call("test")
    batches = [e for em in emitted for e in em.events if isinstance(e, Activity)]  # what goes on the wire
    record = sorted((round(t.start, 2), t.by) for b in batches for t in b.talk_overs)
    signals = sorted((float(s["start"]), str(s["by"])) for s in live if s["type"] == "talk_over")  # type: ignore[arg-type]
    return signals, record


def test_live_talk_overs_are_the_records_talk_overs(real_calls: list[Path]) -> None:
    """Every live `talk_over` signal is a talk-over of the record (same start and party), sent once, and every
    recorded talk-over was signalled. The signal reads the detector's own test (overlap long enough, newcomer heard
    by Silero), not the speech segments beside it: where the record drops an overlap Silero did not confirm (here
    all of them, by asking for more heard overlap than any has), the wall is not told of it either."""
    signalled = 0
    for wav in real_calls:
        signals, record = live_and_record(wav, AnalyzerConfig())
        assert signals == record
        signalled += len(signals)
        strict = AnalyzerConfig.model_validate({"talk_over": {"confirm_min_s": 5}})
        assert live_and_record(wav, strict) == ([], [])
    assert signalled >= 1
