"""The dashboard: server-rendered pages (Jinja2) over the same data functions as the API, same scoping.

Pages: agents table (score, trend sparkline, top issues), agent page (trend chart, worst/best calls), call
page (SVG timeline of both parties' speech, talk-overs, dead air and emotion; the scorecard breakdown with
evidence), live wall (server-sent events), devices, reviews, calibration, and a printable weekly team report.
English or Chinese; times in the site's time zone.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Form, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub import aggregate, auth, calibration, coaching, outcomes, reviews, tone
from hub.aggregate import Period
from hub.auth import Scope, User
from hub.scores import get_scorecard
from hub.scoring import call_view
from hub.storage import zone
from hub.web import charts, explain, fleet, i18n, report_outcomes, workflow
from hub.web.deps import (
    Hub,
    clear_session_cookie,
    csrf_token,
    is_https,
    login_or_429,
    parse_day,
    set_session_cookie,
    token_of,
    visible_agent,
    visible_call,
)
from hub.web.views import agents_data, call_detail, devices_data

log = logging.getLogger(__name__)
LANG_COOKIE = "qa_lang"
_env = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")), autoescape=select_autoescape(["html"])
)


@functools.lru_cache(maxsize=4096)
def _sparkline(trend: tuple[float | None, ...]) -> Markup:
    """An agent's 8-week line: the same all week for most agents, so drawn once (500 of them on the page)."""
    return Markup(charts.sparkline(list(trend)))  # noqa: S704 - built and escaped by hub.web.charts


TREND_MIN = 1.0
"""Points the score must have moved since the period before for the agents table to show a trend arrow: a
score moves by a few tenths from one call more or less, which is no trend: "≈" then (its tooltip gives both)."""


def _agent_rows(
    rows: list[dict[str, Any]],
    titles: dict[str, str],
    t: dict[str, str],
    report_link: Callable[[str], bool],
    team_names: dict[str, str] | None = None,
) -> Markup:
    """The agents table's rows (500 of them for an admin), built here rather than in the template, which took
    three times as long; every text is escaped and every number formatted here, as in hub.web.charts."""
    out = []
    spark_tip = escape(t["weekly_means"])
    for r in rows:
        agent = escape(r["agent_id"])
        score = r["score"]
        if score is None:
            cell = '<span class="muted">\u2013</span>'
        else:
            cell = f"{score:.1f}"
            if r["previous"] is not None:
                # the arrow compares the period with the one before it (say the last 7 days with the 7 before);
                # the sparkline shows calendar weeks, so the tooltips say which is which
                tip = escape(f"{t['previous_period']}: {r['previous']:.1f}")
                if abs(score - r["previous"]) < TREND_MIN:
                    cell += f' <span class="muted" title="{tip}">\u2248</span>'  # about the same
                else:
                    up = score > r["previous"]
                    cell += f' <span class="{"pos" if up else "neg"}" title="{tip}">{"▲" if up else "▼"}</span>'
        issues = "".join(
            f'<span class="badge">{escape(titles.get(i["rule"], i["rule"]))}'
            f' <span class="neg">{i["points"]:.0f}</span></span> '
            for i in r["top_issues"]
        )
        out.append(
            f'<tr class="agent-row" data-agent="{agent}">\n<td><a href="/agents/{agent}">{escape(r["name"])}</a></td>\n'
            f'<td>{_team_cell(r["team_id"], report_link, team_names)}</td>\n<td class="num">{int(r["calls"])}</td>\n'
            f'<td class="num score">{cell}</td>\n<td title="{spark_tip}">{_sparkline(tuple(r["trend"]))}</td>\n'
            f"<td>{issues}</td>\n</tr>\n"
        )
    return Markup("".join(out))  # noqa: S704 - every part escaped or formatted above


def _team_cell(team_id: str | None, report_link: Callable[[str], bool], names: dict[str, str] | None = None) -> str:
    """The team's name (its id if it has none), linked to its weekly report for whoever may read that report."""
    if not team_id:
        return ""
    tid, name = escape(team_id), escape((names or {}).get(team_id) or team_id)
    return f'<a href="/reports/team/{tid}" title="{tid}">{name}</a>' if report_link(team_id) else str(name)


