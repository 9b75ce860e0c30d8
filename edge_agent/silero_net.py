"""Silero VAD v5's 16 kHz network as numpy: the station's "is this speech at all" opinion, without onnxruntime.

Its LSTM runs through onnxruntime (`silero-vad-v5-16k-lstm.onnx`, the same three weight tensors as one ONNX LSTM
node): stepping it in numpy cost a dozen numpy calls per 32 ms window, two thirds of Silero's time; onnxruntime's
LSTM kernel steps a whole block in one call at about a third of that. The numpy loop stays (`numpy_lstm=True`),
the reference the kernel is tested against.

Why numpy: the network is small (four 3-tap convolutions over 4 STFT frames, one 128-unit LSTM), and
onnxruntime runs each 32 ms window's convolutions as separate matrix products four columns wide, which
made Silero half of the station's analysis time. Here the STFT is one batched rfft and each convolution
is one matrix product over every window of both channels, so a second of stereo audio costs about a
third of what the ONNX run did. Only the LSTM steps one window at a time.

The weights are the silero-vad wheel's `silero_vad_16k_sequence.onnx`, copied unchanged into
`models/shipped/silero-vad-v5-16k.npz` by `python -m models.silero_weights` (MIT, see the card
`silero-vad-v5-16k.json`); `tests/test_silero_net.py` holds the two to the same probabilities on real
speech and noise.
"""

from __future__ import annotations

import io
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import scipy.fft as sfft
from numpy.lib.stride_tricks import sliding_window_view

from edge_agent.model_files import onnx_session, read_carded

if TYPE_CHECKING:
    import onnxruntime

F32 = npt.NDArray[np.float32]

WEIGHTS = "silero-vad-v5-16k"
WINDOW = 576  # one 512-sample chunk and the 64 samples before it
N_FFT, HOP, N_FRAMES = 256, 128, 4
HIDDEN = 128
ONE = np.float32(1.0)  # keeps the LSTM step in float32 (a Python 1.0 reads as float64 to the type checker)
CONVS = (("conv1", 1), ("conv2", 2), ("conv3", 2), ("conv4", 1))  # (weights, stride): kernel 3, padding 1


class SileroWeightsError(Exception):
    """The numpy Silero's weights are missing, corrupt or not what their card says."""


LSTM_ONNX = f"{WEIGHTS}-lstm"


def shipped_weights_path() -> Path:
    return Path(str(resources.files("models.shipped").joinpath(f"{WEIGHTS}.npz")))


def shipped_lstm_path() -> Path:
    return Path(str(resources.files("models.shipped").joinpath(f"{LSTM_ONNX}.onnx")))


