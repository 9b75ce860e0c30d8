"""Silero VAD run as numpy (edge_agent/silero_net.py) against the silero-vad wheel's own ONNX through onnxruntime:
the same probabilities on real speech and real noise, in any block size, and a clear error for damaged weights."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_agent.audio import FRAME
from edge_agent.silero_net import SileroNet, SileroWeightsError, shipped_lstm_path, shipped_weights_path
from edge_agent.silero_stream import SEQUENCE_ONNX, SileroError, SileroStream, silero_data_dir
from tests.test_silero_stream import NOISES, SPEECH, load16k, silero_frames

REGENERATE = "python -m models.silero_weights"


@pytest.fixture(scope="module")
def speech_in_noise() -> np.ndarray:
    """Three RAVDESS sentences at three levels over a different real noise each; the line carries speech too."""
    parts = [load16k(p) for p in SPEECH]
    speech = np.concatenate([x * g for x, g in zip(parts, (1.0, 0.1, 0.01), strict=True)])
    noise = np.concatenate([load16k(n)[: len(speech) // 3 + FRAME] for n in NOISES])[: len(speech)]
    line = noise * 0.1 + np.roll(np.concatenate(parts), 40000) * 0.3  # the line carries speech too, at other times
    return np.stack([speech + noise * 0.02, line], axis=1).astype(np.float32)


def test_numpy_silero_gives_the_wheels_onnx_probabilities(speech_in_noise: np.ndarray) -> None:
    onnx = silero_data_dir() / SEQUENCE_ONNX
    ref = silero_frames(SileroStream(str(onnx)), speech_in_noise)
    stream = SileroStream()
    whole = silero_frames(stream, speech_in_noise)
    pieces = silero_frames(stream, speech_in_noise, itertools.cycle([FRAME * k for k in (1, 37, 3, 100, 51)]))
    assert ref.shape == whole.shape == (len(speech_in_noise) // FRAME, 2)
    # the probabilities span the range on both channels, so agreement is not agreement on a constant
    assert ref[:, 0].max() > 0.9 and ref[:, 0].min() < 0.05 and np.ptp(ref[:, 1]) > 0.5
    card = json.loads(shipped_weights_path().with_suffix(".json").read_text())
    hint = f"the shipped weights came from {card['source']}; if silero-vad changed, run {REGENERATE}"
    for got in (whole, pieces):
        assert np.abs(got - ref).max() < 1e-4, hint


def test_state_carries_across_blocks_and_streams_stay_independent() -> None:
    net = SileroNet()
    rng = np.random.default_rng(3)
    speech = load16k(SPEECH[0])[: 512 * 40]
    windows = np.stack([np.concatenate([np.zeros(64, np.float32), speech])[i * 512 : i * 512 + 576] for i in range(40)])
    noise = (rng.standard_normal(windows.shape) * 0.01).astype(np.float32)
    both = np.stack([windows, noise], axis=1)
    whole, h, _ = net.run(both, *net.initial_state(2))
    a, h1, c1 = net.run(both[:13], *net.initial_state(2))
    b, h2, _ = net.run(both[13:], h1, c1)
    np.testing.assert_allclose(np.vstack([a, b]), whole, atol=1e-6)
    # float32 noise only: the batched matrix products round differently for 13, 27 and 40 windows
    np.testing.assert_allclose(h2, h, atol=1e-5)
    # the speech stream alone gives the same column: nothing leaks between the batched streams
    alone, _, _ = net.run(windows[:, None], *net.initial_state(1))
    np.testing.assert_allclose(alone[:, 0], whole[:, 0], atol=1e-6)
    # and the state matters: the same windows from a fresh state differ from their continuation
    fresh, _, _ = net.run(both[13:], *net.initial_state(2))
    assert np.abs(fresh - b).max() > 1e-3


def test_damaged_weights_are_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "silero.npz"
    shutil.copy(shipped_weights_path(), path)
    shutil.copy(shipped_weights_path().with_suffix(".json"), path.with_suffix(".json"))
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(SileroWeightsError, match=rf"{path}: sha256 \w+ does not match its card"):
        SileroNet(path)
    path.with_suffix(".json").unlink()
    np.savez(path, conv1=np.zeros(3))
    with pytest.raises(SileroWeightsError, match=rf"{path}: not a Silero weights file"):
        SileroNet(path)
    with pytest.raises(SileroWeightsError, match="cannot read"):
        SileroNet(tmp_path / "missing.npz")


def test_the_mit_notice_ships_beside_the_weights() -> None:
    licence = shipped_weights_path().parent / "SILERO_LICENSE"
    text = licence.read_text()
    assert "MIT License" in text and "Silero Team" in text
    card = json.loads(shipped_weights_path().with_suffix(".json").read_text())
    assert card["source"]["file"] == SEQUENCE_ONNX and "MIT" in card["licence"]


def test_a_silero_error_wraps_unusable_shipped_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("edge_agent.silero_net.shipped_weights_path", lambda: tmp_path / "gone.npz")
    with pytest.raises(SileroError, match=r"gone\.npz: cannot read"):
        SileroStream()


def test_the_lstm_kernel_steps_as_the_numpy_loop_does(speech_in_noise: np.ndarray) -> None:
    """The shipped LSTM ONNX (run by onnxruntime) against the numpy loop, on real speech in real noise: the same
    probabilities and the same state, block after block."""
    n = len(speech_in_noise) // 512
    audio = np.concatenate([np.zeros((64, 2), np.float32), speech_in_noise[: n * 512]])
    windows = np.stack([audio[i * 512 : i * 512 + 576].T for i in range(n)])
    kernel, loop = SileroNet(), SileroNet(numpy_lstm=True)
    state_k, state_l = kernel.initial_state(2), loop.initial_state(2)
    for lo, hi in ((0, 7), (7, 40), (40, n)):
        pk, *state_k = kernel.run(windows[lo:hi], *state_k)
        pl, *state_l = loop.run(windows[lo:hi], *state_l)
        np.testing.assert_allclose(pk, pl, atol=1e-5)
        for a, b in zip(state_k, state_l, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)
    assert pk.max() > 0.9 and pk.min() < 0.1  # real speech and real gaps went through


def test_an_lstm_onnx_not_built_from_these_weights_is_refused(tmp_path: Path) -> None:
    lstm = tmp_path / shipped_lstm_path().name
    shutil.copy(shipped_lstm_path(), lstm)
    card = json.loads(shipped_lstm_path().with_suffix(".json").read_text())
    lstm.with_suffix(".json").write_text(json.dumps({**card, "weights_sha256": "0" * 64}))
    with pytest.raises(SileroWeightsError, match="not built from these Silero weights"):
        SileroNet(lstm=lstm)
    lstm.with_suffix(".json").write_text(json.dumps(card))
    SileroNet(lstm=lstm)  # the intact copy loads
    raw = bytearray(lstm.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    lstm.write_bytes(bytes(raw))
    with pytest.raises(SileroWeightsError, match="does not match its card"):
        SileroNet(lstm=lstm)
    lstm.with_suffix(".json").unlink()  # no card: nothing vouches for the file
    with pytest.raises(SileroWeightsError, match="not built from these"):
        SileroNet(lstm=lstm)


def test_the_shipped_lstm_onnx_is_rebuilt_from_the_wheel_byte_for_byte() -> None:
    pytest.importorskip("onnx", reason="building the LSTM's ONNX needs the train extra's onnx package")
    from models.silero_weights import extract, lstm_onnx

    assert lstm_onnx(extract(silero_data_dir() / SEQUENCE_ONNX)) == shipped_lstm_path().read_bytes()
