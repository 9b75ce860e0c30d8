"""Copy Silero VAD's 16 kHz weights out of the silero-vad wheel's sequence ONNX into a numpy file for the station.

    python -m models.silero_weights [--out models/shipped]

The station runs Silero as numpy (`edge_agent/silero_net.py`); this reads the wheel's
`silero_vad_16k_sequence.onnx` with the `onnx` package (the `train` extra, not a station dependency) and writes
`silero-vad-v5-16k.npz`, its card `silero-vad-v5-16k.json` (source file, wheel version and both sha256s) and
`SILERO_LICENSE` (MIT requires the notice to travel with the weights). The values are copied, not retrained.
It also writes `silero-vad-v5-16k-lstm.onnx`: the same LSTM tensors as one ONNX LSTM node, which the station runs
through onnxruntime (one call per block instead of a numpy loop per window), with a card naming its sha256 and
that of the .npz it was built from.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import io
import json
import logging
import sys
from pathlib import Path

import numpy as np

from edge_agent.silero_net import HIDDEN, LSTM_ONNX, WEIGHTS, SileroNet
from edge_agent.silero_stream import SEQUENCE_ONNX, silero_data_dir

log = logging.getLogger(__name__)

SHIPPED = Path(__file__).resolve().parent / "shipped"
# ONNX initialiser -> npz key; the LSTM's three tensors are the export's unnamed ones, found by op below
CONV_NAMES = {f"encoder.{i}.{p}": f"conv{i + 1}.{p}" for i in range(4) for p in ("weight", "bias")}
CONV_NAMES |= {"output.weight": "output.weight", "output.bias": "output.bias"}


def extract(onnx_path: Path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    out = {new: inits[old].astype(np.float32) for old, new in CONV_NAMES.items()}
    (lstm,) = [n for n in model.graph.node if n.op_type == "LSTM"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in lstm.attribute}
    # the numpy LSTM is ONNX's default one: one direction, sigmoid/tanh/tanh, no peepholes, no clipping
    if set(attrs) - {"hidden_size"} or (len(lstm.input) > 7 and lstm.input[7]):
        raise SystemExit(f"{onnx_path}: its LSTM has options the numpy network does not run: {sorted(attrs)}")
    for key, name in zip(("lstm.W", "lstm.R", "lstm.B"), lstm.input[1:4], strict=True):
        out[key] = inits[name].astype(np.float32)
    return out


def lstm_onnx(weights: dict[str, np.ndarray]) -> bytes:
    """The LSTM alone as an ONNX model: X (windows, streams, HIDDEN), h0, c0 (1, streams, HIDDEN) -> Y, Yh, Yc."""
    from onnx import TensorProto, ValueInfoProto, helper, numpy_helper

    def value(name: str, shape: list[str | int] | None) -> ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    node = helper.make_node("LSTM", ["X", "W", "R", "B", "", "h0", "c0"], ["Y", "Yh", "Yc"], hidden_size=HIDDEN)
    graph = helper.make_graph(
        [node],
        "silero_lstm",
        [
            value("X", ["windows", "streams", HIDDEN]),
            value("h0", [1, "streams", HIDDEN]),
            value("c0", [1, "streams", HIDDEN]),
        ],
        [value("Y", None), value("Yh", None), value("Yc", None)],
        initializer=[numpy_helper.from_array(weights[f"lstm.{k}"], k) for k in ("W", "R", "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="models.silero_weights")
    model.ir_version = 8  # what onnxruntime 1.16, the oldest the station allows, reads
    raw: bytes = model.SerializeToString()
    return raw


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=SHIPPED)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    src = silero_data_dir() / SEQUENCE_ONNX
    weights = extract(src)
    buf = io.BytesIO()
    np.savez(buf, **weights)  # type: ignore[arg-type]  # numpy's stub types **kwds as its allow_pickle
    raw = buf.getvalue()
    args.out.mkdir(parents=True, exist_ok=True)
    npz = args.out / f"{WEIGHTS}.npz"
    npz.write_bytes(raw)
    dist = importlib.metadata.distribution("silero-vad")
    card = {
        "name": WEIGHTS,
        "sha256": hashlib.sha256(raw).hexdigest(),
        "source": {
            "package": f"silero-vad {dist.version}",
            "file": SEQUENCE_ONNX,
            "sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
        },
        "licence": "MIT, Copyright (c) 2020-present Silero Team (SILERO_LICENSE)",
        "note": "Silero VAD v5's 16 kHz weights copied unchanged from the ONNX; run by edge_agent/silero_net.py",
    }
    args.out.joinpath(f"{WEIGHTS}.json").write_text(json.dumps(card, indent=1) + "\n")
    lstm = lstm_onnx(weights)
    args.out.joinpath(f"{LSTM_ONNX}.onnx").write_bytes(lstm)
    lstm_card = {
        "name": LSTM_ONNX,
        "sha256": hashlib.sha256(lstm).hexdigest(),
        "weights_sha256": card["sha256"],
        "licence": card["licence"],
        "note": f"the LSTM of {WEIGHTS}.npz as one ONNX LSTM node, run through onnxruntime by edge_agent/silero_net.py",
    }
    args.out.joinpath(f"{LSTM_ONNX}.json").write_text(json.dumps(lstm_card, indent=1) + "\n")
    licence = next((f for f in dist.files or [] if f.name == "LICENSE"), None)
    if licence is None:
        log.error("silero-vad %s carries no LICENSE file to copy", dist.version)
        return 1
    args.out.joinpath("SILERO_LICENSE").write_text(Path(str(dist.locate_file(licence))).read_text())
    SileroNet(npz)  # loads, shapes and card agree
    log.info("wrote %s (%d KB) from %s", npz, len(raw) // 1024, src)
    return 0


if __name__ == "__main__":
    sys.exit(main())
