"""Outcomes in a period (issue 22): for the calls a report covers (the center, a team or an agent, over the
period its page shows), what became of them and how that went with their QA score.

Per outcome (csat, fcr, repeat, complaint, custom.*): the calls in scope and period that have it and its mean
(a rate for the yes/no ones); then, over those of them that were scored (not excluded as low confidence), the
mean outcome of the calls with the lowest and the highest scores (the bottom and top quartiles of score from
`QUARTILE_MIN` such calls, below and above the median before that) with their numbers of calls, and Pearson's r
between score and outcome with its n and a 95 % interval (Fisher's z). A quartile is exactly a quarter of the
calls: calls tied on the score at its edge count with their share (the expected value of any tie-break).

One query over `calls` ⨝ `call_outcomes` for the period (the `calls_day` index, then the outcomes' primary key)
grouped by outcome and score, scoped exactly as the page's calls (`hub.auth.Scope`): a lead's center is their
team, an agent's themself. Measured in docs/hub.md ("Measured").

`GET /api/reports/outcomes?scope=center|team|agent&id=...&period=day|week|month&end=YYYY-MM-DD` gives the same
numbers; a team or agent the user may not see is 404, as elsewhere. Refused parameters answer 422 with one line
and are counted (`REFUSED_PREFIX`).
"""

from __future__ import annotations

import logging
import math
from datetime import date
from typing import Any, cast
from urllib.parse import urlencode

from fastapi import FastAPI, HTTPException

from hub import aggregate, outcomes
from hub.aggregate import PERIOD_DAYS, Period
from hub.auth import Scope, User
from hub.storage import Store
from hub.web.deps import Hub, HubDep, UserDep, visible_agent

log = logging.getLogger(__name__)

QUARTILE_MIN = 40
"""Scored calls with an outcome from which the relation compares the top and bottom quartiles of score (10 calls
each at least); with fewer, the halves below and above the median (a quartile of 3 calls says nothing)."""
R_MIN = 3
"""Scored calls with an outcome below which no correlation is given."""
REFUSED_PREFIX = "report_refused."
"""Counters of refused outcome-report requests, by reason (bad_scope, bad_id, bad_period, bad_day)."""
SCOPES = ("center", "team", "agent")
ID_MAX = 128


def _where(scope: Scope, team_id: str | None, agent_id: str | None) -> tuple[str, list[object]]:
    cond, params = scope.agents_sql("c.agent_id")
    if team_id is not None:
        cond += " AND c.agent_id IN (SELECT agent_id FROM agents WHERE team_id = ?)"
        params.append(team_id)
    if agent_id is not None:
        cond += " AND c.agent_id = ?"
        params.append(agent_id)
    return cond, params


def _order(name: str) -> tuple[int, str]:
    return (outcomes.STANDARD.index(name) if name in outcomes.STANDARD else len(outcomes.STANDARD), name)


def _r_interval(r: float, n: int) -> tuple[float | None, float | None]:
    """95 % interval of Pearson's r by Fisher's z (needs n > 3; none at |r| = 1)."""
    if n <= 3 or abs(r) >= 1:
        return None, None
    z, se = math.atanh(r), 1 / math.sqrt(n - 3)
    return math.tanh(z - 1.96 * se), math.tanh(z + 1.96 * se)


def _share(bins: list[tuple[float, int, float]], k: int) -> tuple[float, float]:
    """The sum of outcomes and the highest score of the first `k` calls of `bins` ((score, calls, sum) in the
    order to take them): calls tied on the score at the cut count with their share of that score's sum, the
    expected value whichever of them were taken (a call id would be no fairer a tie-break)."""
    taken, total, last = 0, 0.0, math.nan
    for score, n, sv in bins:
        if taken >= k:
            break
        use = min(n, k - taken)
        total += sv * use / n
        taken, last = taken + use, score
    return total, last


def _relation(bins: list[tuple[float, int, float]], sum_v2: float) -> dict[str, Any]:
    """The relation of the outcome to the score over the scored calls, from (score, calls, sum of outcome) per
    distinct score (ascending)."""
    n = sum(b[1] for b in bins)
    out: dict[str, Any] = {"scored": n, "split": None, "low": None, "high": None, "diff": None, "mean_score": None}
    out |= {"r": None, "r_lo": None, "r_hi": None}
    if not n:
        return out
    ms = sum(s * k for s, k, _ in bins) / n
    mv = sum(sv for _, _, sv in bins) / n
    out["mean_score"] = ms
    k = n // 4 if n >= QUARTILE_MIN else n // 2
    if k:
        low_sum, low_max = _share(bins, k)
        high_sum, high_min = _share(bins[::-1], k)
        out["split"] = "quartile" if n >= QUARTILE_MIN else "median"
        out["low"] = {"calls": k, "mean": low_sum / k, "score_max": low_max}
        out["high"] = {"calls": k, "mean": high_sum / k, "score_min": high_min}
        out["diff"] = out["high"]["mean"] - out["low"]["mean"]
    # centred on the means (not n*Sxy - Sx*Sy): scores near 80 with a small spread would cancel catastrophically
    sxy = sum((s - ms) * (sv - c * mv) for s, c, sv in bins)
    sxx = sum(c * (s - ms) ** 2 for s, c, _ in bins)
    syy = max(sum_v2 - n * mv * mv, 0.0)
    if n >= R_MIN and sxx > 1e-9 and syy > 1e-12:
        r = max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))
        out["r"] = r
        out["r_lo"], out["r_hi"] = _r_interval(r, n)
    return out


