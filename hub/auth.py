"""Users, sessions and who may see what.

Passwords are hashed with Argon2id (argon2-cffi defaults); session tokens are random, only their SHA-256 is
stored, and they expire. Roles:

- `admin`: everything, including users, scorecards and re-scoring;
- `reviewer` (QA reviewer): every agent's calls; overrides rule results, takes part in calibration;
- `lead` (team lead): the agents of their own team only; resolves their disputes;
- `agent`: their own calls only; may dispute them.

`Scope` is the one place that turns a user into the set of agents they may see; every endpoint filters
through it (tests/test_hub_api.py checks every endpoint against every role).

Logging in goes through `LoginGuard` (one per app): failures are throttled per username and per client
address, answers take as long for an unknown user as for a known one (a dummy hash is verified), and only a
few Argon2 verifications run at once (each needs 64 MiB: forty of them in FastAPI's thread pool took an
unauthenticated flood to 2.5 GiB). docs/trust.md "Web login and sessions" has the figures.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Literal, cast

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from hub.scores import audit, now_iso
from hub.storage import Store

log = logging.getLogger(__name__)
Role = Literal["admin", "reviewer", "lead", "agent"]
ROLES: tuple[Role, ...] = ("admin", "reviewer", "lead", "agent")
SESSION_S = 12 * 3600.0
_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile (time 3, 64 MiB, 4 lanes)


_dummy_hash: str | None = None


def use_hasher(hasher: PasswordHasher) -> None:
    """Swap the hashing parameters (tests use cheap ones; hashes record their own, so all keep verifying)."""
    global _hasher, _dummy_hash
    _hasher = hasher
    _dummy_hash = None


def _dummy() -> str:
    """A hash of a random password with the current parameters: verified for unknown users, so their answer
    takes as long as a known user's wrong password (otherwise 0.9 ms against 72 ms names the real users)."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash(secrets.token_urlsafe(16))
    return _dummy_hash


class AuthError(ValueError):
    """Bad credentials or a user definition that cannot be stored."""


@dataclass(frozen=True)
class User:
    username: str
    role: Role
    agent_id: str | None = None
    team_id: str | None = None

    @property
    def sees_all(self) -> bool:
        return self.role in ("admin", "reviewer")


def create_user(
    store: Store,
    username: str,
    password: str,
    role: str,
    *,
    agent_id: str | None = None,
    team_id: str | None = None,
    actor: str = "system",
) -> User:
    _check_role(role, agent_id, team_id)
    if len(password) < 8:
        raise AuthError("passwords need at least 8 characters")
    user = User(username, cast(Role, role), agent_id, team_id)
    with store.db.transaction():
        if store.db.one("SELECT 1 FROM users WHERE username = ?", (username,)):
            raise AuthError(f"user {username!r} already exists")
        store.db.execute(
            "INSERT INTO users (username, pw_hash, role, agent_id, team_id, created) VALUES (?, ?, ?, ?, ?, ?)",
            (username, _hasher.hash(password), role, agent_id, team_id, now_iso()),
        )
        audit(store, actor, "user.create", username, {"role": role, "agent_id": agent_id, "team_id": team_id})
    return user


def _check_role(role: str, agent_id: str | None, team_id: str | None) -> None:
    if role not in ROLES:
        raise AuthError(f"role {role!r}: one of {', '.join(ROLES)}")
    if role == "agent" and not agent_id:
        raise AuthError("an agent user needs an agent id (--agent-id: the id stations report)")
    if role == "lead" and not team_id:
        raise AuthError("a team lead needs a team id (--team-id)")


def update_user(
    store: Store,
    username: str,
    *,
    role: str,
    agent_id: str | None,
    team_id: str | None,
    active: bool,
    actor: str = "system",
) -> User:
    """Set a user's role, agent, team and whether they may log in. Deactivating ends their sessions; the last
    active admin can be neither deactivated nor demoted (nobody could administer the hub any more)."""
    _check_role(role, agent_id, team_id)
    with store.db.transaction():
        row = store.db.one("SELECT role, agent_id, team_id, disabled FROM users WHERE username = ?", (username,))
        if row is None:
            raise AuthError(f"no user {username!r}")
        was_admin = row[0] == "admin" and not row[3]
        if was_admin and (role != "admin" or not active):
            others = store.db.scalar(
                "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0 AND username <> ?", (username,)
            )
            if not others:
                raise AuthError(f"{username!r} is the last active admin: make another admin first")
        store.db.execute(
            "UPDATE users SET role = ?, agent_id = ?, team_id = ?, disabled = ? WHERE username = ?",
            (role, agent_id if role == "agent" else None, team_id if role == "lead" else None, int(not active),
             username),
        )  # fmt: skip
        if not active:
            store.db.execute("DELETE FROM sessions WHERE username = ?", (username,))
        before = {"role": row[0], "agent_id": row[1], "team_id": row[2], "active": not row[3]}
        after = {"role": role, "agent_id": agent_id, "team_id": team_id, "active": active}
        audit(store, actor, "user.update", username, {k: v for k, v in after.items() if before[k] != v})
    return User(username, cast(Role, role), agent_id if role == "agent" else None, team_id if role == "lead" else None)


