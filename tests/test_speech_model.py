"""The shipped speech model: integrity, streaming context, and clear errors for bad weights."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_agent.speech_model import (
    LOOKAHEAD,
    N_INPUTS,
    N_MODEL_FEATURES,
    ContextStack,
    ModelError,
    SpeechModel,
    default_model_path,
    narrowband_model_path,
)
from tests.conftest import run_cli, write_wav

SHIPPED = [default_model_path(), narrowband_model_path()]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_weights_match_their_card(path: Path) -> None:
    card = json.loads(path.with_suffix(".json").read_text())
    assert hashlib.sha256(path.read_bytes()).hexdigest() == card["sha256"] and card["name"] == path.stem
    model = SpeechModel(path)
    assert model.card.sha256 == card["sha256"] and model.card.inputs == card["input"]["inputs"] == N_INPUTS
    # the card states measured held-out figures
    assert 0.5 < card["validation"]["frame_f1_agent"] <= 1 and 0.5 < card["validation"]["frame_f1_customer"] <= 1


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_default_weights_are_trained_only_on_what_a_business_may_use(path: Path) -> None:
    """Every training source on the card is a known source whose licence allows commercial use."""
    from models.vad.sources import SOURCES

    card = json.loads(path.with_suffix(".json").read_text())
    used = card["training"]["sources"]
    assert {s["name"] for s in used} >= {"asterisk", "ami", "typing", "generated"}
    for source in used:
        known = SOURCES[source["name"]]
        assert known.commercial and source["licence"] == known.licence, source
    assert not {"ravdess", "noizeus", "emodb"} & {s["name"] for s in used}
    assert "commercial" in card["licence"] and "non-commercial" not in card["licence"]


def test_context_stack_is_exact_for_any_block_size() -> None:
    rng = np.random.default_rng(4)
    feats = rng.standard_normal((500, N_MODEL_FEATURES)).astype(np.float32)
    a = ContextStack()
    whole = np.concatenate([a.process(feats), a.finish()])
    b = ContextStack()
    parts = [b.process(feats[i : i + 9]) for i in range(0, 500, 9)]
    np.testing.assert_allclose(whole, np.concatenate([*parts, b.finish()]), atol=1e-5)
    assert whole.shape == (500, N_INPUTS)
    # output runs LOOKAHEAD frames late until the end is flushed
    assert len(ContextStack().process(feats[:100])) == 100 - LOOKAHEAD


def test_probabilities_are_probabilities() -> None:
    p = SpeechModel().predict(np.random.default_rng(5).standard_normal((50, N_INPUTS)).astype(np.float32))
    assert p.shape == (50, 2) and p.dtype == np.float32 and np.all((p >= 0) & (p <= 1))


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    src = default_model_path()
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    shutil.copy(src.with_suffix(".json"), dst.with_suffix(".json"))
    raw = bytearray(dst.read_bytes())
    raw[-100] ^= 0xFF
    dst.write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="sha256"):
        SpeechModel(dst)


def test_cli_reports_bad_weights_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "w.npz"
    bad.write_bytes(b"not a zip")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"vad: {{type: model, weights: {bad}}}\n")
    wav = write_wav(tmp_path / "x.wav", np.zeros((16000, 2), np.float32))
    res = run_cli("analyze", str(wav), "--config", str(cfg))
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
