"""The shipped emotion model: exports agree with the reference, backends agree, the card guards the files, its
calibration is what the card says, and it still recognises emotion on real held-out speakers through a telephone
line."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_agent.emotion_backends import BackendError, make_backend
from edge_agent.emotion_features import N_INPUTS, WINDOW_FRAMES, clip_windows, log_mel, model_input, speech_mask
from edge_agent.emotion_model import (
    CLASSES,
    DEFAULT_MODEL,
    EmotionModel,
    EmotionModelError,
    clip_probs,
    shipped_dir,
)
from models.emotion.dataset import Degradation, degrade, ravdess_clips, read_mono16k
from models.emotion.reference import forward, load_weights
from tests.conftest import shared_or_skip

CARD = shipped_dir() / f"{DEFAULT_MODEL}.json"
V1_CARD = shipped_dir() / "emotion-v1.json"  # still shipped: a station may pin it (emotion.card)
HELD_OUT = ("ravdess_01", "ravdess_12")  # test speakers of the training run: never trained or tuned on
FLOOR_UAR = 0.45  # chance is 0.25; the card gives the full test figures


@pytest.fixture(scope="module")
def card() -> dict:  # type: ignore[type-arg]
    return json.loads(CARD.read_text())


@pytest.fixture(scope="module")
def held_out() -> list[tuple[np.ndarray, int]]:
    """Real clips of two held-out actors through the telephone line (8 kHz, band, G.711, level), fixed seed."""
    root = shared_or_skip() / "data" / "ravdess"
    rng = np.random.default_rng(7)
    out = []
    for c in ravdess_clips(root, aux=False):
        if c.speaker in HELD_OUT:
            clean = read_mono16k(c.path)
            x = degrade(clean, speech_mask(clean), {}, rng, Degradation(line_share=1.0))
            out.append((x, CLASSES.index(c.label)))
    return out


@pytest.fixture(scope="module")
def windows(held_out: list[tuple[np.ndarray, int]]) -> np.ndarray:
    """Model inputs from real speech (not random numbers: quantisation is calibrated for real inputs)."""
    return np.concatenate([model_input(clip_windows(log_mel(x, speech_mask(x)))) for x, _ in held_out[::3]])


def path_of(card: dict, key: str) -> Path:  # type: ignore[type-arg]
    return CARD.parent / card["files"][key]["file"]


@pytest.mark.parametrize("card_path", [CARD, V1_CARD], ids=lambda p: p.stem)
def test_card_describes_the_files(card_path: Path) -> None:
    card = json.loads(card_path.read_text())
    assert card["classes"] == list(CLASSES)
    assert card["input"]["window_frames"] == WINDOW_FRAMES and card["input"]["sample_rate"] == 16000
    assert {"weights", "onnx", "onnx_int8"} <= set(card["files"])
    for entry in card["files"].values():
        p = card_path.parent / entry["file"]
        raw = p.read_bytes()
        assert len(raw) == entry["bytes"]
        assert hashlib.sha256(raw).hexdigest() == entry["sha256"], p.name
    assert (card_path.parent / card["files"]["onnx"]["file"]).stat().st_size <= 2_000_000
    assert (card_path.parent / card["files"]["onnx_int8"]["file"]).stat().st_size <= 500_000
    assert "CC BY-NC-SA" in card["licence"]


def test_the_default_card_is_calibrated_on_validation_speakers(card: dict) -> None:  # type: ignore[type-arg]
    cal, training = card["calibration"], card["training"]
    assert 0.05 < cal["window_temperature"] < 20 and 0.05 < cal["clip_temperature"] < 20
    assert 0.25 <= cal["clip_min_confidence"] < 1 and 0.25 <= cal["window_min_confidence"] < 1
    assert cal["validation"]["abstained"] <= 0.30
    evaluation = card["evaluation"]
    tested = set(evaluation.get("speakers", []))  # one test set (emotion-v1), or one per corpus
    tested |= {s for ev in evaluation.values() if isinstance(ev, dict) for s in ev.get("speakers", [])}
    assert tested and not tested & set(training["speakers"]) and not tested & set(training["validation_speakers"])
    assert set(cal["fitted_on_speakers"]) == set(training["validation_speakers"])
    assert "research and evaluation" in card["licence"] and "--manifest" in card["licence"]


def test_calibration_is_applied_as_the_card_says(card: dict, windows: np.ndarray) -> None:  # type: ignore[type-arg]
    """The station's probabilities are the backend's softmax re-tempered by the card's temperature."""
    model = EmotionModel(CARD, "onnxruntime", "fp32")
    raw = make_backend("onnxruntime", path_of(card, "onnx")).predict(windows)
    t = card["calibration"]["window_temperature"]
    z = np.log(np.clip(raw, 1e-7, 1.0)) / t
    expected = np.exp(z - z.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    got = model.predict(windows)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_array_equal(got.argmax(1), raw.argmax(1))  # the most likely class never changes
    assert abs(t - 1.0) > 0.05 and np.abs(got.max(1) - raw.max(1)).mean() > 0.01  # and it does re-temper
    # a clip: its windows' averaged log-probabilities, re-tempered by the clip temperature
    tc = card["calibration"]["clip_temperature"]
    zc = np.log(clip_probs(raw)) / tc
    clip = np.exp(zc - zc.max()) / np.exp(zc - zc.max()).sum()
    np.testing.assert_allclose(model.clip(raw), clip, atol=1e-5)
    assert model.confident(clip) == (clip.max() >= card["calibration"]["clip_min_confidence"])


def test_exports_match_the_reference_forward_pass(card: dict, windows: np.ndarray) -> None:  # type: ignore[type-arg]
    """numpy forward pass from the shipped weights vs the ONNX fp32, TFLite and ONNX int8 files."""
    assert windows.shape[1:] == (WINDOW_FRAMES, N_INPUTS) and len(windows) >= 20
    ref = forward(load_weights(path_of(card, "weights")), windows)
    fp32 = make_backend("onnxruntime", path_of(card, "onnx")).predict(windows)
    np.testing.assert_allclose(fp32, ref, atol=1e-5)
    if "tflite" in card["files"]:
        tfl = make_backend("tflite", path_of(card, "tflite")).predict(windows)
        np.testing.assert_allclose(tfl, ref, atol=1e-5)
    int8 = make_backend("onnxruntime", path_of(card, "onnx_int8")).predict(windows)
    # int8 moves probabilities (its figures are in the card); it must still mostly agree
    assert np.abs(int8 - ref).mean() < 0.05
    assert np.mean(int8.argmax(1) == ref.argmax(1)) >= 0.85


@pytest.mark.parametrize("card_path", [CARD, V1_CARD], ids=lambda p: p.stem)
def test_backends_give_the_same_class(card_path: Path, windows: np.ndarray) -> None:
    if "tflite" not in json.loads(card_path.read_text())["files"]:
        pytest.skip(f"{card_path.name}: no TFLite export (TensorFlow was not installable where it was trained)")
    onnx = EmotionModel(card_path, "onnxruntime", "fp32")
    tflite = EmotionModel(card_path, "tflite", "fp32")
    a, b = onnx.predict(windows), tflite.predict(windows)
    np.testing.assert_array_equal(a.argmax(1), b.argmax(1))
    np.testing.assert_allclose(a.sum(1), 1.0, atol=1e-5)
    assert onnx.card.sha256 != tflite.card.sha256 and onnx.card.name == tflite.card.name


@pytest.mark.parametrize("card_path", [CARD, V1_CARD], ids=lambda p: p.stem)
def test_a_model_file_not_matching_its_card_is_refused(tmp_path: Path, card_path: Path) -> None:
    card = json.loads(card_path.read_text())
    for key in ("weights", "onnx", "onnx_int8"):
        shutil.copy(card_path.parent / card["files"][key]["file"], tmp_path)
    shutil.copy(card_path, tmp_path)
    EmotionModel(tmp_path / card_path.name, "onnxruntime", "int8")  # the copy loads
    bad = tmp_path / card["files"]["onnx_int8"]["file"]
    raw = bytearray(bad.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad.write_bytes(bytes(raw))
    with pytest.raises(EmotionModelError, match="sha256"):
        EmotionModel(tmp_path / card_path.name, "onnxruntime", "int8")
    if "tflite" in card["files"]:
        with pytest.raises(EmotionModelError, match="cannot read"):
            EmotionModel(tmp_path / card_path.name, "tflite", "fp32")  # in the card, but not copied
    with pytest.raises(EmotionModelError, match="no int8 model for backend 'tflite'"):
        EmotionModel(tmp_path / card_path.name, "tflite", "int8")
    (tmp_path / "garbage.onnx").write_bytes(b"not a model")
    with pytest.raises(BackendError):
        make_backend("onnxruntime", tmp_path / "garbage.onnx")


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_floor_accuracy_on_held_out_speakers(held_out: list[tuple[np.ndarray, int]], precision: str) -> None:
    model = EmotionModel(CARD, "onnxruntime", precision)
    y = np.array([k for _, k in held_out])
    pred = np.array([int(np.argmax(model.classify_clip(x))) for x, _ in held_out])
    recall = [float(np.mean(pred[y == k] == k)) for k in range(len(CLASSES))]
    assert len(held_out) == 72
    assert np.mean(recall) >= FLOOR_UAR, dict(zip(CLASSES, recall, strict=True))