def set_password(store: Store, username: str, password: str, *, actor: str = "system") -> None:
    """A new password (an admin's reset); the user's sessions end, so whoever held one must log in again."""
    if len(password) < 8:
        raise AuthError("passwords need at least 8 characters")
    with store.db.transaction():
        if store.db.one("SELECT 1 FROM users WHERE username = ?", (username,)) is None:
            raise AuthError(f"no user {username!r}")
        store.db.execute("UPDATE users SET pw_hash = ? WHERE username = ?", (_hasher.hash(password), username))
        store.db.execute("DELETE FROM sessions WHERE username = ?", (username,))
        audit(store, actor, "user.password", username, {})


def list_users(store: Store) -> list[dict[str, Any]]:
    rows = store.db.all("SELECT username, role, agent_id, team_id, created, disabled FROM users ORDER BY username")
    return [
        {"username": u, "role": r, "agent_id": a, "team_id": t, "created": c, "active": not d}
        for u, r, a, t, c, d in rows
    ]


def get_user(store: Store, username: str) -> User | None:
    row = store.db.one(
        "SELECT username, role, agent_id, team_id FROM users WHERE username = ? AND disabled = 0", (username,)
    )
    return User(row[0], cast(Role, row[1]), row[2], row[3]) if row else None


def login(store: Store, username: str, password: str) -> tuple[str, User]:
    """A new session token for valid credentials; AuthError (the same message either way) otherwise. An
    unknown or disabled user costs one verification of a dummy hash, like a wrong password."""
    row = store.db.one("SELECT pw_hash FROM users WHERE username = ? AND disabled = 0", (username,))
    try:
        if row is None:
            _hasher.verify(_dummy(), password)  # the same work as a known user's; it never matches
            raise VerificationError("no such user")
        _hasher.verify(row[0], password)
    except (VerificationError, InvalidHashError):
        raise AuthError("unknown user or wrong password") from None
    if _hasher.check_needs_rehash(row[0]):
        # hashes made with older parameters move to the current ones, so every user's verification (and the
        # dummy's, made with the current ones) costs the same
        with store.db.transaction():
            store.db.execute("UPDATE users SET pw_hash = ? WHERE username = ?", (_hasher.hash(password), username))
    user = get_user(store, username)
    if user is None:  # pragma: no cover - disabled between the two reads
        raise AuthError("unknown user or wrong password")
    token = secrets.token_urlsafe(32)
    with store.db.transaction():
        store.db.execute("DELETE FROM sessions WHERE expires < ?", (time.time(),))
        store.db.execute("INSERT INTO sessions VALUES (?, ?, ?)", (_digest(token), username, time.time() + SESSION_S))
    return token, user


class Throttled(Exception):
    """Too many failed logins (or too many at once): answer 429 with `Retry-After: retry_after`."""

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = max(1, int(retry_after + 0.999))


class _Window:
    """Failure times per key within `window_s`, at most `limit` kept per key and at most `keys` keys (the least
    recently touched go first), so a flood of distinct usernames or addresses cannot grow the hub."""

    def __init__(self, limit: int, window_s: float, keys: int) -> None:
        self.limit, self.window_s, self.keys = limit, window_s, keys
        self._times: OrderedDict[str, deque[float]] = OrderedDict()

    def blocked_for(self, key: str, now: float) -> float:
        """Seconds until `key` may try again (0: it may now)."""
        times = self._times.get(key)
        if times is None:
            return 0.0
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._times[key]
            return 0.0
        return times[0] + self.window_s - now if len(times) >= self.limit else 0.0

    def fail(self, key: str, now: float) -> None:
        times = self._times.pop(key, None) or deque(maxlen=self.limit)
        times.append(now)
        self._times[key] = times  # most recent last
        while len(self._times) > self.keys:
            self._times.popitem(last=False)

    def reset(self, key: str) -> None:
        self._times.pop(key, None)

    def __len__(self) -> int:
        return len(self._times)


