"""The rule validity report over the API (`hub.validity`, issue 22).

- `GET /api/validity`: every scorecard version calls were scored with (calls, calls with an outcome) and the
  outcomes its calls have;
- `GET /api/validity/{scorecard}/{version}?outcome=csat&better=higher|lower&format=json|csv&lang=en|zh-CN`: the
  report (`hub.validity.report`'s dict) or its CSV export.

Admins, QA reviewers and team leads: the report is aggregate over the whole center (no call, agent or team in
it), so a lead reads the same figures as everyone else; agents get 403. An unknown version or outcome is 404, a
bad parameter 422, each one line and counted (`validity_refused.unknown`, `validity_refused.bad_params`).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import Response

from hub import validity
from hub.web.deps import Hub, HubDep, SafeJSONResponse, UserDep, require

log = logging.getLogger(__name__)

READ_ROLES = ("admin", "reviewer", "lead")
MAX_PARAM = 64
"""Longest scorecard name or outcome name accepted (both are at most 64 / 39 characters when valid)."""
LANGS = ("en", "zh-CN")


def _refuse(hub: Hub, status: int, key: str, message: str) -> HTTPException:
    n = hub.store.bump_counter(f"{validity.REFUSED_PREFIX}{key}")
    log.info("refused a validity request: %s (%d so far)", message, n)
    return HTTPException(status, message)


def install_validity_api(app: FastAPI) -> None:
    @app.get("/api/validity", tags=["validity"])
    def validity_index(hub: HubDep, user: UserDep) -> dict[str, Any]:
        """The scorecard versions with calls, each with its call counts and the outcomes its calls have."""
        require(user, *READ_ROLES)
        store = hub.store
        return {
            "versions": [
                {**v, "outcomes": validity.outcome_names(store, v["scorecard"], v["version"])}
                for v in validity.versions(store)
            ]
        }

    @app.get("/api/validity/{scorecard}/{version}", tags=["validity"])
    def validity_report(
        scorecard: str,
        version: str,
        hub: HubDep,
        user: UserDep,
        outcome: str = "csat",
        better: str | None = None,
        fmt: Annotated[str, Query(alias="format")] = "json",
        lang: str = "en",
    ) -> Response:
        """Each rule's relation to the outcome (raw and adjusted for call length and the customer's anger at the
        start, with a verdict), and the total score's; JSON or CSV."""
        require(user, *READ_ROLES)
        if not version.isdigit() or len(version) > 9:
            raise _refuse(hub, 422, "bad_params", "version must be a whole number")
        if len(scorecard) > MAX_PARAM or len(outcome) > MAX_PARAM:
            raise _refuse(hub, 422, "bad_params", f"scorecard and outcome are at most {MAX_PARAM} characters")
        if better not in (None, "", "higher", "lower"):
            raise _refuse(hub, 422, "bad_params", "better must be higher or lower")
        if fmt not in ("json", "csv"):
            raise _refuse(hub, 422, "bad_params", "format must be json or csv")
        if lang not in LANGS:
            raise _refuse(hub, 422, "bad_params", f"lang must be one of {', '.join(LANGS)}")
        try:
            rep = validity.report(hub.store, scorecard, int(version), outcome, better=better or None)
        except validity.ValidityError as exc:
            raise _refuse(hub, 404 if exc.key == "unknown" else 422, exc.key, str(exc)) from None
        if fmt == "json":
            return SafeJSONResponse(rep)
        name = f"validity-{scorecard}-v{version}-{outcome}.csv"
        return Response(
            ("\ufeff" + validity.to_csv(rep, lang)).encode("utf-8"),  # the BOM: Excel reads UTF-8 as such
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
