"""Signed model and config updates from the hub: the manifest, what its signature covers, and verification.

The hub admin signs an update with an Ed25519 key that never leaves their machine; a station holds only public
keys (config `updates.public_keys`) and refuses anything they did not sign. The signature covers the manifest's
fields as one canonical text (below), not its JSON, so whitespace or key order on the wire cannot break or
forge it; the manifest carries the payload's sha256 and size, so the payload is covered through them.

    callqa-update/1
    kind=model
    name=emotion
    version=2
    sha256=<hex of the payload>
    size=<bytes>
    created=2025-01-31T12:00:00Z
    key_id=<16 hex: the signing key's id>

Versions are dotted integers compared numerically ("1.10" is newer than "1.9"). Storing, swapping and rolling
back are in `edge_agent/update_store.py`; the MQTT side in `edge_agent/commands.py` (`cmd/update`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field

SIGNED_PREFIX = "callqa-update/1"
SIGNED_FIELDS = ("kind", "name", "version", "sha256", "size", "created", "key_id")
Kind = Literal["model", "config"]


class UpdateError(ValueError):
    """An update that is not applied: unsigned, tampered, unknown key, replayed, too large or unusable."""


class UpdateManifest(BaseModel):
    # unknown keys refused: they would travel unsigned
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Kind
    name: str = Field(pattern=r"^[a-z][a-z0-9_\-]{0,31}$", description="what it replaces, e.g. 'emotion'")
    version: str = Field(pattern=r"^[0-9]{1,9}(\.[0-9]{1,9}){0,3}$", description="dotted integers, e.g. 2 or 1.4.0")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="of the payload")
    size: int = Field(ge=0, description="payload bytes")
    created: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$", description="UTC")
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$", description="key_id() of the signing key")
    signature: str = Field(pattern=r"^[A-Za-z0-9+/]{86}==$", description="Ed25519 over signed_message, base64")

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.name} {self.version}"


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split("."))


def signed_message(m: UpdateManifest) -> bytes:
    """The exact bytes the signature covers (every manifest field but the signature itself)."""
    lines = [SIGNED_PREFIX, *(f"{k}={getattr(m, k)}" for k in SIGNED_FIELDS)]
    return ("\n".join(lines) + "\n").encode()


def key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(public_key_text(key).encode()).hexdigest()[:16]


def public_key_text(key: Ed25519PublicKey) -> str:
    """The raw 32-byte key in base64: what `updates.public_keys` takes (or a file holding it)."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def parse_public_key(spec: str) -> Ed25519PublicKey:
    """A public key given as base64 (raw 32 bytes) or as a path to a file holding that or a PEM key."""
    key = _key_from_text(spec)
    if key is None:
        try:
            text = Path(spec).read_text()
        except OSError as exc:
            raise UpdateError(
                f"update key {spec!r}: not a base64 key and not a readable file ({exc.strerror})"
            ) from None
        key = _key_from_text(text)
        if key is None:
            raise UpdateError(f"update key {spec}: expected an Ed25519 public key (32 bytes in base64, or PEM)")
    return key


def _key_from_text(text: str) -> Ed25519PublicKey | None:
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            pem = serialization.load_pem_public_key(text.encode())
        except ValueError:
            return None
        return pem if isinstance(pem, Ed25519PublicKey) else None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return Ed25519PublicKey.from_public_bytes(raw) if len(raw) == 32 else None


def load_public_keys(specs: list[str]) -> dict[str, Ed25519PublicKey]:
    """key id -> key, for `verify`."""
    keys = [parse_public_key(s) for s in specs]
    return {key_id(k): k for k in keys}


def sign(kind: Kind, name: str, version: str, payload: bytes, key: Ed25519PrivateKey) -> UpdateManifest:
    """The hub side: a manifest for `payload`, signed with `key` (validated like any received one)."""
    fields: dict[str, Any] = {
        "kind": kind,
        "name": name,
        "version": version,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "size": len(payload),
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "key_id": key_id(key.public_key()),
    }
    signature = key.sign(signed_message(UpdateManifest.model_construct(**fields)))
    return UpdateManifest.model_validate({**fields, "signature": base64.b64encode(signature).decode()})


def verify(
    m: UpdateManifest, payload: bytes, public_keys: Mapping[str, Ed25519PublicKey], max_bytes: int | None = None
) -> None:
    """UpdateError with a one-line reason unless a known key signed `m` and `payload` is what it describes."""
    if max_bytes is not None and max(len(payload), m.size) > max_bytes:
        raise UpdateError(f"update {m.label}: {max(len(payload), m.size)} bytes exceed the limit of {max_bytes}")
    key = public_keys.get(m.key_id)
    if key is None:
        known = ", ".join(sorted(public_keys)) or "none configured"
        raise UpdateError(f"update {m.label}: signed by unknown key {m.key_id} (known: {known})")
    try:
        key.verify(base64.b64decode(m.signature), signed_message(m))
    except (InvalidSignature, binascii.Error, ValueError):
        raise UpdateError(f"update {m.label}: bad signature (manifest altered or not signed by {m.key_id})") from None
    if len(payload) != m.size:
        raise UpdateError(f"update {m.label}: payload is {len(payload)} bytes, the signed manifest says {m.size}")
    digest = hashlib.sha256(payload).hexdigest()
    if digest != m.sha256:
        raise UpdateError(f"update {m.label}: payload sha256 {digest[:12]} does not match the signed {m.sha256[:12]}")
