"""Coaching (issue 22): tiers by score band, coaching sessions from an agent's weakest rules, and recognition.

Tiered coaching (分级面谈): a center sets score bands (`Tier`: a level, a name in English and Chinese, and the
band's lower bound; the lowest band has none), center-wide or per site (a site's own list replaces the
center's for the agents of that site's teams; `DEFAULT_TIERS` until an admin sets any). For an agent and a
period (`DEFAULT_DAYS` ending today) `suggestion` gives their weighted mean score from the daily rollups, the
band it falls in, their weakest rules (the most points lost per scored call, with the calls each fired on)
and their credited good practice (rules with positive points), from `agent_rule_daily`.

A team lead (their team's agents only), a QA reviewer or an admin opens a session for the agent from it: the
tier, the targeted rules (from the active scorecard, 1..`MAX_RULES`), goals and notes, the period. The coach
adds follow-up notes and closes it; the agent (and only the agent: not their lead on their behalf) acknowledges
it once and may comment. `rule_trend` shows, per targeted rule, the points lost per call in week-long buckets
anchored on the day the session was opened: the `WEEKS_BEFORE` before it and every one since, so coach and
agent see whether it improved. Recognition (`recognition`): the agent's best calls of the period, the rules
that credited them, and kudos: a call a lead or reviewer marked with a short note, shown to the agent.

Every change is audited (`hub.scores.audit`, actions `coaching.*`); every refusal is a `CoachingError` with a
key (its message translated on the pages) and is counted (`REFUSED_PREFIX` + key in `counters`). Scope as
everywhere: admins and reviewers see every agent, a lead their team, an agent themselves; what a user may not
see is `NotFound`, as if it did not exist.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any

from hub import aggregate
from hub.auth import Scope, User
from hub.scorecard import Scorecard
from hub.scores import audit, get_scorecard, now_iso
from hub.storage import Store

log = logging.getLogger(__name__)

COACH_ROLES = ("admin", "reviewer", "lead")
"""Who opens, follows up and closes sessions and gives kudos (a lead within their team)."""
MAX_TIERS = 6
NAME_MAX = 40
"""Characters of a tier's name."""
MAX_RULES = 5
"""Rules one session targets: a conversation covers a few habits, not the whole scorecard."""
GOALS_MAX = 2000
NOTE_MAX = 2000
KUDOS_MAX = 280
MAX_NOTES = 200
"""Follow-ups and comments per session."""
DEFAULT_DAYS = 28
MIN_DAYS, MAX_DAYS = 7, 182
WEEKS_BEFORE = 4
MAX_WEEKS_SINCE = 26
"""Week buckets shown after a session's day (the latest ones, for a session opened long ago)."""
SUGGESTED = 5
"""Weakest and best rules listed in a suggestion."""
REFUSED_PREFIX = "coaching_refused."
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Tier:
    level: int
    """The tier's number as the center says it (tier 3: formal review ... tier 1: recognition)."""
    name_en: str
    name_zh: str
    min_score: float | None
    """The band's lower bound (a score at least this falls in it unless a higher band takes it); None: lowest."""

    def name(self, lang: str) -> str:
        return self.name_zh if lang == "zh-CN" else self.name_en


DEFAULT_TIERS = (
    Tier(3, "Formal review", "正式面谈", None),
    Tier(2, "Coaching", "辅导面谈", 60.0),
    Tier(1, "Recognition", "表扬", 75.0),
)


