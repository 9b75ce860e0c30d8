"""The shipped speech-emotion model: its card (labels, input spec, per-file sha256), a backend, clip scoring.

The card `models/shipped/emotion-v1.json` names every export of the same weights (ONNX fp32, ONNX int8, TFLite)
with its sha256; a file whose hash differs from the card is refused. The model is warmed up at load so the
first live window does not pay for allocations.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from edge_agent.emotion_backends import BackendError, EmotionBackend, make_backend
from edge_agent.emotion_features import (
    N_BANDS,
    N_INPUTS,
    WINDOW_FRAMES,
    clip_windows,
    log_mel,
    model_input,
    speech_mask,
)
from edge_agent.speech_model import ModelError

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
Label = Literal["neutral", "happy", "angry", "sad"]
CLASSES: tuple[Label, Label, Label, Label] = ("neutral", "happy", "angry", "sad")
# circumplex placement of each class (arousal, valence) in [-1, 1]: a fixed mapping, not a trained head
AROUSAL_VALENCE: dict[str, tuple[float, float]] = {
    "neutral": (0.0, 0.0),
    "happy": (0.6, 0.7),
    "angry": (0.8, -0.7),
    "sad": (-0.6, -0.6),
}
DEFAULT_MODEL = "emotion-v1"
FILE_KEYS = {("onnxruntime", "fp32"): "onnx", ("onnxruntime", "int8"): "onnx_int8", ("tflite", "fp32"): "tflite"}


class EmotionModelError(ModelError):
    """A model that cannot be used: missing, corrupt, not matching its card, or no runtime for it."""


@dataclass(frozen=True)
class EmotionCard:
    name: str
    file: str
    sha256: str
    """Of the model file the backend runs."""
    classes: tuple[str, ...]


def shipped_dir() -> Path:
    return Path(str(resources.files("models.shipped")))


def load_card(card_path: Path) -> dict[str, Any]:
    try:
        card: dict[str, Any] = json.loads(card_path.read_text())
    except (OSError, ValueError) as exc:
        raise EmotionModelError(f"{card_path}: cannot read the model card ({exc})") from None
    return card


class EmotionModel:
    """Class probabilities for windows of one speaker's speech, on the backend and precision asked for."""

    def __init__(
        self,
        card_path: Path | None = None,
        backend: str = "onnxruntime",
        precision: str = "fp32",
        threads: int = 1,
    ) -> None:
        card_path = card_path or shipped_dir() / f"{DEFAULT_MODEL}.json"
        card = load_card(card_path)
        key = FILE_KEYS.get((backend, precision))
        files = card.get("files", {})
        if key is None or key not in files:
            raise EmotionModelError(f"{card_path}: no {precision} model for backend {backend!r}")
        entry = files[key]
        path = card_path.parent / entry["file"]
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            raise EmotionModelError(f"{path}: cannot read the emotion model ({exc.strerror})") from None
        if digest != entry["sha256"]:
            raise EmotionModelError(f"{path}: sha256 {digest[:12]} does not match its card {entry['sha256'][:12]}")
        classes = tuple(card["classes"])
        if classes != CLASSES:
            raise EmotionModelError(f"{card_path}: classes {list(classes)} are not {list(CLASSES)}")
        spec = card["input"]
        if (spec["window_frames"], spec["bands"], spec["tensor"][2]) != (WINDOW_FRAMES, N_BANDS, N_INPUTS):
            raise EmotionModelError(f"{card_path}: input spec does not match edge_agent.emotion_features")
        try:
            self.backend: EmotionBackend = make_backend(backend, path, threads)
        except BackendError as exc:
            raise EmotionModelError(str(exc)) from None
        self.card = EmotionCard(card["name"], entry["file"], digest, classes)
        self.predict(np.zeros((1, WINDOW_FRAMES, N_INPUTS), np.float32))  # warm-up
        log.debug("emotion model %s (%s, %s) loaded, sha256 %s", self.card.name, backend, precision, digest[:12])

    def predict(self, windows: F32) -> F32:
        """windows: (n, WINDOW_FRAMES, N_INPUTS) already through model_input -> (n, len(CLASSES))."""
        if len(windows) == 0:
            return np.zeros((0, len(CLASSES)), np.float32)
        return self.backend.predict(windows)

    def classify_clip(self, samples: F32) -> F32:
        """Mono 16 kHz clip of one speaker -> class probabilities over its speech (mean over windows)."""
        mel = log_mel(samples, speech_mask(samples))
        return clip_probs(self.predict(model_input(clip_windows(mel))))


def clip_probs(window_probs: F32) -> F32:
    """One distribution for a clip from its windows' (mean of log-probabilities, renormalised)."""
    if len(window_probs) == 0:
        return np.full(len(CLASSES), 1.0 / len(CLASSES), np.float32)
    # a window confidently against a class counts against it
    logp = np.log(np.clip(window_probs, 1e-6, 1.0)).mean(axis=0)
    p = np.exp(logp - logp.max())
    return np.asarray(p / p.sum(), np.float32)
