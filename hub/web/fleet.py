"""The fleet's health at a glance: what a station's health report says, bounded, and what needs a look.

A health report (firmware_py/health.py `os_snapshot` plus firmware_py/runtime.py `health` and the publisher's
outbox counts, edge_agent/mqtt_publisher.py `publish_health`) is the seat's own word (docs/trust.md): every
value read here is checked for type and a plausible range, and every text cut to `TEXT_MAX` characters, so one
seat's odd report can neither break the devices page nor make it huge. A value that fails the check is shown
as missing and counted in `REJECTED` by reason.

Problems, each a flag on the row (the devices page highlights them and filters on them, the CSV has a column
for each):

- `offline`: the seat's last will says so (or it never said it was online), or nothing was heard from it for
  `SILENT_S` (20 missed health reports at the station's default 30-s interval);
- `hot`: CPU at `HOT_C` or more (a Raspberry Pi 4 or 5 starts throttling its clock at 80 degrees C: this warns
  before calls are analysed late);
- `disk`: the state disk (outbox, models) `DISK_USED_PCT` full or with less than `DISK_FREE_MB` left;
- `clock`: the station's clock `CLOCK_OFF_S` or more off (chrony's own estimate): event times feed the call
  timeline and the time-of-day reports;
- `backlog`: `BACKLOG` or more events waiting in the station's outbox (the hub or the broker is not keeping up,
  or the seat cannot reach them);
- `outdated_model`: the speech or the emotion model is an older version than the newest of the same model
  family anywhere in the fleet (`model_version`: the shipped models are named `family-vN`, e.g.
  `speech-mlp-v2`); a name without a version is never called outdated;
- `outdated_software`: the station's callqa version is older than the newest in the fleet.

"The fleet's newest" is what the seats report, so a seat claiming a version that does not exist makes the
others look outdated: a highlight to check, never an action taken.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import Counter
from typing import Any, Literal

from hub.live import SILENT_S

log = logging.getLogger(__name__)

HOT_C = 75.0
DISK_USED_PCT = 90.0
DISK_FREE_MB = 500.0
CLOCK_OFF_S = 1.0
BACKLOG = 1000
TEXT_MAX = 64
"""Characters of a version or model name shown; a longer one is cut (with "…")."""

Problem = Literal["offline", "hot", "disk", "clock", "backlog", "outdated_model", "outdated_software"]
PROBLEMS: tuple[Problem, ...] = ("offline", "hot", "disk", "clock", "backlog", "outdated_model", "outdated_software")
Sort = Literal["problems", "seat", "temp", "disk", "clock", "last_seen", "outbox"]
SORTS: tuple[Sort, ...] = ("problems", "seat", "temp", "disk", "clock", "last_seen", "outbox")
"""Orders of the devices list: problems first (the default; most problems first, then by seat), by seat, or
by a health value (worst first: hottest, fullest, furthest off, longest silent, biggest backlog)."""

REJECTED: Counter[str] = Counter()
"""Health values left out (shown as missing), by reason: `type` (not a number or not a text) or `range`."""

_RANGES: dict[str, tuple[float, float]] = {
    "cpu_temp_c": (-60.0, 200.0),
    "disk_used_pct": (0.0, 100.0),
    "disk_free_mb": (0.0, 1e9),
    "clock_offset_s": (-1e7, 1e7),
    "pending": (0.0, 1e9),
}
_VERSION = re.compile(r"^(?P<family>.*?)[-_.]?v?(?P<version>\d+(?:\.\d+)*)$")


def _number(health: dict[str, Any], key: str) -> float | None:
    value = health.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        REJECTED["type"] += 1
        return None
    low, high = _RANGES[key]
    if not low <= value <= high:
        REJECTED["range"] += 1
        return None
    return float(value)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        REJECTED["type"] += 1
        return None
    return value if len(value) <= TEXT_MAX else value[: TEXT_MAX - 1] + "\u2026"


def software_version(text: str | None) -> tuple[int, ...] | None:
    """`0.1.0` -> (0, 1, 0); `0.2.0.dev3+g1a2b` -> (0, 2, 0, 3); `unknown` -> None (never compared)."""
    if not text or not text[0].isdigit():
        return None
    return tuple(int(n) for n in re.findall(r"\d+", text)[:6])


def model_version(name: str | None) -> tuple[str, tuple[int, ...]] | None:
    """`speech-mlp-v2` -> ("speech-mlp", (2,)); a name without a trailing version -> None (never compared)."""
    m = _VERSION.match(name or "")
    if m is None or not m["family"]:
        return None
    return m["family"], tuple(int(n) for n in m["version"].split(".")[:6])


def health_columns(health: dict[str, Any]) -> dict[str, Any]:
    """The bounded values the devices page, API and CSV show, from one stored health report."""
    models = health.get("models")
    models = models if isinstance(models, dict) else {}

    def model(kind: str) -> str | None:
        ref = models.get(kind)
        return _text(ref.get("name")) if isinstance(ref, dict) else None

    pending = _number(health, "pending")
    return {
        "temp_c": _number(health, "cpu_temp_c"),
        "disk_used_pct": _number(health, "disk_used_pct"),
        "disk_free_mb": _number(health, "disk_free_mb"),
        "clock_offset_s": _number(health, "clock_offset_s"),
        "outbox": int(pending) if pending is not None else None,
        "version": _text(health.get("version")),
        # the envelope's `model` names whichever model decided the seat's last event (speech or emotion, so
        # it flips between them); the health report names both
        "speech_model": model("activity"),
        "emotion_model": model("emotion"),
    }


def newest(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The fleet's newest software version and newest version of each model family, over all `rows`."""
    software = max((v for r in rows if (v := software_version(r["version"])) is not None), default=None)
    models: dict[str, tuple[int, ...]] = {}
    for r in rows:
        for name in (r["speech_model"], r["emotion_model"]):
            if (fv := model_version(name)) is not None and fv[1] > models.get(fv[0], ()):
                models[fv[0]] = fv[1]
    return {"software": software, "models": models}


