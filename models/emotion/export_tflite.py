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

from models.emotion.reference import CONVS, F32, POOLED, forward, load_weights

log = logging.getLogger("models.emotion.export_tflite")

ROOT = Path(__file__).resolve().parents[2]


def keras_model(w: dict[str, F32], frames: int) -> Any:
    import tensorflow as tf

    channels = w["conv0_w"].shape[1]
    x = inp = tf.keras.Input(shape=(frames, channels), batch_size=1, name="mel")
    for i in range(len(CONVS)):
        k = w[f"conv{i}_w"]  # (out, in, kernel) -> Keras (kernel, in, out)
        conv = tf.keras.layers.Conv1D(k.shape[0], k.shape[2], padding="same", activation="relu")
        x = conv(x)
        conv.set_weights([k.transpose(2, 1, 0), w[f"conv{i}_b"]])
        if i < POOLED:
            x = tf.keras.layers.MaxPooling1D(2)(x)
    x = tf.keras.layers.Concatenate()(
        [tf.keras.layers.GlobalAveragePooling1D()(x), tf.keras.layers.GlobalMaxPooling1D()(x)]
    )
    d0 = tf.keras.layers.Dense(w["dense0_w"].shape[1], activation="relu")
    x = d0(x)
    d0.set_weights([w["dense0_w"], w["dense0_b"]])
    d1 = tf.keras.layers.Dense(w["dense1_w"].shape[1], activation="softmax", name="probs")
    out = d1(x)
    d1.set_weights([w["dense1_w"], w["dense1_b"]])
    return tf.keras.Model(inp, out)


def convert(weights: Path, out: Path, frames: int) -> float:
    """Writes the .tflite; returns the largest difference from the numpy reference on test inputs."""
    import tensorflow as tf

    w = load_weights(weights)
    model = keras_model(w, frames)
    out.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, (8, frames, w["conv0_w"].shape[1])).astype(np.float32)
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
