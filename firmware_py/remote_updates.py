"""The station's side of signed updates (docs/updates.md): its keys, its store under state_dir, its counters.

`apply` runs on the analysis thread for a `cmd/update` (or the site-wide retained update topic): it verifies and
installs through edge_agent/update_store.py and hands back what the runtime must switch to (an emotion model
already loaded, or a validated config). Model updates replace the emotion model (`name: emotion`, an fp32 ONNX
file); config updates are a YAML document of the remotely changeable sections, checked by the runtime's own
validation; it is the only way configuration reaches a station (an unsigned `cmd/config` is refused and counted
as `unsigned_config_refused`). Whatever is refused or rolled back is counted and reported in health.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from edge_agent.commands import UpdateCommand
from edge_agent.config import AnalyzerConfig, ConfigError, EmotionConfig, parse_document
from edge_agent.emotion_model import EmotionModel
from edge_agent.update_store import Installed, RolledBack, UpdateStore, emotion_card, load_emotion
from edge_agent.updates import UpdateError, load_public_keys
from firmware_py.config import UpdatesSection

C = TypeVar("C")
MODEL_NAMES = ("emotion",)
"""Models a station can take as updates."""


@dataclass
class Outcome(Generic[C]):
    error: str | None = None
    model: EmotionModel | None = None
    """A new emotion model, loaded and warmed up: the pipeline switches to it between calls."""
    config: C | None = None
    """What the runtime's config check returned for a new config document."""


class StationUpdates:
    def __init__(self, section: UpdatesSection, state_dir: Path) -> None:
        try:
            self.keys = load_public_keys(section.public_keys)
        except UpdateError as exc:
            raise ConfigError(f"updates.public_keys: {exc}") from None
        self.max_bytes = section.max_bytes
        self.store = UpdateStore(state_dir / "updates")
        self.applied = 0
        self.refused = 0
        self.rolled_back = 0
        self.unsigned_config_refused = 0
        """Unsigned `cmd/config` commands refused (the runtime's `_config_update`): only signed config is taken."""

    def analyzer(self, base: AnalyzerConfig) -> AnalyzerConfig:
        """The analyzer config with the emotion model of the update in use, if any (it wins over `emotion.card`)."""
        inst = self.store.current("model", "emotion")
        if inst is None or not base.emotion.enabled:
            return base
        emotion = base.emotion.model_copy(update={"card": str(emotion_card(inst))})
        return base.model_copy(update={"emotion": emotion})

    def apply(
        self, cmd: UpdateCommand, emotion: EmotionConfig, check_config: Callable[[dict[str, Any]], C]
    ) -> Outcome[C]:
        m = cmd.manifest
        if not self.keys:
            return self._refuse(f"update {m.label}: refused, this station has no updates.public_keys configured")
        try:
            payload = base64.b64decode(cmd.payload, validate=True)
        except (binascii.Error, ValueError):
            return self._refuse(f"update {m.label}: payload is not base64")
        out: Outcome[C] = Outcome()
        try:
            if m.kind == "model":
                if m.name not in MODEL_NAMES:
                    return self._refuse(f"update {m.label}: no model {m.name!r} here (one of {', '.join(MODEL_NAMES)})")
                out.model = self.store.apply(m, payload, self.keys, lambda i: load_emotion(i, emotion), self.max_bytes)
            else:
                out.config = self.store.apply(
                    m, payload, self.keys, lambda i: check_config(_document(i)), self.max_bytes
                )
        except RolledBack as exc:
            self.rolled_back += 1
            return Outcome(str(exc))
        except UpdateError as exc:
            return self._refuse(str(exc))
        if out.model is not None or out.config is not None:
            self.applied += 1
        return out

    def _refuse(self, error: str) -> Outcome[C]:
        self.refused += 1  # logged with the rest of the refused commands by the runtime
        return Outcome(error)

    def health(self) -> dict[str, Any]:
        current = {
            f"{i.manifest.kind}/{i.manifest.name}": {"version": i.manifest.version, "sha256": i.manifest.sha256}
            for i in self.store.in_use()
        }
        return {
            "applied": self.applied,
            "refused": self.refused,
            "rolled_back": self.rolled_back,
            "unsigned_config_refused": self.unsigned_config_refused,
            "current": current,
        }


def _document(inst: Installed) -> dict[str, Any]:
    return parse_document(inst.path.read_text(), ".yaml", f"update {inst.manifest.label}")
