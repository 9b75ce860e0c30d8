"""The seat's status LED and privacy button, through gpiozero (the 'pi' extra); off when not configured.

LED: steady on = listening (idle or in a call), off = privacy, fast blink = fault (no audio device, broker
unreachable for long). The button toggles privacy. gpiozero picks the Pi's pin factory itself; tests pass
gpiozero's MockFactory, the one fake here, because a GPIO pin cannot exist on a build machine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)


class Indication(StrEnum):
    LISTENING = "listening"
    PRIVACY = "privacy"
    FAULT = "fault"


class Indicators:
    def __init__(
        self,
        led_pin: int | None,
        button_pin: int | None,
        on_button: Callable[[], None],
        pin_factory: Any = None,
    ) -> None:
        self.shown: Indication | None = None
        self._led: Any = None
        self._button: Any = None
        if led_pin is None and button_pin is None:
            return
        try:
            from gpiozero import LED, Button
        except ImportError:
            log.error("gpio pins are configured but gpiozero is not installed (pip install 'callqa[pi]')")
            return
        if led_pin is not None:
            self._led = LED(led_pin, pin_factory=pin_factory)
        if button_pin is not None:
            self._button = Button(button_pin, pin_factory=pin_factory, bounce_time=0.05)
            self._button.when_pressed = lambda: on_button()

    def show(self, what: Indication) -> None:
        if what == self.shown:
            return
        self.shown = what
        if self._led is None:
            return
        if what is Indication.LISTENING:
            self._led.on()
        elif what is Indication.PRIVACY:
            self._led.off()
        else:
            self._led.blink(on_time=0.1, off_time=0.1)

    def close(self) -> None:
        for dev in (self._led, self._button):
            if dev is not None:
                dev.close()
