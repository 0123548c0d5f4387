"""Security events of HTTP requests: refusals (401, 403, 429) and admin changes.

Both are recorded in one place each, so no route can forget: every refusal passes the one
error handler (:func:`record_refusal`), and every successful admin change passes
:class:`AdminChanges`, an ASGI middleware that knows which routes change tenants or policies
(:data:`ADMIN_ROUTES`). A record names who, what and where — method, route, path parameters,
the request id and a digest of the body — never the body, nor a token.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any, Final

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rlm.auth.principal import Principal
from rlm.auth.tokens import bearer_token, expired_principal
from rlm.errors import RLMError
from serve_app.context import request_id_of

__all__ = ["ADMIN_ROUTES", "AdminChanges", "record_refusal"]

ADMIN_ROUTES: Final[dict[tuple[str, str], str]] = {
    ("PUT", "/quotas/user/{userId}"): "quota.config.set",
    ("POST", "/quotas/team"): "team.create",
    ("PUT", "/quotas/team/{teamId}/members/{userId}"): "team.member.set",
    ("PUT", "/quotas/team/{teamId}/projects/{projectId}"): "team.project.set",
    ("POST", "/quotas/team/{teamId}/transfers"): "team.transfer",
    ("POST", "/quotas/enterprise/org"): "org.create",
    ("PATCH", "/quotas/enterprise/org/{orgId}"): "org.update",
    ("POST", "/webhooks"): "webhook.create",
    ("PATCH", "/webhooks/{webhookId}"): "webhook.update",
    ("DELETE", "/webhooks/{webhookId}"): "webhook.delete",
    ("POST", "/webhooks/{webhookId}/rotate-secret"): "webhook.secret.rotate",
}
"""Routes whose success is an admin change, by (method, route path under ``/v1``), with the
action name.
Policy changes are recorded by the security service itself, with what changed, in the same
transaction as the change."""

_WATCHED_PREFIXES: Final = tuple(sorted({path.split("{")[0] for _, path in ADMIN_ROUTES}))
_API_PREFIX: Final = "/v1"


def _route_path(path: str) -> str:
    """A route's path under the API prefix (routers may or may not carry the prefix)."""
    return path.removeprefix(_API_PREFIX)


def _app_path(scope: Scope) -> str:
    """The request's path as the app routes it: without the root path it is mounted at.

    An app served under a prefix (a Serve ``route_prefix`` such as ``/pg``) sees the whole
    path in ``scope["path"]`` and the prefix in ``root_path``; without stripping it no
    admin change would be recognised there, and none recorded.
    """
    path, root = str(scope["path"]), str(scope.get("root_path", ""))
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        path = path[len(root) :]
    return _route_path(path)


_REFUSALS: Final[dict[str, str]] = {
    "UNAUTHORIZED": "auth.unauthorized",
    "FORBIDDEN": "auth.forbidden",
    "RATE_LIMITED": "rate.limited",
    "QUOTA_EXCEEDED": "quota.refused",
}


class _Repeats:
    """How often one caller was refused the same way in the current minute.

    A flood of refusals (a client hammering past its rate limit, a scanner without a token)
    must not become a flood of records: the 1st, 10th, 100th... refusal of a caller in a
    minute is recorded, each with the count so far.
    """

    def __init__(self, window_s: float = 60.0, max_keys: int = 10_000) -> None:
        self._window_s = window_s
        self._max_keys = max_keys
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def count(self, kind: str, who: str) -> int | None:
        """The refusal's number in its minute when it is to be recorded, else ``None``."""
        now = time.monotonic()
        started, n = self._seen.get((kind, who), (now, 0))
        if now - started >= self._window_s:
            started, n = now, 0
        n += 1
        if len(self._seen) >= self._max_keys:
            cutoff = now - self._window_s
            self._seen = {k: v for k, v in self._seen.items() if v[0] >= cutoff}
        self._seen[(kind, who)] = (started, n)
        return n if math.log10(n).is_integer() else None


_repeats = _Repeats()


def _who(request: Request) -> Principal | None:
    principal = getattr(request.state, "principal", None)
    return principal if isinstance(principal, Principal) else None


def record_refusal(request: Request, err: RLMError) -> None:
    """Record a 401, 403 or 429 answer (other errors are not security events).

    A 401 carries its reason, never the token; it is put in the org of an *expired* token
    whose signature verifies (its users' admins should see those), else in no org (operators
    read those with ``rlm security events``).
    """
    kind = _REFUSALS.get(err.code)
    security = getattr(request.app.state, "security", None)
    if kind is None or security is None:
        return
    principal = _who(request)
    details: dict[str, Any] = {
        "method": request.method,
        "path": request.url.path,
        "status": err.status,
        "requestId": request_id_of(request),
        "client": request.client.host if request.client is not None else None,
    }
    for key in ("reason", "rule", "requiredScope", "resource", "period", "limit", "used"):
        if key in err.details:
            details[key] = err.details[key]
    if kind == "auth.unauthorized" and principal is None:
        principal = _expired(request) if err.details.get("reason") == "token expired" else None
    anonymous = principal is None or principal.is_anonymous
    user = None if principal is None or principal.is_anonymous else principal.user_id
    caller = user or details["client"] or "unknown"
    repeat = _repeats.count(kind, caller)
    if repeat is None:
        return
    if repeat > 1:
        details["repeatsThisMinute"] = repeat
    security.record(
        kind,
        message=f"{request.method} {request.url.path} refused {err.status} {err.code}: "
        f"{err.message}",
        org_id=None if anonymous or principal is None else principal.org,
        user_id=user,
        details=details,
    )


def _expired(request: Request) -> Principal | None:
    try:
        token = bearer_token(request.headers.get("authorization"))
    except RLMError:
        return None
    if token is None:
        return None
    state = request.app.state
    return expired_principal(token, state.keys, state.auth)


class AdminChanges:
    """Record each successful request to an :data:`ADMIN_ROUTES` route (body digested)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] == "GET"
            or not _app_path(scope).startswith(_WATCHED_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        body = hashlib.sha256()
        status = 0

        async def hashing() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body.update(message.get("body", b""))
            return message

        async def watching(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, hashing, watching)
        route = scope.get("route")
        action = ADMIN_ROUTES.get((scope["method"], _route_path(getattr(route, "path", ""))))
        if action is None or not 200 <= status < 300:
            return
        request = Request(scope)
        principal = _who(request)
        security = getattr(request.app.state, "security", None)
        if principal is None or security is None:
            return
        params = {k: str(v) for k, v in (scope.get("path_params") or {}).items()}
        target = ", ".join(f"{k}={v}" for k, v in params.items())
        security.record(
            "admin.change",
            message=f"{principal.user_id} {action}" + (f" ({target})" if target else ""),
            org_id=principal.org,
            user_id=principal.user_id,
            details={
                "action": action,
                "method": scope["method"],
                "route": _API_PREFIX + _route_path(getattr(route, "path", "")),
                "pathParams": params,
                "status": status,
                "bodyDigest": "sha256:" + body.hexdigest(),
                "requestId": request_id_of(request),
            },
        )
