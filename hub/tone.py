"""Tone labels from reviewers, and the per-site anger alert threshold fitted from them (docs/hub.md, "Tone").

Learning from the center without audio leaving the desk: the hub never has the audio, only what the stations
measured. A QA reviewer (or a team lead, or an admin) listens to a call on the center's own recording system
and says, on the call page, what tone each party had (`LABELS`); the customer's `angry` is what matters, as it
confirms or rejects the customer anger the station measured.

Per site, each labelled call's **anger score** (`anger_score`: the highest customer anger the hub holds for
the call, from the summary's `emotion.ang` thirds and the customer's emotion events, whose calibrated
`confidence` is used where an angry one carries it, else `scores.angry`) is set against the reviewers' verdict
(`verdict`: most reviewers' customer label is `angry`; a tie goes to the latest label). A station raises an
alert when the anger reaches its `analyzer.emotion.anger_alert`, so a threshold `t` "alerts" a call when its
score is at least `t`. `fit` picks the threshold with the highest F1 of those alerts against the verdicts (a tie
goes to the higher threshold: fewer false alarms for the same F1) among the scores seen; it is trusted only from
`MIN_LABELS` scored calls with at least `MIN_EACH` angry and `MIN_EACH` not angry ones.

An admin sends a trusted fitted threshold to the site's stations as signed config (`send`, through
`hub.updates`): not automatic, and audited. The document sets `analyzer.emotion.anger_alert` only.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.config import EmotionConfig
from edge_agent.mqtt_publisher import BrokerConfig
from hub import updates
from hub.auth import Scope, User
from hub.scores import audit, now_iso
from hub.scoring import call_view
from hub.storage import Store

log = logging.getLogger(__name__)

LABELS = ("neutral", "happy", "angry", "sad")
"""The emotion model's classes (edge_agent/emotion.py), so labels and scores speak of the same things."""
PARTIES = ("customer", "agent")
LABEL_ROLES = ("admin", "reviewer", "lead")
MIN_LABELS = 20
"""Labelled calls with an anger score before a fitted threshold is trusted (and may be sent)."""
MIN_EACH = 5
"""... of which at least this many angry and this many not: an F1 over two angry calls means nothing."""
MAX_CALLS = 5000
"""The latest labelled calls of a site a fit reads (each needs its events read for its score)."""
DEFAULT_THRESHOLD = float(EmotionConfig.model_fields["anger_alert"].default)
"""What a station uses until a threshold is sent: the shipped default."""
REFUSED_PREFIX = "tone_form_refused."
"""Counters (`Store.count`) of tone forms refused for bad input, by reason."""
CONFIG_NAME = "station"
"""The signed config update's name (docs/updates.md: `--kind config --name station`)."""
_VERSION = re.compile(r"\d+(?:\.\d+)*")


class ToneError(ValueError):
    """A tone label or send that cannot be made: unknown call, wrong role, a threshold not trusted."""


# --- labels -------------------------------------------------------------------------------------------------


def label(store: Store, user: User, call_id: str, labels: Mapping[str, str]) -> int:
    """A reviewer's tone labels for a call (party -> label), replacing their earlier ones for those parties."""
    if user.role not in LABEL_ROLES:
        raise ToneError("tone labels are for QA reviewers, team leads and admins")
    bad = {p: v for p, v in labels.items() if p not in PARTIES or v not in LABELS}
    if bad or "customer" not in labels:
        raise ToneError(f"tone labels need the customer's, each one of {', '.join(LABELS)} (got {bad or labels})")
    with store.db.transaction():
        if store.db.one("SELECT 1 FROM calls WHERE call_id = ?", (call_id,)) is None:
            raise ToneError(f"no call {call_id}")
        for party, value in labels.items():
            store.db.execute(
                "INSERT INTO tone_labels VALUES (?, ?, ?, ?, ?) ON CONFLICT (call_id, reviewer, party)"
                " DO UPDATE SET label = excluded.label, created = excluded.created",
                (call_id, user.username, party, value, now_iso()),
            )
        audit(store, user.username, "tone.label", call_id, dict(labels))
    return len(labels)


