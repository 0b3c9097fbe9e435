"""Dependencies shared by every admin-API router: the admin token and the services."""

from __future__ import annotations

import secrets

from fastapi import Request

from millpond.app.services import Services
from millpond.errors import Unauthorized


def require_admin(request: Request) -> None:
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
