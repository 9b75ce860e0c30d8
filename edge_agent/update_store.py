"""Where a station keeps verified updates, and how it switches to one and back.

    {root}/{kind}/{name}/{sha256}.onnx|.yaml   payloads, content-addressed (written to a temp file, fsynced, renamed)
    {root}/{kind}/{name}/current.json          pointer: the manifest in use and its file (replaced atomically)
    {root}/{kind}/{name}/previous.json         the one before it, for rollback

`apply` verifies (edge_agent/updates.py), refuses a version not newer than the current one (a replay), writes the
payload, swaps `current`, then loads the new version with the caller's real loader; if that fails the pointer
goes back to `previous` (or to none: the shipped model) and the reason is raised. A crash anywhere leaves
`current` naming a complete, fsynced file: the payload is renamed into place before any pointer names it, and a
pointer is replaced whole. Stray temp files from a crash are removed when the store is opened.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from edge_agent.config import EmotionConfig
from edge_agent.emotion_model import DEFAULT_MODEL, EmotionModel, load_card, shipped_dir
from edge_agent.updates import UpdateError, UpdateManifest, verify, version_key

log = logging.getLogger(__name__)

T = TypeVar("T")
SUFFIX = {"model": ".onnx", "config": ".yaml"}
_TMP = ".tmp-"


class RolledBack(UpdateError):
    """The update was verified and stored but its new version failed to load; the previous one is back."""


@dataclass(frozen=True)
class Installed:
    manifest: UpdateManifest
    path: Path
    """The payload file."""


def write_atomically(path: Path, data: bytes) -> None:
    """Write a file so that a crash leaves either the old one or the new one, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP + path.name + ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)  # the rename itself survives a power cut
        finally:
            os.close(dfd)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class UpdateStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        for tmp in root.glob(f"*/*/{_TMP}*"):  # a crash mid-write left it; nothing names it
            tmp.unlink(missing_ok=True)

    def _dir(self, kind: str, name: str) -> Path:
        return self.root / kind / name

    def current(self, kind: str, name: str) -> Installed | None:
        return self._read(self._dir(kind, name) / "current.json")

    def previous(self, kind: str, name: str) -> Installed | None:
        return self._read(self._dir(kind, name) / "previous.json")

    def in_use(self) -> list[Installed]:
        """The current version of every kind/name that has one."""
        return [i for p in sorted(self.root.glob("*/*/current.json")) if (i := self._read(p)) is not None]

    def stage(self, m: UpdateManifest, payload: bytes) -> Path:
        """Write the payload under its hash (fsynced). Nothing points at it yet."""
        d = self._dir(m.kind, m.name)
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{m.sha256}{SUFFIX[m.kind]}"
        write_atomically(path, payload)
        return path

    def swap(self, m: UpdateManifest) -> None:
        """Make `m` current (its payload staged) and the current one previous. Each step is one atomic replace;
        a crash between them leaves previous == current, which is still the version in use."""
        d = self._dir(m.kind, m.name)
        cur = d / "current.json"
        if cur.exists():
            write_atomically(d / "previous.json", cur.read_bytes())
        write_atomically(cur, _pointer(m))

    def rollback(self, kind: str, name: str) -> Installed | None:
        """Back to the previous version (None: no update left in use, the shipped one is)."""
        d = self._dir(kind, name)
        prev = d / "previous.json"
        if prev.exists():
            write_atomically(d / "current.json", prev.read_bytes())
            prev.unlink()
        else:
            (d / "current.json").unlink(missing_ok=True)
        return self.current(kind, name)

    def apply(
        self,
        m: UpdateManifest,
        payload: bytes,
        public_keys: Mapping[str, Ed25519PublicKey],
        load: Callable[[Installed], T],
        max_bytes: int | None = None,
    ) -> T | None:
        """Verify, store, swap, load; None when `m` is already the version in use. UpdateError when refused
        (nothing changed), RolledBack when the new version failed to load (the previous one is current again)."""
        verify(m, payload, public_keys, max_bytes)
        cur = self.current(m.kind, m.name)
        if cur is not None:
            if cur.manifest.version == m.version and cur.manifest.sha256 == m.sha256:
                return None  # a retained update seen again after a reconnect
            if version_key(m.version) <= version_key(cur.manifest.version):
                raise UpdateError(f"update {m.label}: not newer than the current {cur.manifest.version} (replay?)")
        path = self.stage(m, payload)
        self.swap(m)
        try:
            result = load(Installed(m, path))
        except Exception as exc:  # whatever the loader raises, the new version must not stay current
            back = self.rollback(m.kind, m.name)
            self._collect(m.kind, m.name)  # the failed payload goes
            reason = str(exc).splitlines()[0].replace(f"{path.parent}/", "") if str(exc) else type(exc).__name__
            now = back.manifest.version if back else "the shipped one"
            raise RolledBack(f"update {m.label}: failed to load ({reason}); rolled back to {now}") from None
        self._collect(m.kind, m.name)
        log.info("update %s applied (sha256 %s)", m.label, m.sha256[:12])
        return result

    def _collect(self, kind: str, name: str) -> None:
        """Remove payloads neither pointer names (older versions, a failed one)."""
        keep = {i.manifest.sha256 for i in (self.current(kind, name), self.previous(kind, name)) if i is not None}
        for f in self._dir(kind, name).glob("*"):
            sha = f.name.split(".", 1)[0]  # a payload or its card
            if len(sha) == 64 and sha not in keep:
                f.unlink(missing_ok=True)

    def _read(self, pointer: Path) -> Installed | None:
        try:
            data = json.loads(pointer.read_text())
            m = UpdateManifest.model_validate(data["manifest"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, ValidationError) as exc:
            log.error("%s is unreadable (%s): ignored", pointer, exc)
            return None
        return Installed(m, pointer.parent / f"{m.sha256}{SUFFIX[m.kind]}")


def _pointer(m: UpdateManifest) -> bytes:
    return json.dumps({"manifest": m.model_dump()}, indent=1).encode()


# --- the emotion model as an update ---------------------------------------------------------------------------


def emotion_card(inst: Installed) -> Path:
    """The card the emotion loader reads for an installed model: the shipped card's classes and input spec (the
    features are code, so a file cannot change them) naming the update's file and hash, as fp32 ONNX."""
    m = inst.manifest
    shipped = load_card(shipped_dir() / f"{DEFAULT_MODEL}.json")
    card: dict[str, Any] = {k: shipped[k] for k in ("classes", "arousal_valence", "input") if k in shipped}
    card["name"] = f"{m.name}-v{m.version}"
    card["files"] = {"onnx": {"file": inst.path.name, "sha256": m.sha256, "bytes": m.size}}
    card["update"] = m.model_dump(exclude={"signature"})
    path = inst.path.with_name(f"{m.sha256}.card.json")
    write_atomically(path, json.dumps(card, indent=1).encode())
    return path


def load_emotion(inst: Installed, cfg: EmotionConfig) -> EmotionModel:
    """Load an installed emotion model the way the pipeline will run it (checks its hash, warms it up)."""
    return EmotionModel(emotion_card(inst), cfg.backend, cfg.precision, cfg.threads)
