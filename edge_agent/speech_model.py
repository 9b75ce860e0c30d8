"""The two-channel speech model: per-frame probability that each party is speaking.

A small MLP over `CallFeatures` pooled over a context of -0.4 s to +0.2 s. It sees both channels at
once, so it learns to tell a party's own voice from the other side's leakage and from room noise.
Weights ship in `models/shipped/` as .npz with a JSON card (input spec, sha256); inference is numpy.

One weights file may hold several MLPs trained apart (an ensemble, `models/vad/ensemble.py`): the model's
probability is the mean of theirs. Retrains of one recipe disagree most on noise none of them saw, and their
mean holds up better there than any one of them; a file stays the unit that updates, cards and health name.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_agent.features import N_FEATURES
from edge_agent.model_files import read_carded

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]

# (first, last) frame offsets of each pooled window; the centre frame also enters alone
POOLS: tuple[tuple[int, int], ...] = ((-40, -21), (-20, -9), (-8, -3), (-2, 2), (3, 8), (9, 20))
PAST = -min(a for a, _ in POOLS)
LOOKAHEAD = max(b for _, b in POOLS)
N_SILERO = 2
"""Silero VAD's probability for each channel (edge_agent/silero_stream.py), appended to CallFeatures."""
N_MODEL_FEATURES = N_FEATURES + N_SILERO
N_INPUTS = N_MODEL_FEATURES * (len(POOLS) + 1)
DEFAULT_MODEL = "speech-mlp-v4"
NARROWBAND_MODEL = "speech-mlp-v3-narrowband"
"""Trained with half the lines and a quarter of the mics through 8 kHz: for sources captured at 8 kHz, where the
default weights, which always saw the line's codec noise above 4 kHz, take an empty upper band for silence."""