class LoginGuard:
    """Logins for one app: throttled, at most `concurrent` password verifications at a time.

    - per username: `user_limit` failures within `user_window_s` and that username answers 429 until the
      oldest of them is older than the window; a successful login clears its failures;
    - per client address: `addr_limit` failures within `addr_window_s` (a successful login does not clear
      these: one valid account must not reset an address that is guessing other users' passwords);
    - at most `concurrent` Argon2 verifications run at once and at most `queue` more wait for one (up to
      `wait_s`); beyond that the login answers 429 at once, before any hashing.
    Unknown usernames are throttled exactly like known ones, so the 429 does not tell them apart either.
    `rejected` counts the 429s by reason."""

    def __init__(
        self,
        *,
        user_limit: int = 5,
        user_window_s: float = 900.0,
        addr_limit: int = 20,
        addr_window_s: float = 60.0,
        concurrent: int = 2,
        queue: int = 8,
        wait_s: float = 5.0,
        keys: int = 10_000,
    ) -> None:
        self._users = _Window(user_limit, user_window_s, keys)
        self._addrs = _Window(addr_limit, addr_window_s, keys)
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(concurrent)
        self._queue, self._wait_s = queue, wait_s
        self._waiting = 0
        self.rejected: dict[str, int] = {"user": 0, "address": 0, "busy": 0}

    def login(self, store: Store, username: str, password: str, client: str) -> tuple[str, User]:
        """`login` behind the throttles; Throttled or AuthError."""
        now = time.monotonic()
        with self._lock:
            wait = max(self._users.blocked_for(username, now), self._addrs.blocked_for(client, now))
            if wait > 0:
                which = "user" if self._users.blocked_for(username, now) > 0 else "address"
                self._reject(which)
                raise Throttled("too many failed logins: try again later", wait)
            if self._waiting >= self._queue:
                self._reject("busy")
                raise Throttled("too many logins at once: try again in a moment", 1)
            self._waiting += 1
        try:
            got = self._slots.acquire(timeout=self._wait_s)
        finally:
            with self._lock:
                self._waiting -= 1
        if not got:
            with self._lock:
                self._reject("busy")
            raise Throttled("too many logins at once: try again in a moment", 1)
        try:
            result = login(store, username, password)
        except AuthError:
            with self._lock:
                now = time.monotonic()
                self._users.fail(username, now)
                self._addrs.fail(client, now)
            raise
        finally:
            self._slots.release()
        with self._lock:
            self._users.reset(username)
        return result

    def _reject(self, reason: str) -> None:
        """Count a 429 (under the lock); logged at the 1st, 10th, 100th... of each reason, so a flood cannot
        flood the log as well."""
        n = self.rejected[reason] = self.rejected[reason] + 1
        if str(n).rstrip("0") == "1":
            log.warning("logins refused (429), %s: %d so far (%s)", reason, n, self.rejected)

    def tracked(self) -> tuple[int, int]:
        """How many usernames and addresses the throttles remember now (bounded by `keys`)."""
        with self._lock:
            return len(self._users), len(self._addrs)


def user_for_token(store: Store, token: str) -> User | None:
    row = store.db.one("SELECT username, expires FROM sessions WHERE token_hash = ?", (_digest(token),))
    if row is None or float(row[1]) < time.time():
        return None
    return get_user(store, str(row[0]))


def logout(store: Store, token: str) -> None:
    with store.db.transaction():
        store.db.execute("DELETE FROM sessions WHERE token_hash = ?", (_digest(token),))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Scope:
    """SQL that limits rows with an agent column to what `user` may see."""

    user: User

    def agents_sql(self, column: str) -> tuple[str, list[object]]:
        """A condition (` AND ...`) on `column` holding an agent id."""
        u = self.user
        if u.sees_all:
            return "", []
        if u.role == "lead":
            return f" AND {column} IN (SELECT agent_id FROM agents WHERE team_id = ?)", [u.team_id]
        return f" AND {column} = ?", [u.agent_id]

    def can_see_agent(self, store: Store, agent_id: str | None) -> bool:
        u = self.user
        if u.sees_all:
            return True
        if agent_id is None:
            return False  # unattributed calls: QA staff only
        if u.role == "agent":
            return agent_id == u.agent_id
        team = store.db.scalar("SELECT team_id FROM agents WHERE agent_id = ?", (agent_id,))
        return team is not None and team == u.team_id

    def can_see_team(self, team_id: str) -> bool:
        return self.user.sees_all or (self.user.role == "lead" and self.user.team_id == team_id)
