"""Reading a shipped weights file beside its JSON card: the card names the file's sha256, and a file that does not
match it is refused before anything is loaded from it. And the one way the station opens an ONNX file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def read_carded(path: Path, error: type[Exception], what: str) -> tuple[bytes, str, dict[str, Any]]:
    """(the file's bytes, their sha256, its card or {} without one). `error` (one line, naming the file) when it
    cannot be read or its card names another sha256. Callers load from the bytes checked here, not the path again."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror})") from None
    digest = hashlib.sha256(raw).hexdigest()
    card_path = path.with_suffix(".json")
    card: dict[str, Any] = json.loads(card_path.read_text()) if card_path.exists() else {}
    want = card.get("sha256")
    if want not in (None, digest):
        raise error(f"{path}: sha256 {digest[:12]} does not match its card {str(want)[:12]}")
    return raw, digest, card


def onnx_session(path: Path, error: type[Exception], what: str, raw: bytes | None = None, threads: int = 1) -> Any:
    """An onnxruntime CPU session on `raw` (the bytes `read_carded` checked) or else the file at `path`: `threads`
    intra-op threads and one inter-op (the station's other work and its speed budget are per core), load warnings
    off (exports carry unused initialisers ORT warns about). Refused as `error`, one line naming the file and `what`
    it is not."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path) if raw is None else raw, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for a bad file
        raise error(f"{path}: {what} ({str(exc).splitlines()[0]})") from None
