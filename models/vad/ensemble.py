"""Join speech-model weights files trained apart into one file whose probability is the mean of theirs.

    python -m models.vad.ensemble --name speech-mlp-v4 --out DIR A.npz B.npz [...]

Why: two retrains of one recipe differ a lot on noise neither saw (the model card measures it), and the mean of
their probabilities holds up better there than either member. The station loads the result like any weights
file (`edge_agent/speech_model.py` runs the members side by side); its card keeps each member's card, so every
training source, licence and seed stays on record, and the licence is that of the most restrictive member.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.model_files import read_carded
from edge_agent.speech_model import MEMBER, ModelError, SpeechModel
from models.vad.sources import SOURCES

log = logging.getLogger(__name__)


class EnsembleError(Exception):
    """Member files that cannot be joined: unreadable, already ensembles, or fed different inputs."""


def join(members: list[Path], name: str, out: Path) -> Path:
    """Writes out/name.npz and its card; returns the weights path."""
    if len(members) < 2:
        raise EnsembleError("an ensemble needs at least two weights files")
    arrays: dict[str, np.ndarray] = {}
    cards: list[dict[str, Any]] = []
    for i, path in enumerate(members):
        try:
            model = SpeechModel(path)
        except ModelError as exc:
            raise EnsembleError(str(exc)) from None
        if model.members != 1:
            raise EnsembleError(f"{path}: already holds {model.members} MLPs; join single ones")
        # the bytes and card the station's loader just vouched for (their sha256 agrees), read once more here
        raw, _, card = read_carded(path, EnsembleError, "model weights")
        if not card:
            raise EnsembleError(f"{path}: no card beside it; an ensemble's card is built from its members' cards")
        if cards and _shape(card) != _shape(cards[0]):
            raise EnsembleError(f"{path}: its inputs differ from {members[0]}'s")
        cards.append(card)
        with np.load(io.BytesIO(raw)) as z:
            prefix = "" if i == 0 else MEMBER.format(i)
            arrays.update({prefix + k: z[k] for k in z.files})
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.npz"
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    joined = buf.getvalue()
    path.write_bytes(joined)
    sources: dict[str, dict[str, Any]] = {}
    for card in cards:
        for s in card["training"]["sources"]:
            sources[s["name"]] = s
    excluded = set.intersection(*(set(c["training"].get("excluded_noise", [])) for c in cards))
    commercial = all(n in SOURCES and SOURCES[n].commercial for n in sources)
    card = {
        "name": name,
        "sha256": hashlib.sha256(joined).hexdigest(),
        "outputs": cards[0]["outputs"],
        "input": cards[0]["input"],
        "hidden": [c["hidden"] for c in cards],
        "combine": "mean of the members' probabilities",
        "training": {
            "build": "commercial" if commercial else "research",
            "sources": [sources[n] for n in sorted(sources)],
            "excluded_noise": sorted(excluded),
        },
        "members": [{k: v for k, v in c.items() if k not in ("input", "outputs")} for c in cards],
        # what the station measures on held-out speakers is the members'; the ensemble's own figures are the
        # harness's (benchmarks/eval_calls.py), which the model card reports
        "validation": {
            "frame_f1_agent": round(float(np.mean([c["validation"]["frame_f1_agent"] for c in cards])), 4),
            "frame_f1_customer": round(float(np.mean([c["validation"]["frame_f1_customer"] for c in cards])), 4),
            "note": "mean of the members' held-out frame F1",
        },
        # the most restrictive member's terms bind the whole file
        "licence": next((c["licence"] for c in cards if "non-commercial" in c["licence"]), cards[0]["licence"]),
    }
    path.with_suffix(".json").write_text(json.dumps(card, indent=1) + "\n")
    loaded = SpeechModel(path)  # the station's loader must read what was written
    log.info("%s: %d members, sha256 %s", path, loaded.members, card["sha256"][:12])
    return path


def _shape(card: dict[str, Any]) -> tuple[Any, ...]:
    """What a member reads, without the card's wording (cards of different dates describe Silero differently)."""
    spec = card.get("input", {})
    return tuple(spec.get(k) for k in ("sample_rate", "frame_ms", "context_pools", "inputs"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("members", nargs="+", type=Path, help="single-MLP weights files, each with its card")
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        join(args.members, args.name, args.out)
    except EnsembleError as exc:
        print(f"ensemble: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
