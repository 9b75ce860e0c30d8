"""The shipped speech-emotion model: its card (labels, input spec, per-file sha256, calibration), a backend, clip
scoring.

The card `models/shipped/emotion-v1.json` names every export of the same weights (ONNX fp32, ONNX int8, TFLite)
with its sha256; a file whose hash differs from the card is refused. The model is warmed up at load so the
first live window does not pay for allocations.

The card's `calibration` (temperature scaling fitted on validation speakers) turns the network's softmax into
probabilities that mean what they say; `predict` and `classify_clip` return calibrated probabilities, and
`confident` says whether the top one clears the card's abstention threshold. A card without a calibration is used
as it is: temperature 1, always confident.
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


@dataclass(frozen=True)
class Calibration:
    """From the card's `calibration`: temperatures and abstention thresholds (calibrated top probability)."""

    window_temperature: float = 1.0
    """Divides a window's log-probabilities before the softmax (what the station smooths)."""
    clip_temperature: float = 1.0
    """Likewise for a clip's averaged window log-probabilities (clip_probs)."""
    window_min_confidence: float = 0.0
    """A window's (or smoothed state's) calibrated top probability below this is not confident."""
    clip_min_confidence: float = 0.0
    """A clip's calibrated top probability below this is not confident (`edge-agent emotion`)."""

    @classmethod
    def from_card(cls, card: dict[str, Any], where: Path) -> Calibration:
        c = card.get("calibration")
        if c is None:
            return cls()
        try:
            out = cls(
                float(c["window_temperature"]),
                float(c["clip_temperature"]),
                float(c["window_min_confidence"]),
                float(c["clip_min_confidence"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EmotionModelError(f"{where}: calibration is not usable ({exc!r})") from None
        if min(out.window_temperature, out.clip_temperature) <= 0:
            raise EmotionModelError(f"{where}: calibration temperatures must be positive")
        return out


def calibrate(probs: F32, temperature: float) -> F32:
    """Softmax of log-probabilities / temperature, per row: the same top class, a truer confidence."""
    if temperature == 1.0 or len(probs) == 0:
        return np.asarray(probs, np.float32)
    z = np.log(np.clip(probs, 1e-7, 1.0)) / temperature
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return np.asarray(e / e.sum(axis=-1, keepdims=True), np.float32)


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
        self.calibration = Calibration.from_card(card, card_path)
        self.band_mean = bool(spec.get("band_mean", False))
        self.predict(np.zeros((1, WINDOW_FRAMES, N_INPUTS), np.float32))  # warm-up
        log.debug("emotion model %s (%s, %s) loaded, sha256 %s", self.card.name, backend, precision, digest[:12])

    def inputs(self, rows: F32) -> F32:
        """Frontend rows (n, WINDOW_FRAMES, ROW) -> this model's input (its card's normalisation)."""
        return model_input(rows, self.band_mean)

    def predict_raw(self, windows: F32) -> F32:
        """windows: (n, WINDOW_FRAMES, N_INPUTS) already through model_input -> (n, len(CLASSES)), the network's
        own softmax (uncalibrated)."""
        if len(windows) == 0:
            return np.zeros((0, len(CLASSES)), np.float32)
        return self.backend.predict(windows)

    def predict(self, windows: F32) -> F32:
        """Calibrated class probabilities of each window (the card's window temperature)."""
        return calibrate(self.predict_raw(windows), self.calibration.window_temperature)

    def clip(self, window_raw: F32) -> F32:
        """A clip's calibrated distribution from its windows' raw probabilities (predict_raw)."""
        return calibrate(clip_probs(window_raw), self.calibration.clip_temperature)

    def classify_clip(self, samples: F32) -> F32:
        """Mono 16 kHz clip of one speaker -> calibrated class probabilities over its speech."""
        mel = log_mel(samples, speech_mask(samples))
        return self.clip(self.predict_raw(self.inputs(clip_windows(mel))))

    def confident(self, probs: F32, clip: bool = True) -> bool:
        """Whether calibrated probabilities (of a clip, or else of a window or smoothed state) are sure enough."""
        c = self.calibration
        return bool(float(np.max(probs)) >= (c.clip_min_confidence if clip else c.window_min_confidence))


def clip_probs(window_probs: F32) -> F32:
    """One distribution for a clip from its windows' (mean of log-probabilities, renormalised)."""
    if len(window_probs) == 0:
        return np.full(len(CLASSES), 1.0 / len(CLASSES), np.float32)
    # a window confidently against a class counts against it
    logp = np.log(np.clip(window_probs, 1e-6, 1.0)).mean(axis=0)
    p = np.exp(logp - logp.max())
    return np.asarray(p / p.sum(), np.float32)
