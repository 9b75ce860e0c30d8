"""Station runtime on the Pi: capture, call lifecycle, health, hardware (built by the station issue)."""
