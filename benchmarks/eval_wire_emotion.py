"""Does the hub see the tone the station heard? The scorecard rule "stayed calm with an angry customer" through
the wire, on real angry speech.

    python benchmarks/eval_wire_emotion.py [--calls 12] [--minutes 1] [--seed 23]

Calls are composed from EmoDB's angry utterances for both parties (real German speech, real babble noise,
`../shared/data`), analysed by the Pipeline, put on the wire (`to_wire`: activity batches carrying the emotion
changes) and scored from the wire payloads the way the hub scores them (`hub.scores.score_payloads`, the shipped
scorecard). Printed: how many calls the analysis labels the agent angry in, and on how many of those the rule
still credits calm: with the wire as it is, and with the batched emotion changes dropped (what the hub did before
issue 19: `expand_activity` ignored them). The first must be 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

from benchmarks.compose import compose_calls  # noqa: E402
from edge_agent.audio import read_call  # noqa: E402
from edge_agent.events import Emotion  # noqa: E402
from edge_agent.pipeline import Pipeline  # noqa: E402
from edge_agent.schema import envelope  # noqa: E402
from edge_agent.wire import to_wire  # noqa: E402
from hub.scorecard import DEFAULT_SCORECARD, load  # noqa: E402
from hub.scores import score_payloads  # noqa: E402

RULE = "calm_with_angry_customer"


def angry_calls(work: Path, n: int, minutes: float, seed: int) -> list[Path]:
    emodb = SHARED / "data" / "emodb"
    speakers: dict[str, list[str]] = {}
    for line in (emodb / "labels.csv").read_text().splitlines()[1:]:
        file, speaker, emotion, *_ = line.split(",")
        if emotion == "angry":
            speakers.setdefault(speaker, []).append(str(emodb / file))
    manifest = work / "angry.json"
    manifest.write_text(json.dumps({"speakers": speakers}))
    return compose_calls(work / "calls", n, minutes, seed, [SHARED / "data" / "noise" / "babble.flac"], manifest)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=12)
    p.add_argument("--minutes", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=23)
    args = p.parse_args()
    card, _ = load(DEFAULT_SCORECARD)
    agent_angry = credited = credited_before = 0
    with tempfile.TemporaryDirectory(prefix="wire-emotion-") as tmp:
        for i, wav in enumerate(angry_calls(Path(tmp), args.calls, args.minutes, args.seed)):
            events = list(Pipeline().run(read_call(wav, block_seconds=2.0)))
            angry = any(isinstance(e, Emotion) and e.speaker == "agent" and e.label == "angry" for e in events)
            agent_angry += angry
            wire = [e.to_dict() for e in to_wire(events)]
            for drop, _ in ((False, "now"), (True, "before")):
                body = [{k: v for k, v in d.items() if not (drop and k == "emotion")} for d in wire]
                payloads = [envelope(d, seat="s1", site="lab", call_id=f"c{i}").to_json() for d in body]
                row = score_payloads(card, [(f"c{i}", payloads)])[0]
                points = next((pts for rule, pts, _ in row.rules if rule == RULE), 0.0)
                if angry and points > 0:
                    credited_before += drop
                    credited += not drop
    print(f"{args.calls} calls of angry EmoDB speech (seed {args.seed}): agent labelled angry in {agent_angry}")
    print(f"  '{RULE}' credits calm on those: {credited} now, {credited_before} with batched emotion dropped")
    return 0 if credited == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
