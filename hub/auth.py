"""Users, sessions and who may see what.

Passwords are hashed with Argon2id (argon2-cffi defaults); session tokens are random, only their SHA-256 is
stored, and they expire. Roles:

- `admin`: everything, including users, scorecards and re-scoring;
- `reviewer` (QA reviewer): every agent's calls; overrides rule results, takes part in calibration;
- `lead` (team lead): the agents of their own team only; resolves their disputes;
- `agent`: their own calls only; may dispute them.

`Scope` is the one place that turns a user into the set of agents they may see; every endpoint filters
through it (tests/test_hub_api.py checks every endpoint against every role).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal, cast

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from hub.scores import audit, now_iso
from hub.storage import Store

Role = Literal["admin", "reviewer", "lead", "agent"]
ROLES: tuple[Role, ...] = ("admin", "reviewer", "lead", "agent")
SESSION_S = 12 * 3600.0
_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile (time 3, 64 MiB, 4 lanes)


def use_hasher(hasher: PasswordHasher) -> None:
    """Swap the hashing parameters (tests use cheap ones; hashes record their own, so all keep verifying)."""
    global _hasher
    _hasher = hasher


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
    """A new session token for valid credentials; AuthError (the same message either way) otherwise."""
    row = store.db.one("SELECT pw_hash FROM users WHERE username = ? AND disabled = 0", (username,))
    try:
        if row is None:
            raise VerificationError("no such user")
        _hasher.verify(row[0], password)
    except (VerificationError, InvalidHashError):
        raise AuthError("unknown user or wrong password") from None
    user = get_user(store, username)
    if user is None:  # pragma: no cover - disabled between the two reads
        raise AuthError("unknown user or wrong password")
    token = secrets.token_urlsafe(32)
    with store.db.transaction():
        store.db.execute("DELETE FROM sessions WHERE expires < ?", (time.time(),))
        store.db.execute("INSERT INTO sessions VALUES (?, ?, ?)", (_digest(token), username, time.time() + SESSION_S))
    return token, user


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
