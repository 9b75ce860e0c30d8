"""Fixtures: real-speech calls composed by ../shared/tools/compose_calls.py, and small WAV helpers."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from benchmarks.compose import compose_calls
from tests.hub_support import hub_store, pg_dsn, pg_server  # noqa: F401 - the hub's storage fixtures

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def shared_or_skip() -> Path:
    if not (SHARED / "tools" / "compose_calls.py").exists():
        pytest.skip("../shared (real speech and the call composer) is not beside the checkout")
    return SHARED


def shared_scorer() -> Any:
    """../shared/tools/score_calls.py as a module: its own definitions (`frames`, `match`), called, never copied."""
    tools = str(shared_or_skip() / "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    return importlib.import_module("score_calls")


@pytest.fixture(scope="session")
def real_calls(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three 1-minute two-channel calls from real RAVDESS speech with real noise, crosstalk, G.711."""
    shared = shared_or_skip()
    out = tmp_path_factory.mktemp("calls")
    noises = [shared / "data" / "noise" / f"{n}.flac" for n in ("babble", "street")]
    return compose_calls(out, 3, 1, 5, noises)


def truth(wav: Path) -> dict:  # type: ignore[type-arg]
    return json.loads(wav.with_suffix(".json").read_text())


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent.cli", *args], capture_output=True, text=True, cwd=ROOT)


def write_wav(path: Path, data: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> Path:
    sf.write(path, data, rate, subtype=subtype)
    return path
