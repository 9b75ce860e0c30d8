"""Per-call metrics for the summary: talk time, latency, monologue, loudness, rate, pitch, quality.

All accumulators are bounded (histograms, counters, short tails), so a four-hour call costs the
same memory as a four-minute one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.fft as sfft

from edge_agent.audio import FRAME, SAMPLE_RATE
from edge_agent.config import MetricsConfig
from edge_agent.events import PARTIES, DeadAir, Event, TalkOver

F32 = npt.NDArray[np.float32]
BOOL = npt.NDArray[np.bool_]
FPS = 100
HIST_LO, HIST_HI = -100, 0  # dBFS histogram range, 1 dB bins

PITCH_WIN = 640  # 40 ms
PITCH_EVERY = 4  # analyse every 4th own-speech frame
F0_MIN, F0_MAX = 70.0, 400.0
VOICED_R = 0.5
PEAK_HALF = 8  # frames each side a syllable peak must dominate
PEAK_PROMINENCE_DB = 4.0


class LevelHistogram:
    def __init__(self) -> None:
        self.counts = np.zeros(HIST_HI - HIST_LO + 1, np.int64)

    def add(self, db: F32) -> None:
        idx = np.clip(np.round(db).astype(np.int64) - HIST_LO, 0, len(self.counts) - 1)
        self.counts += np.bincount(idx, minlength=len(self.counts))

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def quantile(self, q: float) -> float | None:
        if self.n == 0:
            return None
        cum = np.cumsum(self.counts)
        return float(np.searchsorted(cum, q * cum[-1]) + HIST_LO)

    def count_at_or_above(self, db: float) -> int:
        return int(self.counts[max(int(np.ceil(db)) - HIST_LO, 0) :].sum())

    def power_mean_db(self) -> float | None:
        if self.n == 0:
            return None
        levels = np.arange(HIST_LO, HIST_HI + 1, dtype=np.float64)
        return float(10 * np.log10(np.sum(self.counts * 10 ** (levels / 10)) / self.n))


class PitchTracker:
    """F0 by normalised autocorrelation on 40 ms windows of a party's own speech."""

    def __init__(self) -> None:
        self._tail = np.zeros(PITCH_WIN - FRAME, np.float32)
        self._frame = 0
        self.semitones: LevelHistogram = LevelHistogram()  # reused as a 1-semitone histogram, offset below
        self.voiced = 0
        self._lags = np.arange(int(SAMPLE_RATE / F0_MAX), int(SAMPLE_RATE / F0_MIN) + 1)
        # zero padding to the window plus the longest lag keeps the autocorrelation linear up to that lag
        self._n_fft = sfft.next_fast_len(PITCH_WIN + int(self._lags[-1]) + 1, real=True)

    def process(self, samples: F32, own: BOOL) -> None:
        n = len(own)
        buf = np.concatenate([self._tail, samples[: n * FRAME]])
        self._tail = buf[len(buf) - (PITCH_WIN - FRAME) :].copy()
        idx = np.flatnonzero(own & ((np.arange(n) + self._frame) % PITCH_EVERY == 0))
        self._frame += n
        if len(idx) == 0:
            return
        starts = idx * FRAME
        win = buf[starts[:, None] + np.arange(PITCH_WIN)[None, :]]
        win = win - win.mean(axis=1, keepdims=True)
        spec = sfft.rfft(win, self._n_fft, axis=1)
        acf = sfft.irfft(spec.real**2 + spec.imag**2, self._n_fft, axis=1)[:, : self._lags[-1] + 1]
        r = acf[:, self._lags] / np.maximum(acf[:, :1], 1e-12)
        best = np.argmax(r, axis=1)
        ok = r[np.arange(len(best)), best] >= VOICED_R
        if not ok.any():
            return
        f0 = SAMPLE_RATE / self._lags[best[ok]]
        # semitones relative to 55 Hz, stored in the histogram shifted into its range
        st = 12 * np.log2(f0 / 55.0) + HIST_LO
        self.semitones.add(st.astype(np.float32))
        self.voiced += int(ok.sum())

    def summary(self) -> dict[str, Any]:
        h = self.semitones
        q10, q50, q90 = h.quantile(0.1), h.quantile(0.5), h.quantile(0.9)
        if q10 is None or q50 is None or q90 is None or self.voiced < 20:
            return {"pitch_median_hz": None, "pitch_variability_st": None}
        return {
            "pitch_median_hz": round(55.0 * 2 ** ((q50 - HIST_LO) / 12), 1),
            # robust spread: the 10-90 % range of a normal is 2.56 standard deviations
            "pitch_variability_st": round((q90 - q10) / 2.56, 2),
        }


