"""The emotion network's architecture and a numpy forward pass from its weights file (.npz).

This is the reference every export is checked against: the trained PyTorch module (at export time), the ONNX
fp32/int8 graphs and the TFLite graph (in the tests, from the shipped weights). numpy only, no torch.

A weights file holds one or two members, trained apart on the same windows; with two, their log-probabilities
are averaged. The shipped weights are the temporal member alone:
- "temporal" (keys conv*, dense*): input (n, T, N_INPUTS) -> conv(k5) ReLU maxpool2 -> conv(k5) ReLU maxpool2 ->
  conv(k3) ReLU -> [mean, max] over time -> dense ReLU -> dense.
- "spectral" (keys spec_*): 2-D convs over (band, time) of the log-mel, so a formant shifted by another speaker's
  vocal tract is a shifted pattern rather than other input channels: conv3x3 ReLU maxpool(2 band, 2 time) ->
  conv3x3 ReLU maxpool(4 band) -> the 4 coarse bands' channels and the (time-halved) pitch channels ->
  conv(k5) ReLU maxpool2 -> conv(k3) ReLU -> [mean, max] -> dense ReLU -> dense.
Either member alone is a valid weights file (training validates each on its own). Batch norm is folded into the
convolutions before export. Whether the average is worth its cost: models/shipped/EMOTION_MODEL_CARD.md (not
shipped: its cross-validation gain did not hold across training seeds).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from edge_agent.emotion_features import N_BANDS

F32 = npt.NDArray[np.float32]

CONVS: tuple[tuple[int, int], ...] = ((48, 5), (64, 5), (96, 3))
"""(output channels, kernel) per convolution."""
POOLED = 2
"""The first POOLED convolutions are followed by 2x max-pooling in time."""
HIDDEN = 64
SPEC_CONVS: tuple[int, ...] = (16, 32)
"""Output channels of the spectral member's two 3x3 convolutions over (band, time)."""
SPEC_BAND_POOL = (2, 4)
"""Band max-pooling after each: 32 bands -> 16 -> 4 coarse bands."""
SPEC_TIME_CONVS: tuple[tuple[int, int], ...] = ((64, 5), (96, 3))
"""The spectral member's convolutions over time after the bands are folded into channels."""
SPEC_POOLED = 1
"""... of which the first SPEC_POOLED are followed by 2x max-pooling in time."""


def load_weights(path: Path) -> dict[str, F32]:
    with np.load(path) as z:
        return {k: z[k].astype(np.float32) for k in z.files}


def members(w: dict[str, F32]) -> list[str]:
    """The key prefixes of the members a weights dict holds: "" (temporal), "spec_" (spectral)."""
    return [p for p in ("", "spec_") if f"{p}dense1_w" in w]


def forward(w: dict[str, F32], x: F32) -> F32:
    """x: (n, T, N_INPUTS) model input -> (n, classes) probabilities: the members' mean log-probability."""
    x = x.astype(np.float32)
    logp = [_log_softmax(_spectral(w, x) if p else _temporal(w, x)) for p in members(w)]
    if not logp:
        raise ValueError("weights hold no emotion network (no dense1_w or spec_dense1_w)")
    m = np.mean(logp, axis=0)
    e = np.exp(m - m.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True), np.float32)


def _log_softmax(logits: F32) -> F32:
    s = logits - logits.max(axis=1, keepdims=True)
    return np.asarray(s - np.log(np.exp(s).sum(axis=1, keepdims=True)), np.float32)


def _conv_time(h: F32, k: F32, b: F32) -> F32:
    """'same' 1-D convolution over time, ReLU. h (n, T, in), k (out, in, kernel) as torch stores it."""
    pad = k.shape[2] // 2
    cols = sliding_window_view(np.pad(h, ((0, 0), (pad, pad), (0, 0))), k.shape[2], axis=1)  # (n, T, in, kernel)
    out = np.einsum("ntck,ock->nto", cols, k, optimize=True) + b
    return np.asarray(np.maximum(out, 0.0), np.float32)


def _pool_time(h: F32) -> F32:
    t = h.shape[1] // 2
    return np.asarray(h[:, : 2 * t].reshape(h.shape[0], t, 2, h.shape[2]).max(axis=2), np.float32)


def _head(w: dict[str, F32], p: str, h: F32) -> F32:
    z = np.concatenate([h.mean(axis=1), h.max(axis=1)], axis=1)
    z = np.maximum(z @ w[f"{p}dense0_w"] + w[f"{p}dense0_b"], 0.0)
    return np.asarray(z @ w[f"{p}dense1_w"] + w[f"{p}dense1_b"], np.float32)


def _time_stack(w: dict[str, F32], p: str, h: F32, n: int, pooled: int) -> F32:
    """`n` convolutions over time (keys {p}conv{i}), the first `pooled` followed by 2x max-pooling."""
    for i in range(n):
        h = _conv_time(h, w[f"{p}conv{i}_w"], w[f"{p}conv{i}_b"])
        if i < pooled:
            h = _pool_time(h)
    return h


def _temporal(w: dict[str, F32], x: F32) -> F32:
    return _head(w, "", _time_stack(w, "", x, len(CONVS), POOLED))


def _spectral(w: dict[str, F32], x: F32) -> F32:
    n, t = x.shape[:2]
    h = x[..., :N_BANDS, None]  # (n, T, band, 1): channels last
    for i, band_pool in enumerate(SPEC_BAND_POOL):
        k = w[f"spec_conv2d{i}_w"]  # (out, in, band, time), as torch stores it
        cols = sliding_window_view(np.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0))), (3, 3), axis=(1, 2))
        h = np.maximum(np.einsum("ntfcij,ocji->ntfo", cols, k, optimize=True) + w[f"spec_conv2d{i}_b"], 0.0)
        tp = 2 if i == 0 else 1
        nt, nf = h.shape[1] // tp, h.shape[2] // band_pool
        h = h[:, : nt * tp, : nf * band_pool].reshape(n, nt, tp, nf, band_pool, -1).max(axis=(2, 4))
    # channels in torch's order: channel-major, then band
    h = h.transpose(0, 1, 3, 2).reshape(n, h.shape[1], -1)
    pitch = x[:, : 2 * (t // 2), N_BANDS:].reshape(n, t // 2, 2, -1).mean(axis=2)
    h = np.concatenate([h, pitch], axis=2)
    return _head(w, "spec_", _time_stack(w, "spec_", h, len(SPEC_TIME_CONVS), SPEC_POOLED))
