"""The anger alert threshold page (`/calibration/tone`): per site, the reviewers' tone labels so far, the fitted
threshold, alert precision and recall at the threshold in force and at the fitted one (`hub.tone.report`), and
the admin's action that signs the fitted threshold and sends it to the site's stations (`hub.tone.send`).

QA reviewers, team leads and admins read it (a lead, over their team's calls); only an admin sends, and only
when this hub was started with an update signing key (`qa-hub serve --update-key`): otherwise the page shows
the config document to sign and publish from the admin's machine (`qa-hub update publish`, docs/updates.md).
The form's CSRF field is checked before the route by `hub.web.deps.csrf_guard`.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from edge_agent.schema import SchemaError, check_name
from hub import tone
from hub.auth import Scope, User
from hub.web.deps import Hub, HubDep, UserDep, require, visible_call
from hub.web.pages import page_user, render
from hub.web.workflow import call_tone

log = logging.getLogger(__name__)

SEND_ERROR_MAX = 200
"""Characters of a broker's or the fit's refusal shown on the page."""


def _sites(hub: Hub) -> list[str]:
    rows = hub.store.db.all("SELECT site FROM sites UNION SELECT DISTINCT site FROM calls ORDER BY 1")
    return [str(r[0]) for r in rows]


def _refused(hub: Hub) -> dict[str, int]:
    return {
        k.removeprefix(tone.REFUSED_PREFIX): v
        for k, v in hub.store.counters().items()
        if k.startswith(tone.REFUSED_PREFIX)
    }


def tone_view(
    request: Request, hub: Hub, user: User, site: str | None, error: str | None = None, status: int = 200
) -> HTMLResponse:
    sites = _sites(hub)
    chosen = site if site in sites else (sites[0] if sites else None)
    rep: dict[str, Any] | None = tone.report(hub.store, Scope(user), chosen) if chosen else None
    document = None
    if rep is not None and rep["at_fit"] is not None:
        document = tone.config_document(rep["at_fit"]["threshold"]).decode()
    return render(
        request,
        "tone.html",
        user,
        status_code=status,
        sites=sites,
        site=chosen,
        r=rep,
        document=document,
        signer=hub.signer is not None,
        refused=_refused(hub),
        error=error,
        sent=request.query_params.get("sent") == "1",
    )


class ToneBody(BaseModel):
    """A reviewer's tone labels for a call: the customer's, and the agent's if heard (one of `hub.tone.LABELS`)."""

    model_config = ConfigDict(extra="forbid")
    customer: str = Field(max_length=16)
    agent: str | None = Field(None, max_length=16)


def install_tone_pages(app: FastAPI) -> None:
    # the API: the same labels and report as the pages, for a QA tool that drives the hub (both roles and scope
    # as the pages; a label that is not one of the model's classes is refused and counted like a bad form)
    @app.put("/api/calls/{call_id}/tone", tags=["tone"])
    def put_tone(call_id: str, body: ToneBody, hub: HubDep, user: UserDep) -> dict[str, Any]:
        """Label the call's tone (replacing this reviewer's earlier labels); returns the call's tone as the
        caller may see it."""
        require(user, *tone.LABEL_ROLES)
        visible_call(hub, user, call_id)
        labels = {"customer": body.customer} | ({"agent": body.agent} if body.agent else {})
        try:
            tone.label(hub.store, user, call_id, labels)
        except tone.ToneError as exc:
            hub.store.bump_counter(f"{tone.REFUSED_PREFIX}api")
            raise HTTPException(400, str(exc)) from None
        return call_tone(hub.store, user, call_id)

    @app.get("/api/calls/{call_id}/tone", tags=["tone"])
    def get_tone(call_id: str, hub: HubDep, user: UserDep) -> dict[str, Any]:
        """The measured customer anger, whether it alerted, the caller's labels and (unless a reviewer who has
        not labelled the call yet) every reviewer's."""
        require(user, *tone.LABEL_ROLES)
        visible_call(hub, user, call_id)
        return call_tone(hub.store, user, call_id)

    @app.get("/api/tone/{site}", tags=["tone"])
    def tone_report(site: str, hub: HubDep, user: UserDep) -> dict[str, Any]:
        """The site's labelled calls, the fitted anger threshold and alert precision/recall at the threshold in
        force and at the fitted one (what /calibration/tone shows)."""
        require(user, *tone.LABEL_ROLES)
        if site not in _sites(hub):
            raise HTTPException(404, "no such site")
        return tone.report(hub.store, Scope(user), site)

    @app.get("/calibration/tone", include_in_schema=False)
    def tone_page(request: Request, site: str | None = None) -> HTMLResponse:
        hub, user = page_user(request)
        if user.role not in tone.LABEL_ROLES:
            raise HTTPException(403, "needs role admin, reviewer or lead")
        return tone_view(request, hub, user, site)

    @app.post("/calibration/tone/{site}/send", include_in_schema=False)
    async def tone_send(request: Request, site: str) -> Response:
        hub, user = page_user(request)
        if user.role != "admin":
            raise HTTPException(403, "needs role admin")
        if site not in await run_in_threadpool(_sites, hub):
            raise HTTPException(404, "no such site")
        form = await request.form()
        signer = hub.signer

        def send() -> None:
            raw, seat_raw = form.get("threshold"), form.get("seat")
            seat = seat_raw.strip() if isinstance(seat_raw, str) and seat_raw.strip() else None
            try:
                threshold = float(raw) if isinstance(raw, str) and len(raw) < 32 else float("nan")
                if seat is not None:
                    check_name("seat", seat)
            except (ValueError, SchemaError) as exc:
                raise tone.ToneError(f"not a threshold or seat: {exc}") from None
            if signer is None:
                raise tone.ToneError("this hub holds no update signing key (qa-hub serve --update-key)")
            tone.send(hub.store, user, site, threshold, signer, seat)

        try:
            await run_in_threadpool(send)
        except ValueError as exc:  # ToneError, or the broker did not take it (hub.updates.publish)
            log.warning("anger threshold for %s not sent (%s): %s", site, user.username, exc)
            text = str(exc)[:SEND_ERROR_MAX]
            return await run_in_threadpool(tone_view, request, hub, user, site, text, 400)
        return RedirectResponse(f"/calibration/tone?site={quote(site)}&sent=1", status_code=303)