class SyllableCounter:
    """Speaking-rate proxy: prominent peaks of the frame level inside a party's own speech."""

    def __init__(self) -> None:
        self._env = np.zeros(0, np.float32)
        self._own = np.zeros(0, bool)
        self.peaks = 0

    def process(self, level_db: F32, own: BOOL) -> None:
        env = np.concatenate([self._env, level_db])
        own_all = np.concatenate([self._own, own])
        n = len(env)
        if n <= 2 * PEAK_HALF:
            self._env, self._own = env, own_all
            return
        smooth = np.convolve(env, np.ones(3) / 3, mode="same")
        win = np.lib.stride_tricks.sliding_window_view(smooth, 2 * PEAK_HALF + 1)
        centre = smooth[PEAK_HALF : n - PEAK_HALF]
        is_peak = (centre >= win.max(axis=1)) & (centre - win.min(axis=1) >= PEAK_PROMINENCE_DB)
        is_peak &= own_all[PEAK_HALF : n - PEAK_HALF]
        # centres PEAK_HALF .. n-PEAK_HALF-1 are decided; the kept 2*PEAK_HALF frames are the next
        # call's context, whose first undecided centre is exactly the old n-PEAK_HALF
        self.peaks += int(is_peak.sum())
        self._env, self._own = env[n - 2 * PEAK_HALF :], own_all[n - 2 * PEAK_HALF :]


