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
    MEMBER,
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


def _join(tmp_path: Path, *members: Path) -> Path:
    from models.vad.ensemble import join

    return join(list(members), "pair", tmp_path / "pair")


def _split(path: Path, out: Path) -> list[Path]:
    """A joined weights file's members as single-MLP files with their own cards (what `join` was given)."""
    card = json.loads(path.with_suffix(".json").read_text())
    out.mkdir(parents=True)
    files = []
    with np.load(path) as z:
        for i, member in enumerate(card["members"]):
            prefix = "" if i == 0 else MEMBER.format(i)
            arrays = {k[len(prefix) :]: z[k] for k in z.files if k.startswith(prefix) and "." not in k[len(prefix) :]}
            dst = out / f"{member['name']}.npz"
            np.savez(dst, **arrays)  # type: ignore[arg-type]
            mcard = {**member, "input": card["input"], "outputs": card["outputs"]}
            mcard["sha256"] = hashlib.sha256(dst.read_bytes()).hexdigest()
            dst.with_suffix(".json").write_text(json.dumps(mcard))
            files.append(dst)
    return files


def test_the_default_weights_give_the_mean_of_their_members(tmp_path: Path) -> None:
    """The shipped ensemble: each member alone is a real trained model, the file gives the mean of their
    probabilities, and joining the members again gives the shipped file byte for byte (its card says how)."""
    shipped = default_model_path()
    a, b = _split(shipped, tmp_path / "members")
    model = SpeechModel(shipped)
    assert model.members == model.card.members == 2 and SpeechModel(a).members == 1
    x = np.random.default_rng(6).standard_normal((400, N_INPUTS)).astype(np.float32)
    pa, pb = SpeechModel(a).predict(x), SpeechModel(b).predict(x)
    got = model.predict(x)
    assert got.shape == (400, 2) and got.dtype == np.float32
    np.testing.assert_allclose(got, (pa + pb) / 2, atol=1e-5)
    assert np.abs(pa - pb).max() > 0.05  # the members disagree, so the mean is not either of them
    again = _join(tmp_path, a, b)
    assert again.read_bytes() == shipped.read_bytes()
    card = json.loads(again.with_suffix(".json").read_text())
    assert [m["name"] for m in card["members"]] == [a.stem, b.stem]
    assert {s["name"] for s in card["training"]["sources"]} >= {"asterisk", "ami", "typing", "generated"}
    assert "commercial" in card["licence"] and "non-commercial" not in card["licence"]


def test_joining_refuses_what_it_cannot_average(tmp_path: Path) -> None:
    from models.vad.ensemble import EnsembleError, main

    a = narrowband_model_path()
    with pytest.raises(EnsembleError, match="at least two"):
        _join(tmp_path, a)
    with pytest.raises(EnsembleError, match="already holds 2"):
        _join(tmp_path / "x", default_model_path(), a)
    # a member whose card says it reads other inputs
    other = tmp_path / "other" / a.name
    other.parent.mkdir()
    shutil.copy(a, other)
    card = json.loads(a.with_suffix(".json").read_text())
    card["input"]["context_pools"] = [[-2, 2]]
    other.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(EnsembleError, match="inputs differ"):
        _join(tmp_path / "y", a, other)
    assert main(["--name", "z", "--out", str(tmp_path / "z"), str(a), str(tmp_path / "missing.npz")]) == 2


def test_an_ensemble_with_a_broken_member_is_refused_in_one_line(tmp_path: Path) -> None:
    """A file whose second MLP has the wrong depth: a clear ModelError, and `analyze` exits 2 without a traceback."""
    with np.load(narrowband_model_path()) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update({f"m1.{k}": v for k, v in arrays.items() if k not in ("w2", "b2")})
    path = tmp_path / "broken.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="differ in depth"):
        SpeechModel(path)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"vad: {{type: model, weights: {path}}}\n")
    wav = write_wav(tmp_path / "x.wav", np.zeros((16000, 2), np.float32))
    res = run_cli("analyze", str(wav), "--config", str(cfg))
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