class CoachingError(ValueError):
    """A refused change or input; `key` names it (counters, the pages' translated line), `status` the HTTP one."""

    def __init__(self, key: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.key = key
        self.status = status


class NotFound(LookupError):
    """No such session, agent or call for this user (out of scope reads the same)."""


def refuse(store: Store, user: User, key: str, message: str, status: int = 400) -> CoachingError:
    """Count the refusal and return the error to raise."""
    n = store.bump_counter(f"{REFUSED_PREFIX}{key}")
    log.info("coaching: refused %s from %s: %s (%d so far)", key, user.username, message, n)
    return CoachingError(key, message, status)


def refused_counts(store: Store) -> dict[str, int]:
    return {k.removeprefix(REFUSED_PREFIX): v for k, v in store.counters().items() if k.startswith(REFUSED_PREFIX)}


def _text(store: Store, user: User, value: object, what: str, limit: int, required: bool = True) -> str:
    s = value.strip() if isinstance(value, str) else ""
    if value is not None and not isinstance(value, str):
        raise refuse(store, user, "bad_text", f"{what} must be text")
    if len(s) > limit:
        raise refuse(store, user, "too_long", f"{what} is {len(s)} characters: at most {limit}")
    if required and not s:
        raise refuse(store, user, f"no_{what}", f"{what} must not be blank")
    if _CONTROL.search(s):
        raise refuse(store, user, "bad_text", f"{what} holds control characters")
    return s


def _visible(store: Store, user: User, agent_id: str) -> None:
    known = store.db.scalar("SELECT 1 FROM agents WHERE agent_id = ?", (agent_id,))
    if known is None or not Scope(user).can_see_agent(store, agent_id):
        raise NotFound("no such agent")


def _coach(store: Store, user: User, what: str) -> None:
    if user.role not in COACH_ROLES:
        raise refuse(store, user, "role", f"{what} needs role admin, reviewer or lead", 403)


# --- tiers ----------------------------------------------------------------------------------------------------------


def agent_site(store: Store, agent_id: str) -> str | None:
    row = store.db.one(
        "SELECT t.site FROM agents a LEFT JOIN teams t ON t.team_id = a.team_id WHERE a.agent_id = ?", (agent_id,)
    )
    return str(row[0]) if row and row[0] else None


def tiers_for(store: Store, site: str | None) -> tuple[list[Tier], str]:
    """The bands in force for `site` (None: the center's), lowest first, and where they come from: `site`,
    `center` or `default`."""
    for key, source in ((site, "site"), ("", "center")):
        if key is None:
            continue
        rows = store.db.all(
            "SELECT level, name_en, name_zh, min_score FROM coaching_tiers WHERE site = ? ORDER BY position", (key,)
        )
        if rows:
            return [Tier(int(lv), str(en), str(zh), None if m is None else float(m)) for lv, en, zh, m in rows], source
    return list(DEFAULT_TIERS), "default"


def tier_of(tiers: Sequence[Tier], score: float | None) -> Tier | None:
    """The band `score` falls in (the highest whose lower bound it reaches); None without a score."""
    if score is None:
        return None
    found = tiers[0]
    for tier in tiers[1:]:
        if tier.min_score is not None and score >= tier.min_score:
            found = tier
    return found


def scale(store: Store) -> tuple[float, float]:
    """The active scorecard's min..max score (thresholds must lie within it)."""
    card = get_scorecard(store)
    return (card.min_score, card.max_score) if card else (0.0, 100.0)


def validate_tiers(store: Store, user: User, raw: object) -> list[Tier]:
    """Bands as sent (lowest first): 2..MAX_TIERS, each a level 1..9 and names 1..NAME_MAX characters; the first
    without a lower bound, the others with increasing ones inside the scorecard's scale."""
    if not isinstance(raw, list) or not 2 <= len(raw) <= MAX_TIERS:
        raise refuse(store, user, "tier_count", f"give 2 to {MAX_TIERS} tiers, lowest band first")
    lo, hi = scale(store)
    out: list[Tier] = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise refuse(store, user, "tier_shape", f"tier {i + 1}: an object with level, name_en, name_zh, min_score")
        unknown = set(item) - {"level", "name_en", "name_zh", "min_score"}
        if unknown:
            raise refuse(store, user, "tier_shape", f"tier {i + 1}: unknown field {sorted(unknown)[0]!r}"[:120])
        level = item.get("level")
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 9:
            raise refuse(store, user, "tier_level", f"tier {i + 1}: the level must be a whole number 1 to 9")
        names = [_text(store, user, item.get(k), "name", NAME_MAX) for k in ("name_en", "name_zh")]
        m = item.get("min_score")
        if i == 0:
            if m is not None:
                raise refuse(store, user, "tier_first", "the lowest band has no lower bound (min_score null)")
            out.append(Tier(level, names[0], names[1], None))
            continue
        if isinstance(m, bool) or not isinstance(m, int | float) or not math.isfinite(m):
            raise refuse(store, user, "tier_threshold", f"tier {i + 1}: the lower bound must be a number")
        bound = float(m)
        if not lo < bound <= hi:
            raise refuse(
                store, user, "tier_range", f"tier {i + 1}: {bound:g} is outside the scorecard's {lo:g}..{hi:g}"
            )
        prev = out[-1].min_score
        if prev is not None and bound <= prev:
            raise refuse(
                store, user, "tier_order", f"tier {i + 1}: the lower bounds must increase ({bound:g} <= {prev:g})"
            )
        out.append(Tier(level, names[0], names[1], bound))
    return out


def set_tiers(store: Store, user: User, site: str | None, raw: object) -> list[Tier]:
    """An admin sets the bands of `site` (None or '': center-wide); validated, replacing the list, audited."""
    if user.role != "admin":
        raise refuse(store, user, "role", "setting tiers needs role admin", 403)
    key = site or ""
    if key and store.db.scalar("SELECT 1 FROM sites WHERE site = ?", (key,)) is None:
        raise refuse(store, user, "no_site", f"no site {key[:40]!r}")
    tiers = validate_tiers(store, user, raw)
    when = now_iso()
    with store.db.transaction():
        store.db.execute("DELETE FROM coaching_tiers WHERE site = ?", (key,))
        store.db.executemany(
            "INSERT INTO coaching_tiers VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(key, i, t.level, t.name_en, t.name_zh, t.min_score, user.username, when) for i, t in enumerate(tiers)],
        )
        audit(store, user.username, "coaching.tiers", key or "*", {"tiers": [asdict(t) for t in tiers]})
    return tiers


def tiers_view(store: Store, site: str | None) -> dict[str, Any]:
    tiers, source = tiers_for(store, site)
    lo, hi = scale(store)
    return {"site": site or None, "source": source, "scale": [lo, hi], "tiers": [asdict(t) for t in tiers]}


# --- the suggestion -------------------------------------------------------------------------------------------------


def period(end: date, days: int | None = None) -> tuple[str, str]:
    """(start, end) days inclusive: `days` (MIN_DAYS..MAX_DAYS, default DEFAULT_DAYS) ending `end`."""
    n = DEFAULT_DAYS if days is None else days
    if not MIN_DAYS <= n <= MAX_DAYS:
        raise CoachingError("days", f"the period is {MIN_DAYS} to {MAX_DAYS} days")
    return (end - timedelta(days=n - 1)).isoformat(), end.isoformat()


def rule_titles(store: Store, lang: str) -> dict[str, str]:
    card = get_scorecard(store)
    zh = lang == "zh-CN"
    return {r.id: (r.title_zh or r.title) if zh else r.title for r in card.rules} if card else {}


def _figures(store: Store, agent_id: str, start: str, stop: str) -> tuple[int, int, float | None]:
    row = store.db.one(
        "SELECT SUM(calls), SUM(scored), SUM(weight_sum), SUM(score_wsum) FROM agent_daily"
        " WHERE agent_id = ? AND day >= ? AND day <= ?",
        (agent_id, start, stop),
    )
    calls, scored, w, ws = row if row else (None, None, None, None)
    score = round(float(ws) / float(w), 1) if w is not None and float(w) > 1e-6 else None
    return int(calls or 0), int(scored or 0), score


def _rule_sums(store: Store, agent_id: str, start: str, stop: str) -> list[tuple[str, float, int]]:
    rows = store.db.all(
        "SELECT rule_id, SUM(points), SUM(calls) FROM agent_rule_daily WHERE agent_id = ? AND day >= ? AND day <= ?"
        " GROUP BY rule_id",
        (agent_id, start, stop),
    )
    return [(str(r), float(p), int(c)) for r, p, c in rows]


def suggestion(
    store: Store, user: User, agent_id: str, end: date, days: int | None = None, lang: str = "en"
) -> dict[str, Any]:
    """What a coach opens a session from (see the module docstring); `NotFound` outside the user's scope."""
    _visible(store, user, agent_id)
    start, stop = period(end, days)
    calls, scored, score = _figures(store, agent_id, start, stop)
    tiers, source = tiers_for(store, agent_site(store, agent_id))
    tier = tier_of(tiers, score)
    titles = rule_titles(store, lang)
    sums = _rule_sums(store, agent_id, start, stop)

    def item(rule: str, points: float, fired: int) -> dict[str, Any]:
        per_call = round(points / scored, 2) if scored else None
        return {
            "rule": rule,
            "title": titles.get(rule, rule),
            "points": round(points, 2),
            "per_call": per_call,
            "calls": fired,
        }

    weakest = sorted((s for s in sums if s[1] < 0), key=lambda s: (s[1], s[0]))[:SUGGESTED]
    best = sorted((s for s in sums if s[1] > 0), key=lambda s: (-s[1], s[0]))[:SUGGESTED]
    return {
        "agent_id": agent_id,
        "period": {"start": start, "end": stop},
        "calls": calls,
        "scored": scored,
        "score": score,
        "tier": asdict(tier) if tier else None,
        "tiers": [asdict(t) for t in tiers],
        "tiers_source": source,
        "weakest": [item(*s) for s in weakest],
        "best": [item(*s) for s in best],
        "rules": [{"rule": r, "title": t} for r, t in titles.items()],
    }


# --- sessions -------------------------------------------------------------------------------------------------------

_SESSION_COLS = (
    "id, agent_id, team_id, opened_by, opened_at, tier_level, tier_name_en, tier_name_zh, score, period_start,"
    " period_end, goals, notes, status, closed_by, closed_at, acknowledged_at"
)
_SESSION_KEYS = tuple(c.strip() for c in _SESSION_COLS.split(","))


def open_session(
    store: Store,
    user: User,
    agent_id: str,
    rules: object,
    goals: object,
    notes: object = "",
    tier_level: int | None = None,
    end: date | None = None,
    days: int | None = None,
) -> int:
    """Open a session for `agent_id` from the suggestion of the period; its id."""
    _coach(store, user, "opening a coaching session")
    _visible(store, user, agent_id)
    card: Scorecard | None = get_scorecard(store)
    if card is None:
        raise refuse(store, user, "no_scorecard", "no active scorecard to coach by")
    if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
        raise refuse(store, user, "no_rules", "choose the rules to work on")
    chosen = list(dict.fromkeys(rules))
    if not 1 <= len(chosen) <= MAX_RULES:
        raise refuse(store, user, "no_rules", f"choose 1 to {MAX_RULES} rules to work on")
    known = {r.id for r in card.rules}
    if any(r not in known for r in chosen):
        raise refuse(store, user, "bad_rule", "a chosen rule is not in the active scorecard")
    goals_text = _text(store, user, goals, "goals", GOALS_MAX)
    notes_text = _text(store, user, notes, "notes", NOTE_MAX, required=False)
    try:
        s = suggestion(store, user, agent_id, end or date.today(), days)
    except CoachingError as exc:
        raise refuse(store, user, exc.key, str(exc)) from None
    tiers = [Tier(**t) for t in s["tiers"]]
    if tier_level is None:
        tier = tier_of(tiers, s["score"])
    else:
        tier = next((t for t in tiers if t.level == tier_level), None)
        if tier is None:
            raise refuse(store, user, "bad_tier", f"tier {tier_level} is not one of this site's tiers")
    per_call = {w["rule"]: w["per_call"] for w in s["weakest"] + s["best"]}
    team = store.db.scalar("SELECT team_id FROM agents WHERE agent_id = ?", (agent_id,))
    with store.db.transaction():
        sid = int(
            store.db.scalar(
                f"INSERT INTO coaching_sessions ({_SESSION_COLS.removeprefix('id, ')})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', NULL, NULL, NULL) RETURNING id",
                (
                    agent_id,
                    team,
                    user.username,
                    now_iso(),
                    tier.level if tier else None,
                    tier.name_en if tier else None,
                    tier.name_zh if tier else None,
                    s["score"],
                    s["period"]["start"],
                    s["period"]["end"],
                    goals_text,
                    notes_text,
                ),
            )
        )
        store.db.executemany(
            "INSERT INTO coaching_targets VALUES (?, ?, ?)", [(sid, r, per_call.get(r, 0.0)) for r in chosen]
        )
        audit(
            store,
            user.username,
            "coaching.open",
            str(sid),
            {"agent": agent_id, "rules": chosen, "tier": tier.level if tier else None},
        )
    return sid


def _session_row(store: Store, user: User, session_id: int) -> dict[str, Any]:
    row = store.db.one(f"SELECT {_SESSION_COLS} FROM coaching_sessions WHERE id = ?", (session_id,))
    if row is None or not Scope(user).can_see_agent(store, str(row[1])):
        raise NotFound("no such coaching session")
    return dict(zip(_SESSION_KEYS, row, strict=True))


def get_session(
    store: Store, user: User, session_id: int, lang: str = "en", today: date | None = None
) -> dict[str, Any]:
    """A session with its targeted rules (each with its trend), notes and what `user` may do with it."""
    s = _session_row(store, user, session_id)
    titles = rule_titles(store, lang)
    targets = store.db.all(
        "SELECT rule_id, per_call FROM coaching_targets WHERE session_id = ? ORDER BY rule_id", (session_id,)
    )
    opened = _day_of(s["opened_at"])
    trend = rule_trend(store, s["agent_id"], [str(r) for r, _ in targets], opened, today or date.today())
    s["rules"] = [
        {"rule": str(r), "title": titles.get(str(r), str(r)), "per_call": pc, "trend": trend[str(r)]}
        for r, pc in targets
    ]
    s["weeks"] = trend["_weeks"]
    s["notes_list"] = [
        {"id": int(i), "author": a, "kind": k, "body": b, "created": c}
        for i, a, k, b, c in store.db.all(
            "SELECT id, author, kind, body, created FROM coaching_notes WHERE session_id = ? ORDER BY id", (session_id,)
        )
    ]
    s["agent_name"] = store.db.scalar("SELECT name FROM agents WHERE agent_id = ?", (s["agent_id"],))
    mine = user.role == "agent" and user.agent_id == s["agent_id"]
    s["can_acknowledge"] = mine and s["acknowledged_at"] is None
    s["can_follow_up"] = user.role in COACH_ROLES
    s["can_close"] = user.role in COACH_ROLES and s["status"] == "open"
    s["can_comment"] = mine
    s["tier_name"] = (s["tier_name_zh"] if lang == "zh-CN" else s["tier_name_en"]) or ""
    return s


def sessions(
    store: Store, user: User, agent_id: str | None = None, status: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Sessions the user may see, newest first; optionally one agent's or one status's."""
    cond, params = Scope(user).agents_sql("s.agent_id")
    if agent_id is not None:
        cond += " AND s.agent_id = ?"
        params.append(agent_id)
    if status in ("open", "closed"):
        cond += " AND s.status = ?"
        params.append(status)
    cols = ", ".join(f"s.{c}" for c in _SESSION_KEYS)
    rows = store.db.all(
        f"SELECT {cols}, a.name FROM coaching_sessions s LEFT JOIN agents a ON a.agent_id = s.agent_id"
        f" WHERE 1 = 1{cond} ORDER BY s.id DESC LIMIT ?",
        [*params, limit],
    )
    out = [dict(zip(_SESSION_KEYS, r[:-1], strict=True)) | {"agent_name": r[-1], "rules": []} for r in rows]
    if out:  # the targeted rules of the listed sessions in one query (at most `limit` ids)
        by_id = {int(d["id"]): d for d in out}
        marks = ", ".join("?" for _ in by_id)
        for sid, rule in store.db.all(
            f"SELECT session_id, rule_id FROM coaching_targets WHERE session_id IN ({marks}) ORDER BY rule_id",
            list(by_id),
        ):
            by_id[int(sid)]["rules"].append(str(rule))
    return out


def add_note(store: Store, user: User, session_id: int, body: object) -> int:
    """A coach's follow-up or the agent's comment; the note's id."""
    s = _session_row(store, user, session_id)
    if user.role == "agent":
        kind = "comment"  # _session_row let only the agent themselves this far
    elif user.role in COACH_ROLES:
        kind = "followup"
    else:  # pragma: no cover - every role is one of the above
        raise refuse(store, user, "role", "no role may add notes")
    text = _text(store, user, body, "note", NOTE_MAX)
    with store.db.transaction():
        n = int(store.db.scalar("SELECT COUNT(*) FROM coaching_notes WHERE session_id = ?", (session_id,)) or 0)
        if n >= MAX_NOTES:
            raise refuse(store, user, "too_many_notes", f"this session has {MAX_NOTES} notes already")
        nid = int(
            store.db.scalar(
                "INSERT INTO coaching_notes (session_id, author, kind, body, created) VALUES (?, ?, ?, ?, ?)"
                " RETURNING id",
                (session_id, user.username, kind, text, now_iso()),
            )
        )
        audit(store, user.username, f"coaching.{kind}", str(session_id), {"agent": s["agent_id"], "note": nid})
    return nid


def acknowledge(store: Store, user: User, session_id: int) -> str:
    """The agent says they have read the session: once, and only the agent it is about; when (ISO)."""
    s = _session_row(store, user, session_id)
    if user.role != "agent":
        raise refuse(store, user, "not_agent", "only the agent acknowledges their coaching session", 403)
    when = now_iso()
    with store.db.transaction():
        done = store.db.scalar(
            "UPDATE coaching_sessions SET acknowledged_at = ? WHERE id = ? AND acknowledged_at IS NULL RETURNING id",
            (when, session_id),
        )
        if done is None:
            raise refuse(store, user, "acknowledged", "this session was acknowledged already", 409)
        audit(store, user.username, "coaching.acknowledge", str(session_id), {"agent": s["agent_id"]})
    return when


def close(store: Store, user: User, session_id: int, note: object = None) -> None:
    """The coach closes an open session, with an optional last follow-up note."""
    _coach(store, user, "closing a coaching session")
    s = _session_row(store, user, session_id)
    text = _text(store, user, note, "note", NOTE_MAX, required=False)
    when = now_iso()
    with store.db.transaction():
        done = store.db.scalar(
            "UPDATE coaching_sessions SET status = 'closed', closed_by = ?, closed_at = ?"
            " WHERE id = ? AND status = 'open' RETURNING id",
            (user.username, when, session_id),
        )
        if done is None:
            raise refuse(store, user, "closed", "this session is closed already", 409)
        if text:
            store.db.execute(
                "INSERT INTO coaching_notes (session_id, author, kind, body, created) VALUES (?, ?, 'followup', ?, ?)",
                (session_id, user.username, text, when),
            )
        audit(store, user.username, "coaching.close", str(session_id), {"agent": s["agent_id"]})


# --- the trend since a session --------------------------------------------------------------------------------------


def _day_of(iso: str) -> date:
    """The UTC day of a stored time; the buckets are whole days, so a session opened late in the evening in the
    hub's zone starts its first bucket on the UTC day, which at most moves one day's calls between buckets."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).date()


def rule_trend(store: Store, agent_id: str, rules: Iterable[str], opened: date, today: date) -> dict[str, Any]:
    """Per rule, points lost per scored call in 7-day buckets anchored on `opened`: `WEEKS_BEFORE` before it and
    each one since up to `today` (the latest `MAX_WEEKS_SINCE`); plus `_weeks`, the buckets themselves (start,
    end, scored calls, `since`), and per rule the mean before and since and whether it improved."""
    since_n = min(max((today - opened).days // 7 + 1, 1), MAX_WEEKS_SINCE)
    first_since = opened + timedelta(weeks=max((today - opened).days // 7 + 1 - since_n, 0))
    starts = [opened - timedelta(weeks=k) for k in range(WEEKS_BEFORE, 0, -1)]
    starts += [first_since + timedelta(weeks=k) for k in range(since_n)]
    lo, hi = starts[0].isoformat(), (starts[-1] + timedelta(days=6)).isoformat()

    def bucket(day: str) -> int | None:
        d = date.fromisoformat(day)
        for i in range(len(starts) - 1, -1, -1):
            if starts[i] <= d <= starts[i] + timedelta(days=6):
                return i
        return None

    scored = [0] * len(starts)
    for day, n in store.db.all(
        "SELECT day, scored FROM agent_daily WHERE agent_id = ? AND day >= ? AND day <= ?", (agent_id, lo, hi)
    ):
        b = bucket(str(day))
        if b is not None:
            scored[b] += int(n)
    wanted = list(dict.fromkeys(rules))
    points: dict[str, list[float]] = {r: [0.0] * len(starts) for r in wanted}
    if wanted:
        marks = ", ".join("?" for _ in wanted)
        for day, rule, p in store.db.all(
            f"SELECT day, rule_id, points FROM agent_rule_daily WHERE agent_id = ? AND day >= ? AND day <= ?"
            f" AND rule_id IN ({marks})",
            [agent_id, lo, hi, *wanted],
        ):
            b = bucket(str(day))
            if b is not None:
                points[str(rule)][b] += float(p)
    out: dict[str, Any] = {
        "_weeks": [
            {
                "start": s.isoformat(),
                "end": (s + timedelta(days=6)).isoformat(),
                "scored": scored[i],
                "since": i >= WEEKS_BEFORE,
            }
            for i, s in enumerate(starts)
        ]
    }
    for r in wanted:
        lost = [round(-points[r][i] / scored[i], 2) + 0.0 if scored[i] else None for i in range(len(starts))]

        def mean(lo_i: int, hi_i: int, r: str = r) -> float | None:
            n = sum(scored[lo_i:hi_i])
            return round(-sum(points[r][lo_i:hi_i]) / n, 2) + 0.0 if n else None  # + 0.0: never "-0.00"

        before, after = mean(0, WEEKS_BEFORE), mean(WEEKS_BEFORE, len(starts))
        verdict = None
        if before is not None and after is not None:
            verdict = "better" if after < before - 0.05 else "worse" if after > before + 0.05 else "same"
        out[r] = {"lost": lost, "before": before, "since": after, "verdict": verdict}
    return out


# --- recognition ----------------------------------------------------------------------------------------------------


def give_kudos(store: Store, user: User, call_id: str, note: object) -> dict[str, Any]:
    """A lead (their team's calls), reviewer or admin recognises a call with a short note, shown to its agent."""
    _coach(store, user, "recognising a call")
    row = store.db.one("SELECT agent_id FROM calls WHERE call_id = ?", (call_id,))
    if row is None or not Scope(user).can_see_agent(store, row[0]):
        raise NotFound("no such call")
    if row[0] is None:
        raise refuse(store, user, "no_agent", "this call has no agent to recognise")
    text = _text(store, user, note, "kudos", KUDOS_MAX)
    when = now_iso()
    with store.db.transaction():
        store.db.execute(
            "INSERT INTO coaching_kudos VALUES (?, ?, ?, ?, ?) ON CONFLICT (call_id, author)"
            " DO UPDATE SET note = excluded.note, created = excluded.created, agent_id = excluded.agent_id",
            (call_id, user.username, str(row[0]), text, when),
        )
        audit(store, user.username, "coaching.kudos", call_id, {"agent": row[0], "note": text})
    return {"call_id": call_id, "agent_id": row[0], "author": user.username, "note": text, "created": when}


def recognition(
    store: Store, user: User, agent_id: str, end: date, days: int | None = None, lang: str = "en", limit: int = 5
) -> dict[str, Any]:
    """The agent's best calls of the period, their credited good practice (rules with positive points that
    fired, with the calls each credited) and the kudos they received (the latest 20)."""
    _visible(store, user, agent_id)
    start, stop = period(end, days)
    titles = rule_titles(store, lang)
    credited = sorted(
        ((r, p, c) for r, p, c in _rule_sums(store, agent_id, start, stop) if p > 0), key=lambda x: (-x[1], x[0])
    )
    kudos = store.db.all(
        "SELECT k.call_id, k.author, k.note, k.created, c.site, c.started, c.score FROM coaching_kudos k"
        " LEFT JOIN calls c ON c.call_id = k.call_id WHERE k.agent_id = ? ORDER BY k.created DESC, k.call_id LIMIT 20",
        (agent_id,),
    )
    return {
        "agent_id": agent_id,
        "period": {"start": start, "end": stop},
        "best_calls": aggregate.agent_calls(store, agent_id, start, stop, "best", limit),
        "credited": [{"rule": r, "title": titles.get(r, r), "points": round(p, 2), "calls": c} for r, p, c in credited],
        "kudos": [
            dict(zip(("call_id", "author", "note", "created", "site", "started", "score"), k, strict=True))
            for k in kudos
        ],
    }


def agent_panel(
    store: Store, user: User, agent_id: str, end: date, lang: str, kudos_sent: bool = False
) -> dict[str, Any]:
    """What the agent page shows (`_coaching_agent.html`): the latest sessions with their trends, recognition,
    and whether `user` may give kudos."""
    recent = sessions(store, user, agent_id, limit=5)
    return {
        "sessions": [get_session(store, user, int(s["id"]), lang, end) for s in recent],
        "recognition": recognition(store, user, agent_id, end, None, lang),
        "can_kudos": user.role in COACH_ROLES,
        "can_open": user.role in COACH_ROLES,
        "kudos_max": KUDOS_MAX,
        "kudos_sent": kudos_sent,
    }
