"""Dependencies shared by every admin-API router: the admin token and the services."""

from __future__ import annotations

import secrets

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from millpond.app.services import Services
from millpond.errors import Unauthorized

#: Declared so the OpenAPI document (and the "Authorize" button of ``/api/docs``) knows
#: the admin API wants a bearer token; the check itself is :func:`require_admin`'s, so a
#: missing or wrong token keeps its own message.
bearer = HTTPBearer(auto_error=False, scheme_name="adminToken",
                    description="The admin token (`millpond serve` prints where it is kept).")


def require_admin(request: Request,
                  _declared: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
    """Admin token as ``Authorization: Bearer``; write keys are never admin credentials."""
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("admin API needs 'Authorization: Bearer <admin token>'")
    expected = services(request).admin_token
    if not secrets.compare_digest(token.strip().encode(), expected.encode()):
        raise Unauthorized("invalid admin token")


def services(request: Request) -> Services:
    """The server's :class:`~millpond.app.services.Services` (set by ``build_api``)."""
    return request.app.state.services
