"""A real Mosquitto process for tests: the shipped config, a free port, a private persistence directory.

`Mosquitto.stop()` / `kill()` and `start()` again keep the port and the persistence directory, so a test can
restart the broker under running clients the way an upgrade or a crash would.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_CONF = ROOT / "deploy" / "mosquitto" / "mosquitto-dev.conf"
# lines of the shipped config that only make sense on a real host; the test supplies its own
_OVERRIDDEN = {"listener", "port", "persistence_location", "persistence_file", "log_dest", "pid_file", "user"}


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


PRODUCTION_CONF = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"
SITE_DIR = "/etc/mosquitto/callqa/"
"""Where the production config expects the site's files; tests point it at their own."""
_LISTENER_KEYS = {"cafile", "certfile", "keyfile", "tls_version", "require_certificate", "use_identity_as_username"}


class Mosquitto:
    def __init__(self, workdir: Path, binary: str, conf: Path = SHIPPED_CONF, site_dir: Path | None = None) -> None:
        """`site_dir`: the config's /etc/mosquitto/callqa/ files are there instead (production config); its
        TLS listener settings then follow the test's listener line."""
        self.workdir, self.binary = workdir, binary
        self.port = free_port()
        self.data = workdir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        lines = conf.read_text().splitlines()
        if site_dir is not None:
            lines = [x.replace(SITE_DIR, f"{site_dir}/") for x in lines]
        listener = [x for x in lines if x.split()[:1] and x.split()[0] in _LISTENER_KEYS]
        kept = [
            line
            for line in lines
            if not line.strip() or line.lstrip().startswith("#") or line.split()[0] not in _OVERRIDDEN | _LISTENER_KEYS
        ]
        kept += [
            f"listener {self.port} 127.0.0.1",
            *listener,
            f"persistence_location {self.data}/",
            "log_dest stderr",
            f"user {getpass.getuser()}",  # as root, mosquitto would switch to 'mosquitto' and lose the tmp dir
        ]
        self.conf.write_text("\n".join(kept) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        assert self.proc is None, "already running"
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=logf, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise RuntimeError(f"mosquitto did not come up on port {self.port}:\n{self.log_tail()}")
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """SIGTERM: a clean shutdown that saves the persistence database; SIGKILL: a crash."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:]) if self.log.exists() else ""


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    binary = mosquitto_binary()
    if binary is None:
        # fail, not skip: a green run that never touched a broker would hide transport regressions
        pytest.fail("mosquitto is not installed: apt-get install mosquitto (.ci/run does)")
    broker = Mosquitto(tmp_path / "broker", binary)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
