"""The station installs and runs on arm64 (Raspberry Pi OS Bookworm's architecture), proven in emulation.

An arm64 Debian Bookworm root filesystem is built with debootstrap and run through qemu-user-static (Debian
packages; binfmt_misc registers the interpreter), deploy/station/provision.sh runs inside it exactly as on a
fresh Pi (apt packages, the venv, the package from PyPI wheels, config, secrets, the systemd unit enabled),
and `edge-agent analyze` on a real-speech call there must give the events this machine gives.

Slow (a first build takes minutes, emulation is ~20x slower), so it is marked `arm64`: `.ci/run` runs it as
its own step; `python -m pytest -m arm64` alone. Needs root (debootstrap, chroot, mounts). The root filesystem
is cached in $CALLQA_ARM64_ROOTFS (default ~/.cache/callqa/arm64-bookworm) and reused.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.arm64
PACKAGES = "python3,python3-venv,python3-pip,libsndfile1,libportaudio2,ca-certificates,systemd"


CHROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}
"""A fresh Pi's environment: none of this machine's PIP_*/SSL_* settings leak in."""


def sh(*argv: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    env = {**CHROOT_ENV, **{k: v for k, v in os.environ.items() if k.lower().endswith("_proxy")}}
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if res.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv[:4])}... exited {res.returncode}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        )
    return res


@pytest.fixture(scope="module")
def rootfs() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("the arm64 proof needs root (debootstrap, chroot); CI runs as root")
    for tool in ("debootstrap", "qemu-aarch64-static", "chroot"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: apt-get install debootstrap qemu-user-static binfmt-support (.ci/run)")
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "status").exists():
        sh("mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt))
    if not (binfmt / "qemu-aarch64").exists():
        sh("update-binfmts", "--enable", "qemu-aarch64")
    root = Path(os.environ.get("CALLQA_ARM64_ROOTFS", Path.home() / ".cache" / "callqa" / "arm64-bookworm"))
    if not (root / ".complete").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.parent.mkdir(parents=True, exist_ok=True)
        sh("debootstrap", "--arch=arm64", "--variant=minbase", f"--include={PACKAGES}", "bookworm", str(root),
           "http://deb.debian.org/debian")  # fmt: skip
        (root / ".complete").write_text("ok\n")
    # no /sys: onnxruntime's cpuinfo would read this x86 machine's CPU topology there and crash under
    # emulation; without it, it falls back to defaults (a Pi has its own /sys)
    mounts = [(Path("/proc"), root / "proc"), (Path("/dev"), root / "dev")]
    for src, dst in mounts:
        dst.mkdir(exist_ok=True)
        sh("mount", "--bind", str(src), str(dst))
    shutil.copy("/etc/resolv.conf", root / "etc" / "resolv.conf")
    # this machine's own extra CAs (an egress proxy's, say), as a site would add its own to a Pi image
    local_cas = list(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    if local_cas:
        for ca in local_cas:
            shutil.copy(ca, root / "usr" / "local" / "share" / "ca-certificates" / ca.name)
        sh("chroot", str(root), "update-ca-certificates")
    try:
        yield root
    finally:
        for _, dst in reversed(mounts):
            subprocess.run(["umount", "-l", str(dst)], check=False)


def analyze_in(rootfs: Path) -> str:
    """`edge-agent analyze` inside the root filesystem. qemu-user is not a Pi: should a run die with an emulated
    SIGSEGV it is retried, up to twice. Any other failure fails the test."""
    argv = ["chroot", str(rootfs), "/opt/callqa/venv/bin/edge-agent", "analyze", "/opt/call.wav"]
    for _ in range(3):
        res = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=CHROOT_ENV)
        if res.returncode != -11 and "uncaught target signal 11" not in res.stderr:
            break
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def test_provisioning_and_analysis_on_arm64(rootfs: Path, real_calls: list[Path], tmp_path: Path) -> None:
    assert "aarch64" in sh("chroot", str(rootfs), "uname", "-m").stdout
    # the project as a release would ship it: the tracked files
    src = rootfs / "opt" / "src"
    shutil.rmtree(src, ignore_errors=True)
    files = sh("git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard").stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    shutil.copy(real_calls[0], rootfs / "opt" / "call.wav")
    (rootfs / "opt" / "seat.env").write_text("EDGE_AGENT_MQTT_USERNAME=desk-1\nEDGE_AGENT_MQTT_PASSWORD=x\n")
    out = sh("chroot", str(rootfs), "sh", "/opt/src/deploy/station/provision.sh", "/opt/src",
             "/opt/src/deploy/station/station.example.yaml", "/opt/seat.env").stdout  # fmt: skip
    assert "provisioned: callqa" in out
    assert (rootfs / "etc/systemd/system/multi-user.target.wants/edge-agent.service").is_symlink()
    assert oct((rootfs / "etc/edge-agent/secrets.env").stat().st_mode & 0o777) == "0o600"
    # the installed station validates its shipped example config (capture section included)
    check = "from firmware_py.config import load; load('/etc/edge-agent/station.yaml'); print('config ok')"
    assert "config ok" in sh("chroot", str(rootfs), "/opt/callqa/venv/bin/python", "-c", check).stdout
    arm = analyze_in(rootfs)
    x86 = run_cli("analyze", str(real_calls[0])).stdout
    a = [json.loads(x) for x in arm.splitlines()]
    b = [json.loads(x) for x in x86.splitlines()]
    (tmp_path / "arm64.jsonl").write_text(arm)
    assert [e["type"] for e in a] == [e["type"] for e in b]
    # same events; times may differ in the last digit where float rounding differs between architectures
    for ea, eb in zip(a[:-1], b[:-1], strict=True):
        assert {k: v for k, v in ea.items() if k not in ("start", "end", "overlap")} == {
            k: v for k, v in eb.items() if k not in ("start", "end", "overlap")
        }
        assert abs(ea["start"] - eb["start"]) <= 0.011 and abs(ea["end"] - eb["end"]) <= 0.011
    sa, sb = a[-1], b[-1]
    for party in ("agent", "customer"):
        assert abs(sa[party]["talk_time"] - sb[party]["talk_time"]) <= 0.05
    assert sa["talk_overs"] == sb["talk_overs"] and sa["dead_air_count"] == sb["dead_air_count"]
