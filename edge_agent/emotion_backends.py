"""Inference backends for the emotion model, in a registry keyed by type name.

Each takes model windows (n, WINDOW_FRAMES, N_INPUTS) float32 and returns class probabilities (n, n_classes).
onnxruntime is the default (fp32 or int8 ONNX); TFLite runs the `.tflite` export through ai-edge-litert, or the
older tflite-runtime where only that installs. Both are pinned to the threads they are given (one by default:
the station shares its cores with capture and the VAD).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edge_agent.model_files import onnx_session

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]


class BackendError(Exception):
    """A backend that cannot run here: runtime missing or the model file unusable."""


class EmotionBackend(Protocol):
    name: str

    def predict(self, windows: F32) -> F32: ...


class OnnxBackend:
    name = "onnxruntime"

    def __init__(self, path: Path, threads: int = 1) -> None:
        self._sess = onnx_session(path, BackendError, "onnxruntime cannot load it", threads=threads)
        self._input = self._sess.get_inputs()[0].name

    def predict(self, windows: F32) -> F32:
        out = self._sess.run(None, {self._input: np.ascontiguousarray(windows, np.float32)})[0]
        return np.asarray(out, np.float32)


def _tflite_interpreter() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter  # the older package, where only it installs

        return Interpreter
    except ImportError:
        raise BackendError(
            "TFLite backend needs ai-edge-litert (pip install ai-edge-litert) or tflite-runtime"
        ) from None


class TfliteBackend:
    name = "tflite"

    def __init__(self, path: Path, threads: int = 1) -> None:
        interpreter = _tflite_interpreter()
        try:
            self._it = interpreter(model_path=str(path), num_threads=threads)
            self._it.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"{path}: TFLite cannot load it ({str(exc).splitlines()[0]})") from None
        self._in = self._it.get_input_details()[0]
        self._out = self._it.get_output_details()[0]
        self._batch = int(self._in["shape"][0])

    def predict(self, windows: F32) -> F32:
        # the converted graph has a fixed batch; run window by window (the station sends one at a time anyway)
        x = np.ascontiguousarray(windows, np.float32)
        rows = []
        for i in range(0, len(x), self._batch):
            chunk = x[i : i + self._batch]
            if len(chunk) < self._batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self._batch - len(chunk), axis=0)])
            self._it.set_tensor(self._in["index"], chunk)
            self._it.invoke()
            rows.append(np.array(self._it.get_tensor(self._out["index"]), np.float32))
        out = np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)
        return out[: len(x)]


BACKENDS: dict[str, Callable[[Path, int], EmotionBackend]] = {
    OnnxBackend.name: OnnxBackend,
    TfliteBackend.name: TfliteBackend,
}


def make_backend(kind: str, path: Path, threads: int = 1) -> EmotionBackend:
    try:
        factory = BACKENDS[kind]
    except KeyError:
        raise BackendError(f"unknown emotion backend {kind!r}; one of {sorted(BACKENDS)}") from None
    return factory(path, threads)
