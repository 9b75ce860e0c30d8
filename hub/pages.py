"""The dashboard: server-rendered pages (Jinja2) over the same data functions as the API, same scoping.

Pages: agents table (score, trend sparkline, top issues), agent page (trend chart, worst/best calls), call
page (SVG timeline of both parties' speech, talk-overs, dead air and emotion; the scorecard breakdown with
evidence), live wall (server-sent events), devices, reviews, calibration, and a printable weekly team report.
English or Chinese; times in the site's time zone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from hub import aggregate, auth, calibration, charts, i18n, reviews
from hub.aggregate import Period
from hub.api import (
    Hub,
    agents_data,
    call_detail,
    clear_session_cookie,
    csrf_token,
    devices_data,
    is_https,
    login_or_429,
    parse_day,
    set_session_cookie,
    token_of,
    visible_agent,
)
from hub.auth import Scope, User
from hub.scores import get_scorecard
from hub.scoring import call_view
from hub.storage import zone

LANG_COOKIE = "qa_lang"
_env = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")), autoescape=select_autoescape(["html"])
)


@functools.lru_cache(maxsize=4096)
def _sparkline(trend: tuple[float | None, ...]) -> Markup:
    """An agent's 8-week line: the same all week for most agents, so drawn once (500 of them on the page)."""
    return Markup(charts.sparkline(list(trend)))  # noqa: S704 - built and escaped by hub.charts


def _agent_rows(
    rows: list[dict[str, Any]], titles: dict[str, str], t: dict[str, str], report_link: Callable[[str], bool]
) -> Markup:
    """The agents table's rows (500 of them for an admin), built here rather than in the template, which took
    three times as long; every text is escaped and every number formatted here, as in hub.charts."""
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
                up = score >= r["previous"]
                tip = escape(f"{t['previous_period']}: {r['previous']:.1f}")
                cell += f' <span class="{"pos" if up else "neg"}" title="{tip}">{"▲" if up else "▼"}</span>'
        issues = "".join(
            f'<span class="badge">{escape(titles.get(i["rule"], i["rule"]))}'
            f' <span class="neg">{i["points"]:.0f}</span></span> '
            for i in r["top_issues"]
        )
        out.append(
            f'<tr class="agent-row" data-agent="{agent}">\n<td><a href="/agents/{agent}">{escape(r["name"])}</a></td>\n'
            f'<td>{_team_cell(r["team_id"], report_link)}</td>\n<td class="num">{int(r["calls"])}</td>\n'
            f'<td class="num score">{cell}</td>\n<td title="{spark_tip}">{_sparkline(tuple(r["trend"]))}</td>\n'
            f"<td>{issues}</td>\n</tr>\n"
        )
    return Markup("".join(out))  # noqa: S704 - every part escaped or formatted above


def _team_cell(team_id: str | None, report_link: Callable[[str], bool]) -> str:
    """The team's id, linked to its weekly report for whoever may read that report."""
    if not team_id:
        return ""
    tid = escape(team_id)
    return f'<a href="/reports/team/{tid}">{tid}</a>' if report_link(team_id) else str(tid)


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


def page_lang(request: Request) -> str:
    return i18n.pick(
        request.query_params.get("lang"), request.cookies.get(LANG_COOKIE), request.headers.get("accept-language")
    )


def render(request: Request, name: str, user: User | None, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    """A dashboard template in the request's language, with what every page needs."""
    lang = page_lang(request)
    hub: Hub = request.app.state.hub
    ctx.setdefault("csrf", csrf_token(request) if user is not None else "")  # base.html's meta, for scripts
    html = _env.get_template(name).render(
        t=i18n.STRINGS[lang],
        lang=lang,
        user=user,
        path=request.url.path,
        tz=hub.store.default_tz,
        fmt_time=lambda site, ts: _fmt_time(hub, site, ts),
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


def install_pages(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        if isinstance(exc, _LoginRedirect):
            return RedirectResponse(f"/login?next={quote(exc.next)}", status_code=303)
        from fastapi.exception_handlers import http_exception_handler

        return await http_exception_handler(request, exc)

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
            rows_html=_agent_rows(rows, titles, i18n.STRINGS[page_lang(request)], scope.can_see_team),
            period=period,
            start=start,
            stop=stop,
            coverage=aggregate.coverage(hub.store, scope, start, stop),
            hist=Markup(charts.histogram(aggregate.distribution(hub.store, scope, start, stop))),  # noqa: S704
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
            chart=Markup(charts.trend_chart(trend)),  # noqa: S704 - built and escaped by hub.charts
            worst=aggregate.agent_calls(hub.store, agent_id, start, stop, "worst"),
            best=aggregate.agent_calls(hub.store, agent_id, start, stop, "best"),
            recent=aggregate.agent_calls(hub.store, agent_id, start, stop, "recent", 20),
        )

    @app.get("/calls/{call_id}", include_in_schema=False)
    def call_page(request: Request, call_id: str, lang: str | None = None) -> HTMLResponse:
        hub, user = page_user(request)
        detail = call_detail(hub, user, call_id)
        view = call_view(hub.store.call_events(call_id))
        chosen = i18n.pick(lang, request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))
        svg = charts.timeline(view, i18n.STRINGS[chosen]) if view is not None else ""
        card = None
        if detail["score"] is not None:
            card = get_scorecard(hub.store, detail["score"]["scorecard"], detail["score"]["version"])
        titles_zh = {r.id: r.title_zh or r.title for r in card.rules} if card else {}
        return render(
            request,
            "call.html",
            user,
            d=detail,
            timeline=Markup(svg),  # noqa: S704 - built and escaped by hub.charts
            titles_zh=titles_zh,
        )

    @app.get("/live", include_in_schema=False)
    def live_page(request: Request) -> HTMLResponse:
        _, user = page_user(request)
        if user.role not in ("admin", "reviewer", "lead"):
            raise HTTPException(403, "needs role admin, reviewer or lead")
        return render(request, "live.html", user)

    @app.get("/devices", include_in_schema=False)
    def devices_page(request: Request) -> HTMLResponse:
        hub, user = page_user(request)
        if user.role not in ("admin", "reviewer", "lead"):
            raise HTTPException(403, "needs role admin, reviewer or lead")
        return render(request, "devices.html", user, devices=devices_data(hub, user))

    @app.get("/reviews", include_in_schema=False)
    def reviews_page(request: Request) -> HTMLResponse:
        hub, user = page_user(request)
        return render(request, "reviews.html", user, reviews=reviews.listing(hub.store, Scope(user)))

    @app.get("/calibration", include_in_schema=False)
    def calibration_page(request: Request, tolerance: float = 1.0) -> HTMLResponse:
        hub, user = page_user(request)
        if user.role not in ("admin", "reviewer", "lead"):
            raise HTTPException(403, "needs role admin, reviewer or lead")
        rows = calibration.report(hub.store, Scope(user), tolerance)
        return render(request, "calibration.html", user, rows=rows, tolerance=tolerance)

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
        )


class _LoginRedirect(HTTPException):
    def __init__(self, next_path: str) -> None:
        super().__init__(401, "log in first")
        self.next = next_path