def outdated(model: str | None, fleet: dict[str, Any]) -> bool:
    """Whether the model is an older version than the newest of its family in the fleet (`newest`)."""
    fv = model_version(model)
    return fv is not None and fv[1] < fleet["models"].get(fv[0], ())


def problems(row: dict[str, Any], fleet: dict[str, Any], now: float | None = None) -> list[Problem]:
    """The row's problems (see the module docstring), in `PROBLEMS` order."""
    now = time.time() if now is None else now
    out: list[Problem] = []
    seen = row.get("last_seen")
    if row["status"] != "online" or seen is None or now - float(seen) > SILENT_S:
        out.append("offline")
    if row["temp_c"] is not None and row["temp_c"] >= HOT_C:
        out.append("hot")
    used, free = row["disk_used_pct"], row["disk_free_mb"]
    if (used is not None and used >= DISK_USED_PCT) or (free is not None and free < DISK_FREE_MB):
        out.append("disk")
    if row["clock_offset_s"] is not None and abs(row["clock_offset_s"]) >= CLOCK_OFF_S:
        out.append("clock")
    if row["outbox"] is not None and row["outbox"] >= BACKLOG:
        out.append("backlog")
    if outdated(row["speech_model"], fleet) or outdated(row["emotion_model"], fleet):
        out.append("outdated_model")
    sv = software_version(row["version"])
    if sv is not None and fleet["software"] is not None and sv < fleet["software"]:
        out.append("outdated_software")
    return out


def sort_rows(rows: list[dict[str, Any]], order: str) -> list[dict[str, Any]]:
    """`rows` in one of the `SORTS` orders; a row without the value sorts last."""

    def seat(r: dict[str, Any]) -> tuple[str, str]:
        return str(r["site"]), str(r["seat"])

    if order == "seat":
        return sorted(rows, key=seat)
    if order == "problems":
        return sorted(rows, key=lambda r: (-len(r["problems"]), "offline" not in r["problems"], seat(r)))
    key, sign = {
        "temp": ("temp_c", -1),
        "disk": ("disk_used_pct", -1),
        "clock": ("clock_offset_s", -1),
        "last_seen": ("last_seen", 1),
        "outbox": ("outbox", -1),
    }[order]

    def value(r: dict[str, Any]) -> tuple[bool, float, tuple[str, str]]:
        v = r[key]
        if v is None:
            return True, 0.0, seat(r)
        v = abs(float(v)) if key == "clock_offset_s" else float(v)
        return False, sign * v, seat(r)

    return sorted(rows, key=value)