def call_labels(store: Store, call_id: str) -> list[dict[str, str]]:
    """Every reviewer's labels for the call: reviewer, party, label, created (oldest first)."""
    rows = store.db.all(
        "SELECT reviewer, party, label, created FROM tone_labels WHERE call_id = ? ORDER BY created, reviewer, party",
        (call_id,),
    )
    return [dict(zip(("reviewer", "party", "label", "created"), map(str, r), strict=True)) for r in rows]


def verdict(customer_labels: Iterable[tuple[str, str]]) -> bool | None:
    """Whether the customer was angry by the reviewers' (created, label) pairs: the majority; a tie goes to the
    latest label. None without any."""
    got = sorted(customer_labels)
    if not got:
        return None
    angry = sum(1 for _, v in got if v == "angry")
    if 2 * angry != len(got):
        return 2 * angry > len(got)
    return got[-1][1] == "angry"


# --- the call's anger score -----------------------------------------------------------------------------------


def _unit(value: object) -> float | None:
    """A number in 0..1, or None (stored payloads are read defensively: any shape)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value) if 0.0 <= value <= 1.0 else None


def event_anger(e: Mapping[str, Any]) -> tuple[float, bool] | None:
    """(anger, calibrated) of one customer emotion event or entry: its calibrated `confidence` when the event
    is about anger (labelled angry, or an anger alert) and carries one, else its smoothed `scores.angry`."""
    label_ = e.get("label", e.get("emotion"))
    if label_ in ("angry", "anger") or e.get("reason") == "anger_alert":
        conf = _unit(e.get("confidence"))
        if conf is not None:
            return conf, True
    scores = e.get("scores")
    anger = _unit(scores.get("angry")) if isinstance(scores, Mapping) else None
    return None if anger is None else (anger, False)


def anger_score(events: Iterable[Mapping[str, Any]]) -> float | None:
    """The highest customer anger the hub holds for a call (0..1, 4 decimals), or None (no summary, emotion
    off, or nothing about the customer's anger): the summary's `emotion.ang` (the customer's mean anger in the
    first and last third of their speech, %) and every customer emotion event's anger (`event_anger`)."""
    view = call_view(events)
    if view is None:
        return None
    found: list[float] = []
    emotion = view.summary.get("emotion")
    ang = emotion.get("ang") if isinstance(emotion, Mapping) else None
    if isinstance(ang, list):
        found += [v for v in (_unit(x / 100) if isinstance(x, int | float) else None for x in ang) if v is not None]
    for e, _, _ in view.of_type("emotion"):
        if e.get("party", e.get("speaker")) == "customer":
            got = event_anger(e)
            if got is not None:
                found.append(got[0])
    return round(max(found), 4) if found else None


def raised_alert(events: Iterable[Mapping[str, Any]]) -> bool:
    """Whether the station raised a customer anger alert on the call (an `anger_alert` emotion event)."""
    return any(
        e.get("type") == "emotion"
        and e.get("reason") == "anger_alert"
        and e.get("party", e.get("speaker", "customer")) == "customer"
        for e in events
    )


# --- the fit ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rates:
    threshold: float
    alerts: int
    true_pos: int
    false_pos: int
    false_neg: int
    precision: float | None
    """Of the calls alerted, the share the reviewers found angry (None: no alert)."""
    recall: float | None
    """Of the calls the reviewers found angry, the share alerted (None: none angry)."""
    f1: float | None


def rates(points: Iterable[tuple[float, bool]], threshold: float) -> Rates:
    """Alerts at `threshold` (score >= threshold) against the verdicts."""
    tp = fp = fn = 0
    for score, angry in points:
        alert = score >= threshold
        tp += alert and angry
        fp += alert and not angry
        fn += angry and not alert
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return Rates(threshold, tp + fp, tp, fp, fn, precision, recall, f1)


@dataclass(frozen=True)
class Fit:
    calls: int
    angry: int
    best: Rates | None
    """The threshold with the highest F1 (None: no angry call, or no score above 0)."""
    trusted: bool


def fit(points: list[tuple[float, bool]], min_labels: int = MIN_LABELS, min_each: int = MIN_EACH) -> Fit:
    """The F1-best threshold among the scores seen (in (0, 1]: what `anger_alert` takes); ties: the higher."""
    angry = sum(1 for _, a in points if a)
    best: Rates | None = None
    for t in sorted({s for s, _ in points if s > 0}, reverse=True):
        r = rates(points, t)
        if r.f1 is not None and r.true_pos and (best is None or (r.f1 or 0.0) > (best.f1 or 0.0)):
            best = r
    trusted = len(points) >= min_labels and angry >= min_each and len(points) - angry >= min_each
    return Fit(len(points), angry, best, trusted and best is not None)


@dataclass(frozen=True)
class LabelledCall:
    call_id: str
    started: float | None
    score: float | None
    angry: bool
    reviewers: int
    alerted: bool
    """The station raised an anger alert on the call (an `anger_alert` emotion event)."""


def labelled_calls(store: Store, scope: Scope, site: str) -> list[LabelledCall]:
    """The site's calls with a customer tone label (in `scope`), latest first, with their verdict and score."""
    cond, params = scope.agents_sql("c.agent_id")
    rows = store.db.all(
        "SELECT l.call_id, c.started, l.created, l.label, l.reviewer FROM tone_labels l"
        " JOIN calls c ON c.call_id = l.call_id"
        f" WHERE l.party = 'customer' AND c.site = ?{cond} AND l.call_id IN (SELECT k.call_id FROM tone_labels k"
        "  JOIN calls kc ON kc.call_id = k.call_id WHERE k.party = 'customer' AND kc.site = ?"
        "  GROUP BY k.call_id ORDER BY MAX(kc.started) DESC LIMIT ?)",
        [site, *params, site, MAX_CALLS],
    )
    by_call: dict[str, list[tuple[str, str]]] = {}
    started: dict[str, float | None] = {}
    for call_id, start, created, value, _ in rows:
        by_call.setdefault(str(call_id), []).append((str(created), str(value)))
        started[str(call_id)] = float(start) if start is not None else None
    out = []
    for call_id, got in by_call.items():
        events = store.call_events(call_id)
        alerted = raised_alert(events)
        angry = verdict(got)
        out.append(LabelledCall(call_id, started[call_id], anger_score(events), bool(angry), len(got), alerted))
    out.sort(key=lambda c: (c.started or 0.0, c.call_id), reverse=True)
    return out


def in_force(store: Store, site: str) -> dict[str, Any]:
    """The threshold the site's stations were last sent (threshold, version, sent_by, sent_at, seat), or the
    shipped default (version None)."""
    row = store.db.one(
        "SELECT threshold, version, sent_by, sent_at FROM tone_thresholds WHERE site = ? AND seat = ''"
        " ORDER BY id DESC LIMIT 1",
        (site,),
    )
    if row is None:
        return {"threshold": DEFAULT_THRESHOLD, "version": None, "sent_by": None, "sent_at": None}
    return {"threshold": float(row[0]), "version": row[1], "sent_by": row[2], "sent_at": row[3]}


def report(store: Store, scope: Scope, site: str) -> dict[str, Any]:
    """What the tone page shows for a site: labelled calls, the fit, rates at the threshold in force and at the
    fitted one, and the sends so far."""
    calls = labelled_calls(store, scope, site)
    points = [(c.score, c.angry) for c in calls if c.score is not None]
    f = fit(points)
    force = in_force(store, site)
    sent = store.db.all(
        "SELECT threshold, version, seat, sent_by, sent_at, labels FROM tone_thresholds WHERE site = ?"
        " ORDER BY id DESC LIMIT 20",
        (site,),
    )
    return {
        "site": site,
        "calls": [asdict(c) for c in calls],
        "labelled": len(calls),
        "scored": f.calls,
        "angry": f.angry,
        "fit": asdict(f),
        "trusted": f.trusted,
        "in_force": force,
        "at_force": asdict(rates(points, force["threshold"])),
        "at_fit": asdict(f.best) if f.best is not None else None,
        "observed": asdict(_observed(calls)),
        "min_labels": MIN_LABELS,
        "min_each": MIN_EACH,
        "sent": [dict(zip(SENT_COLS, r, strict=True)) for r in sent],
    }


SENT_COLS = ("threshold", "version", "seat", "sent_by", "sent_at", "labels")


def _observed(calls: list[LabelledCall]) -> Rates:
    """The alerts the stations actually raised (whatever threshold each had then) against the verdicts."""
    return rates([(1.0 if c.alerted else 0.0, c.angry) for c in calls], 0.5)


# --- sending the threshold ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigSigner:
    """What the hub needs to sign and publish config itself (`qa-hub serve --update-key`): the update signing
    key and the broker, as `hub-admin` (docs/updates.md)."""

    key: Ed25519PrivateKey
    broker: BrokerConfig


def config_document(threshold: float) -> bytes:
    """The signed config's payload: only `analyzer.emotion.anger_alert`, validated by the station's own code."""
    return yaml.safe_dump({"analyzer": {"emotion": {"anger_alert": threshold}}}, sort_keys=True).encode()


def _version_tuple(text: object) -> tuple[int, ...]:
    return tuple(int(n) for n in str(text).split(".")) if isinstance(text, str) and _VERSION.fullmatch(text) else ()


def next_version(store: Store, site: str) -> str:
    """Newer than any station config version the hub sent this site or the site's seats report in health
    (a station refuses a version not newer than its own: docs/updates.md), as the next whole number."""
    seen: list[tuple[int, ...]] = [_version_tuple(v) for (v,) in store.db.all(
        "SELECT version FROM tone_thresholds WHERE site = ?", (site,))]  # fmt: skip
    for (health,) in store.db.all("SELECT health FROM devices WHERE site = ? AND health IS NOT NULL", (site,)):
        try:
            current = json.loads(health).get("updates", {}).get("current", {})
            seen.append(_version_tuple(current.get(f"config/{CONFIG_NAME}", {}).get("version")))
        except (ValueError, AttributeError):
            continue  # a health report of another shape: it names no version
    top = max((v for v in seen if v), default=(0,))
    return str(top[0] + 1)


def send(
    store: Store, user: User, site: str, threshold: float, signer: ConfigSigner, seat: str | None = None
) -> updates.Prepared:
    """Sign the threshold as station config and publish it to the site (retained) or one seat (a canary);
    recorded and audited once the broker has it. ToneError when not allowed or not trusted, ValueError when
    the broker does not take it."""
    if user.role != "admin":
        raise ToneError("only an admin sends config to stations")
    report_ = report(store, Scope(user), site)
    best = report_["at_fit"]
    if not report_["trusted"] or best is None:
        raise ToneError(f"site {site}: too few labels to trust a fitted threshold yet")
    if not math.isclose(threshold, best["threshold"], abs_tol=1e-9):
        raise ToneError(f"site {site}: the fitted threshold is now {best['threshold']}, not {threshold}")
    version = next_version(store, site)
    p = updates.prepare("config", CONFIG_NAME, version, config_document(threshold), signer.key, site, seat)
    updates.publish(signer.broker, p)
    with store.db.transaction():
        store.db.execute(
            "INSERT INTO tone_thresholds (site, seat, threshold, version, labels, sent_by, sent_at, topic, sha256)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (site, seat or "", threshold, version, report_["scored"], user.username, now_iso(), p.topic,
             p.manifest.sha256),
        )  # fmt: skip
        detail = {"threshold": threshold, "version": version, "seat": seat, "topic": p.topic,
                  "labels": report_["scored"], "f1": best["f1"], "sha256": p.manifest.sha256}  # fmt: skip
        audit(store, user.username, "tone.threshold.send", site, detail)
    log.info("sent anger_alert %s to %s (%s, version %s) for %s", threshold, site, p.topic, version, user.username)
    return p
