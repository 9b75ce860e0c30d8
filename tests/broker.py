"""The `mosquitto` fixture: a real Mosquitto process (hub/local_broker.py) per test, on a free port.

`Mosquitto.stop()` / `kill()` and `start()` again keep the port and the persistence directory, so a test can
restart the broker under running clients the way an upgrade or a crash would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.local_broker import (
    PRODUCTION_CONF,
    ROOT,
    SHIPPED_CONF,
    SITE_DIR,
    Mosquitto,
    free_port,
    mosquitto_binary,
    port_open,
    site_broker,
    site_password,
)

__all__ = [
    "PRODUCTION_CONF",
    "ROOT",
    "SHIPPED_CONF",
    "SITE_DIR",
    "Mosquitto",
    "free_port",
    "mosquitto_binary",
    "port_open",
    "site_broker",
    "site_password",
]


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
