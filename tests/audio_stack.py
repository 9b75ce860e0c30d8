"""A real audio stack for capture tests: a private PulseAudio server, null sinks, and ALSA devices on them.

`PulseStack` starts `pulseaudio` as this process's child with its own runtime dir, socket, cookie and home
under a temp dir (never the system's or the user's server), no autospawn and no shared memory (audio goes
over the socket, nothing lands in /dev/shm). A stereo null sink `callqa_line` plays the part of the headset
line; its monitor is the capture side. Two mono remap sources on that monitor (`callqa_agent_src`,
`callqa_customer_src`) play two separate mono devices.

PortAudio (Debian's build has ALSA and OSS host APIs, no PulseAudio one) reaches them through ALSA's `pulse`
plugin: a private ALSA config, included after the system one via ALSA_CONFIG_PATH, names three PCMs with
hints so they are listed like real cards:

    callqa_headset  stereo, the line's monitor (agent left, customer right)
    callqa_agent    mono, left side only       callqa_customer  mono, right side only

Unplugging is unloading the null sink: the sources vanish, open streams end with an error and opening
fails until it is loaded again, as with a USB headset pulled out and put back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

SINK = "callqa_line"
RATE = 48000
PCMS = {
    "callqa_headset": f"{SINK}.monitor",
    "callqa_agent": "callqa_agent_src",
    "callqa_customer": "callqa_customer_src",
}
PULSE_PLUGIN_GLOBS = (
    "/usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so",
    "/usr/lib/alsa-lib/libasound_module_pcm_pulse.so",
)
REQUIRE_ENV = "CALLQA_REQUIRE_AUDIO_STACK"


class StackUnavailable(Exception):
    """PulseAudio or the ALSA pulse plugin is not installed here."""


def missing() -> str | None:
    """What is missing for the stack, or None when it can run."""
    for tool in ("pulseaudio", "pactl", "paplay"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (apt-get install pulseaudio pulseaudio-utils libasound2-plugins)"
    if not any(Path("/").glob(g.lstrip("/")) for g in PULSE_PLUGIN_GLOBS):
        return "ALSA pulse plugin not installed (apt-get install libasound2-plugins)"
    return None


class PulseStack:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "native"
        self.proc: subprocess.Popen[bytes] | None = None
        self.players: list[subprocess.Popen[bytes]] = []
        self.client_env = {
            "PULSE_SERVER": f"unix:{self.socket}",
            "PULSE_CLIENTCONFIG": str(root / "client.conf"),
            "PULSE_COOKIE": str(root / "cookie"),
            "PULSE_RUNTIME_PATH": str(root / "runtime"),
            "PULSE_STATE_PATH": str(root / "state"),
            "ALSA_CONFIG_PATH": str(root / "asound.conf"),
        }

    # ---- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> PulseStack:
        why = missing()
        if why:
            raise StackUnavailable(why)
        for d in ("runtime", "state", "home"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        (self.root / "client.conf").write_text("autospawn = no\nenable-shm = no\n")
        (self.root / "default.pa").write_text(
            f"load-module module-native-protocol-unix socket={self.socket} auth-anonymous=1\n"
        )
        (self.root / "asound.conf").write_text(self._alsa_conf())
        env = {**os.environ, **self.client_env, "HOME": str(self.root / "home"), "XDG_RUNTIME_DIR": str(self.root)}
        env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        self.proc = subprocess.Popen(
            [
                "pulseaudio",
                "--daemonize=no",
                "--system=no",
                "-n",
                "-F",
                str(self.root / "default.pa"),
                "--exit-idle-time=-1",
                "--use-pid-file=no",
                "--disable-shm=yes",
                "--realtime=no",
                "--high-priority=no",
                "--log-target=file:" + str(self.root / "pulse.log"),
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                log = (
                    (self.root / "pulse.log").read_text(errors="replace")[-2000:]
                    if (self.root / "pulse.log").exists()
                    else ""
                )
                raise RuntimeError(f"pulseaudio exited with {self.proc.returncode}: {log}")
            if self.socket.exists() and self._pactl("info", check=False).returncode == 0:
                break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("pulseaudio did not come up within 15 s")
            time.sleep(0.05)
        self.plug()
        return self

    def stop(self) -> None:
        for p in self.players:
            _end(p)
        self.players.clear()
        if self.proc is not None:
            _end(self.proc)
            self.proc = None

    def __enter__(self) -> PulseStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the "headset" ---------------------------------------------------------------------------------

    def plug(self) -> None:
        """Load the line (stereo null sink) and the two mono sources on its monitor."""
        self.pactl(
            "load-module", "module-null-sink", f"sink_name={SINK}", f"rate={RATE}", "channels=2", "format=float32le"
        )
        for src, side in (("callqa_agent_src", "front-left"), ("callqa_customer_src", "front-right")):
            self.pactl(
                "load-module",
                "module-remap-source",
                f"master={SINK}.monitor",
                f"source_name={src}",
                "channels=1",
                f"master_channel_map={side}",
                "channel_map=mono",
                "remix=no",
            )

    def unplug(self) -> None:
        """Unload the line and its sources, like pulling the headset's USB plug."""
        for line in reversed(self.pactl("list", "short", "modules").splitlines()):
            mod_id, name = line.split("\t")[:2]
            if name in ("module-remap-source", "module-null-sink"):
                self.pactl("unload-module", mod_id)

    def play(self, wav: Path) -> subprocess.Popen[bytes]:
        """Play a WAV into the line (not waiting for it to end)."""
        p = subprocess.Popen(
            ["paplay", f"--device={SINK}", "--latency-msec=500", str(wav)],
            env={**os.environ, **self.client_env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.players.append(p)
        return p

    def pactl(self, *args: str) -> str:
        return self._pactl(*args).stdout

    def _pactl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["pactl", *args],
            env={**os.environ, **self.client_env},
            capture_output=True,
            text=True,
            check=check,
            timeout=10,
        )

    @staticmethod
    def _alsa_conf() -> str:
        # the system config first (it defines the pulse PCM type and the usual devices), then ours
        pcms = "".join(
            f'pcm.{name} {{\n  type pulse\n  device "{source}"\n  hint {{ show on description "{name} (test)" }}\n}}\n'
            for name, source in PCMS.items()
        )
        return "</usr/share/alsa/alsa.conf>\n" + pcms


def _end(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
    if p.stderr is not None:
        p.stderr.close()
