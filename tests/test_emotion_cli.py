"""`edge-agent emotion FILE [FILE ...]`: the JSON Lines contract other tools depend on, on real clips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from edge_agent.emotion_model import DEFAULT_MODEL, shipped_dir
from tests.conftest import run_cli, shared_or_skip, write_wav

CLASSES = ["neutral", "happy", "angry", "sad"]


def test_one_line_per_file_at_any_rate_and_corrupt_files_do_not_stop_the_run(tmp_path: Path) -> None:
    src = shared_or_skip() / "data" / "ravdess" / "Actor_01" / "03-01-05-02-01-01-01.flac"  # held-out actor, angry
    x, rate = sf.read(src, dtype="float32")
    narrow = write_wav(tmp_path / "line8k.wav", soxr.resample(x, rate, 8000), 8000, "ULAW")
    wide = write_wav(tmp_path / "wide44k.wav", soxr.resample(x, rate, 44100), 44100, "FLOAT")
    stereo = write_wav(tmp_path / "stereo.wav", np.stack([x, x], axis=1), rate)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(40)))
    empty = write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    missing = tmp_path / "missing.flac"
    files = [src, corrupt, narrow, missing, wide, empty, stereo]
    proc = run_cli("emotion", *map(str, files))
    assert proc.returncode == 2, proc.stderr  # some files could not be scored
    assert "Traceback" not in proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [d["file"] for d in lines] == [str(f) for f in files]
    scored = [d for d in lines if "error" not in d]
    errors = {d["file"]: d["error"] for d in lines if "error" in d}
    assert set(errors) == {str(corrupt), str(missing), str(empty)}
    assert all(isinstance(e, str) and e and "\n" not in e for e in errors.values())
    for d in scored:
        assert set(d) == {"file", "label", "scores", "confident"}
        assert isinstance(d["confident"], bool)
        assert list(d["scores"]) == CLASSES
        assert abs(sum(d["scores"].values()) - 1.0) < 1e-3
        assert d["label"] == max(d["scores"], key=d["scores"].get)
    # the same speech at 16, 8 (mu-law) and 44.1 kHz and in two channels reads the same
    assert len({d["label"] for d in scored}) == 1


def test_all_good_files_exit_zero(tmp_path: Path) -> None:
    src = shared_or_skip() / "data" / "ravdess" / "Actor_12" / "03-01-04-01-01-01-12.flac"
    proc = run_cli("emotion", str(src))
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    assert json.loads(line)["label"] in CLASSES


def test_confident_says_whether_the_calibrated_top_score_clears_the_cards_threshold() -> None:
    """Real clips of a held-out actor, every emotion: `confident` is the card's threshold on the top score."""
    card = json.loads((shipped_dir() / f"{DEFAULT_MODEL}.json").read_text())
    threshold = card["calibration"]["clip_min_confidence"]
    files = sorted((shared_or_skip() / "data" / "ravdess" / "Actor_13").glob("*.flac"))[::4]
    proc = run_cli("emotion", *map(str, files))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == len(files) >= 10
    for d in lines:
        top = max(d["scores"].values())
        if abs(top - threshold) > 1e-3:  # scores are rounded to 4 decimals
            assert d["confident"] == (top >= threshold), d
