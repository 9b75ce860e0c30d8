"""PortAudio input devices through sounddevice: import it lazily, find an input by name, re-scan after hotplug.

PortAudio enumerates devices once, when it initialises; a headset plugged in later (or a re-created audio
server source) is invisible until PortAudio is re-initialised. `rescan()` does that, but only while no stream
of this process is open, since terminating PortAudio closes every stream.
"""

from __future__ import annotations

import importlib
import re
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any


class DeviceError(Exception):
    """No usable input device (yet); the message is one line meant for a person."""


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    channels: int
    """Input channels the device offers."""
    default_rate: int
    """Hz, the device's default sample rate."""


_lock = threading.Lock()
_open_streams = 0


def sounddevice() -> ModuleType:
    """The sounddevice module; DeviceError with an install hint when PortAudio itself is missing."""
    try:
        sd = importlib.import_module("sounddevice")
    except OSError as exc:  # sounddevice raises OSError when libportaudio cannot be loaded
        raise DeviceError(f"PortAudio is not available ({exc}); install it: apt-get install libportaudio2") from None
    return sd


def stream_opened() -> None:
    global _open_streams
    with _lock:
        _open_streams += 1


def stream_closed() -> None:
    global _open_streams
    with _lock:
        _open_streams = max(0, _open_streams - 1)


def rescan() -> bool:
    """Re-initialise PortAudio so devices added or removed since are seen; False when streams are open."""
    sd = sounddevice()
    with _lock:
        if _open_streams:
            return False
        sd._terminate()
        sd._initialize()
        return True


def list_inputs() -> list[InputDevice]:
    sd = sounddevice()
    devices: Any = sd.query_devices()
    return [
        InputDevice(i, str(d["name"]), int(d["max_input_channels"]), round(d["default_samplerate"]))
        for i, d in enumerate(devices)
        if d["max_input_channels"] > 0
    ]


def find_input(pattern: str | None, channels: int) -> InputDevice:
    """The first input whose name matches `pattern` (case-insensitive regex; None: the default input)
    and offers at least `channels` channels; DeviceError saying why none does."""
    inputs = list_inputs()
    if pattern is None:
        sd = sounddevice()
        default = int(sd.default.device[0])
        if default < 0:
            # sounddevice resolves the host API's default lazily; -1 means none is configured
            default = int(sd.query_hostapis(0)["default_input_device"])
        candidates = [d for d in inputs if d.index == default]
        what, missing = "the default input", "no default input device"
    else:
        rx = re.compile(pattern, re.IGNORECASE)
        candidates = [d for d in inputs if rx.search(d.name)]
        what = f"input {candidates[0].name!r}" if candidates else ""
        missing = f"no input device matches {pattern!r}"
    if not candidates:
        names = ", ".join(repr(d.name) for d in inputs) or "none"
        raise DeviceError(f"{missing} (inputs now: {names})")
    for d in candidates:
        if d.channels >= channels:
            return d
    raise DeviceError(f"{what} offers {candidates[0].channels} channel(s); {channels} needed")