class CallMetrics:
    """Consumes aligned per-frame data and the detectors' events; `summary()` gives the call summary fields."""

    def __init__(self, cfg: MetricsConfig, dead_air_s: float) -> None:
        self.cfg = cfg
        self.dead_frames = round(dead_air_s * FPS)
        self.frames = 0
        self.talk = [0, 0]
        self.overlap = 0
        self.silence = 0
        self.speech_hist = [LevelHistogram(), LevelHistogram()]
        self.noise_hist = [LevelHistogram(), LevelHistogram()]
        self.pitch = [PitchTracker(), PitchTracker()]
        self.syllables = [SyllableCounter(), SyllableCounter()]
        self.own_frames = [0, 0]
        self.clipped = [0, 0]
        self.dropouts = [0, 0]
        self.samples = 0
        # linear power sums for leakage: [ch] mic power while only the other side talks, the other
        # side's power then, and ch's power in shared silence (its noise)
        self._p_leak = [0.0, 0.0]
        self._p_src = [0.0, 0.0]
        self._p_noise = [0.0, 0.0]
        self._n_leak = [0, 0]
        self._n_noise = [0, 0]
        self.talk_overs = {f"{p}_{k}": 0 for p in PARTIES for k in ("interruption", "backchannel")}
        self.dead_air: list[float] = []
        self.latencies: list[float] = []
        self._prev = (False, False)
        self._customer_end: int | None = None
        self._mono_start: int | None = None
        self._last_agent = -1
        self._cust_run = 0
        self.longest_monologue = 0

    def process(self, act: BOOL, level_db: F32, samples: F32) -> None:
        n = len(act)
        a, c = act[:, 0], act[:, 1]
        self.frames += n
        self.talk[0] += int(a.sum())
        self.talk[1] += int(c.sum())
        self.overlap += int((a & c).sum())
        self.silence += int((~a & ~c).sum())
        power = 10 ** (level_db.astype(np.float64) / 10)
        for ch in (0, 1):
            own = act[:, ch] & ~act[:, 1 - ch]
            self.speech_hist[ch].add(level_db[own, ch])
            self.noise_hist[ch].add(level_db[~a & ~c, ch])
            self.pitch[ch].process(np.ascontiguousarray(samples[:, ch]), own)
            self.syllables[ch].process(level_db[:, ch], own)
            self.own_frames[ch] += int(own.sum())
            self.clipped[ch] += int((np.abs(samples[:, ch]) >= 0.999).sum())
            other_only = act[:, 1 - ch] & ~act[:, ch]
            self._p_leak[ch] += float(power[other_only, ch].sum())
            self._p_src[ch] += float(power[other_only, 1 - ch].sum())
            self._n_leak[ch] += int(other_only.sum())
            self._p_noise[ch] += float(power[~a & ~c, ch].sum())
            self._n_noise[ch] += int((~a & ~c).sum())
        self.samples += len(samples)
        self._turns(act)

    def _turns(self, act: BOOL) -> None:
        """Response latency and agent monologues need frame order, so walk the frames."""
        prev_a, prev_c = self._prev
        t = self.frames - len(act)
        yield_frames = round(self.cfg.monologue_yield_s * FPS)
        for a, c in act.tolist():
            if prev_c and not c and not a:
                self._customer_end = t
            if c and not prev_c:
                self._customer_end = None
            if a and not prev_a and self._customer_end is not None:
                self.latencies.append((t - self._customer_end) / FPS)
                self._customer_end = None
            self._cust_run = self._cust_run + 1 if c else 0
            if a:
                if self._mono_start is None:
                    self._mono_start = t
                self._last_agent = t
            ended = self._cust_run >= yield_frames or (not a and not c and t - self._last_agent >= self.dead_frames)
            if self._mono_start is not None and ended:
                self._close_monologue()
            prev_a, prev_c = a, c
            t += 1
        self._prev = (prev_a, prev_c)

    def _close_monologue(self) -> None:
        if self._mono_start is not None:
            self.longest_monologue = max(self.longest_monologue, self._last_agent + 1 - self._mono_start)
        self._mono_start = None

    def leakage_db(self, ch: int) -> float | None:
        """Gain (dB) of the other side's voice in channel ch: its level there, less ch's own noise.

        None when ch's noise hides the leak (under 1 dB above it) or there was too little to measure.
        """
        if self._n_leak[ch] < 100 or self._n_noise[ch] < 100:
            return None
        heard = self._p_leak[ch] / self._n_leak[ch]
        noise = self._p_noise[ch] / self._n_noise[ch]
        src = self._p_src[ch] / self._n_leak[ch]
        if heard < noise * 10**0.1 or src <= 0:
            return None
        return float(10 * np.log10((heard - noise) / src))

    def add_dropouts(self, per_channel: npt.NDArray[np.intp]) -> None:
        """Broken (NaN or Inf) samples the pipeline zeroed, per channel."""
        for ch in (0, 1):
            self.dropouts[ch] += int(per_channel[ch])

    def add_events(self, events: list[Event]) -> None:
        for ev in events:
            if isinstance(ev, TalkOver):
                self.talk_overs[f"{ev.by}_{ev.kind}"] += 1
            elif isinstance(ev, DeadAir):
                self.dead_air.append(ev.end - ev.start)

    def summary(self) -> dict[str, Any]:
        self._close_monologue()
        leakage_db = (self.leakage_db(0), self.leakage_db(1))
        dur = self.frames / FPS
        total_talk = max(self.talk[0] + self.talk[1], 1)
        parties: dict[str, Any] = {}
        snrs = []
        for ch, p in enumerate(PARTIES):
            sh, nh = self.speech_hist[ch], self.noise_hist[ch]
            loud = sh.power_mean_db()
            med = sh.quantile(0.5)
            noise = nh.power_mean_db()
            snr = None if loud is None or noise is None else loud - noise
            if snr is not None:
                snrs.append(snr)
            # loud in absolute terms and well above the party's own norm: a hot mic is not shouting
            shout_level = self.cfg.shout_dbfs if med is None else max(self.cfg.shout_dbfs, med + self.cfg.shout_rise_db)
            shout_s = sh.count_at_or_above(shout_level) / FPS if sh.n else 0.0
            own_s = self.own_frames[ch] / FPS
            parties[p] = {
                "talk_time": round(self.talk[ch] / FPS, 2),
                "talk_ratio": round(self.talk[ch] / total_talk, 3),
                "talk_share_of_call": round(self.talk[ch] / max(self.frames, 1), 3),
                "loudness_dbfs": None if loud is None else round(loud, 1),
                "shouting": shout_s >= self.cfg.shout_min_s,
                "shouting_s": round(shout_s, 2),
                "speaking_rate_sps": round(self.syllables[ch].peaks / own_s, 2) if own_s >= 5 else None,
                **self.pitch[ch].summary(),
                "snr_db": None if snr is None else round(snr, 1),
                "clipping": round(self.clipped[ch] / max(self.samples, 1), 5),
            }
        flags = []
        if snrs and min(snrs) < self.cfg.low_snr_db:
            flags.append("low_snr")
        if any(x is not None and x > self.cfg.high_leakage_db for x in leakage_db):
            flags.append("high_leakage")
        if max(parties[p]["clipping"] for p in PARTIES) > self.cfg.max_clipping:
            flags.append("clipping")
        if self.talk[0] == 0 or self.talk[1] == 0:
            flags.append("one_sided")
        # a few broken samples cost nothing (they are zeroed); a large share is audio the analysis never had
        if max(self.dropouts) > self.cfg.max_dropout * max(self.samples, 1):
            flags.append("dropouts")
        agent = parties["agent"]
        return {
            "duration": round(dur, 2),
            "agent": agent,
            "customer": parties["customer"],
            "overlap_time": round(self.overlap / FPS, 2),
            "silence_time": round(self.silence / FPS, 2),
            "talk_over_counts": dict(self.talk_overs),
            "talk_overs": sum(self.talk_overs.values()),
            "dead_air_count": len(self.dead_air),
            "dead_air_total": round(sum(self.dead_air), 2),
            "dead_air_longest": round(max(self.dead_air), 2) if self.dead_air else 0.0,
            "longest_agent_monologue": round(self.longest_monologue / FPS, 2),
            "agent_response_latency_mean": round(float(np.mean(self.latencies)), 2) if self.latencies else None,
            "agent_responses": len(self.latencies),
            "monotone_agent": (agent["pitch_variability_st"] is not None and agent["pitch_variability_st"] < 1.5),
            "quality": {
                "snr_db": round(min(snrs), 1) if snrs else None,
                "leakage_customer_into_agent_db": None if leakage_db[0] is None else round(leakage_db[0], 1),
                "leakage_agent_into_line_db": None if leakage_db[1] is None else round(leakage_db[1], 1),
                "dropout_samples": sum(self.dropouts),
                "flags": flags,
                "low_confidence": bool(flags),
            },
        }
