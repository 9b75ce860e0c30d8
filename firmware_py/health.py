"""The station's health as the hub sees it on `qa/v1/{site}/{seat}/status/health` (retained).

Read from the OS on each snapshot: CPU temperature (the Pi's thermal zone), load, memory, the state
directory's disk, and the clock's NTP offset (from chrony or systemd-timesyncd when present; null when
neither says). The runtime adds its own: call state, privacy, capture counters, outbox depth, versions.
Cheap enough for every 30 s; nothing here raises (a missing sensor is a null, not a crash).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def cpu_temp_c(zone: str | Path) -> float | None:
    try:
        return round(int(Path(zone).read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


def memory() -> dict[str, float | None]:
    info: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            info[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return {"mem_available_mb": None, "mem_used_pct": None}
    total, avail = info.get("MemTotal"), info.get("MemAvailable")
    if not total or avail is None:
        return {"mem_available_mb": None, "mem_used_pct": None}
    return {"mem_available_mb": round(avail / 2**20, 1), "mem_used_pct": round(100 * (1 - avail / total), 1)}


def disk(path: str | Path) -> dict[str, float | None]:
    try:
        u = shutil.disk_usage(path)
    except OSError:
        return {"disk_free_mb": None, "disk_used_pct": None}
    return {"disk_free_mb": round(u.free / 2**20, 1), "disk_used_pct": round(100 * u.used / u.total, 1)}


def clock_offset_s() -> float | None:
    """The system clock's offset from NTP time in seconds (chrony), or None when nobody can say."""
    chronyc = shutil.which("chronyc")
    if chronyc is None:
        return None
    try:
        out = subprocess.run(  # noqa: S603 - a fixed argv of the system's chronyc
            [chronyc, "-c", "tracking"], capture_output=True, text=True, timeout=2, check=False
        )
        # CSV: ref id, ref name, stratum, ref time, system time offset (s), ...
        return round(float(out.stdout.split(",")[4]), 4) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def version() -> str:
    try:
        return metadata.version("callqa")
    except metadata.PackageNotFoundError:
        return "unknown"


def os_snapshot(thermal_zone: str | Path, state_dir: str | Path) -> dict[str, Any]:
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    snap: dict[str, Any] = {
        "cpu_temp_c": cpu_temp_c(thermal_zone),
        "load1": round(load1, 2) if load1 is not None else None,
        "cpus": os.cpu_count(),
    }
    snap.update(memory())
    snap.update(disk(state_dir))
    snap["clock_offset_s"] = clock_offset_s()
    snap["version"] = version()
    return snap
