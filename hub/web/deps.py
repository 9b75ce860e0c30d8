"""What every web route depends on: the hub behind the app, the signed-in user, the session cookie and its CSRF
token, role checks, and scope lookups that answer 404 for what a user may not see (`hub.auth.Scope`); JSON that
never fails on stored content (NaN/Infinity as null, lone surrogates replaced).

Forgery: one app-wide dependency (`csrf_guard`) refuses (403) every state-changing request (POST, PUT, PATCH,
DELETE) that is authenticated by the session cookie and does not carry the session's token, as the
`X-CSRF-Token` header (API; `GET /api/me` tells it) or the `csrf` form field (dashboard forms). A bearer
token is not an ambient credential (no page on another site can make a browser send it), so such requests
need none. Logins are throttled (`hub.auth.LoginGuard`: 429 with `Retry-After`); the cookie is `HttpOnly`,
`SameSite=Strict`, and `Secure` whenever the request came over https (directly or through a trusted proxy).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from hub import aggregate, auth
from hub.auth import Scope, User
from hub.live import LiveBoard
from hub.scores import Scorer
from hub.storage import Store, zone
from hub.tone import ConfigSigner

log = logging.getLogger(__name__)

COOKIE = "qa_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
CSRF_EXEMPT = frozenset({"/api/login", "/login"})
"""Paths that change state without a session to forge (they create one)."""
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _finite(value: Any) -> Any:
    """`value` with every NaN or infinity (which JSON cannot carry) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def dumps(content: Any) -> bytes:
    """JSON for a response, whatever was stored: non-finite numbers become null and characters UTF-8 cannot
    carry (a lone surrogate a seat once sent) become U+FFFD, instead of the response failing with a 500."""
    try:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:  # NaN or infinity somewhere: the slow path only for such content
        text = json.dumps(_finite(content), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8", errors="replace")


class SafeJSONResponse(JSONResponse):
    """The app's JSON responses (see `dumps`)."""

    def render(self, content: Any) -> bytes:
        return dumps(content)


class Hub:
    """What the endpoints share: the store, the scorer, the live board and (optionally) the config signer."""

    def __init__(self, store: Store, live: LiveBoard | None = None, signer: ConfigSigner | None = None) -> None:
        self.store = store
        self.signer = signer
        """The update signing key and broker when this hub may sign config itself (`hub.tone.send`)."""
        self.scorer = Scorer(store)
        self.live = live or LiveBoard()
        self.guard = auth.LoginGuard()

    def today(self) -> date:
        """Today in the hub's default time zone (periods end on it unless asked otherwise)."""
        return datetime.now(zone(self.store.default_tz)).date()


def get_hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


HubDep = Annotated[Hub, Depends(get_hub)]


def token_of(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE)


def current_user(request: Request, hub: HubDep) -> User:
    token = token_of(request)
    user = auth.user_for_token(hub.store, token) if token else None
    if user is None:
        raise HTTPException(401, "log in first", headers={"WWW-Authenticate": "Bearer"})
    return user


UserDep = Annotated[User, Depends(current_user)]


def client_address(request: Request) -> str:
    """The client's address: the peer, or what a trusted reverse proxy says it is (uvicorn's proxy headers
    middleware rewrites the peer only for `--forwarded-allow-ips`)."""
    return request.client.host if request.client else "-"


def is_https(request: Request) -> bool:
    """Whether the browser reached the hub over TLS: uvicorn's own (`--ssl-certfile`) or a trusted proxy's
    `X-Forwarded-Proto: https` (an untrusted client's header is ignored by uvicorn)."""
    return request.url.scheme == "https"


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    """`HttpOnly` (no script reads it), `SameSite=Strict` (no other site's request carries it), `Secure` when
    served over https (never sent in clear text afterwards)."""
    response.set_cookie(
        COOKIE, token, httponly=True, samesite="strict", secure=is_https(request), max_age=int(auth.SESSION_S)
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(COOKIE, httponly=True, samesite="strict", secure=is_https(request))


def login_or_429(hub: Hub, request: Request, username: str, password: str) -> tuple[str, User]:
    """`hub.guard.login` from this client; a throttled attempt becomes 429 with `Retry-After`."""
    try:
        return hub.guard.login(hub.store, username, password, client_address(request))
    except auth.Throttled as exc:  # counted and logged by the guard
        raise HTTPException(429, exc.reason, headers={"Retry-After": str(exc.retry_after)}) from None


def bearer(request: Request) -> bool:
    return request.headers.get("authorization", "").lower().startswith("bearer ")


def csrf_token(request: Request) -> str:
    """The session's anti-forgery token: bound to it, useless with any other, never stored."""
    session = token_of(request) or ""
    return hmac.new(session.encode(), b"callqa admin form", hashlib.sha256).hexdigest()


async def csrf_guard(request: Request) -> None:
    """Every route's dependency (installed on the app): a cookie-authenticated state change must carry the
    session's token, else 403. Applied app-wide, so no route can forget it (tests/test_hub_web_security.py
    walks every route)."""
    if request.method not in UNSAFE_METHODS or request.url.path in CSRF_EXEMPT:
        return
    if bearer(request) or COOKIE not in request.cookies:
        return  # a bearer token is not ambient; no session at all: the route itself answers 401
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        field = (await request.form()).get(CSRF_FIELD)  # parsed once: the route reads the same (cached) form
        sent = field if isinstance(field, str) else None
    if not sent or not hmac.compare_digest(sent.encode(errors="replace"), csrf_token(request).encode()):
        raise HTTPException(403, "this form is stale or was not sent from this dashboard: reload the page and retry")


def require(user: User, *roles: str) -> None:
    if user.role not in roles:
        raise HTTPException(403, f"needs role {' or '.join(roles)}")


def visible_call(hub: Hub, user: User, call_id: str) -> dict[str, Any]:
    rows = hub.store.db.all(f"SELECT {aggregate.CALL_COLS} FROM calls WHERE call_id = ?", (call_id,))
    calls = aggregate.call_dicts(rows)
    if not calls or not Scope(user).can_see_agent(hub.store, calls[0]["agent_id"]):
        raise HTTPException(404, "no such call")
    return calls[0]


def visible_agent(hub: Hub, user: User, agent_id: str) -> dict[str, Any]:
    row = hub.store.db.one("SELECT agent_id, name, team_id FROM agents WHERE agent_id = ?", (agent_id,))
    if row is None or not Scope(user).can_see_agent(hub.store, agent_id):
        raise HTTPException(404, "no such agent")
    return {"agent_id": row[0], "name": row[1], "team_id": row[2]}


def parse_day(day: str | None, hub: Hub) -> date:
    if day is None:
        return hub.today()
    try:
        return date.fromisoformat(day)
    except ValueError:
        raise HTTPException(422, f"day {day!r}: use YYYY-MM-DD") from None


# --- data functions shared by the JSON endpoints, CSV export and the dashboard ------------------------------
