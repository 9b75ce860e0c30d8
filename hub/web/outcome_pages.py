"""Importing call outcomes (`hub.outcomes`): the upload page (`/outcomes`, both languages) and the API.

- `GET /outcomes`: the CSV upload form, the columns explained, the latest imports and the refused count;
- `POST /outcomes/import` (multipart: `file`, `window_s`, `partial`): the same page with what the import did
  and every row it did not take (line and reason); 400 when nothing was imported, 413 when the file is too big;
- `POST /api/outcomes/import` (`application/json` `{"rows": [...]}`, or `text/csv`; `?partial=true`,
  `?window_s=`): the result as JSON (`hub.outcomes.Result.to_dict`), 200 when rows were imported, 422 when the
  rows were refused, 400 for a body that is not CSV/JSON, 413 over `MAX_BYTES`;
- `GET /api/calls/{call_id}/outcomes`: a call's outcomes, scoped like the call.

Admins, QA reviewers and team leads (a lead for their team's calls); agents get 403. The body is read at most
`MAX_BYTES` + 1 bytes before it is refused. Forms carry the CSRF field (`hub.web.deps.csrf_guard`).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from hub import outcomes
from hub.auth import User
from hub.web.deps import Hub, HubDep, SafeJSONResponse, UserDep, require, visible_call
from hub.web.pages import page_user, render

log = logging.getLogger(__name__)

PROBLEMS_SHOWN = 200
"""Rows not imported listed on the page (all are counted; the API lists every one)."""


def _window(raw: object) -> float:
    try:
        return float(raw) if isinstance(raw, str) and raw.strip() and len(raw) < 16 else outcomes.WINDOW_S
    except ValueError:
        return float("nan")  # refused by import_rows with its reason


def outcomes_view(
    request: Request, hub: Hub, user: User, result: outcomes.Result | None = None, status: int = 200
) -> HTMLResponse:
    return render(
        request,
        "outcomes.html",
        user,
        status_code=status,
        r=result.to_dict() if result is not None else None,
        shown=PROBLEMS_SHOWN,
        imports=outcomes.recent_imports(hub.store, user),
        refused=outcomes.refused_counts(hub.store),
        max_rows=outcomes.MAX_ROWS,
        max_mib=outcomes.MAX_BYTES // (1024 * 1024),
        csat=outcomes.CSAT_RANGE,
        window=outcomes.WINDOW_S,
        max_window=outcomes.MAX_WINDOW_S,
    )


def _status(result: outcomes.Result, refused: int) -> int:
    if result.refused is None:
        return 200
    return 413 if result.refused in ("oversize", "too_many_rows") else refused


async def _read_body(request: Request) -> bytes | None:
    """The request body, or None once it passes `MAX_BYTES` (read no further than that)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > outcomes.MAX_BYTES:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > outcomes.MAX_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def install_outcome_pages(app: FastAPI) -> None:
    @app.get("/outcomes", include_in_schema=False)
    def outcomes_page(request: Request) -> HTMLResponse:
        hub, user = page_user(request)
        if user.role not in outcomes.IMPORT_ROLES:
            raise HTTPException(403, "needs role admin, reviewer or lead")
        return outcomes_view(request, hub, user)

    @app.post("/outcomes/import", include_in_schema=False)
    async def outcomes_form(request: Request) -> HTMLResponse:
        hub, user = page_user(request)
        if user.role not in outcomes.IMPORT_ROLES:
            raise HTTPException(403, "needs role admin, reviewer or lead")
        form = await request.form()  # parsed once by the CSRF check already
        upload = form.get("file")
        partial = form.get("partial") == "1"
        window = _window(form.get("window_s"))

        def run() -> outcomes.Result:
            if not isinstance(upload, UploadFile) or not upload.filename:
                result = outcomes.refuse(hub.store, user, "no_file")
                result.problems = [outcomes.Problem(0, "choose a CSV file to upload")]
                return result
            # Starlette spools the upload to disk; only its first MAX_BYTES + 1 bytes are read into memory
            upload.file.seek(0)
            data = upload.file.read(outcomes.MAX_BYTES + 1)
            try:
                return outcomes.import_csv(
                    hub.store, user, data, partial=partial, window_s=window, source="upload", filename=upload.filename
                )
            except outcomes.OutcomeError as exc:  # the window
                result = outcomes.refuse(hub.store, user, exc.key)
                result.problems = [outcomes.Problem(0, str(exc))]
                return result

        result = await run_in_threadpool(run)
        return await run_in_threadpool(outcomes_view, request, hub, user, result, _status(result, 400))

    @app.post("/api/outcomes/import", tags=["outcomes"])
    async def outcomes_api(
        request: Request, hub: HubDep, user: UserDep, partial: bool = False, window_s: float = outcomes.WINDOW_S
    ) -> SafeJSONResponse:
        """Import call outcomes (JSON `{"rows": [...]}` or `text/csv`); all rows or none unless `partial`."""
        require(user, *outcomes.IMPORT_ROLES)
        data = await _read_body(request)
        is_csv = request.headers.get("content-type", "").split(";")[0].strip() in ("text/csv", "application/csv")

        def run() -> outcomes.Result:
            if data is None:
                result = outcomes.refuse(hub.store, user, "oversize")
                result.problems = [outcomes.Problem(0, f"the body is over {outcomes.MAX_BYTES} bytes")]
                return result
            kw: dict[str, Any] = {"window_s": window_s, "source": "api"}
            if partial or is_csv:  # JSON may also say it in the body
                kw["partial"] = partial
            try:
                if is_csv:
                    return outcomes.import_csv(hub.store, user, data, **kw)
                return outcomes.import_json(hub.store, user, data, **kw)
            except outcomes.OutcomeError as exc:
                result = outcomes.refuse(hub.store, user, exc.key)
                result.problems = [outcomes.Problem(0, str(exc))]
                return result

        result = await run_in_threadpool(run)
        status = _status(result, 422 if result.refused in ("bad_rows", "nothing_matched", "empty") else 400)
        return SafeJSONResponse(result.to_dict(), status_code=status)

    @app.get("/api/calls/{call_id}/outcomes", tags=["outcomes"])
    def call_outcomes_api(call_id: str, hub: HubDep, user: UserDep) -> list[dict[str, Any]]:
        """The call's outcomes with where each came from (import id, who, when)."""
        visible_call(hub, user, call_id)
        return outcomes.call_outcomes(hub.store, call_id)