def _rule_titles(request: Request, hub: Hub) -> dict[str, str]:
    """The active scorecard's rule titles in the page's language, by rule id."""
    card = get_scorecard(hub.store)
    zh = page_lang(request) == "zh-CN"
    return {r.id: (r.title_zh or r.title) if zh else r.title for r in card.rules} if card else {}


def _user(request: Request, hub: Hub) -> User | None:
    token = token_of(request)
    return auth.user_for_token(hub.store, token) if token else None


def _fmt_time(hub: Hub, site: str | None, t: float | None) -> str:
    if t is None:
        return ""
    tz = hub.store.site_tz(site) if site else zone(hub.store.default_tz)
    return datetime.fromtimestamp(float(t), tz).strftime("%Y-%m-%d %H:%M")


def _fmt_iso(hub: Hub, text: object) -> str:
    """A stored ISO-8601 time (audit, users, scorecards: written as UTC text) in the hub's own time zone, as the
    pages show every time; what does not parse is shown as it is (escaped by the template)."""
    try:
        when = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return str(text or "")
    return _fmt_time(hub, None, (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())


def page_lang(request: Request) -> str:
    return i18n.pick(
        request.query_params.get("lang"), request.cookies.get(LANG_COOKIE), request.headers.get("accept-language")
    )


def render(request: Request, name: str, user: User | None, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    """A dashboard template in the request's language, with what every page needs."""
    lang = page_lang(request)
    hub: Hub = request.app.state.hub
    ctx.setdefault("csrf", csrf_token(request) if user is not None else "")  # base.html's meta, for scripts
    ctx.setdefault("queue", workflow.queue(hub.store, user) if user is not None else None)  # the nav's badge
    html = _env.get_template(name).render(
        t=i18n.STRINGS[lang],
        lang=lang,
        user=user,
        path=request.url.path,
        tz=hub.store.default_tz,
        fmt_time=lambda site, ts: _fmt_time(hub, site, ts),
        fmt_iso=lambda text: _fmt_iso(hub, text),
        **ctx,
    )
    # a lone surrogate stored from a seat must not turn the page into a 500: such characters become "?"
    resp = HTMLResponse(html.encode("utf-8", errors="replace"), status_code=status_code)
    if request.query_params.get("lang") in i18n.LANGS:
        resp.set_cookie(LANG_COOKIE, lang, samesite="lax", secure=is_https(request))
    return resp


def page_user(request: Request) -> tuple[Hub, User]:
    """The logged-in user of a page request; not logged in: off to the login page (and back afterwards)."""
    hub: Hub = request.app.state.hub
    user = _user(request, hub)
    if user is None:
        raise _LoginRedirect(request.url.path)
    return hub, user


NOT_PAGES = ("/api/", "/openapi.json", "/docs", "/static/")
"""Paths whose errors stay JSON (the API's clients read `detail`); every other path is a page."""
ERROR_DETAIL_MAX = 200
"""Characters of an error's own detail shown under the translated message (it may quote what was sent)."""


def error_page(
    request: Request, status: int, detail: object = None, headers: Mapping[str, str] | None = None
) -> Response:
    """The error as a page in the request's language: a translated line for the status, the error's own
    detail (English, bounded) under it, and a way back. A 500 reads nothing from the store (it may be why)."""
    user = None
    if status < 500:
        try:
            user = _user(request, request.app.state.hub)
        except Exception:  # the page must still be shown; the nav just lacks the user's links
            log.warning("error page for %s: the user could not be read", request.url.path, exc_info=True)
    message = f"error_{status}" if status in (400, 403, 404, 422, 500) else "error_other"
    text = detail if isinstance(detail, str) else ""
    if len(text) > ERROR_DETAIL_MAX:
        text = text[: ERROR_DETAIL_MAX - 1] + "\u2026"
    page = render(request, "error.html", user, status_code=status, status=status, message=message, detail=text)
    page.headers.update(headers or {})
    return page


def install_pages(app: FastAPI) -> None:
    from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if isinstance(exc, _LoginRedirect):
            return RedirectResponse(f"/login?next={quote(exc.next)}", status_code=303)
        if request.url.path.startswith(NOT_PAGES):
            return await http_exception_handler(request, exc)
        return error_page(request, exc.status_code, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> Response:
        if request.url.path.startswith(NOT_PAGES):
            return await request_validation_exception_handler(request, exc)
        return error_page(request, 422)

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception) -> Response:
        # Starlette logs the exception and raises it again after this answer (so servers and tests see it)
        if request.url.path.startswith(NOT_PAGES):
            return JSONResponse({"detail": "internal error"}, status_code=500)
        return error_page(request, 500)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/agents", status_code=303)

    @app.get("/login", include_in_schema=False)
    def login_page(request: Request, next: str = "/agents", error: int = 0) -> HTMLResponse:
        return render(request, "login.html", None, next=next, error=bool(error))

    @app.post("/login", include_in_schema=False)
    def login_form(
        request: Request,
        username: str = Form(..., max_length=128),
        password: str = Form(..., max_length=1024),
        next: str = Form("/agents", max_length=2000),
    ) -> Response:
        hub: Hub = request.app.state.hub
        try:
            token, _ = login_or_429(hub, request, username, password)
        except auth.AuthError:
            return RedirectResponse(f"/login?error=1&next={quote(next)}", status_code=303)
        except HTTPException as exc:  # throttled: the form again, saying so, with the API's status and header
            page = render(request, "login.html", None, status_code=exc.status_code, next=next, throttled=True)
            page.headers.update(exc.headers or {})
            return page
        target = next if next.startswith("/") and not next.startswith("//") else "/agents"
        resp = RedirectResponse(target, status_code=303)
        set_session_cookie(request, resp, token)
        return resp

    @app.get("/logout", include_in_schema=False)
    def logout_page(request: Request) -> Response:
        hub: Hub = request.app.state.hub
        token = token_of(request)
        if token:
            auth.logout(hub.store, token)
        resp = RedirectResponse("/login", status_code=303)
        clear_session_cookie(request, resp)
        return resp

    @app.get("/agents", include_in_schema=False)
    def agents_page(request: Request, period: Period = "week", end: str | None = None) -> HTMLResponse:
        hub, user = page_user(request)
        day = parse_day(end, hub)
        rows = agents_data(hub, user, day, period)
        start, stop, _, _ = aggregate.period_bounds(day, period)
        scope = Scope(user)
        titles = _rule_titles(request, hub)
        return render(
            request,
            "agents.html",
            user,
            rows_html=_agent_rows(
                rows,
                titles,
                i18n.STRINGS[page_lang(request)],
                scope.can_see_team,
                {str(k): str(v) for k, v in hub.store.db.all("SELECT team_id, name FROM teams")},
            ),
            period=period,
            start=start,
            stop=stop,
            coverage=aggregate.coverage(hub.store, scope, start, stop),
            hist=Markup(charts.histogram(aggregate.distribution(hub.store, scope, start, stop))),  # noqa: S704
            # issue 22: the period's outcomes on a page of their own, so this page keeps its cost at a million calls
            # (the relation reads every call of the period with an outcome: ~0.2 s a week, ~1 s a month there)
            po_link=f"/reports/outcomes?{urlencode({'period': period, 'end': day.isoformat()})}",
        )

    @app.get("/reports/outcomes", include_in_schema=False)
    def outcomes_report(request: Request, period: Period = "week", end: str | None = None) -> HTMLResponse:
        """The center's outcomes in the period and their relation to the QA score (a lead's: their team's, an
        agent's: their own), as the team report and the agent page show theirs."""
        hub, user = page_user(request)
        day = parse_day(end, hub)
        return render(
            request,
            "outcomes_report.html",
            user,
            period=period,
            **report_outcomes.page_context(hub.store, user, period, day),
        )

    @app.get("/agents/{agent_id}", include_in_schema=False)
    def agent_page(request: Request, agent_id: str, end: str | None = None) -> HTMLResponse:
        hub, user = page_user(request)
        a = visible_agent(hub, user, agent_id)
        day = parse_day(end, hub)
        start, stop, _, _ = aggregate.period_bounds(day, "month")
        trend = aggregate.agent_trend(hub.store, agent_id, day, 90)
        return render(
            request,
            "agent.html",
            user,
            agent=a,
            chart=Markup(charts.trend_chart(trend)),  # noqa: S704 - built and escaped by hub.web.charts
            worst=aggregate.agent_calls(hub.store, agent_id, start, stop, "worst"),
            best=aggregate.agent_calls(hub.store, agent_id, start, stop, "best"),
            recent=aggregate.agent_calls(hub.store, agent_id, start, stop, "recent", 20),
            coaching=coaching.agent_panel(  # issue 22: sessions, their trend, recognition
                hub.store, user, agent_id, day, page_lang(request), request.query_params.get("kudos") == "1"
            ),
            **report_outcomes.page_context(hub.store, user, "month", day, "agent", agent_id),  # issue 22
        )

    @app.get("/calls/{call_id}", include_in_schema=False)
    def call_page(request: Request, call_id: str, lang: str | None = None) -> HTMLResponse:
        hub, user = page_user(request)
        detail = call_detail(hub, user, call_id)
        view = call_view(hub.store.call_events(call_id))
        chosen = i18n.pick(lang, request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))
        labels = i18n.STRINGS[chosen]
        svg = charts.timeline(view, labels) if view is not None else ""
        card = None
        if detail["score"] is not None:
            card = get_scorecard(hub.store, detail["score"]["scorecard"], detail["score"]["version"])
        zh = chosen == "zh-CN"
        titles = {r.id: (r.title_zh or r.title) if zh else r.title for r in card.rules} if card else {}
        tz = hub.store.site_tz(detail["call"]["site"])
        score = detail["score"]
        rows = explain.breakdown(score, card, detail["reviews"], chosen, titles) if score is not None else None
        return render(
            request,
            "call.html",
            user,
            d=detail,
            timeline=Markup(svg),  # noqa: S704 - built and escaped by hub.web.charts
            legend=Markup(charts.legend(labels)),  # noqa: S704 - built and escaped by hub.web.charts
            titles=titles,
            rows=rows,
            history=explain.history(detail),
            cal=explain.calibration_grid(detail["calibrations"]["scores"]),
            local_time=lambda iso: explain.local_time(iso, tz),
            actions=_call_actions(request, hub, user, detail),
            outcomes=outcomes.call_outcomes(hub.store, call_id),
        )

    @app.get("/live", include_in_schema=False)
    def live_page(request: Request) -> HTMLResponse:
        _, user = page_user(request)
        if user.role not in ("admin", "reviewer", "lead"):
            raise HTTPException(403, "needs role admin, reviewer or lead")
        return render(request, "live.html", user)

    @app.get("/devices", include_in_schema=False)
    def devices_page(
        request: Request,
        only: Annotated[list[fleet.Problem], Query()] = [],  # noqa: B006 - FastAPI copies the default
        sort: fleet.Sort = "problems",
    ) -> HTMLResponse:
        """The fleet: health columns with problems highlighted; `?only=hot&only=disk` keeps the seats with all
        of those problems, `?sort=` orders them (problems first unless asked otherwise)."""
        hub, user = page_user(request)
        if user.role not in ("admin", "reviewer", "lead"):
            raise HTTPException(403, "needs role admin, reviewer or lead")
        rows = devices_data(hub, user, only, sort)
        return render(request, "devices.html", user, devices=rows, only=only, sort=sort, fleet=fleet)

    # --- the QA workflow: reviews and calibration pages, and their forms -----------------------------------------
    # Post-redirect-get. Each form route checks the role itself, as the API does (that a page showed the form
    # proves nothing); the CSRF field is checked before by hub.web.deps.csrf_guard; the change is the domain's own
    # function (hub.reviews, hub.calibration); bad input renders the page again, 400, with one translated line.

    def reviews_view(request: Request, error: str | None = None) -> HTMLResponse:
        hub, user = page_user(request)
        scope = Scope(user)
        waiting: list[reviews.Review] = []
        if user.role in ("admin", "lead"):
            waiting = [r for r in reviews.listing(hub.store, scope, status="open") if r.kind == "dispute"]
        return render(
            request,
            "reviews.html",
            user,
            status_code=400 if error else 200,
            reviews=workflow.review_rows(hub.store, reviews.listing(hub.store, scope)),
            to_resolve=workflow.review_rows(hub.store, waiting),
            to_calibrate=workflow.calls_to_calibrate(hub.store, user),
            titles=_rule_titles(request, hub),
            error=error,
            sent=request.query_params.get("sent"),
        )

    @app.get("/reviews", include_in_schema=False)
    def reviews_page(request: Request) -> HTMLResponse:
        return reviews_view(request)

    @app.get("/calibration", include_in_schema=False)
    def calibration_page(request: Request, tolerance: float = 1.0) -> HTMLResponse:
        hub, user = page_user(request)
        if user.role not in ("admin", "reviewer", "lead"):
            raise HTTPException(403, "needs role admin, reviewer or lead")
        tolerance = tolerance if 0 <= tolerance <= workflow.POINTS_MAX else 1.0  # nan and nonsense: the default
        rows = calibration.report(hub.store, Scope(user), tolerance)
        return render(
            request,
            "calibration.html",
            user,
            rows=rows,
            tolerance=tolerance,
            titles=_rule_titles(request, hub),
            to_calibrate=workflow.calls_to_calibrate(hub.store, user),
        )

    def call_form_refused(request: Request, call_id: str, key: str) -> Response:
        """The call page again, 400, its actions saying why (`_call_actions` reads `form_error`)."""
        request.state.form_error = key
        page = call_page(request, call_id)
        page.status_code = 400
        return page

    def call_rules(hub: Hub, call_id: str) -> set[str]:
        return {str(r[0]) for r in hub.store.db.all("SELECT rule_id FROM call_rules WHERE call_id = ?", (call_id,))}

    async def call_form(
        request: Request, call_id: str, roles: tuple[str, ...], change: Callable[[Any, Hub, User], object], anchor: str
    ) -> Response:
        """A call page's form post: role, then the call in scope (404 otherwise, like the API), then the change
        in a worker thread; 303 back to the call, or the call page with the reason."""
        hub, user = page_user(request)
        if user.role not in roles:
            raise HTTPException(403, f"needs role {' or '.join(roles)}")
        await run_in_threadpool(visible_call, hub, user, call_id)
        form = await request.form()
        try:
            await run_in_threadpool(change, form, hub, user)
        except workflow.FormError as exc:
            return await run_in_threadpool(call_form_refused, request, call_id, exc.key)
        except (reviews.ReviewError, calibration.CalibrationError, tone.ToneError):
            return await run_in_threadpool(call_form_refused, request, call_id, "err_refused")
        return RedirectResponse(f"/calls/{quote(call_id)}?sent={anchor}#{anchor}", status_code=303)

    @app.post("/calls/{call_id}/disputes", include_in_schema=False)
    async def dispute_form(request: Request, call_id: str) -> Response:
        def change(form: Any, hub: Hub, user: User) -> object:
            rule_id = workflow.rule(form.get("rule_id"), call_rules(hub, call_id), optional=True)
            return reviews.dispute(hub.store, user, call_id, rule_id, workflow.text(form.get("reason")))

        return await call_form(request, call_id, ("agent",), change, "dispute")

    @app.post("/calls/{call_id}/overrides", include_in_schema=False)
    async def override_form(request: Request, call_id: str) -> Response:
        def change(form: Any, hub: Hub, user: User) -> object:
            rule_id = workflow.rule(form.get("rule_id"), call_rules(hub, call_id))
            pts = workflow.points(form.get("points"))
            reason = workflow.text(form.get("reason"))
            return reviews.override(hub.store, user, call_id, str(rule_id), float(pts or 0.0), reason)

        return await call_form(request, call_id, ("admin", "reviewer"), change, "override")

    @app.post("/calls/{call_id}/calibration", include_in_schema=False)
    async def calibration_form(request: Request, call_id: str) -> Response:
        def change(form: Any, hub: Hub, user: User) -> object:
            entered = workflow.calibration_points(form, call_rules(hub, call_id))
            return calibration.submit(hub.store, user, call_id, entered)

        return await call_form(request, call_id, ("admin", "reviewer", "lead"), change, "calibrate")

    @app.post("/calls/{call_id}/tone", include_in_schema=False)
    async def tone_form(request: Request, call_id: str) -> Response:
        def change(form: Any, hub: Hub, user: User) -> object:
            try:
                labels = workflow.tone_labels(form)
            except workflow.FormError as exc:
                # counted like ingest's rejections (a counter per reason), shown on the tone page
                n = hub.store.bump_counter(f"{tone.REFUSED_PREFIX}{exc.key}")
                log.info("refused a tone form for %s from %s: %s (%d so far)", call_id, user.username, exc.key, n)
                raise
            return tone.label(hub.store, user, call_id, labels)

        return await call_form(request, call_id, tone.LABEL_ROLES, change, "tone")

    @app.post("/reviews/{review_id}/resolve", include_in_schema=False)
    async def resolve_form(request: Request, review_id: str) -> Response:
        hub, user = page_user(request)
        if user.role not in ("admin", "lead"):
            raise HTTPException(403, "needs role admin or lead")
        try:
            r = reviews.get(hub.store, int(review_id)) if review_id.isdigit() and len(review_id) < 18 else None
        except reviews.ReviewError:
            r = None
        if r is None:
            raise HTTPException(404, "no such review")
        await run_in_threadpool(visible_call, hub, user, r.call_id)
        form = await request.form()

        def change(r: reviews.Review) -> None:
            decision = form.get("decision")
            if decision not in ("upheld", "rejected"):
                raise workflow.FormError("err_decision")
            note = workflow.text(form.get("note"), required=False)
            pts = workflow.points(form.get("points"), required=False)
            if pts is not None and (decision != "upheld" or r.rule_id is None):
                raise workflow.FormError("err_points_upheld")
            if r.kind != "dispute" or r.status != "open":
                raise workflow.FormError("err_not_open")
            reviews.resolve(hub.store, user, r.id, "upheld" if decision == "upheld" else "rejected", note, pts)

        try:
            await run_in_threadpool(change, r)
        except workflow.FormError as exc:
            return await run_in_threadpool(reviews_view, request, exc.key)
        except reviews.ReviewError:
            return await run_in_threadpool(reviews_view, request, "err_refused")
        return RedirectResponse("/reviews?sent=resolve#queue", status_code=303)

    @app.get("/reports/team/{team_id}", include_in_schema=False)
    def team_report(request: Request, team_id: str, end: str | None = None) -> HTMLResponse:
        hub, user = page_user(request)
        row = hub.store.db.one("SELECT team_id, name, site FROM teams WHERE team_id = ?", (team_id,))
        if row is None or not Scope(user).can_see_team(team_id):
            raise HTTPException(404, "no such team")
        day = parse_day(end, hub)
        start, stop, _, _ = aggregate.period_bounds(day, "week")
        rows = agents_data(hub, user, day, "week", team_id)
        for r in rows:
            r["spark"] = _sparkline(tuple(r["trend"]))
        titles = _rule_titles(request, hub)
        week = aggregate.team_week(hub.store, Scope(user), team_id, day)
        return render(
            request,
            "report.html",
            user,
            team={"team_id": row[0], "name": row[1]},
            rows=rows,
            start=start,
            stop=stop,
            week=week,
            titles=titles,
            trend_svg=Markup(charts.trend_chart(week["weekly"], width=560, height=160)),  # noqa: S704
            hist=Markup(charts.histogram(week["distribution"])),  # noqa: S704
            **report_outcomes.page_context(hub.store, user, "week", day, "team", team_id),  # issue 22
        )


class _LoginRedirect(HTTPException):
    def __init__(self, next_path: str) -> None:
        super().__init__(401, "log in first")
        self.next = next_path


def _call_actions(request: Request, hub: Hub, user: User, detail: dict[str, Any]) -> dict[str, Any]:
    """The context of a call page's workflow forms (`_call_actions.html`), with a refused form's message."""
    actions = workflow.call_actions(hub.store, user, detail, page_lang(request))
    actions["error"] = getattr(request.state, "form_error", None)
    actions["sent"] = request.query_params.get("sent")
    return actions