class SileroNet:
    """`run(windows, state)`: speech probability per 576-sample window for a batch of independent streams."""

    def __init__(self, path: Path | None = None, lstm: Path | None = None, numpy_lstm: bool = False) -> None:
        """`path`: the weights (.npz); `lstm`: the ONNX of their LSTM (default: beside shipped weights, required with
        them); `numpy_lstm`: step the LSTM in numpy instead (the reference; slower)."""
        shipped = path is None
        path = path or shipped_weights_path()
        raw, digest, _ = read_carded(path, SileroWeightsError, "Silero weights")
        try:
            with np.load(io.BytesIO(raw)) as z:
                w = {k: z[k].astype(np.float32) for k in z.files}
            self._convs = [(_taps_matrix(w[f"{name}.weight"]), w[f"{name}.bias"], stride) for name, stride in CONVS]
            # ONNX's LSTM layout, gates in the order input, output, forget, cell
            self._w_in = np.ascontiguousarray(w["lstm.W"][0].T)
            # kept (4*HIDDEN, HIDDEN) for one matrix-vector product per stream and step: OpenBLAS packs the whole
            # matrix on every matrix-matrix product, which for two state rows cost twice as much as two of these
            self._w_rec = np.ascontiguousarray(w["lstm.R"][0])
            self._b = (w["lstm.B"][0, : 4 * HIDDEN] + w["lstm.B"][0, 4 * HIDDEN :]).astype(np.float32)
            self._w_out = w["output.weight"].reshape(HIDDEN, 1)
            self._b_out = w["output.bias"].reshape(1)
        except (OSError, ValueError, KeyError) as exc:
            raise SileroWeightsError(f"{path}: not a Silero weights file ({exc})") from None
        if self._convs[0][0].shape != (3 * (N_FFT // 2 + 1), 128) or self._w_rec.shape != (4 * HIDDEN, HIDDEN):
            raise SileroWeightsError(f"{path}: weights of the wrong shape for Silero VAD v5 at 16 kHz")
        # the STFT's periodic Hann window, as the ONNX's Fourier basis carries it
        self._window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)
        self._lstm: onnxruntime.InferenceSession | None = None
        if not numpy_lstm and (lstm is not None or shipped):
            self._lstm = _lstm_session(lstm or shipped_lstm_path(), digest)

    @staticmethod
    def initial_state(streams: int) -> tuple[F32, F32]:
        return np.zeros((streams, HIDDEN), np.float32), np.zeros((streams, HIDDEN), np.float32)

    def run(self, windows: F32, h: F32, c: F32) -> tuple[F32, F32, F32]:
        """windows (n, streams, WINDOW), LSTM state h, c (streams, HIDDEN) -> (probs (n, streams), h, c)."""
        n, streams, _ = windows.shape
        if n == 0:
            return np.zeros((0, streams), np.float32), h, c
        # the ONNX pads each window by reflection before its STFT; only the right side reaches the 4 frames used
        padded = np.concatenate([windows, windows[:, :, -2 : -HOP // 2 - 2 : -1]], axis=2)
        frames = sliding_window_view(padded, N_FFT, axis=2)[:, :, ::HOP][:, :, :N_FRAMES]
        spec = sfft.rfft(frames * self._window, axis=3)
        x = np.sqrt(spec.real**2 + spec.imag**2).reshape(n * streams, N_FRAMES, -1)
        for w, b, stride in self._convs:
            x = _conv(x, w, b, stride)
        if self._lstm is not None:
            seq, h_n, c_n = self._lstm.run(None, {"X": x.reshape(n, streams, HIDDEN), "h0": h[None], "c0": c[None]})
            return self._output(np.asarray(seq, np.float32)[:, 0]), np.asarray(h_n[0]), np.asarray(c_n[0])
        # the input half of every LSTM step at once; only the recurrent half waits for the previous step
        gates_in = (x.reshape(n, streams, HIDDEN) @ self._w_in + self._b).astype(np.float32)
        hs = np.empty((n, streams, HIDDEN), np.float32)
        g = np.empty((streams, 4 * HIDDEN), np.float32)
        for t in range(n):
            for k in range(streams):
                np.dot(self._w_rec, h[k], out=g[k])
            g += gates_in[t]
            s = ONE / (ONE + np.exp(-g))
            c = s[:, 2 * HIDDEN : 3 * HIDDEN] * c + s[:, :HIDDEN] * np.tanh(g[:, 3 * HIDDEN :])  # f*c + i*tanh(g_c)
            h = s[:, HIDDEN : 2 * HIDDEN] * np.tanh(c)  # o*tanh(c)
            hs[t] = h
        return self._output(hs), h, c

    def _output(self, hs: F32) -> F32:
        """LSTM outputs (n, streams, HIDDEN) -> speech probability (n, streams)."""
        logits = np.maximum(hs, 0.0) @ self._w_out + self._b_out
        probs: F32 = (1.0 / (1.0 + np.exp(-logits[:, :, 0]))).astype(np.float32)
        return probs


def _lstm_session(path: Path, weights_sha256: str) -> onnxruntime.InferenceSession:
    """onnxruntime on the LSTM's ONNX, refused unless its card says it was built from these very weights."""
    raw, _, card = read_carded(path, SileroWeightsError, "Silero LSTM")
    if card.get("weights_sha256") != weights_sha256:
        raise SileroWeightsError(f"{path}: not built from these Silero weights (python -m models.silero_weights)")
    session: onnxruntime.InferenceSession = onnx_session(path, SileroWeightsError, "not a usable LSTM", raw)
    return session


def _taps_matrix(w: F32) -> F32:
    """(out, in, 3) -> (3*in, out), rows ordered tap by tap to match `_conv`'s column order."""
    return np.ascontiguousarray(w.transpose(2, 1, 0).reshape(-1, w.shape[0]))


def _conv(x: F32, w: F32, b: F32, stride: int) -> F32:
    """x (batch, length, in) -> ReLU(conv1d(kernel 3, padding 1, stride)) as (batch, length', out)."""
    batch, length, width = x.shape
    padded = np.zeros((batch, length + 2, width), np.float32)
    padded[:, 1:-1] = x
    taps = np.concatenate([padded[:, t : t + length : stride] for t in range(3)], axis=2)
    y = taps.reshape(-1, 3 * width) @ w + b
    np.maximum(y, 0.0, out=y)
    return y.reshape(batch, -1, w.shape[1])
