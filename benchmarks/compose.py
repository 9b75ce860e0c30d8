"""Compose real-speech calls with ../shared/tools/compose_calls.py (called, never copied)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"


def compose_calls(
    outdir: Path, calls: int, minutes: float, seed: int, noises: Sequence[Path], manifest: Path | None = None
) -> list[Path]:
    """Write callNN.wav + callNN.json into outdir; returns the WAV paths."""
    cmd = [
        sys.executable,
        str(SHARED / "tools" / "compose_calls.py"),
        str(manifest or SHARED / "tools" / "dev_speakers.json"),
        str(outdir),
        "--calls",
        str(calls),
        "--minutes",
        str(minutes),
        "--seed",
        str(seed),
        "--noise",
        *map(str, noises),
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return sorted(outdir.glob("call*.wav"))
