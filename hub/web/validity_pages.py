"""The rule validity page (`/validity`, issue 22): for a scorecard version and an outcome, whether each rule's
firing goes with better or worse outcomes once call length and the customer's mood at the start are accounted
for (`hub.validity.report`), explained for a QA lead in both languages, with the total score's relation, the
strata the adjustment compares within, CSV/JSON export links (`hub.web.validity_api`) and, with `compare=`,
another version's verdicts beside this one's.

Admins, QA reviewers and team leads read it (the report holds rule-level figures over every call, no agent's
name or call); agents get 403. Query parameters are bounded and checked here: a value that is not one (a version
that is not a number, a direction that is not higher/lower) is refused with 422 and one line, an unknown
scorecard, version or outcome answers 404 saying so; every refusal is counted (`REFUSED_PREFIX`).
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse

from hub import outcomes, validity
from hub.auth import User
from hub.scores import get_scorecard
from hub.storage import Store
from hub.web.deps import Hub
from hub.web.pages import page_lang, page_user, render

log = logging.getLogger(__name__)

ROLES = ("admin", "reviewer", "lead")
REFUSED_PREFIX = "validity_page_refused."
"""Counters of refused page requests, by reason (bad_param, unknown_scorecard, unknown_version, unknown_outcome)."""
NAME_MAX = 128
VERSION_MAX = 10**9
OUTCOME = re.compile(r"[a-z][a-z0-9_.]{0,39}")
"""What an outcome name can look like (csat ... custom.<name>, hub.outcomes.CUSTOM_NAME): anything else is refused
before the store is asked."""
DEFAULT_OUTCOME = "csat"
TESTED = ("predicts", "no_evidence", "contrary")


def _refuse(hub: Hub, user: User, status: int, reason: str, message: str) -> HTTPException:
    n = hub.store.bump_counter(f"{REFUSED_PREFIX}{reason}")
    log.info("refused a validity page for %s: %s (%d so far)", user.username, reason, n)
    return HTTPException(status, message)


def _versions(store: Store) -> list[dict[str, Any]]:
    rows = store.db.all("SELECT name, version, active FROM scorecards ORDER BY name, version")
    return [{"scorecard": str(n), "version": int(v), "active": bool(a)} for n, v, a in rows]


def _version(hub: Hub, user: User, raw: str | None, what: str) -> int | None:
    if raw is None or raw == "":
        return None
    if not (raw.isdigit() and len(raw) <= 10 and 0 < int(raw) <= VERSION_MAX):
        raise _refuse(hub, user, 422, "bad_param", f"{what} must be a version number")
    return int(raw)


def _refused(store: Store) -> int:
    return sum(v for k, v in store.counters().items() if k.startswith(REFUSED_PREFIX))


def _compared(r: dict[str, Any], other: dict[str, Any], zh: bool) -> list[dict[str, Any]]:
    """Every rule of either version, in this version's order then the other's new ones, with both verdicts."""
    mine = {x["rule_id"]: x for x in r["rules"]}
    theirs = {x["rule_id"]: x for x in other["rules"]}
    order = [*mine, *(k for k in theirs if k not in mine)]
    out = []
    for rule_id in order:
        x = mine.get(rule_id) or theirs[rule_id]
        title = (x.get("title_zh") or x["title"]) if zh else x["title"]
        out.append({"rule_id": rule_id, "title": title, "this": mine.get(rule_id), "other": theirs.get(rule_id)})
    return out


def validity_view(
    request: Request,
    hub: Hub,
    user: User,
    scorecard: str | None,
    version_raw: str | None,
    outcome: str | None,
    better: str | None,
    compare_raw: str | None,
) -> HTMLResponse:
    store = hub.store
    if scorecard is not None and not 0 < len(scorecard) <= NAME_MAX:
        raise _refuse(hub, user, 422, "bad_param", "scorecard: at most 128 characters")
    if outcome is not None and outcome != "" and not OUTCOME.fullmatch(outcome):
        raise _refuse(hub, user, 422, "bad_param", "outcome: csat, fcr, repeat, complaint or custom.<name>")
    if better not in (None, "", "higher", "lower"):
        raise _refuse(hub, user, 422, "bad_param", "better must be higher or lower")
    version = _version(hub, user, version_raw, "version")
    compare = _version(hub, user, compare_raw, "compare")
    every = _versions(store)
    active = get_scorecard(store)
    name = scorecard or (active.name if active else (every[0]["scorecard"] if every else None))
    card_versions = [v for v in every if v["scorecard"] == name]
    if scorecard is not None and not card_versions:
        raise _refuse(hub, user, 404, "unknown_scorecard", f"no scorecard {scorecard[:40]!r}")
    if version is None and card_versions:
        chosen = next((v for v in card_versions if v["active"]), card_versions[-1])
        version = int(chosen["version"])
    if version is not None and not any(v["version"] == version for v in card_versions):
        raise _refuse(hub, user, 404, "unknown_version", f"no version {version} of scorecard {name!r}")
    if compare is not None and (compare == version or not any(v["version"] == compare for v in card_versions)):
        raise _refuse(hub, user, 404, "unknown_version", f"no other version {compare} of scorecard {name!r}")
    names = validity.outcome_names(store, name, version) if name is not None and version is not None else []
    if outcome:
        if outcome not in names:
            raise _refuse(hub, user, 404, "unknown_outcome", f"no outcome {outcome!r} for the calls of this version")
    else:
        outcome = DEFAULT_OUTCOME if DEFAULT_OUTCOME in names else (names[0] if names else None)
    # the standard outcomes have their own direction (hub.validity.BETTER); `better` is read for custom ones
    direction = None if outcome in validity.BETTER else (better or None)
    r = other = None
    try:
        if name is not None and version is not None and outcome is not None:
            r = validity.report(store, name, version, outcome, better=direction)
            if compare is not None and outcome in validity.outcome_names(store, name, compare):
                other = validity.report(store, name, compare, outcome, better=direction)
    except validity.ValidityError as exc:  # the version or outcome went away between the checks and the report
        raise _refuse(hub, user, 404, "unknown_outcome", str(exc)) from None
    lang = page_lang(request)
    zh = lang == "zh-CN"
    rules: list[dict[str, Any]] = r["rules"] if r is not None else []
    query = {"outcome": outcome or "", "lang": lang} | ({"better": direction} if direction else {})
    api = f"/api/validity/{quote(name or '', safe='')}/{version}?{urlencode(query)}"
    return render(
        request,
        "validity.html",
        user,
        r=r,
        other=other,
        compared=_compared(r, other, zh) if r is not None and other is not None else [],
        boolean=outcome in outcomes.BOOLEANS,
        names=sorted({v["scorecard"] for v in every}),
        scorecard=name,
        card_versions=card_versions,
        version=version,
        outcome_names=names,
        outcome=outcome,
        better=direction,
        custom=outcome is not None and outcome not in validity.BETTER,
        compare=compare,
        titles={x["rule_id"]: (x.get("title_zh") or x["title"]) if zh else x["title"] for x in rules},
        strata={(int(s["length_bin"]), int(s["anger"])): int(s["calls"]) for s in (r or {}).get("strata", [])},
        export_csv=f"{api}&format=csv",
        export_json=f"{api}&format=json",
        # the rules the intervals are widened for: those with a verdict on the outcome (hub.validity's `tested`)
        tested=sum(x["verdict"] in TESTED for x in rules),
        refused=_refused(store),
    )


def install_validity_pages(app: FastAPI) -> None:
    @app.get("/validity", include_in_schema=False)
    def validity_page(
        request: Request,
        scorecard: str | None = None,
        version: str | None = None,
        outcome: str | None = None,
        better: str | None = None,
        compare: str | None = None,
    ) -> HTMLResponse:
        hub, user = page_user(request)
        if user.role not in ROLES:
            raise HTTPException(403, "needs role admin, reviewer or lead")
        return validity_view(request, hub, user, scorecard, version, outcome, better, compare)
