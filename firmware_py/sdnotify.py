"""systemd's notify protocol (sd_notify(3)): READY, WATCHDOG heartbeats, STATUS, STOPPING.

The protocol is one datagram to the AF_UNIX socket named by $NOTIFY_SOCKET (a leading '@' means the abstract
namespace); outside systemd the variable is unset and every call is a no-op. The watchdog interval comes from
$WATCHDOG_USEC: the station pings at half of it, from its analysis loop, so a hung pipeline stops the pings
and systemd restarts the service.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ) if env is None else env
        addr = env.get("NOTIFY_SOCKET")
        self._addr: str | None = None
        if addr:
            self._addr = "\0" + addr[1:] if addr.startswith("@") else addr
        usec = env.get("WATCHDOG_USEC")
        self.watchdog_s: float | None = int(usec) / 1e6 if usec and usec.isdigit() and int(usec) > 0 else None
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self._addr is not None

    def notify(self, *fields: str) -> bool:
        if self._addr is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(fields).encode(), self._addr)
            return True
        except OSError as exc:
            log.warning("sd_notify failed: %s", exc)
            return False

    def ready(self, status: str = "listening") -> None:
        self.notify("READY=1", f"STATUS={status}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
