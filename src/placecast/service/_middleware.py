"""The ASGI middleware in front of every route: headers, token-first, body limits, log.

``Limits`` runs before FastAPI routes a request: it adds the security headers, refuses a
request without a valid token before reading its body (401), refuses oversized bodies
(413), turns an unexpected error into a JSON 500 and writes the audit-log entry.
"""

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from placecast.service._audit_log import AuditLog
from placecast.service._auth import TokenRefused, TokenStore, role_at_least
from placecast.service._deps import BASEMAP_PATH

__all__ = ["API_CSP", "DASHBOARD_CSP", "Limits"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_UPLOAD_PATH = re.compile(r"^/datasets/[^/]+$")

DASHBOARD_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; "
                 "img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; "
                 "object-src 'none'; base-uri 'none'; form-action 'self'; "
                 "frame-ancestors 'none'")
API_CSP = "default-src 'none'; frame-ancestors 'none'"


def _is_public(path: str) -> bool:
    """Paths that need no token: the liveness probe, the schema and the dashboard shell."""
    return path in ("/", "/health", "/openapi.json") or path.startswith("/static/")


class Limits:
    """ASGI middleware: security headers, token-first, body size limits and the audit log.

    Before any byte of a request body is read and before any routing, a request to a
    route that needs a token (all but ``/``, ``/static/*``, ``/health``,
    ``/openapi.json`` and CORS preflights) must present a valid one (else 401, cheaply;
    an unknown path is left to the app's 404). A body is refused (413) as soon as it is
    declared or seen to be larger than its limit: ``max_upload_bytes`` for uploads,
    ``max_json_bytes`` for everything else. An unexpected error becomes a JSON 500 with
    the same headers as every response (the details go to the log).
    """

    def __init__(self, app: Any, *, max_bytes: int, max_json_bytes: int, audit: AuditLog,
                 tokens: TokenStore, routes: list[re.Pattern[str]],
                 context: Any = None) -> None:
        self.app = app
        self.context = context
        self.routes = routes  # the app's route patterns (filled once routes exist)
        self.max_bytes = max_bytes
        self.max_json_bytes = max_json_bytes
        self.audit = audit
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        is_shell = path == "/" or path.startswith("/static/")
        # The static shell and the liveness probe read nothing: they are not logged.
        logged = not is_shell and path not in ("/health", BASEMAP_PATH)
        csp = DASHBOARD_CSP if is_shell else API_CSP
        status_box = [0]
        started = [False]
        exceeded = [False]

        async def send_with_headers(message: Message) -> None:
            if exceeded[0]:
                # The body went over the limit: whatever the app answers, reply 413 once.
                if message["type"] == "http.response.start" and not started[0]:
                    started[0] = True
                    await Limits._reply(send_secured, 413, self._too_large(limit, upload))
                return
            await send_secured(message)

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
                status_box[0] = message["status"]
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", csp.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                ]
                # A route that sets its own caching (the tagged forecast bodies: private,
                # revalidated with If-None-Match) keeps it; every other answer is no-store.
                if not any(bytes(key).lower() == b"cache-control" for key, _ in headers):
                    headers.append((b"cache-control",
                                    b"no-store" if not is_shell else b"no-cache"))
                message["headers"] = headers
            await send(message)

        method = scope["method"]
        upload = method == "POST" and bool(_UPLOAD_PATH.match(path))
        limit = self.max_bytes if upload else self.max_json_bytes
        try:
            if (method != "OPTIONS" and not _is_public(path)
                    and any(pattern.match(path) for pattern in self.routes)):
                refused = await self._refuse_token(scope)
                if refused is not None:
                    await self._reply(send_secured, 401, {"detail": refused},
                                      [(b"www-authenticate", b"Bearer")])
                    return
                if method == "GET" and self.context is not None and await self._fast(
                        scope, send_secured):
                    return
            declared = _header(scope, b"content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > limit):
                status = 413 if declared.isdigit() else 400
                await self._reply(send_secured, status, self._too_large(limit, upload)
                                  if status == 413 else {"detail": "bad Content-Length."})
                return
            seen = [0]
            inner_receive = receive

            async def counting_receive() -> Message:
                message = await inner_receive()
                if message["type"] == "http.request":
                    seen[0] += len(message.get("body", b""))
                    if seen[0] > limit:
                        exceeded[0] = True
                        raise _BodyTooLarge
                return message

            await self.app(scope, counting_receive, send_with_headers)
        except _BodyTooLarge:
            if not started[0]:
                started[0] = True
                await self._reply(send_secured, 413, self._too_large(limit, upload))
        except Exception:
            import logging

            logging.getLogger("placecast.service").exception(
                "internal error in %s %s", method, path)
            if started[0]:
                raise
            await self._reply(send_secured, 500, {
                "detail": "internal error: the request could not be completed; the "
                          "service log has the details. Please report it."})
        finally:
            if logged:
                self._log(scope, status_box[0] or 500)

    async def _refuse_token(self, scope: Scope) -> str | None:
        """Why the request's token is refused, or ``None`` when it is valid."""
        from starlette.concurrency import run_in_threadpool

        header = (_header(scope, b"authorization") or "").strip()
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            token = ""
        try:
            # A current token is checked here (one SQLite read and an HMAC); only an
            # older scrypt-hashed one goes to a worker thread.
            who = self.tokens.authenticate_quick(token.strip())
            if who is None:
                who = await run_in_threadpool(self.tokens.authenticate, token.strip())
        except TokenRefused as exc:
            return str(exc)
        scope.setdefault("state", {})["principal"] = who
        return None

    async def _fast(self, scope: Scope, send: Send) -> bool:
        """Answer a cached forecast body without routing (see ``cached_answer``)."""
        from placecast.service.routers.forecasts import cached_answer

        who = (scope.get("state") or {}).get("principal")
        if who is None or not role_at_least(who.role, "viewer"):
            return False
        answer = cached_answer(self.context, scope.get("path", ""),
                               scope.get("query_string", b""),
                               lambda name: _header(scope, name))
        if answer is None:
            return False
        status, headers, body, template, forecast_id = answer
        # What the audit log records for the routed request.
        scope["route"] = _Template(template)
        scope["path_params"] = {"forecast_id": forecast_id}
        raw = [(key.encode("latin-1"), value.encode("latin-1"))
               for key, value in headers.items()]
        if status != 304:
            raw.insert(0, (b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})
        return True

    def _too_large(self, limit: int, upload: bool) -> dict[str, str]:
        if upload:
            return {"detail": f"the upload is larger than this service's limit of "
                              f"{limit:,} bytes; split the file."}
        return {"detail": f"the request body is larger than this service's limit of "
                          f"{limit:,} bytes for JSON requests; send only the documented "
                          "fields (lists of at most 20 categories)."}

    @staticmethod
    async def _reply(send: Send, status: int, body: dict[str, Any],
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
        data = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(data)).encode()),
                                *(headers or [])]})
        await send({"type": "http.response.body", "body": data})

    def _log(self, scope: Scope, status: int) -> None:
        state = scope.get("state") or {}
        principal = state.get("principal") if isinstance(state, dict) else None
        route = scope.get("route")
        template = getattr(route, "path", None) or scope.get("path", "")
        client = scope.get("client")
        try:
            self.audit.record(principal=principal, method=scope["method"],
                              path=scope.get("path", ""),
                              action=f"{scope['method']} {template}",
                              target=dict(scope.get("path_params") or {}) or None,
                              status=status, client=client[0] if client else None)
        except Exception:  # the log must never break a response already sent
            import logging

            logging.getLogger("placecast.service").exception("audit log write failed")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class _Template:
    """Stands for the matched route in ``scope["route"]`` (its ``path`` template)."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


class _BodyTooLarge(Exception):
    pass