class ContextStack:
    """Turns a stream of per-frame features into pooled-context model inputs, LOOKAHEAD frames late.

    The first frames see copies of frame 0 as their past; `finish` pads the end with copies of
    the last frame, so a whole file yields exactly one input row per frame.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._buf = np.zeros((0, N_MODEL_FEATURES), np.float32)
        self._started = False

    def process(self, feats: F32) -> F32:
        if len(feats) == 0:
            return np.zeros((0, N_INPUTS), np.float32)
        if not self._started:
            self._buf = np.repeat(feats[:1], PAST, axis=0)
            self._started = True
        self._buf = np.vstack([self._buf, feats])
        return self._emit()

    def finish(self) -> F32:
        if not self._started:
            return np.zeros((0, N_INPUTS), np.float32)
        self._buf = np.vstack([self._buf, np.repeat(self._buf[-1:], LOOKAHEAD, axis=0)])
        out = self._emit()
        self.reset()
        return out

    def _emit(self) -> F32:
        # rows PAST .. len-LOOKAHEAD-1 of the buffer have their whole context
        n = len(self._buf) - PAST - LOOKAHEAD
        if n <= 0:
            return np.zeros((0, N_INPUTS), np.float32)
        cs = np.vstack([np.zeros((1, N_MODEL_FEATURES), np.float64), np.cumsum(self._buf, axis=0, dtype=np.float64)])
        centre = np.arange(PAST, PAST + n)
        parts = [self._buf[centre]]
        for a, b in POOLS:
            parts.append(((cs[centre + b + 1] - cs[centre + a]) / (b - a + 1)).astype(np.float32))
        self._buf = self._buf[n:]
        return np.concatenate(parts, axis=1)


@dataclass(frozen=True)
class ModelCard:
    name: str
    sha256: str
    """Of the weights file."""
    inputs: int
    outputs: tuple[str, ...]
    members: int = 1
    """MLPs in the file, whose probabilities are averaged."""


class ModelError(Exception):
    """Weights that cannot be used: missing, corrupt, or not matching their card."""


MEMBER = "m{}."
"""Key prefix of the second and later MLPs in a weights file (the first has none, so one-MLP files read as before)."""

Layers = list[tuple[F32, F32]]


class SpeechModel:
    """Numpy MLP inference: inputs (n, N_INPUTS) -> probabilities (n, 2), agent then customer.

    The members of an ensemble run as one wider MLP: their first layers side by side, the later ones block
    diagonal, so a second member costs one wider matrix product per layer, not a second pass.
    """

    def __init__(self, weights: Path | None = None) -> None:
        path = weights or default_model_path()
        raw, digest, card = read_carded(path, ModelError, "model weights")
        try:
            with np.load(io.BytesIO(raw)) as z:
                members = [_member(z, "")]
                while f"{MEMBER.format(len(members))}w0" in z.files:
                    members.append(_member(z, MEMBER.format(len(members))))
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"{path}: not a speech-model weights file ({exc})") from None
        for m in members:
            if m[0][0].shape[0] != N_INPUTS:
                raise ModelError(f"{path}: model expects {m[0][0].shape[0]} inputs, features give {N_INPUTS}")
            if len(m) != len(members[0]) or m[-1][0].shape[1] != 2:
                raise ModelError(f"{path}: its MLPs differ in depth or do not give two outputs")
        self.members = len(members)
        self.layers = _side_by_side(members)
        self.card = ModelCard(
            card.get("name", path.stem),
            digest,
            N_INPUTS,
            tuple(card.get("outputs", ("agent", "customer"))),
            self.members,
        )
        # warm-up: the first matmul allocates; do it at load, not on the first live frame
        self.predict(np.zeros((4, N_INPUTS), np.float32))
        log.debug("speech model %s loaded (%d MLPs, sha256 %s)", self.card.name, self.members, digest[:12])

    def predict(self, x: F32) -> F32:
        h = x
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                np.maximum(h, 0.0, out=h)
        out = 1.0 / (1.0 + np.exp(-np.clip(h, -30.0, 30.0)))
        if self.members > 1:
            out = out.reshape(len(out), self.members, 2).mean(axis=1)
        return out.astype(np.float32, copy=False)


def _member(z: np.lib.npyio.NpzFile, prefix: str) -> Layers:
    """One MLP's layers, with its input normalisation folded into the first: one matmul instead of two passes."""
    n = sum(1 for k in z.files if k.startswith(f"{prefix}w") and k[len(prefix) + 1 :].isdigit())
    layers = [(z[f"{prefix}w{i}"].astype(np.float32), z[f"{prefix}b{i}"].astype(np.float32)) for i in range(n)]
    mean, scale = z[f"{prefix}mean"].astype(np.float32), z[f"{prefix}scale"].astype(np.float32)
    w0, b0 = layers[0]
    layers[0] = ((w0 * scale[:, None]).astype(np.float32), (b0 - (mean * scale) @ w0).astype(np.float32))
    return layers


def _side_by_side(members: list[Layers]) -> Layers:
    """Members' MLPs as one: first layers side by side on the shared input, later layers block diagonal."""
    if len(members) == 1:
        return members[0]
    fused: Layers = [(np.hstack([m[0][0] for m in members]), np.concatenate([m[0][1] for m in members]))]
    # block diagonal by hand: scipy.linalg.block_diag would add its module's 6 MB of RSS to the station for it
    for i in range(1, len(members[0])):
        ws = [m[i][0] for m in members]
        w = np.zeros((sum(x.shape[0] for x in ws), sum(x.shape[1] for x in ws)), np.float32)
        r = c = 0
        for x in ws:
            w[r : r + x.shape[0], c : c + x.shape[1]] = x
            r, c = r + x.shape[0], c + x.shape[1]
        fused.append((w, np.concatenate([m[i][1] for m in members])))
    return fused


def shipped_model_path(name: str) -> Path:
    return Path(str(resources.files("models.shipped").joinpath(f"{name}.npz")))


def default_model_path() -> Path:
    return shipped_model_path(DEFAULT_MODEL)


def narrowband_model_path() -> Path:
    return shipped_model_path(NARROWBAND_MODEL)
