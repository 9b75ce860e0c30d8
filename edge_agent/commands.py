"""Commands to a station: `qa/v1/{site}/{seat}/cmd/{name}`, QoS 1, never retained, JSON bodies.

The CTI system, the hub or an admin tells a seat that a call started or ended (with the CTI's call id), who
logged in, to stop or resume listening (privacy), or hands it a signed model or configuration update. An
unsigned `config` is parsed (so the sender gets a clear answer) but the station refuses it: configuration
changes analysis, so only a signed update carries it (docs/updates.md, docs/trust.md). The transport parses and
validates them here and hands the typed command to the station runtime; a malformed one is counted and
answered with an error, never acted on. Results go back on `qa/v1/{site}/{seat}/cmd_result` as
`{"id": ..., "cmd": ..., "ok": bool, "error": ...}` so the sender can tell the seat acted.

Commands are not retained: a retained `call_start` would start a phantom call at every reconnect. The broker
holds those sent while the seat was offline (persistent session); each carries `ts`, and the runtime decides
what a late one still means (a late privacy-on is honoured; a call_start for a call long over is not).
The one exception is `update` (signed, edge_agent/updates.py), which the hub may also publish retained on the
site-wide `qa/v1/{site}/update/{kind}/{name}`: seeing it again is harmless (the version in use is a no-op, an
older one is refused), so a station that was off gets the latest at its next connect.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_agent.config import first_error
from edge_agent.schema import TOPIC_PREFIX
from edge_agent.updates import UpdateManifest

_ID = r"^[A-Za-z0-9_.:\-]{1,128}$"
COMMAND_NAMES = ("call_start", "call_end", "login", "logout", "privacy", "config", "update")


class CommandError(ValueError):
    """A message on a cmd topic that is not a valid command."""


class _Command(BaseModel):
    # unknown keys are ignored, as for events: a newer hub can add fields an older station does not know
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: Annotated[str | None, Field(pattern=_ID)] = None
    """The sender's id for this command, echoed in the result."""
    ts: datetime | None = None
    """When it was issued (UTC); lets the runtime judge a command the broker held while the seat was offline."""

    def age_s(self, now: datetime | None = None) -> float | None:
        if self.ts is None:
            return None
        ts = self.ts if self.ts.tzinfo else self.ts.replace(tzinfo=UTC)
        return ((now or datetime.now(UTC)) - ts).total_seconds()


class CallStart(_Command):
    cmd: Literal["call_start"] = "call_start"
    call_id: Annotated[str, Field(pattern=_ID)]
    """The CTI's call id: the station's events for this call carry it, so the hub can join its own records."""
    agent_id: Annotated[str | None, Field(pattern=_ID)] = None


class CallEnd(_Command):
    cmd: Literal["call_end"] = "call_end"
    call_id: Annotated[str | None, Field(pattern=_ID)] = None
    """None ends whatever call is running."""


class Login(_Command):
    cmd: Literal["login"] = "login"
    agent_id: Annotated[str, Field(pattern=_ID)]


class Logout(_Command):
    cmd: Literal["logout"] = "logout"


class Privacy(_Command):
    cmd: Literal["privacy"] = "privacy"
    on: bool
    """True: stop analysing at once and discard buffered audio; False: listen again."""


class ConfigUpdate(_Command):
    """Unsigned configuration: refused by the station (firmware_py/runtime.py), answered with the signed way."""

    cmd: Literal["config"] = "config"
    config: dict[str, Any]
    """A station config document."""
    version: Annotated[str | None, Field(max_length=64)] = None


class UpdateCommand(_Command):
    """A signed model or config update (edge_agent/updates.py); also what the site-wide update topic carries."""

    cmd: Literal["update"] = "update"
    manifest: UpdateManifest
    payload: str = Field(description="the payload bytes, base64")


Command = CallStart | CallEnd | Login | Logout | Privacy | ConfigUpdate | UpdateCommand
_BY_NAME: dict[str, type[_Command]] = {
    "call_start": CallStart,
    "call_end": CallEnd,
    "login": Login,
    "logout": Logout,
    "privacy": Privacy,
    "config": ConfigUpdate,
    "update": UpdateCommand,
}
MAX_COMMAND_BYTES = 64 * 1024
MAX_UPDATE_BYTES = 16 * 2**20
"""An update carries a model in base64; the station's `updates.max_bytes` is the real limit."""


def cmd_topic(site: str, seat: str, name: str) -> str:
    return f"{TOPIC_PREFIX}/{site}/{seat}/cmd/{name}"


def cmd_subscription(site: str, seat: str) -> str:
    return cmd_topic(site, seat, "+")


def cmd_result_topic(site: str, seat: str) -> str:
    return f"{TOPIC_PREFIX}/{site}/{seat}/cmd_result"


def update_topic(site: str, kind: str, name: str) -> str:
    """Site-wide, retained by the broker: every seat of the site, including one that was off, gets it on
    subscribing. `update` is therefore not a usable seat id (deploy/mosquitto/provision_site.py refuses it)."""
    return f"{TOPIC_PREFIX}/{site}/update/{kind}/{name}"


def update_subscription(site: str) -> str:
    return update_topic(site, "+", "+")


def parse_command(topic: str, payload: bytes | bytearray) -> Command:
    """A cmd topic's message -> the typed command; CommandError with a one-line reason otherwise."""
    name = topic.rsplit("/", 1)[-1]
    model = _BY_NAME.get(name)
    if model is None:
        raise CommandError(f"unknown command {name!r} (known: {', '.join(COMMAND_NAMES)})")
    limit = MAX_UPDATE_BYTES if name == "update" else MAX_COMMAND_BYTES
    if len(payload) > limit:
        raise CommandError(f"{name}: payload of {len(payload)} bytes exceeds {limit}")
    try:
        body = json.loads(payload) if payload.strip() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise CommandError(f"{name}: not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise CommandError(f"{name}: body is not a JSON object")
    body.pop("cmd", None)  # the topic names the command
    try:
        cmd = model.model_validate(body)
    except ValidationError as exc:
        raise CommandError(f"{name}: {first_error(exc, top='body')}") from None
    assert isinstance(cmd, Command)  # noqa: S101 - for mypy
    return cmd


def command_result(cmd: Command | None, name: str, error: str | None = None) -> str:
    """The JSON a station publishes on `cmd_result` after acting on (or refusing) a command."""
    body: dict[str, Any] = {"id": cmd.id if cmd else None, "cmd": name, "ok": error is None}
    if error is not None:
        body["error"] = error
    return json.dumps(body, separators=(",", ":"))