def period_outcomes(
    store: Store, scope: Scope, start: str, stop: str, *, team_id: str | None = None, agent_id: str | None = None
) -> dict[str, Any]:
    """The outcomes of the calls in scope whose local day is in `start`..`stop` (inclusive, YYYY-MM-DD), and
    their relation to the score; see the module docstring. Empty `outcomes` when none were imported."""
    cond, params = _where(scope, team_id, agent_id)
    # one pass: per outcome and distinct score (NULL: not scored or excluded) the calls and the outcome's sums;
    # scores are few distinct values (a base plus whole points), so this is a few hundred rows whatever the period
    rows = store.db.all(
        "SELECT o.name, CASE WHEN c.excluded = 0 THEN c.score END AS s, COUNT(*), SUM(o.value),"
        " SUM(o.value * o.value) FROM calls c JOIN call_outcomes o ON o.call_id = c.call_id"
        f" WHERE c.day >= ? AND c.day <= ?{cond} GROUP BY o.name, s",
        [start, stop, *params],
    )
    per: dict[str, list[tuple[float | None, int, float, float]]] = {}
    for name, score, n, sv, sv2 in rows:
        per.setdefault(str(name), []).append((None if score is None else float(score), int(n), float(sv), float(sv2)))
    out = []
    for name in sorted(per, key=_order):
        groups = per[name]
        calls = sum(g[1] for g in groups)
        scored = sorted((float(g[0]), g[1], g[2]) for g in groups if g[0] is not None)
        sum_v2 = sum(g[3] for g in groups if g[0] is not None)
        item: dict[str, Any] = {
            "name": name,
            "boolean": name in outcomes.BOOLEANS,
            "calls": calls,
            "mean": sum(g[2] for g in groups) / calls,
        }
        out.append(item | _relation(scored, sum_v2))
    return {"start": start, "stop": stop, "outcomes": out}


def page_context(
    store: Store, user: User, period: Period, end: date, scope: str = "center", id: str | None = None
) -> dict[str, Any]:
    """What `_period_outcomes.html` needs on a page showing `period` to `end` for the center, a team or an agent
    the page has already checked the user may see: the figures, and the link to the same numbers as JSON."""
    start, stop, _, _ = aggregate.period_bounds(end, period)
    team_id, agent_id = (id, None) if scope == "team" else (None, id) if scope == "agent" else (None, None)
    query = {"scope": scope, "period": period, "end": end.isoformat()} | ({"id": id} if id is not None else {})
    return {
        "po": period_outcomes(store, Scope(user), start, stop, team_id=team_id, agent_id=agent_id),
        "po_api": f"/api/reports/outcomes?{urlencode(query)}",
        "po_quartile_min": QUARTILE_MIN,
    }


def _refuse(hub: Hub, user: User, reason: str, message: str) -> HTTPException:
    n = hub.store.bump_counter(f"{REFUSED_PREFIX}{reason}")
    log.info("refused an outcome report for %s: %s (%d so far)", user.username, reason, n)
    return HTTPException(422, message)


def _bounds(hub: Hub, user: User, text: str | None, period: Period) -> tuple[str, str]:
    """The period's first and last day, ending `text` (today when None)."""
    try:
        day = hub.today() if text is None else date.fromisoformat(text)
        start, stop, _, _ = aggregate.period_bounds(day, period)
    except (ValueError, OverflowError):  # not a date, or a period starting before the calendar does
        raise _refuse(hub, user, "bad_day", f"end {(text or '')[:20]!r}: use a date YYYY-MM-DD") from None
    return start, stop


def install_outcome_reports(app: FastAPI) -> None:
    @app.get("/api/reports/outcomes", tags=["outcomes"])
    def outcome_report(
        hub: HubDep,
        user: UserDep,
        scope: str = "center",
        id: str | None = None,
        period: str = "week",
        end: str | None = None,
    ) -> dict[str, Any]:
        """The outcomes of the calls of the center, a team or an agent in the period (as the agents page, the
        team report and the agent page show them) and their relation to the QA score; scoped like the calls."""
        if scope not in SCOPES:
            raise _refuse(hub, user, "bad_scope", "scope must be center, team or agent")
        if period not in PERIOD_DAYS:
            raise _refuse(hub, user, "bad_period", "period must be day, week or month")
        if (scope == "center") != (id is None) or (id is not None and not 0 < len(id) <= ID_MAX):
            raise _refuse(hub, user, "bad_id", "give id for a team or agent, and none for the center")
        start, stop = _bounds(hub, user, end, cast(Period, period))
        s = Scope(user)
        team_id = agent_id = None
        if scope == "team":
            known = hub.store.db.one("SELECT 1 FROM teams WHERE team_id = ?", (id,)) is not None
            if id is None or not known or not s.can_see_team(id):
                raise HTTPException(404, "no such team")
            team_id = id
        elif scope == "agent":
            agent_id = visible_agent(hub, user, str(id))["agent_id"]
        report = period_outcomes(hub.store, s, start, stop, team_id=team_id, agent_id=agent_id)
        return {"scope": scope, "id": id, "period": period, **report}
