"""The hub's web app: the JSON API, the dashboard pages and the admin pages on one FastAPI app, with the
app-wide CSRF check and the offline API docs. Nothing in the parts imports this module, so they never import
each other in a circle: they share `hub.web.deps` and `hub.web.views`."""

from __future__ import annotations

import logging

from fastapi import Depends, FastAPI

from hub import outcomes
from hub.live import LiveBoard
from hub.storage import Store
from hub.tone import ConfigSigner
from hub.web.admin_api import install_admin_api
from hub.web.admin_pages import install_admin_pages
from hub.web.api import install_api, install_docs
from hub.web.coaching_pages import install_coaching_pages
from hub.web.deps import Hub, SafeJSONResponse, csrf_guard
from hub.web.limits import COUNTER, BodyLimit
from hub.web.outcome_pages import install_outcome_pages
from hub.web.pages import install_pages
from hub.web.report_outcomes import install_outcome_reports
from hub.web.tone_pages import install_tone_pages
from hub.web.validity_api import install_validity_api
from hub.web.validity_pages import install_validity_pages

log = logging.getLogger(__name__)


def create_app(store: Store, board: LiveBoard | None = None, signer: ConfigSigner | None = None) -> FastAPI:
    app = FastAPI(
        title="callqa hub",
        version="1",
        description="QA scores from station events: agents, teams, calls, scores, events, devices, scorecards,"
        " reviews and calibration. Authenticate with POST /api/login, then send `Authorization: Bearer <token>`"
        " (a client that uses the session cookie instead sends `X-CSRF-Token` from GET /api/me on every POST, PUT,"
        " PATCH and DELETE). Failed logins are throttled: 429 with `Retry-After`.",
        dependencies=[Depends(csrf_guard)],
        default_response_class=SafeJSONResponse,
        # FastAPI's own /docs and /redoc load their scripts from a CDN: a site hub has no internet
        docs_url=None,
        redoc_url=None,
    )
    app.state.hub = Hub(store, board, signer)
    install_docs(app)
    install_api(app)
    install_admin_api(app)
    install_pages(app)
    install_admin_pages(app)
    install_tone_pages(app)
    install_outcome_pages(app)
    install_validity_api(app)
    install_validity_pages(app)
    install_coaching_pages(app)
    install_outcome_reports(app)
    # a multipart upload carries its boundaries and headers over the file's own bytes
    upload_limit = outcomes.MAX_BYTES + 64 * 1024
    app.add_middleware(
        BodyLimit,
        limits={"/outcomes/import": upload_limit, "/api/outcomes/import": upload_limit},
        on_refuse=lambda: store.bump_counter(COUNTER),
    )
    return app
