"""Bearer tokens with roles, stored hashed.

A token reads ``pc_<id>.<secret>``: ``id`` (12 hex digits) finds the row, ``secret``
(32 random bytes, URL-safe base64) is checked against ``scrypt(secret, salt)``
(n=2**14, r=8, p=1; a fresh 16-byte salt per token) with a constant-time comparison.
Only the salt and the hash are stored: a stolen database gives no usable token.

Verifying scrypt costs ~30 ms, so a token that verified once is remembered in memory as
``sha256(token)`` (compared in constant time too); revocation is read from the database
on every request, so ``placecast token revoke`` takes effect at once.

Roles are ordered: ``viewer`` (read) < ``analyst`` (upload, run, acknowledge) < ``admin``
(delete datasets, read the audit log).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import asdict, dataclass
from typing import Any

from placecast.exceptions import ParameterError
from placecast.service._state import StateDB, utc_now

__all__ = ["ROLES", "Principal", "TokenInfo", "TokenStore", "role_at_least"]

ROLES = ("viewer", "analyst", "admin")
_TOKEN = re.compile(r"^pc_([0-9a-f]{12})\.([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\- ]{0,63}$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32, "maxmem": 64 * 1024 * 1024}


def role_at_least(role: str, needed: str) -> bool:
    """True when ``role`` has at least the rights of ``needed``."""
    return ROLES.index(role) >= ROLES.index(needed)


def _hash(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode("ascii"), salt=salt, **_SCRYPT)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: the token's id, name and role."""

    token_id: str
    name: str
    role: str


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A stored token, without its secret."""

    id: str
    name: str
    role: str
    created: str
    revoked: str | None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


class TokenStore:
    """Create, list, revoke and verify tokens in the service's state database."""

    def __init__(self, state: StateDB) -> None:
        self._state = state
        self._verified: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def create(self, role: str, name: str = "token") -> tuple[str, TokenInfo]:
        """Make a token; return ``(token, info)``. The token is shown only here.

        Raises
        ------
        ParameterError
            For an unknown role or a name that is not 1-64 plain characters.
        """
        if role not in ROLES:
            raise ParameterError(f"role {role!r} is not one of {', '.join(ROLES)}.")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ParameterError(
                f"token name {name!r} is not valid: use 1-64 letters, digits, spaces or "
                "'_.@-', starting with a letter or digit (e.g. 'alice laptop').")
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        created = utc_now()
        self._state.execute(
            "INSERT INTO tokens (id, name, role, salt, hash, created) VALUES (?, ?, ?, ?, ?, ?)",
            (token_id, name, role, salt, _hash(secret, salt), created))
        return f"pc_{token_id}.{secret}", TokenInfo(token_id, name, role, created, None)

    def list(self) -> list[TokenInfo]:
        """Every token (revoked ones too), oldest first."""
        rows = self._state.execute(
            "SELECT id, name, role, created, revoked FROM tokens ORDER BY created, id")
        return [TokenInfo(*row) for row in rows]

    def revoke(self, token_id: str) -> None:
        """Revoke a token by id.

        Raises
        ------
        ParameterError
            If there is no such (unrevoked) token.
        """
        changed = self._state.execute_count(
            "UPDATE tokens SET revoked = ? WHERE id = ? AND revoked IS NULL",
            (utc_now(), str(token_id)))
        if not changed:
            raise ParameterError(f"no active token with id {token_id!r}; "
                                 "see `placecast token list`.")
        with self._lock:
            self._verified.pop(str(token_id), None)

    def verify(self, token: str) -> Principal | None:
        """The principal of a valid, unrevoked token; ``None`` otherwise."""
        match = _TOKEN.match(token or "")
        if match is None:
            return None
        token_id, secret = match.groups()
        rows = self._state.execute(
            "SELECT name, role, salt, hash, revoked FROM tokens WHERE id = ?", (token_id,))
        if not rows:
            return None
        name, role, salt, stored, revoked = rows[0]
        if revoked is not None:
            with self._lock:
                self._verified.pop(token_id, None)
            return None
        fast = hashlib.sha256(token.encode("ascii")).digest()
        with self._lock:
            cached = self._verified.get(token_id)
        if cached is not None and hmac.compare_digest(cached, fast):
            return Principal(token_id, name, role)
        if not hmac.compare_digest(_hash(secret, bytes(salt)), bytes(stored)):
            return None
        with self._lock:
            self._verified[token_id] = fast
        return Principal(token_id, name, role)
