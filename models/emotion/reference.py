"""The emotion network's architecture and a numpy forward pass from its weights file (.npz).

This is the reference every export is checked against: the trained PyTorch module (at export time), the ONNX
fp32/int8 graphs and the TFLite graph (in the tests, from the shipped weights). numpy only, no torch.

Input (n, T, N_INPUTS) -> conv(k5) ReLU maxpool2 -> conv(k5) ReLU maxpool2 -> conv(k3) ReLU -> [mean, max] over
time -> dense ReLU -> dense -> softmax. Batch norm is folded into the convolutions before export.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

F32 = npt.NDArray[np.float32]

CONVS: tuple[tuple[int, int], ...] = ((48, 5), (64, 5), (96, 3))
"""(output channels, kernel) per convolution."""
POOLED = 2
"""The first POOLED convolutions are followed by 2x max-pooling in time."""
HIDDEN = 64


def load_weights(path: Path) -> dict[str, F32]:
    with np.load(path) as z:
        return {k: z[k].astype(np.float32) for k in z.files}


def forward(w: dict[str, F32], x: F32) -> F32:
    """x: (n, T, bands) model input -> (n, classes) probabilities."""
    h = x.astype(np.float32)
    for i in range(len(CONVS)):
        k = w[f"conv{i}_w"]  # (out, in, kernel), as torch stores it
        pad = k.shape[2] // 2
        hp = np.pad(h, ((0, 0), (pad, pad), (0, 0)))
        cols = sliding_window_view(hp, k.shape[2], axis=1)  # (n, T, in, kernel)
        h = np.einsum("ntck,ock->nto", cols, k, optimize=True) + w[f"conv{i}_b"]
        np.maximum(h, 0.0, out=h)
        if i < POOLED:
            t = h.shape[1] // 2
            h = h[:, : 2 * t].reshape(h.shape[0], t, 2, h.shape[2]).max(axis=2)
    z = np.concatenate([h.mean(axis=1), h.max(axis=1)], axis=1)
    z = np.maximum(z @ w["dense0_w"] + w["dense0_b"], 0.0)
    logits = z @ w["dense1_w"] + w["dense1_b"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True), np.float32)
