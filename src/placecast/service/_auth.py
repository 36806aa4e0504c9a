"""Bearer tokens with roles, stored hashed, with an optional expiry.

A token reads ``pc_<id>.<secret>``: ``id`` (12 hex digits) finds the row, ``secret``
(32 random bytes, URL-safe base64: 256 bits) is checked against
``HMAC-SHA256(key=salt, secret)`` (a fresh 16-byte salt per token) with
``hmac.compare_digest``. Only the salt and the hash are stored: a stolen database gives
no usable token, because finding a 256-bit secret from its hash is as hard as breaking
SHA-256 - a slow password hash adds nothing for secrets this random, and it let anyone
who knew a token id spend a scrypt (tens of ms of CPU) per request with a wrong secret.

Tokens made before this scheme (``scheme = 'scrypt'``: scrypt n=2**14, r=8, p=1) keep
working: the first request that presents one correctly re-hashes it with the fast
scheme, in place. Until then each check of such a token costs one scrypt, and at most
one scrypt runs at a time (other checks of legacy tokens wait up to 1 s, then are
refused with a message saying to retry), so wrong secrets for a legacy token id cannot
take more than one core or hold many request threads.
``placecast token list`` shows which tokens are still legacy; revoking and re-creating
them ends the cost at once.

Revocation and expiry are read from the database on every request, so ``placecast
token revoke`` takes effect at once and an expired token is refused (401, saying it
expired) from its expiry time on.

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
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from placecast.exceptions import ParameterError
from placecast.service._state import StateDB, utc_now

__all__ = ["ROLES", "Principal", "TokenInfo", "TokenRefused", "TokenStore", "role_at_least"]

ROLES = ("viewer", "analyst", "admin")
_TOKEN = re.compile(r"^pc_([0-9a-f]{12})\.([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\- ]{0,63}$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32, "maxmem": 64 * 1024 * 1024}
FAST = "hmac-sha256"
LEGACY = "scrypt"
#: Longest expiry ``create`` accepts.
MAX_EXPIRY_DAYS = 3660
_NEEDED = ("a valid bearer token is needed (Authorization: Bearer pc_...); see "
           "`placecast token create`.")


def role_at_least(role: str, needed: str) -> bool:
    """True when ``role`` has at least the rights of ``needed``."""
    return ROLES.index(role) >= ROLES.index(needed)


def _fast_hash(secret: str, salt: bytes) -> bytes:
    return hmac.new(salt, secret.encode("ascii"), hashlib.sha256).digest()


def _scrypt_hash(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode("ascii"), salt=salt, **_SCRYPT)


class TokenRefused(Exception):
    """A request's token is missing, malformed, unknown, wrong, revoked or expired.

    ``str(exc)`` is the message for the client (HTTP 401).
    """


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: the token's id, name and role."""

    token_id: str
    name: str
    role: str


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A stored token, without its secret.

    ``expires`` is the UTC expiry (ISO 8601) or ``None``; ``scheme`` is how its secret
    is hashed (``"hmac-sha256"``, or ``"scrypt"`` for a token not used since before the
    fast scheme).
    """

    id: str
    name: str
    role: str
    created: str
    revoked: str | None
    expires: str | None = None
    scheme: str = FAST

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def _expiry(expires: str | None) -> str | None:
    if expires is None:
        return None
    from placecast.quantities import parse_duration

    duration = parse_duration(expires, name="token expiry")
    now = pd.Timestamp(datetime.now(UTC).replace(microsecond=0, tzinfo=None))
    try:
        end = duration.add_to(now)
    except (OverflowError, ValueError, pd.errors.OutOfBoundsDatetime):
        end = None
    if end is None or (end - now).days > MAX_EXPIRY_DAYS:
        raise ParameterError(f"token expiry `expires` {expires!r} is longer than "
                             f"{MAX_EXPIRY_DAYS} days; give a shorter one (e.g. 90d, 1y) "
                             "or none.", param="expires")
    return end.tz_localize("UTC").isoformat(timespec="seconds")


class TokenStore:
    """Create, list, revoke and verify tokens in the service's state database."""

    def __init__(self, state: StateDB) -> None:
        self._state = state
        self._legacy = threading.BoundedSemaphore(1)

    def create(self, role: str, name: str = "token", expires: str | None = None
               ) -> tuple[str, TokenInfo]:
        """Make a token; return ``(token, info)``. The token is shown only here.

        Parameters
        ----------
        role : {"viewer", "analyst", "admin"}
            What the token may do.
        name : str
            Who or what it is for (1-64 plain characters).
        expires : str, optional
            Lifetime as a duration (``"90d"``, ``"12h"``, ``"1y"``; at most 3660 days);
            default never.

        Raises
        ------
        ParameterError
            For an unknown role, a name that is not 1-64 plain characters or an expiry
            that is not a positive duration.
        """
        if role not in ROLES:
            raise ParameterError(f"`role` {role!r} is not one of {', '.join(ROLES)}.",
                                 param="role")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ParameterError(
                f"token `name` {name!r} is not valid: use 1-64 letters, digits, spaces or "
                "'_.@-', starting with a letter or digit (e.g. 'alice laptop').",
                param="name")
        until = _expiry(expires)
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        created = utc_now()
        self._state.execute(
            "INSERT INTO tokens (id, name, role, salt, hash, created, scheme, expires) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (token_id, name, role, salt, _fast_hash(secret, salt), created, FAST, until))
        return (f"pc_{token_id}.{secret}",
                TokenInfo(token_id, name, role, created, None, until, FAST))

    def list(self) -> list[TokenInfo]:
        """Every token (revoked ones too), oldest first."""
        rows = self._state.execute(
            "SELECT id, name, role, created, revoked, expires, scheme FROM tokens "
            "ORDER BY created, id")
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

    def verify(self, token: str) -> Principal | None:
        """The principal of a valid, unrevoked, unexpired token; ``None`` otherwise."""
        try:
            return self.authenticate(token)
        except TokenRefused:
            return None

    def authenticate(self, token: str | None) -> Principal:
        """The principal of a valid token.

        Raises
        ------
        TokenRefused
            With the reason, for a missing, malformed, unknown, wrong, revoked or
            expired token.
        """
        who = self.authenticate_quick(token)
        if who is None:
            who = self._authenticate(token, quick=False)
        assert who is not None
        return who

    def authenticate_quick(self, token: str | None) -> Principal | None:
        """Like ``authenticate``, but ``None`` for a token made by an earlier version.

        A current token costs one indexed SQLite read and one HMAC (microseconds), so a
        server can check it on its event loop; ``None`` means the token is hashed with
        scrypt (slow by design): check it with ``authenticate`` off the event loop.

        Raises
        ------
        TokenRefused
            As ``authenticate``.
        """
        return self._authenticate(token, quick=True)

    def _authenticate(self, token: str | None, *, quick: bool) -> Principal | None:
        match = _TOKEN.match(token or "")
        if match is None:
            raise TokenRefused(_NEEDED)
        token_id, secret = match.groups()
        rows = self._state.execute(
            "SELECT name, role, salt, hash, revoked, expires, scheme FROM tokens "
            "WHERE id = ?", (token_id,))
        if not rows:
            raise TokenRefused(_NEEDED)
        name, role, salt, stored, revoked, expires, scheme = rows[0]
        if scheme != FAST and quick:
            return None
        if scheme == FAST:
            ok = hmac.compare_digest(_fast_hash(secret, bytes(salt)), bytes(stored))
        else:
            legacy = self._check_legacy(token_id, secret, bytes(salt), bytes(stored))
            if legacy is None:
                raise TokenRefused(
                    "the service is busy checking tokens made by an earlier version; try "
                    "again in a moment, or ask an admin for a new token (`placecast token "
                    "create`).")
            ok = legacy
        if not ok or revoked is not None:
            raise TokenRefused(_NEEDED)
        if expires is not None and expires <= utc_now():
            raise TokenRefused(f"this token expired at {expires} (UTC); ask an admin for a "
                               "new one (made with `placecast token create`, which takes "
                               "an expiry).")
        return Principal(token_id, name, role)

    def _check_legacy(self, token_id: str, secret: str, salt: bytes, stored: bytes
                      ) -> bool | None:
        """Check a scrypt-hashed token (one at a time); re-hash it when it matches.

        ``None`` when another check did not finish within 1 s (the caller refuses).
        """
        if not self._legacy.acquire(timeout=1.0):
            return None
        try:
            ok = hmac.compare_digest(_scrypt_hash(secret, salt), stored)
        finally:
            self._legacy.release()
        if ok:
            new_salt = secrets.token_bytes(16)
            self._state.execute(
                "UPDATE tokens SET salt = ?, hash = ?, scheme = ? WHERE id = ? AND scheme = ?",
                (new_salt, _fast_hash(secret, new_salt), FAST, token_id, LEGACY))
        return ok
