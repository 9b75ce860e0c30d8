"""The live wall's state: what each seat is doing now and the alerts raised on its current call.

Fed by ingest after each commit (`LiveBoard.update`), read by the server-sent-events stream. In memory only:
after a restart the wall fills again as events arrive. Alerts: the customer's anger (an `emotion` event of the
customer labelled angry or sent as an `anger_alert`, or its `arousal` above 0.8 with a negative label) and long
dead air (a `dead_air` entry of at least `dead_air_alert_s`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from edge_agent.schema import Envelope


@dataclass
class SeatState:
    site: str
    seat: str
    agent_id: str | None = None
    call_id: str | None = None
    in_call: bool = False
    last_event: float = 0.0
    alerts: list[dict[str, Any]] = field(default_factory=list)


class LiveBoard:
    def __init__(self, dead_air_alert_s: float = 10.0) -> None:
        self.dead_air_alert_s = dead_air_alert_s
        self._seats: dict[tuple[str, str], SeatState] = {}
        self._lock = threading.Lock()
        self.version = 0
        """Bumped on every change: the stream sends a snapshot when it moves."""

    def update(self, env: Envelope) -> None:
        with self._lock:
            s = self._seats.setdefault((env.site, env.seat), SeatState(env.site, env.seat))
            s.last_event = time.time()
            if env.type == "agent_login":
                s.agent_id = env.agent_id
            elif env.type == "agent_logout":
                s.agent_id, s.in_call = None, False
            elif env.call_id is not None:
                if env.call_id != s.call_id:
                    s.call_id, s.alerts = env.call_id, []
                s.in_call = env.type != "call_summary"
                if env.agent_id is not None:
                    s.agent_id = env.agent_id
                s.alerts += self._alerts(env)
            self.version += 1

    def _alerts(self, env: Envelope) -> list[dict[str, Any]]:
        f = env.fields
        out: list[dict[str, Any]] = []
        if env.type == "emotion":
            party = f.get("party", f.get("speaker"))
            label = f.get("label", f.get("emotion"))
            arousal = f.get("arousal")
            hot = isinstance(arousal, int | float) and arousal > 0.8 and label in ("angry", "sad")
            if party == "customer" and (label == "angry" or hot or f.get("reason") == "anger_alert"):
                out.append({"kind": "customer_anger", "at": env.start, "event_id": env.id})
        gaps: list[tuple[float, float]] = []
        if env.type == "dead_air":
            gaps.append((env.start, env.end))
        elif env.type == "activity" and isinstance(f.get("dead_air"), list):
            gaps += [(float(x[0]), float(x[1])) for x in f["dead_air"] if isinstance(x, list) and len(x) == 2]
        out += [
            {"kind": "dead_air", "at": a, "seconds": round(b - a, 1), "event_id": env.id}
            for a, b in gaps
            if b - a >= self.dead_air_alert_s
        ]
        return out

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(s) for s in sorted(self._seats.values(), key=lambda s: (s.site, s.seat))]
