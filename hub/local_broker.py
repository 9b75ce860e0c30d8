"""A broker on this machine, for the demo, tests and benchmarks: a managed Mosquitto process, or an embedded one.

`Mosquitto` runs the real broker with the shipped config (deploy/mosquitto/), a free port and a private
persistence directory; `stop()`/`kill()` and `start()` again keep the port and the directory, so a test can
restart the broker under running clients the way an upgrade or a crash would.

`EmbeddedBroker` is for machines without Mosquitto (the demo's fallback): amqtt (MQTT 3.1.1, QoS 0-2, retained
messages, persistent sessions) on its own asyncio loop in a daemon thread, bound to loopback, anonymous, its
sessions in memory only. A machine's own demo, never a site's broker.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from edge_agent.mqtt_publisher import BrokerConfig

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]  # the checkout: deploy/ holds the configs
SHIPPED_CONF = ROOT / "deploy" / "mosquitto" / "mosquitto-dev.conf"
# lines of the shipped config that only make sense on a real host; the test supplies its own
_OVERRIDDEN = {"listener", "port", "persistence_location", "persistence_file", "log_dest", "pid_file", "user"}


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


PRODUCTION_CONF = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"


def site_password(site_dir: Path, user: str) -> str:
    """A provisioned broker user's password: deploy/mosquitto/provision_site.py writes it to secrets/USER.env."""
    env = (site_dir / "secrets" / f"{user}.env").read_text()
    return next(x.split("=", 1)[1] for x in env.splitlines() if x.startswith("EDGE_AGENT_MQTT_PASSWORD="))


def site_broker(site_dir: Path, port: int, user: str) -> BrokerConfig:
    """`user`'s connection to a local broker on `port` running the production config with `site_dir`'s files:
    TLS verified against the site CA, the provisioned password."""
    return BrokerConfig.from_url(
        f"mqtts://{user}:{site_password(site_dir, user)}@127.0.0.1:{port}", ca_certs=str(site_dir / "ca.crt")
    )


SITE_DIR = "/etc/mosquitto/callqa/"
"""Where the production config expects the site's files; tests point it at their own."""
_LISTENER_KEYS = {
    "cafile",
    "certfile",
    "keyfile",
    "tls_version",
    "require_certificate",
    "use_identity_as_username",
    "use_username_as_clientid",
}


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
        if self.proc is not None:
            raise RuntimeError("mosquitto is already running")
        with open(self.log, "ab") as logf:
            # the binary is the one found on this machine's own PATH, the config file is ours
            self.proc = subprocess.Popen(  # noqa: S603
                [self.binary, "-c", str(self.conf)], stdout=logf, stderr=subprocess.STDOUT
            )
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


class EmbeddedBrokerError(RuntimeError):
    pass


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="embedded-broker", daemon=True)
        self._broker: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError as exc:  # the `demo` extra
            raise EmbeddedBrokerError("the embedded broker needs amqtt: pip install 'callqa[hub]'") from exc
        # amqtt logs every connection at INFO: the demo's own lines matter more
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}", "max_connections": 0}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        self._thread.start()

        async def boot() -> Any:
            broker = Broker(config, loop=self._loop)
            await broker.start()
            return broker

        fut: Future[Any] = asyncio.run_coroutine_threadsafe(boot(), self._loop)
        try:
            self._broker = fut.result(timeout)
        except Exception as exc:
            raise EmbeddedBrokerError(f"the embedded broker did not start on {self.host}:{self.port}: {exc}") from exc
        log.info("embedded MQTT broker listening on %s", self.url)

    def stop(self, timeout: float = 10.0) -> None:
        if self._broker is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop).result(timeout)
            except Exception:
                log.warning("the embedded broker did not shut down cleanly", exc_info=True)
            self._broker = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
