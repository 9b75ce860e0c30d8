"""Reading a shipped weights file beside its JSON card: the card names the file's sha256, and a file that does not
match it is refused before anything is loaded from it."""

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
