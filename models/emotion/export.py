"""Export the trained emotion weights: ONNX fp32 (from the folded PyTorch module), ONNX int8 (onnxruntime static
quantization, calibrated on training windows) and the card that lists every file with its sha256.

The TFLite export needs TensorFlow and lives in export_tflite.py (`pip install -e '.[export]'`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.emotion_features import (
    FMAX,
    FMIN,
    HOP_FRAMES,
    INPUT_CLIP,
    INPUT_SCALE,
    N_BANDS,
    N_INPUTS,
    WINDOW_FRAMES,
)
from edge_agent.emotion_model import AROUSAL_VALENCE, CLASSES
from models.emotion.net import folded_module
from models.emotion.reference import CONVS, F32, HIDDEN, SPEC_BAND_POOL, SPEC_CONVS, SPEC_TIME_CONVS, forward

log = logging.getLogger(__name__)

OPSET = 17


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    return {"file": path.name, "sha256": sha256(path), "bytes": path.stat().st_size}


def export_onnx(w: dict[str, F32], path: Path, check: F32) -> None:
    import torch

    module = folded_module(w)
    dummy = torch.zeros(1, WINDOW_FRAMES, N_INPUTS)
    torch.onnx.export(
        module,
        (dummy,),
        str(path),
        input_names=["mel"],
        output_names=["probs"],
        dynamic_axes={"mel": {0: "n"}, "probs": {0: "n"}},
        opset_version=OPSET,
        dynamo=False,
    )
    with torch.no_grad():
        pt = module(torch.from_numpy(check)).numpy()
    ref = forward(w, check)
    err = float(np.abs(pt - ref).max())
    if err > 1e-4:
        raise RuntimeError(f"folded PyTorch module and numpy reference differ by {err}")


class _Calibration:
    """onnxruntime CalibrationDataReader over training windows."""

    def __init__(self, windows: F32) -> None:
        self._it = iter([{"mel": windows[i : i + 32]} for i in range(0, len(windows), 32)])

    def get_next(self) -> dict[str, F32] | None:
        return next(self._it, None)


def export_int8(fp32: Path, path: Path, calib: F32) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = path.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    quantize_static(
        str(pre),
        str(path),
        _Calibration(calib),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    pre.unlink()


def input_spec(band_mean: bool = False) -> dict[str, Any]:
    level = "each band minus its own mean over the window" if band_mean else "minus the window's mean dB"
    return {
        "sample_rate": 16000,
        "frame_ms": 10,
        "window_ms": 25,
        "fft": 512,
        "features": "edge_agent.emotion_features (log-mel dB of speech frames only)",
        "bands": N_BANDS,
        "fmin_hz": FMIN,
        "fmax_hz": FMAX,
        "window_frames": WINDOW_FRAMES,
        "clip_hop_frames": HOP_FRAMES,
        "normalisation": f"{level}, times {INPUT_SCALE}, clipped to +-{INPUT_CLIP}",
        "band_mean": band_mean,
        "tensor": ["n", WINDOW_FRAMES, N_INPUTS],
        "channels": f"{N_BANDS} log-mel, then relative pitch, absolute pitch, voicing",
        "output": "probs (n, classes), softmax",
    }


def architecture(members: Sequence[str]) -> dict[str, Any]:
    """The card's description of the network: the temporal member alone as before, or every member's."""
    temporal = {"convs": [list(c) for c in CONVS], "hidden": HIDDEN}
    if list(members) == ["temporal"]:
        return temporal
    spectral = {
        "convs2d": list(SPEC_CONVS),
        "band_pool": list(SPEC_BAND_POOL),
        "convs": [list(c) for c in SPEC_TIME_CONVS],
        "hidden": HIDDEN,
    }
    return {
        "members": {m: {"temporal": temporal, "spectral": spectral}[m] for m in members},
        "combined": "mean of the members' log-probabilities, then softmax",
    }


def write_card(out: Path, name: str, files: dict[str, Path], extra: dict[str, Any]) -> Path:
    card_path = out / f"{name}.json"
    old = json.loads(card_path.read_text()) if card_path.exists() else {}
    entries = {**old.get("files", {}), **{k: file_entry(p) for k, p in files.items()}}
    card = {
        **old,  # an earlier step's sections (training record, evaluation) stay unless replaced
        "name": name,
        "classes": list(CLASSES),
        "arousal_valence": {k: list(v) for k, v in AROUSAL_VALENCE.items()},
        "input": input_spec(bool(old.get("input", {}).get("band_mean", False))),
        "architecture": old.get("architecture", architecture(["temporal"])),
        "files": entries,
        **extra,
    }
    card_path.write_text(json.dumps(card, indent=1) + "\n")
    return card_path
