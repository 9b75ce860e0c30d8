"""Simulated call outcomes with planted rules (issue 22): the demo's stand-in for a center's survey, CRM and
complaint exports, generated so that the rule validity report (hub/validity.py) has a known truth to recover.

The model, per scored call, from what the hub holds of it (its current score's automatic points per rule and
its call summary), nothing else:

- A rule **fires** on a call when its automatic points are non-zero (what the validity report reads too).
- `PLAN` says which rule shifts which outcome and by how much. Every rule it does not name for an outcome has
  no effect on that outcome: the report should find "no evidence" for it (or say it cannot tell, with too few
  calls either way), and "predicts" or "contrary" for the planted ones, by the sign of the shift against the
  rule's points and whether more of the outcome is better.
- **Confounders** (`CSAT_BY_LENGTH`, `CSAT_ANGRY_START`): the call's length and the customer's anger at the
  start shift satisfaction whatever the agent did, and both go with rules firing (a long call has more cut-ins
  and more dead air), so a report that did not adjust for them would credit rules with what length and anger
  did.
- `csat` = the latent score `CSAT_BASE` + the planted shifts of the rules that fired + the confounders' shifts
  + a normal draw of sd `CSAT_NOISE`, rounded and kept in 1..5 (a survey's integer). `fcr`, `repeat` (within
  `REPEAT_DAYS` days) and `complaint` are yes/no draws with probability `BASE[outcome]` + the planted shifts
  (kept inside 0..1 by the plan's sizes, so the effects are exactly additive, as the report's model assumes).
  The outcomes are drawn independently of one another.
- Deterministic: each call's draws come from its own generator seeded by `seed` and the call id, so a call's
  outcomes do not depend on which other calls exist or on their order.

The rows are imported through `hub.outcomes.import_rows` like any export, with `source="simulated"` and a
filename that says so, so every list of imports labels them as simulated.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from hub import outcomes
from hub.auth import User
from hub.storage import Store

log = logging.getLogger(__name__)

SOURCE = "simulated"
"""`outcome_imports.source` of these imports: how the validity report and the pages tell them apart."""
FILENAME = "simulated by the demo · 演示模拟数据 (planted rules: hub/simulated_outcomes.py)"
"""What the import lists show for these imports (the file name column), in both of the pages' languages."""
SEED = 22
PLAN: Mapping[str, Mapping[str, float]] = {
    # satisfaction (1..5, on the latent score): cutting the customer off costs, staying calm with an angry
    # customer pays, and, against the scorecard, an agent who does most of the talking is rated higher
    # (explaining at length: the kind of rule the report exists to question)
    "csat": {"agent_interruptions": -1.0, "calm_with_angry_customer": 1.0, "agent_talk_ratio": 1.1},
    # first-contact resolution (probability): an agent who listens actively resolves more
    "fcr": {"agent_backchannels": 0.4},
    # a repeat contact within REPEAT_DAYS days (probability): dead air goes with customers calling back
    "repeat": {"dead_air": 0.6},
    # complaints: no rule relates to them
    "complaint": {},
}
"""outcome -> rule -> the shift its firing causes (csat points on the latent score; probability for yes/no
outcomes). A rule missing under an outcome has no effect on it. The test reads this; nothing else holds the
truth."""
HIGHER_IS_BETTER: Mapping[str, bool] = {"csat": True, "fcr": True, "repeat": False, "complaint": False}
BASE: Mapping[str, float] = {"csat": 3.5, "fcr": 0.45, "repeat": 0.1, "complaint": 0.1}
"""csat: the latent score of a short call with a calm customer where no planted rule fired; the others:
the probability of yes."""
CSAT_NOISE = 0.7
"""sd of the latent csat's normal draw: the survey's own spread (two customers of one call would not rate it alike)."""
LENGTH_BINS_MIN = (2.0, 5.0, 10.0)
"""Call length bins' upper edges in minutes (<2, 2-5, 5-10, >=10), as the validity report adjusts for them."""
CSAT_BY_LENGTH = (0.0, -0.3, -0.6, -0.9)
"""Latent csat shift per length bin: a long call is a hard case, whoever the agent."""
ANGER_AT = 50
"""The customer is angry at the start when the summary's `emotion.ang[0]` (percent) is at least this."""
CSAT_ANGRY_START = -0.8
"""Latent csat shift when the customer was angry at the start."""
REPEAT_DAYS = 7
_CHUNK = 500
"""Ids per `IN (...)` lookup: well under both backends' parameter limits."""
MAX_CALLS = outcomes.MAX_ROWS
"""Calls given outcomes in one run (one import): the demo has hundreds; a bigger store gets the latest."""


@dataclass(frozen=True)
class CallFacts:
    """What the model reads of a call: its id, length (s), the customer's anger at the start, what fired."""

    call_id: str
    duration_s: float
    angry_start: bool
    fired: frozenset[str]


def length_bin(duration_s: float) -> int:
    return sum(duration_s >= edge * 60 for edge in LENGTH_BINS_MIN)


