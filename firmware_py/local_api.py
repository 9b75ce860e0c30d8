"""Local endpoint for softphones and desk tools: the MQTT commands over HTTP, on loopback only.

    POST /cmd/{call_start|call_end|login|logout|privacy|config}   body: the command's JSON (docs/events.md)
    GET  /status                                                  the station's state and health

A command is handed to the station's analysis thread and the reply waits for its result, so a softphone
knows the call really started: 200 `{"ok": true, ...}`, 400 for a malformed command, 409 when the station
cannot do it now (a call start during privacy) or will not (an unsigned `config`: configuration comes only
signed, docs/updates.md), 404 for other paths. Bound to 127.0.0.1 by default (config
allows only loopback addresses): anyone who can reach it can switch privacy, so it never listens on the LAN.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edge_agent.commands import MAX_COMMAND_BYTES, Command, CommandError, parse_command

log = logging.getLogger(__name__)

Submit = Callable[[Command, str], "Future[str | None]"]
"""(command, origin) -> a future resolving to None (done) or an error message (refused)."""


class LocalApi:
    def __init__(self, host: str, port: int, submit: Submit, status: Callable[[], dict[str, Any]]) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "edge-agent"

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("local api: %s", format % args)

            def do_GET(self) -> None:
                if self.path != "/status":
                    self._reply(HTTPStatus.NOT_FOUND, {"ok": False, "error": f"no such path {self.path}"})
                    return
                self._reply(HTTPStatus.OK, status())

            def do_POST(self) -> None:
                if not self.path.startswith("/cmd/"):
                    self._reply(HTTPStatus.NOT_FOUND, {"ok": False, "error": f"no such path {self.path}"})
                    return
                name = self.path[len("/cmd/") :]
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_COMMAND_BYTES:
                    self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"ok": False, "error": "body too large"})
                    return
                body = self.rfile.read(length)
                try:
                    cmd = parse_command(name, body)
                except CommandError as exc:
                    self._reply(HTTPStatus.BAD_REQUEST, {"ok": False, "cmd": name, "error": str(exc)})
                    return
                try:
                    error = submit(cmd, "local").result(timeout=api.timeout_s)
                except TimeoutError:
                    self._reply(HTTPStatus.GATEWAY_TIMEOUT, {"ok": False, "cmd": name, "error": "station busy"})
                    return
                if error is None:
                    self._reply(HTTPStatus.OK, {"ok": True, "cmd": name, "state": status().get("state")})
                else:
                    self._reply(HTTPStatus.CONFLICT, {"ok": False, "cmd": name, "error": error})

            def _reply(self, code: HTTPStatus, body: dict[str, Any]) -> None:
                data = json.dumps(body, separators=(",", ":")).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.timeout_s = 5.0
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="local-api", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        log.info("local endpoint on http://%s:%d", *self.server.server_address[:2])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
