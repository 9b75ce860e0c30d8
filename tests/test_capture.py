"""Live capture (firmware_py.capture) through a real audio stack, not a fake stream.

Each stack test starts its own PulseAudio server (tests/audio_stack.py) with a null sink as the headset
line, plays real audio into it with `paplay`, and captures its monitor with sounddevice through PortAudio's
ALSA host API and ALSA's pulse plugin. They skip only when PulseAudio / the ALSA plugin are not installed,
and fail instead when $CALLQA_REQUIRE_AUDIO_STACK is set (CI sets it; .ci/run installs the packages).

The real-speech call is an excerpt of the session's composed call (conftest `real_calls`: RAVDESS speech,
crosstalk, noise, G.711 line) with two interruptions, played at 48 kHz stereo and captured at 48 kHz.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import soxr
from pydantic import ValidationError
from scipy import signal

from edge_agent.audio import SAMPLE_RATE, read_call
from edge_agent.config import load_config
from edge_agent.pipeline import Pipeline
from firmware_py import devices
from firmware_py.capture import Capture, CaptureConfig
from firmware_py.ring import FrameRing
from tests.audio_stack import REQUIRE_ENV, PulseStack, missing
from tests.conftest import ROOT, run_cli, shared_scorer

EXCERPT_S = 45.2  # call00 from here on: agent and customer turns with two interruptions
LEAD_IN = (28.0, 31.0)  # seconds of call00 inside its dead air: line noise, nobody speaking
LINE_FLOOR = 10 ** (-60 / 20)  # full-scale units: quieter than any real line's noise
HEADSET = "^callqa_headset$"
NO_EMOTION = "emotion:\n  enabled: false\n"  # tone scoring is not part of what capture changes


# ---- the ring and the config: arithmetic, no audio stack -------------------------------------------------


def test_ring_keeps_order_across_wraparound_and_drops_oldest() -> None:
    ring = FrameRing(10, 2)
    data = np.arange(60, dtype=np.float32).reshape(30, 2)
    ring.write(data[:7])
    assert np.array_equal(ring.read(4), data[:4])
    ring.write(data[7:14])  # wraps: 3 unread + 7 = 10, full
    assert ring.dropped == 0 and ring.available == 10
    ring.write(data[14:17])  # 3 too many: the 3 oldest unread go
    assert ring.dropped == 3
    assert np.array_equal(ring.read(), data[7:17])
    ring.write(data[:25])  # one block larger than the ring keeps its newest frames
    assert ring.dropped == 3 + 15 and np.array_equal(ring.read(), data[15:25])
    assert ring.written == 7 + 7 + 3 + 25


def test_ring_clear_zeroes_the_memory() -> None:
    ring = FrameRing(8, 2)
    ring.write(np.ones((5, 2), np.float32))
    assert ring.clear() == 5
    assert ring.available == 0 and not ring._buf.any()  # discarded audio does not linger in memory
    assert ring.dropped == 0  # a discard is not a loss


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ({"agent_channel": 1, "customer_channel": 1}, "must differ"),
        ({"device": "usb(["}, "regular expression"),
        ({"retry_min_s": 5, "retry_max_s": 1}, "retry_max_s"),
        ({"ring_s": 0}, "ring_s"),
        ({"samplerate": 1000}, "samplerate"),
        ({"devcie": "usb"}, "devcie"),
    ],
)
def test_config_rejects_bad_values(bad: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(words)):
        CaptureConfig.model_validate(bad)


def test_two_mono_devices_may_use_the_same_channel_number() -> None:
    cfg = CaptureConfig(device="mic", customer_device="line", agent_channel=0, customer_channel=0)
    assert cfg.two_mono


# ---- the real stack ----------------------------------------------------------------------------------------


@pytest.fixture
def stack() -> Iterator[PulseStack]:
    why = missing()
    if why:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"audio stack required but unavailable: {why}")
        pytest.skip(why)
    root = Path(tempfile.mkdtemp(prefix="callqa-pa-"))  # short: the server's socket path must fit sun_path
    st = PulseStack(root)
    saved = {k: os.environ.get(k) for k in st.client_env}
    try:
        st.start()
        os.environ.update(st.client_env)
        devices.rescan()  # PortAudio reads the ALSA config (and so our PCMs) when it initialises
        yield st
    finally:
        st.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def open_capture() -> Iterator[Callable[..., Capture]]:
    made: list[Capture] = []

    def make(**kw: Any) -> Capture:
        cap = Capture(CaptureConfig(**{"device": HEADSET, "samplerate": 48000, **kw}))
        made.append(cap)
        cap.start()
        return cap

    yield make
    for cap in made:
        cap.stop()


@pytest.fixture(scope="module")
def speech(real_calls: list[Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The excerpt as a file for `edge-agent analyze`; for playback at 48 kHz float, the same excerpt after
    a few seconds of the call's own line noise (from its dead air), so the live pipeline starts in noise
    as the file's analysis does; and the excerpt's 16 kHz audio to find it in the capture."""
    out = tmp_path_factory.mktemp("capture")
    audio, rate = sf.read(real_calls[0], dtype="float32", always_2d=True)
    excerpt = out / "excerpt.wav"
    sf.write(excerpt, audio[int(EXCERPT_S * rate) :], rate, subtype="PCM_16")
    lead = audio[int(LEAD_IN[0] * rate) : int(LEAD_IN[1] * rate)]
    play = out / "play48k.wav"
    both = np.concatenate([lead, audio[int(EXCERPT_S * rate) :]])
    sf.write(play, soxr.resample(both, rate, 48000).astype(np.float32), 48000, subtype="FLOAT")
    # the file analysis hears the same lead-in as the live one: the speech model's decisions depend on the
    # noise heard before speech (its floor and leakage estimates), so the two start from the same state
    with_lead = out / "with_lead.wav"
    sf.write(with_lead, both, rate, subtype="PCM_16")
    config = out / "analyzer.yaml"
    config.write_text(NO_EMOTION)
    ref16 = np.concatenate(list(read_call(excerpt)))
    played16 = soxr.resample(both, rate, SAMPLE_RATE).astype(np.float32)
    return {
        "excerpt": excerpt,
        "with_lead": with_lead,
        "lead_s": len(lead) / rate,
        "play": play,
        "config": config,
        "ref16": ref16,
        "played16": played16,
    }


