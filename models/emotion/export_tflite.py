"""TFLite export of the emotion model: the same architecture rebuilt in Keras with the shipped weights, converted
by tf.lite.TFLiteConverter, checked against the numpy reference, and entered in the card with its sha256.

    pip install -e '.[export]' && python -m models.emotion.export_tflite      # after models.emotion.train

Needs only numpy and TensorFlow (not the station's runtime), so it also runs in a separate conversion env.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.emotion_features import N_BANDS, N_INPUTS
from models.emotion.reference import (
    CONVS,
    F32,
    POOLED,
    SPEC_BAND_POOL,
    SPEC_POOLED,
    SPEC_TIME_CONVS,
    forward,
    load_weights,
    members,
)

log = logging.getLogger("models.emotion.export_tflite")

ROOT = Path(__file__).resolve().parents[2]


def keras_model(w: dict[str, F32], frames: int) -> Any:
    """The network of reference.py in Keras, carrying the folded weights: every member, log-probabilities averaged."""
    import tensorflow as tf

    layers = tf.keras.layers
    inp = tf.keras.Input(shape=(frames, N_INPUTS), batch_size=1, name="mel")

    def time_stack(h: Any, p: str, n: int, pooled: int) -> Any:
        for i in range(n):
            k = w[f"{p}conv{i}_w"]  # (out, in, kernel) -> Keras (kernel, in, out)
            layer = layers.Conv1D(k.shape[0], k.shape[2], padding="same", activation="relu")
            h = layer(h)
            layer.set_weights([k.transpose(2, 1, 0), w[f"{p}conv{i}_b"]])
            if i < pooled:
                h = layers.MaxPooling1D(2)(h)
        return h

    def head(h: Any, p: str) -> Any:
        h = layers.Concatenate()([layers.GlobalAveragePooling1D()(h), layers.GlobalMaxPooling1D()(h)])
        out = h
        for i, act in ((0, "relu"), (1, None)):
            d = layers.Dense(w[f"{p}dense{i}_w"].shape[1], activation=act)
            out = d(out)
            d.set_weights([w[f"{p}dense{i}_w"], w[f"{p}dense{i}_b"]])
        return layers.Activation(tf.nn.log_softmax)(out)

    logp = []
    if "" in members(w):
        logp.append(head(time_stack(inp, "", len(CONVS), POOLED), ""))
    if "spec_" in members(w):
        # (T, band, 1) images: Keras's height is time, its width the band
        h = layers.Reshape((frames, N_BANDS, 1))(layers.Lambda(lambda t: t[..., :N_BANDS])(inp))
        for i, band_pool in enumerate(SPEC_BAND_POOL):
            k = w[f"spec_conv2d{i}_w"]  # (out, in, band, time) -> Keras (time, band, in, out)
            layer = layers.Conv2D(k.shape[0], 3, padding="same", activation="relu")
            h = layer(h)
            layer.set_weights([k.transpose(3, 2, 1, 0), w[f"spec_conv2d{i}_b"]])
            h = layers.MaxPooling2D((2 if i == 0 else 1, band_pool))(h)
        t, bands, ch = h.shape[1:]
        h = layers.Reshape((t, ch * bands))(layers.Permute((1, 3, 2))(h))  # torch's order: channel, then band
        pitch = layers.AveragePooling1D(2)(layers.Lambda(lambda x: x[..., N_BANDS:])(inp))
        h = time_stack(layers.Concatenate()([h, pitch]), "spec_", len(SPEC_TIME_CONVS), SPEC_POOLED)
        logp.append(head(h, "spec_"))
    mean = layers.Average()(logp) if len(logp) > 1 else logp[0]
    return tf.keras.Model(inp, layers.Softmax(name="probs")(mean))


def convert(weights: Path, out: Path, frames: int) -> float:
    """Writes the .tflite; returns the largest difference from the numpy reference on test inputs."""
    import tensorflow as tf

    w = load_weights(weights)
    model = keras_model(w, frames)
    out.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, (8, frames, N_INPUTS)).astype(np.float32)
    it = tf.lite.Interpreter(model_path=str(out))
    it.allocate_tensors()
    got = []
    for row in x:
        it.set_tensor(it.get_input_details()[0]["index"], row[None])
        it.invoke()
        got.append(it.get_tensor(it.get_output_details()[0]["index"])[0])
    keras_out = model(x[:1]).numpy()
    ref = forward(w, x)
    err = float(max(np.abs(np.array(got) - ref).max(), np.abs(keras_out - ref[:1]).max()))
    if err > 1e-4:
        raise RuntimeError(f"TFLite export differs from the numpy reference by {err}")
    return err


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=ROOT / "models" / "shipped")
    ap.add_argument("--name", default="emotion-v1")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    export(args.dir, args.name)


def export(directory: Path, name: str) -> None:
    """Convert `directory/name.npz` to `name.tflite` and enter it in `name.json`."""
    card_path = directory / f"{name}.json"
    card = json.loads(card_path.read_text())
    out = directory / f"{name}.tflite"
    err = convert(directory / card["files"]["weights"]["file"], out, int(card["input"]["window_frames"]))
    raw = out.read_bytes()
    card["files"]["tflite"] = {"file": out.name, "sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}
    card_path.write_text(json.dumps(card, indent=1) + "\n")
    log.info("wrote %s (%d bytes), max difference from the reference %.2e", out, len(raw), err)


if __name__ == "__main__":
    main()