def angry_at_start(summary: Mapping[str, object]) -> bool:
    emotion = summary.get("emotion")
    ang = emotion.get("ang") if isinstance(emotion, Mapping) else None
    first = ang[0] if isinstance(ang, list) and ang else None
    return isinstance(first, int | float) and not isinstance(first, bool) and first >= ANGER_AT


def _summary(payload: object) -> Mapping[str, object]:
    """The stored summary event, or nothing: a payload that is not a JSON object counts as a calm customer."""
    try:
        doc = json.loads(payload) if isinstance(payload, str) else None
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def scored_calls(store: Store, limit: int = MAX_CALLS) -> list[CallFacts]:
    """The latest `limit` calls with a current score, oldest first. Calls held under a scoped id (`@`: another
    seat's claim, storage.py) are left out: no export names them, and the import refuses such ids."""
    rows = store.db.all(
        "SELECT c.call_id, c.duration, e.payload FROM calls c LEFT JOIN events e ON e.id = c.summary_id"
        " WHERE c.score_id IS NOT NULL ORDER BY c.started DESC, c.call_id LIMIT ?",
        (limit,),
    )
    ids = [str(r[0]) for r in rows]
    fired: dict[str, set[str]] = {}
    for i in range(0, len(ids), _CHUNK):
        part = ids[i : i + _CHUNK]
        marks = ", ".join("?" * len(part))
        for call_id, rule_id in store.db.all(
            f"SELECT call_id, rule_id FROM call_rules WHERE call_id IN ({marks}) AND auto_points <> 0", part
        ):
            fired.setdefault(str(call_id), set()).add(str(rule_id))
    out = [
        CallFacts(str(call_id), float(duration or 0.0), angry_at_start(_summary(payload)),
                  frozenset(fired.get(str(call_id), ())))
        for call_id, duration, payload in reversed(rows)
        if "@" not in str(call_id)
    ]  # fmt: skip
    return out


def _yes(rng: random.Random, p: float) -> int:
    return int(rng.random() < min(max(p, 0.0), 1.0))


def simulate(call: CallFacts, seed: int = SEED) -> dict[str, object]:
    """One call's outcome row (`import_rows` fields), from `PLAN`, the confounders and the call's own draws."""
    rng = random.Random(f"{seed}:{call.call_id}")  # noqa: S311 - simulated surveys, not a secret

    def shift(outcome: str) -> float:
        return sum(v for rule, v in PLAN[outcome].items() if rule in call.fired)

    latent = BASE["csat"] + shift("csat") + CSAT_BY_LENGTH[length_bin(call.duration_s)]
    latent += CSAT_ANGRY_START * call.angry_start + rng.gauss(0.0, CSAT_NOISE)
    return {
        "call_id": call.call_id,
        "csat": min(5, max(1, round(latent))),
        "fcr": _yes(rng, BASE["fcr"] + shift("fcr")),
        "repeat": _yes(rng, BASE["repeat"] + shift("repeat")),
        "repeat_days": REPEAT_DAYS,
        "complaint": _yes(rng, BASE["complaint"] + shift("complaint")),
    }


def rows(calls: list[CallFacts], seed: int = SEED) -> Iterator[tuple[int, dict[str, object]]]:
    """`import_rows` input: (row number from 1, fields) per call."""
    for i, call in enumerate(calls, 1):
        yield i, simulate(call, seed)


def imported(store: Store) -> bool:
    """Whether simulated outcomes were ever imported into this store."""
    return store.db.one("SELECT 1 FROM outcome_imports WHERE source = ? LIMIT 1", (SOURCE,)) is not None


def import_simulated(store: Store, user: User, seed: int = SEED) -> outcomes.Result:
    """Give every scored call simulated outcomes, imported as `user` (an admin or reviewer: every call) through
    the same all-or-nothing import as a center's export, labelled `SOURCE`."""
    if not user.sees_all:
        raise PermissionError("simulated outcomes are imported for every call: by an admin or QA reviewer")
    calls = scored_calls(store)
    if not calls:
        return outcomes.refuse(store, user, "nothing_matched")
    result = outcomes.import_rows(store, user, list(rows(calls, seed)), source=SOURCE, filename=FILENAME)
    if result.refused is not None:
        # every id was just read from the calls table, so a refusal means a bug here, not bad input
        first = result.problems[0].reason if result.problems else result.refused
        log.warning("simulated outcomes refused (%s): %s", result.refused, first)
    return result


def expected_verdict(outcome: str, rule_points: float, rule_id: str) -> str:
    """What the report should say of `rule_id` for `outcome` under `PLAN`: "predicts" when the planted shift
    goes the way the rule's points say (a deduction with a worse outcome, a credit with a better one),
    "contrary" when it goes the other way, "no_evidence" for a rule with no planted effect."""
    effect = PLAN[outcome].get(rule_id, 0.0)
    if effect == 0.0:
        return "no_evidence"
    better = effect > 0 if HIGHER_IS_BETTER[outcome] else effect < 0
    return "predicts" if better == (rule_points > 0) else "contrary"