def lead_in_report(captured: np.ndarray, shift: float, live: list[dict[str, Any]], loud: list[Any]) -> str:
    """What the pipeline heard before the excerpt, in one message, and the capture kept as a WAV: whether an
    underrun handed it digital silence or the capture started late in the lead-in (this failed once in CI, stop
    29, and passed on every rerun; the audio of a failure is what tells the two apart)."""
    lead = captured[: int(shift * SAMPLE_RATE)]
    frames = lead[: len(lead) // 160 * 160].reshape(-1, 160, 2)
    zeros = (np.abs(frames).max(axis=1) == 0).sum(axis=0).tolist()
    tenths = lead[: len(lead) // 1600 * 1600].reshape(-1, 1600, 2).astype(np.float64)
    level = np.round(10 * np.log10(np.mean(tenths**2, axis=1) + 1e-12), 1)
    out = Path(os.environ.get("CALLQA_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "capture"
    out.mkdir(parents=True, exist_ok=True)
    sf.write(out / "live-lead-in.wav", captured, SAMPLE_RATE, subtype="FLOAT")
    (out / "live-lead-in.json").write_text(json.dumps(live))
    return (
        f"noise read as speech in the {shift:.2f} s lead-in: {loud}; digital-zero 10 ms frames per channel {zeros};"
        f" dBFS per 100 ms, agent {level[:, 0].tolist()}, customer {level[:, 1].tolist()};"
        f" capture kept in {out}"
    )


def first_block(cap: Capture, within: float = 15.0) -> np.ndarray:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        block = cap.read(0.2)
        if block is not None:
            return block
    raise AssertionError(f"no audio within {within} s: {cap.stats}")


def wait_state(cap: Capture, state: str, within: float) -> None:
    deadline = time.monotonic() + within
    while cap.stats.state != state:
        assert time.monotonic() < deadline, f"not {state} within {within} s: {cap.stats}"
        cap.read(0.1)  # the consumer keeps reading meanwhile: read() must not raise while the device is gone


def offset_of(ref: np.ndarray, live: np.ndarray) -> tuple[int, float]:
    """Where `ref` starts in `live` (samples) and the normalised correlation there."""
    c = signal.correlate(live, ref, mode="valid", method="fft")
    lag = int(np.argmax(c))
    seg = live[lag : lag + len(ref)]
    return lag, float(c[lag] / (np.linalg.norm(ref) * np.linalg.norm(seg) + 1e-12))


def test_live_capture_gives_the_events_analyze_gives(
    stack: PulseStack, open_capture: Callable[..., Capture], speech: dict[str, Any]
) -> None:
    """Play line noise then the excerpt into the line, capture 48 kHz stereo, run the Pipeline on the
    captured blocks as they come, from the first sample above -60 dBFS: a real line is never digitally
    silent, and the pipeline's noise floor, started on (near-)zero frames, takes the following line noise
    for speech for ~3 s (an edge_agent behaviour, reported; not what this test is about).

    Tolerances against `edge-agent analyze` on the excerpt file, after removing the excerpt's offset in
    the capture (cross-correlation):
    - the captured audio is the file's: correlation >= 0.97 per channel (not 1.0: a start offset that is
      not a multiple of 3 samples at 48 kHz is a fractional-sample shift at 16 kHz), agent on column 0,
      both columns at the same offset (one device, one clock);
    - nothing of 0.5 s or more is detected in the noise lead-in;
    - the live events are exactly those of the Pipeline run on the captured audio in one go (within a frame);
    - against the file's own analysis, the 10 ms activity agrees on >= 90 % of frames (the commercial speech
      weights flip borderline frames of these voices on the capture's fractional-sample shift);
    - talk time and talk-over counts against the file are printed (a flipped borderline utterance moves them);
    - no input overflows and no dropped frames.
    """
    res = run_cli("analyze", str(speech["with_lead"]), "--config", str(speech["config"]))
    assert res.returncode == 0, res.stderr
    ref = [json.loads(line) for line in res.stdout.splitlines()]
    # the file's events on the excerpt's clock (the lead-in is line noise: nothing may start in it)
    assert not [e for e in ref[:-1] if e["start"] < speech["lead_s"]], "speech in the file's lead-in"
    for e in ref[:-1]:
        e["start"], e["end"] = e["start"] - speech["lead_s"], e["end"] - speech["lead_s"]
    cap = open_capture()
    pipe = Pipeline(load_config(speech["config"]))
    first_block(cap)
    player = stack.play(speech["play"])
    fed: list[np.ndarray] = []
    live: list[dict[str, Any]] = []
    ended: float | None = None
    while ended is None or time.monotonic() - ended < 1.0:  # until 1 s after the player is done
        if ended is None and player.poll() is not None:
            ended = time.monotonic()
        block = cap.read(0.2)
        if block is None:
            continue
        if not fed:
            sound = np.flatnonzero(np.abs(block).max(axis=1) > LINE_FLOOR)
            if not len(sound):
                continue
            block = block[sound[0] :]
        fed.append(block)
        live += [e.to_dict() for e in pipe.process(block)]
    live += [e.to_dict() for e in pipe.finish()]
    assert player.returncode == 0
    st = cap.stats
    assert st.overflows == 0 and st.dropped_frames == 0, st

    captured, ref16 = np.concatenate(fed), speech["ref16"]
    lag, corr = offset_of(ref16[:, 0], captured[:, 0])
    lag_c, corr_c = offset_of(ref16[:, 1], captured[:, 1])
    assert corr >= 0.97 and corr_c >= 0.97, (corr, corr_c)
    assert abs(lag - lag_c) <= 1, (lag, lag_c)
    _, crossed = offset_of(ref16[:, 1], captured[:, 0])
    assert crossed < 0.5, crossed  # the customer is not on the agent's column
    shift = lag / SAMPLE_RATE
    assert 2.0 < shift < 4.0, shift  # the 3 s lead-in, less what played before the first block
    # nothing of consequence in the lead-in: the default weights take this line noise for the customer for about
    # 0.3 s once, while the live pipeline's floor settles (reported in the card); the frame agreement counts it.
    # The excerpt opens on the agent, whose first segment starts a frame or two early (onset padding) on some
    # captures: that is not the lead-in's. A loaded machine's playback may underrun inside the lead-in, which
    # hands the pipeline digital silence; tests/test_dropouts.py holds that this leaves line noise silence.
    noise_events = [e for e in live if e["type"] != "call_summary" and e["start"] < shift - 0.1]
    loud = [e for e in noise_events if e["type"] != "speech" or e["end"] - e["start"] >= 0.5]
    assert not loud, lead_in_report(captured, shift, live, loud)

    def segments(events: list[dict[str, Any]], who: str, dt: float = 0.0) -> list[tuple[float, float]]:
        return sorted((e["start"] - dt, e["end"] - dt) for e in events if e["type"] == "speech" and e["speaker"] == who)

    # the live analysis is exactly the analysis of the audio it captured, in whatever blocks it came
    offline = [e.to_dict() for e in Pipeline(load_config(speech["config"])).run([captured])]
    assert [e["type"] for e in offline] == [e["type"] for e in live]
    for a, b in zip(offline[:-1], live[:-1], strict=True):
        assert a.get("speaker") == b.get("speaker") and abs(a["start"] - b["start"]) <= 0.011, (a, b)
        assert abs(a["end"] - b["end"]) <= 0.011, (a, b)
    # against the file's own analysis: the commercial speech weights flip borderline frames of these RAVDESS
    # voices on the capture's fractional-sample shift and start state (frame agreement 0.95-0.98 over runs), so
    # the figures below are printed, and only talk time is held to the file's
    duration = len(ref16) / SAMPLE_RATE
    for who in ("agent", "customer"):
        want, got = segments(ref, who), segments(live, who, shift)
        agree = float(np.mean(activity(want, duration) == activity(got, duration)))
        print(f"{who}: frame agreement with the file's analysis {agree:.3f}")
        assert agree >= 0.9, (who, agree)
    ref_sum, live_sum = ref[-1], live[-1]
    assert ref_sum["type"] == live_sum["type"] == "call_summary"
    for who in ("agent", "customer"):
        # printed, not held: where the capture's start state flips a borderline utterance, these move by a second
        a, b = ref_sum[who]["talk_time"], live_sum[who]["talk_time"]
        n_ref = sum(e["type"] == "talk_over" and e["by"] == who for e in ref)
        n_live = sum(e["type"] == "talk_over" and e["by"] == who for e in live)
        print(f"{who}: talk time file {a} s live {b} s, talk-overs file {n_ref} live {n_live}")
        assert a > 2.0 and b > 2.0, (who, a, b)
    print(
        f"capture vs analyze: offset {shift:.3f} s, correlation {corr:.4f}/{corr_c:.4f}, segment boundary"
        f" error max {max_boundary_error(ref, live, shift):.3f} s, talk time agent {ref_sum['agent']['talk_time']}"
        f"/{live_sum['agent']['talk_time']} customer {ref_sum['customer']['talk_time']}"
        f"/{live_sum['customer']['talk_time']} s"
    )


def activity(segs: list[tuple[float, float]], duration: float) -> np.ndarray:
    """Frames with the shared scorer's definition; live segments shifted before the call start are cut at 0."""
    frames: np.ndarray = shared_scorer().frames([(max(s, 0.0), max(e, 0.0)) for s, e in segs], int(duration * 100) + 1)
    return frames


def max_boundary_error(ref: list[dict[str, Any]], live: list[dict[str, Any]], shift: float) -> float:
    """The largest distance from a boundary of the file's segments to the nearest live one of its kind."""
    err = 0.0
    for who in ("agent", "customer"):
        want = [(e["start"], e["end"]) for e in ref if e["type"] == "speech" and e["speaker"] == who]
        got = [(e["start"] - shift, e["end"] - shift) for e in live if e["type"] == "speech" and e["speaker"] == who]
        for s0, e0 in want:
            err = max(err, min(abs(s0 - s1) for s1, _ in got), min(abs(e0 - e1) for _, e1 in got))
    return err


def test_unplug_and_replug_recover_without_a_restart(stack: PulseStack, open_capture: Callable[..., Capture]) -> None:
    """No device at start: waiting, retrying. Plugged: running. Pulled: waiting, read() returns None and
    never raises. Put back: running again on the same Capture object, reconnects counted."""
    stack.unplug()
    cap = open_capture(retry_min_s=0.1, retry_max_s=0.4)
    time.sleep(0.8)
    st = cap.stats
    assert st.state == "waiting" and st.last_error and "callqa_headset" in st.last_error, st
    assert cap.read(0.1) is None
    stack.plug()
    first_block(cap)
    assert cap.stats.state == "running" and cap.stats.reconnects == 0  # found, not reconnected

    stack.unplug()
    wait_state(cap, "waiting", within=8.0)  # the stream's own end, or the stall watchdog at worst
    assert cap.stats.last_error
    time.sleep(0.5)
    assert cap.read(0.1) is None
    stack.plug()
    wait_state(cap, "running", within=8.0)
    first_block(cap)
    st = cap.stats
    assert st.reconnects == 1 and st.device == "callqa_headset", st


def test_a_stalled_reader_costs_the_oldest_audio_never_the_callback(
    stack: PulseStack, open_capture: Callable[..., Capture], speech: dict[str, Any]
) -> None:
    """A consumer that does not read for 2 s with a 0.5 s ring: the oldest ~1.5 s are dropped and counted,
    PortAudio reports no overflow (the callback kept running), the next read gives at most the ring's
    0.5 s, and discard() then empties the ring (privacy) and says how much it dropped."""
    cap = open_capture(ring_s=0.5)
    first_block(cap)
    stack.play(speech["play"])
    before = cap.stats
    time.sleep(2.0)
    st = cap.stats
    captured_s = (st.frames_captured - before.frames_captured) / 48000
    assert captured_s >= 1.7, st  # the callback went on filling while nobody read
    assert st.dropped_frames >= (captured_s - 0.5 - 0.1) * 48000, st
    assert st.overflows == 0, st
    block = cap.read(0.5)
    assert block is not None and 0.4 * SAMPLE_RATE <= len(block) <= 0.55 * SAMPLE_RATE, (
        None if block is None else len(block)
    )

    time.sleep(0.4)
    dropped = cap.discard()
    assert 0.3 * SAMPLE_RATE <= dropped <= 0.5 * SAMPLE_RATE, dropped
    after = cap.read(0.5)
    assert after is not None and len(after) < 0.25 * SAMPLE_RATE  # only what arrived since the discard


def test_two_mono_devices_are_aligned(
    stack: PulseStack, open_capture: Callable[..., Capture], speech: dict[str, Any]
) -> None:
    """Agent mic and customer line as two mono devices (callqa_agent, callqa_customer): both columns
    carry their side (correlation >= 0.97 with the file's channel) and line up within one 20 ms block."""
    cap = open_capture(
        device="^callqa_agent$", customer_device="^callqa_customer$", agent_channel=0, customer_channel=0
    )
    blocks = [first_block(cap)]
    player = stack.play(speech["play"])
    t0 = time.monotonic()
    while time.monotonic() - t0 < 5.0:
        block = cap.read(0.2)
        if block is not None:
            blocks.append(block)
    player.terminate()
    captured = np.concatenate(blocks)
    assert cap.stats.device == "callqa_agent + callqa_customer"
    ref = speech["played16"][: 3 * SAMPLE_RATE]
    lag_a, corr_a = offset_of(ref[:, 0], captured[:, 0])
    lag_c, corr_c = offset_of(ref[:, 1], captured[:, 1])
    assert corr_a >= 0.97 and corr_c >= 0.97, (corr_a, corr_c)
    assert abs(lag_a - lag_c) <= 0.02 * SAMPLE_RATE, (lag_a, lag_c)


PROBE = """
import json, sys, time
from edge_agent.config import load_config
from edge_agent.pipeline import Pipeline
from firmware_py.capture import Capture, CaptureConfig
cap = Capture(CaptureConfig(device=sys.argv[1], samplerate=48000))
cap.start()
pipe = Pipeline(load_config(sys.argv[2]))
frames, events = 0, []
while cap.read(0.5) is None:
    pass
print("running", flush=True)
t0 = time.monotonic()
while time.monotonic() - t0 < float(sys.argv[3]):
    block = cap.read(0.2)
    if block is not None:
        frames += len(block)
        events += pipe.process(block)
events += pipe.finish()
cap.stop()
print(json.dumps({"frames": frames, "speech": sum(e.type == "speech" for e in events)}), flush=True)
"""

WRITE_FLAGS = re.compile(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_APPEND")
FILE_CALL = re.compile(
    r"^\d+\s+(open|openat|openat2|creat|rename\w*|link\w*|symlink\w*|truncate|mknod\w*)\((.*)\)\s+=\s+(-?\d+)"
)
# not storage, or not audio: sinks and the sound device itself; libpulse's 256-byte auth cookie (in the test
# stack's own dir); libjack's metadata database, opened when PortAudio probes ALSA's jack PCM
HARMLESS = ("/dev/null", "/dev/tty", "/dev/pts/", "/dev/snd/", "/dev/shm/jack_db-")  # noqa: S108 - paths matched, not used


def test_no_audio_reaches_the_filesystem(stack: PulseStack, speech: dict[str, Any], tmp_path: Path) -> None:
    """Capture and analyse 7 s of playback (line noise, then speech) in a child process under `strace -f`:
    not one file is created, opened for writing, renamed, linked or truncated by it or any of its threads (PortAudio's,
    ALSA's, libpulse's included); shared memory is off in the stack, so audio only crosses a socket.
    The child proves it really captured speech (frames and speech segments), so the silence of the
    trace is not a run that did nothing."""
    strace = shutil.which("strace")
    if strace is None:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail("strace not installed")
        pytest.skip("strace not installed (apt-get install strace)")
    trace = tmp_path / "trace.txt"  # strace's own output, written by strace, outside the traced process
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [
            strace,
            "-f",
            "-qq",
            "-o",
            str(trace),
            "-e",
            "trace=%file,memfd_create",
            sys.executable,
            "-c",
            PROBE,
            HEADSET,
            str(speech["config"]),
            "7",  # the playback opens with ~3 s of line noise before the speech
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(child.stdout or []), daemon=True)
    deadline = time.monotonic() + 40
    first = child.stdout.readline()
    if "ptrace" in first or (child.poll() not in (None, 0)):
        pytest.skip(f"strace cannot trace here: {child.stderr.read() if child.stderr else ''}"[:300])
    assert first.strip() == "running", first
    stack.play(speech["play"])
    reader.start()
    child.wait(max(1.0, deadline - time.monotonic()))
    reader.join(5)
    assert child.returncode == 0, child.stderr.read() if child.stderr else ""
    result = json.loads(lines[-1])
    assert result["frames"] >= 6 * SAMPLE_RATE and result["speech"] >= 1, result

    writes = []
    for line in trace.read_text().splitlines():
        m = FILE_CALL.match(line)
        if not m or m.group(3).startswith("-"):
            continue  # failed calls wrote nothing
        call, args = m.group(1), m.group(2)
        path = re.search(r'"([^"]*)"', args)
        name = path.group(1) if path else args
        if call.startswith(("open", "creat")) and call != "creat" and not WRITE_FLAGS.search(args):
            continue
        if name.startswith(HARMLESS) or name == stack.client_env["PULSE_COOKIE"]:
            continue
        writes.append(line)
    assert not writes, "\n".join(writes[:20])
